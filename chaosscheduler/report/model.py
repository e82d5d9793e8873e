"""What a report shows about one journal, read defensively: any key may be missing or of the wrong type (older
journals, interrupted runs, runs without our control). Whatever cannot be known is said in ``notes``."""

import datetime
import json
import math
from typing import Any, Dict, List, Optional, Tuple

from .checks import failed_checks, is_measurement, measurement_text, no_fault
from .witness_lane import witness_view

__all__ = ["THRESHOLDS", "SHORT", "run_view", "number_of", "epoch", "fmt_value"]

# The reference article's thresholds (DESIGN.md): probe function, label, scenario, comparison, limit, unit.
THRESHOLDS: List[Tuple[str, str, str, str, float, str]] = [
    ("leader_election_time", "leader election time", "master crash", "<", 30.0, "s"),
    ("scheduling_interruption", "scheduling interruption", "master crash", "<", 5.0, "s"),
    ("job_submission_success_rate", "job submission success", "master crash", ">", 0.995, "%"),
    ("data_consistency", "data consistency (no task lost or run twice)", "all", "=", 1.0, "%"),
    ("task_execution_success_rate", "task execution success", "network partition", ">", 0.98, "%"),
    ("heartbeat_detection_accuracy", "heartbeat detection accuracy", "network partition", ">", 0.99, "%"),
    ("worker_failure_detection_time", "worker failure detection time", "worker disconnect", "<", 90.0, "s"),
    ("rescheduling_success_rate", "rescheduling success rate", "worker disconnect", ">", 0.95, "%"),
    ("rescheduling_latency", "rescheduling latency (p95)", "worker disconnect", "<", 60.0, "s"),
    ("remaining_workers_utilization", "remaining workers' utilisation", "worker disconnect", "<", 0.9, "%"),
]
SHORT = {"leader_election_time": "election", "scheduling_interruption": "stall",
         "job_submission_success_rate": "submissions", "data_consistency": "consistency",
         "task_execution_success_rate": "task success", "heartbeat_detection_accuracy": "heartbeat acc.",
         "worker_failure_detection_time": "detection", "rescheduling_success_rate": "rescheduled",
         "rescheduling_latency": "resched. p95", "remaining_workers_utilization": "utilisation"}
DICT_TARGETS = {"data_consistency": "ratio", "cluster_health": "problem_count"}


def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else []


def epoch(value: Any) -> Optional[float]:
    """An ISO 8601 journal timestamp (naive ones are UTC) or a number → epoch seconds; None if unreadable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def number_of(output: Any, func: str = "", target: Optional[str] = None) -> Optional[float]:
    """The number a probe's output stands for (a dict output: its tolerance target, e.g. ``ratio``; a measurement:
    its value, none when it does not apply or was not decided)."""
    if isinstance(output, bool):
        return None
    if is_measurement(output) and (output.get("applicable") is False or output.get("decided") is False):
        return None
    if isinstance(output, (int, float)):
        return float(output) if math.isfinite(output) else None
    if isinstance(output, dict):
        key = target or DICT_TARGETS.get(func) or ("value" if "value" in output else None)
        return number_of(output.get(key)) if key else None
    return None


def fmt_value(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 80 else text[:77] + "…"
    if unit == "%":
        return f"{value * 100:.4g} %"
    text = f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    return f"{text} {unit}".strip()


def tolerance_text(tolerance: Any) -> str:
    if isinstance(tolerance, dict):
        kind = tolerance.get("type")
        target = f" (of {tolerance['target']})" if tolerance.get("target") else ""
        if kind == "range" and isinstance(tolerance.get("range"), list) and len(tolerance["range"]) == 2:
            low, high = tolerance["range"]
            return (f"= {low}" if low == high else f"{low} – {high}") + target
        if kind == "regex":
            return f"matches /{tolerance.get('pattern', '')}/" + target
        if kind == "jsonpath":
            return f"{tolerance.get('path', '')} = {tolerance.get('expect', 'present')}"
        if kind == "probe":
            return f"probe {tolerance.get('name', '')}"
    return "—" if tolerance is None else fmt_value(tolerance)


def _error(entry: Dict[str, Any]) -> Optional[str]:
    exception = entry.get("exception")
    if isinstance(exception, list) and exception:
        return str(exception[-1]).strip().splitlines()[-1] if str(exception[-1]).strip() else None
    return str(exception) if exception else None


def _probe_result(entry: Optional[Dict[str, Any]], func: str, target: Optional[str]) -> Optional[Dict[str, Any]]:
    if entry is None:
        return None
    output = entry.get("output")
    text, kind = measurement_text(output) if is_measurement(output) else (None, None)
    return {"value": number_of(output, func, target), "output": output, "met": entry.get("tolerance_met"),
            "status": entry.get("status"), "error": _error(entry), "text": text, "kind": kind}


def _provider_func(activity: Dict[str, Any]) -> str:
    func = _dict(activity.get("provider")).get("func")
    return func if isinstance(func, str) else ""


def _hypothesis(journal: Dict[str, Any], experiment: Dict[str, Any]) -> List[Dict[str, Any]]:
    states = _dict(journal.get("steady_states"))
    ran = {when: {_dict(p.get("activity")).get("name"): p for p in _list(_dict(states.get(when)).get("probes"))
                  if isinstance(p, dict)} for when in ("before", "after")}
    declared = [p for p in _list(_dict(experiment.get("steady-state-hypothesis")).get("probes")) if isinstance(p, dict)]
    names = [p.get("name") for p in declared]
    for when in ("before", "after"):  # probes that ran but are not declared (an edited experiment)
        names += [n for n in ran[when] if n not in names]
    declared_by_name = {p.get("name"): p for p in declared}
    rows = []
    for name in names:
        activity = declared_by_name.get(name) or _dict(_dict(ran["before"].get(name) or ran["after"].get(name))
                                                       .get("activity"))
        func = _provider_func(activity)
        tolerance = activity.get("tolerance")
        target = _dict(tolerance).get("target")
        rows.append({"name": str(name), "func": func, "tolerance": tolerance_text(tolerance),
                     "before": _probe_result(ran["before"].get(name), func, target),
                     "after": _probe_result(ran["after"].get(name), func, target)})
    return rows


def _activities(journal: Dict[str, Any]) -> List[Dict[str, Any]]:
    out = []
    states = _dict(journal.get("steady_states"))
    phases = [("hypothesis before", _list(_dict(states.get("before")).get("probes"))),
              ("method", _list(journal.get("run"))),
              ("hypothesis after", _list(_dict(states.get("after")).get("probes"))),
              ("rollback", _list(journal.get("rollbacks")))]
    for phase, entries in phases:
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            activity = _dict(entry.get("activity"))
            out.append({"phase": phase, "name": str(activity.get("name", "?")), "type": activity.get("type"),
                        "func": _provider_func(activity), "start": epoch(entry.get("start")),
                        "end": epoch(entry.get("end")), "status": entry.get("status"), "output": entry.get("output"),
                        "error": _error(entry)})
    return out


def _passed(output: Any, value: Optional[float], op: str, limit: float) -> Optional[bool]:
    if is_measurement(output):
        if output.get("ongoing") or output.get("decided") is False:
            return False
        if op == ">" and output.get("lower") is not None:
            return output["lower"] >= limit  # judged on the one-sided 95 % bound, not the point estimate
        if op == "=" and output.get("anomalies") is not None:
            return output["anomalies"] == 0
    if value is None:
        return None
    return value < limit if op == "<" else value > limit if op == ">" else abs(value - limit) < 1e-9


def _figures(hypothesis: List[Dict[str, Any]], activities: List[Dict[str, Any]],
             faults: List[Dict[str, Any]], used: set) -> List[Dict[str, Any]]:
    rows = []
    for func, label, scenario, op, limit, unit in THRESHOLDS:
        value, source, output = None, None, None
        for row in hypothesis:
            after = row["after"]
            if row["func"] == func and after and (after["value"] is not None or after["kind"] in ("undecided",
                                                                                                  "ongoing")):
                value, source, output = after["value"], "hypothesis after the method", after["output"]
        if value is None and output is None:
            for act in activities:
                if act["phase"] == "method" and act["func"] == func and number_of(act["output"], func) is not None:
                    value, source, output = number_of(act["output"], func), "probe in the method", act["output"]
        if value is None:
            for fault in faults:
                measured = number_of(_dict(_dict(fault.get("measurements")).get(func)).get("value"))
                if measured is not None:
                    value, source = measured, f"ledger (fault {fault.get('id')})"
        if value is None and output is None and func not in used:
            continue
        text, kind = measurement_text(output) if is_measurement(output) else (None, None)
        if is_measurement(output) and output.get("source"):
            source = f"{source}: {output['source']}"
        rows.append({"func": func, "label": label, "scenario": scenario, "threshold": f"{op} {fmt_value(limit, unit)}",
                     "op": op, "limit": limit, "unit": unit, "value": value if kind in (None, "value") else None,
                     "source": source, "passed": _passed(output, value, op, limit), "text": text, "kind": kind,
                     "n": output.get("n") if isinstance(output, dict) else None,
                     "lower": output.get("lower") if isinstance(output, dict) else None})
    return rows


def _verdict(journal: Dict[str, Any], before_met: Optional[bool], nothing: Optional[str] = None) -> Tuple[str, str]:
    status = journal.get("status")
    if status == "killed":  # rendered from a run record (chaosscheduler.run_journal): no journal was written
        return "interrupted", "Killed: the run's process died before the run ended (rendered from its run record)"
    if status in ("interrupted", "aborted"):
        return "interrupted", ("Interrupted: the run was stopped before it finished" if status == "interrupted"
                               else "Aborted: the run was stopped before it finished")
    if nothing and before_met is not False:
        return "nofault", nothing
    if journal.get("deviated") is True:
        return "deviated", "Deviated: the steady state did not hold after the fault: a weakness was found"
    if before_met is False:
        return "untested", "Not tested: the steady state was not met before the method, which was skipped"
    if status == "failed":
        return "failed", "Failed: the run could not be carried out as planned (see the reasons)"
    if status == "completed":
        return "passed", "Passed: the platform kept its steady state through the fault"
    return "unknown", f"Unknown status {status!r}"


def run_view(journal: Any, label: str = "") -> Dict[str, Any]:
    """Everything a report draws about one journal, as plain data."""
    journal = _dict(journal)
    experiment = _dict(journal.get("experiment"))
    ours = journal.get("chaosscheduler")
    notes: List[str] = []
    if not isinstance(ours, dict):
        notes.append("No \"chaosscheduler\" section: the run did not use the chaosscheduler control (or the journal "
                     "predates it), so fault windows, failure reasons and the timeline are unknown.")
        ours = {}
    states = _dict(journal.get("steady_states"))
    before, after = states.get("before"), states.get("after")
    before_met = _dict(before).get("steady_state_met") if isinstance(before, dict) else None
    hypothesis = _hypothesis(journal, experiment)
    activities = _activities(journal)
    faults = [f for f in _list(ours.get("faults")) if isinstance(f, dict)]
    timeline = ours.get("timeline") if isinstance(ours.get("timeline"), dict) else None
    nothing = no_fault(journal, ours)
    verdict, verdict_text = _verdict(journal, before_met, nothing)
    checks = failed_checks(journal, ours)
    if not journal:
        notes.append("The journal is empty or not a JSON object.")
    if hypothesis and before is None:
        notes.append("The steady-state hypothesis was never checked before the method (the run stopped earlier).")
    if before_met is False:
        notes.append("The steady state was not met before the method: the method was skipped and no fault was "
                     "injected, so the platform was not tested.")
    elif hypothesis and before_met and after is None:
        notes.append("The steady-state hypothesis after the method is missing"
                     + (" because the run was interrupted" if verdict == "interrupted" else "")
                     + ": its figures come from probes run in the method or from the ledger where they exist.")
    if before_met and not _list(journal.get("run")):
        notes.append("No method activity was recorded.")
    cut = [a for a in activities if a["status"] is None]
    for activity in cut:
        notes.append(f"The {activity['phase']} activity '{activity['name']}' was cut off while it ran: no status and "
                     f"no output were recorded (chaos report cannot render such journals; this report can).")
    if isinstance(after, dict) and any(row["after"] is None for row in hypothesis) \
            and any(row["after"] and row["after"]["met"] is False for row in hypothesis):
        if _list(ours.get("skipped_probes")):
            notes.append("Chaos Toolkit stops checking a hypothesis at its first probe out of tolerance: the control "
                         "evaluated the probes it skipped; their failures are among the failed checks.")
        else:
            notes.append("Chaos Toolkit stops checking a hypothesis at its first probe out of tolerance: the probes "
                         "marked 'not run' after the method were not checked.")
    for warning in _list(_dict(ours.get("verdicts")).get("warnings")):
        notes.append(f"Experiment check: {warning}")
    if ours and "timeline" not in ours:
        notes.append("No timeline: the run was recorded without one (an older chaosscheduler, or the control's "
                     "argument timeline: false). The chart shows the activities and fault windows only.")
    elif timeline is not None and timeline.get("error"):
        notes.append(f"The timeline could not be completed: {timeline['error']}")
    elif timeline is not None and not timeline.get("samples"):
        notes.append("The timeline holds no sample (the platform never answered).")
    elif timeline is not None and timeline.get("errors"):
        notes.append(f"{timeline['errors']} timeline sample(s) failed; last error: {timeline.get('last_error')}")
    silent = [s for s in _list((timeline or {}).get("leader_silent")) if isinstance(s, list) and len(s) == 2
              and all(isinstance(v, (int, float)) for v in s)]
    if silent:
        notes.append(f"The leader held its election key but did not answer the recorder for "
                     f"{sum(b - a for a, b in silent):.1f} s in all (busy, or stopped): its lane is marked there and "
                     f"the workers' lanes keep their last known state.")
    for fault in faults:
        if fault.get("state") in ("recorded", "active"):
            notes.append(f"Fault {fault.get('id')} ({fault.get('action')}) was still open when the journal was "
                         f"written: check 'chaosscheduler faults'.")
    for error in _list(ours.get("undo_errors")):
        notes.append(f"Undo error: {error}")
    used = {row["func"] for row in hypothesis} | {a["func"] for a in activities}
    start = epoch(journal.get("start"))
    witness_origin = timeline.get("started_at") if timeline and isinstance(timeline.get("started_at"), (int, float)) \
        else start
    witness_timeline = witness_view(ours, witness_origin)
    if witness_timeline and witness_timeline.get("note"):
        notes.append(f"Witness: {witness_timeline['note']}.")
    return {
        "label": label, "title": str(experiment.get("title") or "(untitled experiment)"),
        "description": str(experiment.get("description") or ""), "status": journal.get("status"),
        "deviated": journal.get("deviated"), "verdict": verdict, "verdict_text": verdict_text,
        "start": start, "end": epoch(journal.get("end")), "duration": number_of(journal.get("duration")),
        "run_id": ours.get("run_id"), "failure_reasons": [str(r) for r in _list(ours.get("failure_reasons"))],
        "errors": [f"{a['name']}: {a['error']}" for a in activities if a["status"] == "failed" and a["error"]],
        "hypothesis": hypothesis, "activities": activities, "faults": faults, "timeline": timeline,
        "figures": _figures(hypothesis, activities, faults, used), "notes": notes, "failed_checks": checks,
        "no_fault": nothing, "witness": _dict(ours.get("witness")) or None,
        "witness_timeline": witness_timeline,
    }
