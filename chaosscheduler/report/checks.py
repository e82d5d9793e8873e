"""What a report says about the verdict beyond Chaos Toolkit's status: whether any fault ran at all, every check
that failed (the hypothesis before and after the method, and the probes Chaos Toolkit skipped after the first
failure, which the control evaluated), most telling first, each with its reason; and how a measurement reads
(not applicable, undecided, still going on, a ratio with its n and bound)."""

import json
import math
import re
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["is_measurement", "measurement_text", "no_fault", "failed_checks", "RANK"]

# the most telling first: two leaders, a task lost or run twice, work never moved, then timings, then the rest
RANK = ["no fault", "split brain", "data_consistency", "rescheduling_success_rate", "leader_election_time",
        "scheduling_interruption", "job_submission_success_rate", "task_execution_success_rate",
        "heartbeat_detection_accuracy", "worker_failure_detection_time", "rescheduling_latency",
        "remaining_workers_utilization", "cluster_health"]


def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else []


def is_measurement(output: Any) -> bool:
    return isinstance(output, dict) and "applicable" in output and "value" in output


def _num(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def measurement_text(output: Dict[str, Any]) -> Tuple[str, str]:
    """(text, kind) for a measurement: kind is "na" (not applicable: never shown as measured), "undecided",
    "ongoing" or "value"."""
    if output.get("applicable") is False:
        return "not applicable", "na"
    value, unit = _num(output.get("value")), output.get("unit") or ""
    if output.get("ongoing"):
        shown = f"≥ {value:.4g} s" if value is not None and unit == "s" else "—"
        return f"still going on ({shown}): {output.get('reason') or 'at the bound'}", "ongoing"
    if output.get("decided") is False or value is None:
        return f"undecided: {output.get('reason') or 'no value'}", "undecided"
    if unit == "ratio" and output.get("n") is not None and _num(output.get("lower")) is not None:
        return (f"{value * 100:.4g} % (n = {output['n']}, 95 % lower bound {output['lower'] * 100:.4g} %)",
                "value")
    if unit == "ratio":
        return f"{value * 100:.4g} %", "value"
    return f"{value:.4g} {unit}".strip(), "value"


def _method_ran(journal: Dict[str, Any]) -> bool:
    return bool(_list(journal.get("run")))


def no_fault(journal: Dict[str, Any], ours: Dict[str, Any]) -> Optional[str]:
    """A sentence when the run's method ran but no fault happened (ours or another provider's), else None. Unknown
    (no chaosscheduler section) gives None: the report does not claim what it cannot know."""
    if not ours or not _method_ran(journal):
        return None
    faults = [f for f in _list(ours.get("faults")) if isinstance(f, dict) and _num(f.get("started_at"))]
    observed = [f for f in _list(ours.get("observed_faults")) if isinstance(f, dict) and not f.get("ours")
                and f.get("status") == "succeeded" and not f.get("dry_run")]
    if faults or observed:
        return None
    dry = (journal.get("experiment") or {}).get("dry") or journal.get("dry")
    actions = [e for e in _list(journal.get("run")) if _dict(e.get("activity")).get("type") == "action"]
    if dry in ("actions", "activities") or (isinstance(dry, dict) and dry.get("value") in ("actions", "activities")):
        why = "the run was dry (--dry actions): no action was carried out"
    elif actions and all(e.get("status") == "failed" for e in actions
                         if _dict(_dict(e.get("activity")).get("provider")).get("module") == "chaosscheduler.actions"):
        why = "every fault action failed (refused or could not inject)"
    else:
        why = "no fault was recorded and no action of another provider ran in the method"
    return f"No fault ran: {why}, so the platform was not tested and the run cannot pass"


def _resolve(argument: Any, experiment: Dict[str, Any]) -> Tuple[Any, bool]:
    """A tolerance argument as substituted from the experiment's own configuration (its defaults)."""
    if isinstance(argument, str):
        match = re.fullmatch(r"\$\{([^}]+)\}", argument)
        if match:
            value = _dict(experiment.get("configuration")).get(match.group(1))
            return (value, True) if not isinstance(value, dict) else (None, True)
    return argument, False


def _reason(entry: Dict[str, Any], activity: Dict[str, Any], experiment: Dict[str, Any],
            judgments: Dict[str, Dict[str, Any]]) -> str:
    if entry.get("status") == "failed":
        error = entry.get("error") or entry.get("exception")
        if isinstance(error, list):
            error = error[-1] if error else ""
        return f"the probe failed: {str(error or 'no detail').strip().splitlines()[-1]}"
    output = entry.get("output")
    tolerance = _dict(activity.get("tolerance"))
    provider = _dict(tolerance.get("provider"))
    if tolerance.get("type") == "probe" and provider.get("module") == "chaosscheduler.tolerances":
        from ..tolerances import JUDGES, fingerprint, judge

        found = judgments.get(fingerprint(output))
        if found:
            return found["reason"]
        func = provider.get("func")
        if func in JUDGES:
            argument, from_default = _resolve(_dict(provider.get("arguments")).get(JUDGES[func][0]), experiment)
            reason = judge(func, output, argument)["reason"]
            return reason + (" (threshold: the experiment's default; a var file may have set another)"
                             if from_default else "")
    if is_measurement(output):
        text, kind = measurement_text(output)
        if kind != "value":
            return text
    if tolerance.get("type") == "range":
        target = tolerance.get("target")
        value = _dict(output).get(target) if target else output
        extra = f"; problems: {'; '.join(map(str, output.get('problems') or []))}" \
            if isinstance(output, dict) and output.get("problems") else ""
        return f"{json.dumps(value, default=str)} outside {tolerance.get('range')}{extra}"
    return f"out of tolerance ({json.dumps(output, default=str)[:120]})"


def _rank(func: str, output: Any, reason: str) -> int:
    if isinstance(output, dict) and output.get("no_fault"):
        return 0
    if func == "cluster_health" and isinstance(output, dict) and len(_list(output.get("leaders"))) > 1:
        return 1
    return RANK.index(func) if func in RANK else len(RANK)


def failed_checks(journal: Dict[str, Any], ours: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every check out of tolerance: ``[{"name", "func", "when", "reason", "skipped_by_chaos_toolkit"}]``, most
    telling first (a missing fault, two leaders, a lost or doubled task... see RANK), then in the run's order."""
    experiment = _dict(journal.get("experiment"))
    judgments = {j.get("output"): j for j in _list(_dict(ours.get("verdicts")).get("judgments"))
                 if isinstance(j, dict)}
    declared = {p.get("name"): p for p in _list(_dict(experiment.get("steady-state-hypothesis")).get("probes"))
                if isinstance(p, dict)}
    states = _dict(journal.get("steady_states"))
    found = []
    for when in ("before", "after"):
        for entry in _list(_dict(states.get(when)).get("probes")):
            if isinstance(entry, dict) and entry.get("tolerance_met") is False:
                activity = _dict(entry.get("activity"))
                found.append((when, activity, entry, False))
    for entry in _list(ours.get("skipped_probes")):
        if isinstance(entry, dict) and entry.get("tolerance_met") is False:
            activity = declared.get(entry.get("name")) or {"name": entry.get("name"),
                                                           "tolerance": entry.get("tolerance")}
            found.append((entry.get("hypothesis", "after"), activity, entry, True))
    checks = []
    for order, (when, activity, entry, skipped) in enumerate(found):
        func = _dict(activity.get("provider")).get("func") or ""
        if not func and isinstance(entry.get("provider"), str):
            func = entry["provider"].rsplit(".", 1)[-1]
        reason = _reason(entry, activity, experiment, judgments)
        checks.append({"name": str(activity.get("name") or "?"), "func": func, "when": when, "reason": reason,
                       "skipped_by_chaos_toolkit": skipped, "rank": (_rank(func, entry.get("output"), reason),
                                                                     when != "after", order)})
    checks.sort(key=lambda c: c["rank"])
    for check in checks:
        check.pop("rank")
    return checks
