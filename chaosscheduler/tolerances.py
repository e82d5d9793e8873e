"""Tolerances for the measurements our probes return, as Chaos Toolkit *probe* tolerances, so every threshold is an
argument a var file can set (Chaos Toolkit substitutes ``${var}`` in a probe tolerance's arguments, not inside a
``range``)::

    "tolerance": {"type": "probe", "name": "at-most-30s", "provider": {"type": "python",
                  "module": "chaosscheduler.tolerances", "func": "at_most",
                  "arguments": {"limit": "${leader_election_limit}"}}}

Rules (docs/experiments.md): a measurement that does not apply (a fault-timed probe before the method) passes; one
the probe could not decide (no fault, too little evidence) fails; one still going on when its bound ran out fails; a
ratio is judged on its one-sided 95 % lower bound, and when its n is too small to decide, the reason says the n
needed. Every judgment is logged with its reason, and :func:`judge` gives the same answer to the report.

``check_experiment(experiment, configuration)`` checks, when an experiment loads, that its timings make sense (a
fault must outlast the probe that waits for its effect) and says when a run cannot fail (a split shorter than the
platform's heartbeat timeout).
"""

import logging
import math
from typing import Any, Dict, List, Optional, Tuple

from chaoslib.types import Configuration, Secrets

from .errors import ChaosSchedulerError
from .measurements import needed_n

__all__ = ["at_most", "at_least", "consistent", "judge", "check_experiment", "journal_section", "fingerprint",
           "JUDGES"]
logger = logging.getLogger("chaostoolkit")
_JUDGMENTS: List[Dict[str, Any]] = []


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ChaosSchedulerError(f"tolerance argument '{name}' must be a number, got {value!r} (is its ${{var}} "
                                  f"declared in the experiment's configuration?)")
    return float(value)


def _shape(value: Any) -> Dict[str, Any]:
    """A measurement dict; a bare number (an older probe, another extension) is taken as a decided value."""
    if isinstance(value, dict):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"value": float(value), "applicable": True, "decided": True, "ongoing": False}
    return {"value": None, "applicable": True, "decided": False, "reason": f"not a measurement: {value!r}"}


def _gate(m: Dict[str, Any]) -> Optional[Tuple[bool, str]]:
    """The verdict every tolerance shares before looking at numbers, or None to go on."""
    if m.get("applicable") is False:
        return True, f"not applicable ({m.get('reason') or 'nothing to judge yet'})"
    if m.get("ongoing"):
        waited = m.get("value")
        default = (f"still going on after {waited:g} s" if isinstance(waited, (int, float))
                   else "still going on when the probe's bound ran out")
        return False, m.get("reason") or default
    if m.get("decided") is False or m.get("value") is None:
        return False, f"undecided: {m.get('reason') or 'no value'}"
    return None


def _judge_at_most(m: Dict[str, Any], limit: float) -> Tuple[bool, str]:
    gate = _gate(m)
    if gate:
        return gate
    value, unit = m["value"], m.get("unit") or ""
    shown = f"{value:g} {unit}".strip()
    if value <= limit:
        return True, f"{shown} <= {limit:g} ({m.get('source', 'unknown source')})"
    return False, f"{shown} > {limit:g} ({m.get('source', 'unknown source')})"


def _judge_at_least(m: Dict[str, Any], threshold: float) -> Tuple[bool, str]:
    gate = _gate(m)
    if gate:
        return gate
    value = m["value"]
    if "n" not in m or m.get("lower") is None:  # a plain value (utilisation-like): compared as it is
        return (value >= threshold,
                f"{value:g} {'>=' if value >= threshold else '<'} {threshold:g} ({m.get('source', 'unknown source')})")
    n, lower, source = m["n"], m["lower"], m.get("source", "unknown source")
    failures = n - m.get("successes", round(value * n))
    text = f"{value:.4%} of n = {n} ({failures} failed), 95 % lower bound {lower:.4%} ({source})"
    if lower >= threshold:
        return True, f"{text} >= {threshold:.4%}"
    if m.get("upper") is not None and m["upper"] < threshold:
        return False, f"{text}: below {threshold:.4%} even at the 95 % upper bound {m['upper']:.4%}"
    if value < threshold:
        return False, f"{text}: below {threshold:.4%}"
    need = needed_n(threshold)
    return False, (f"undecidable: {text} < {threshold:.4%}; deciding {threshold:.4%} needs n >= {need} with no "
                   f"failure" if need else f"undecidable: a bound never reaches {threshold:.4%}")


def _judge_consistent(m: Dict[str, Any], min_tasks: float) -> Tuple[bool, str]:
    if m.get("phase") == "before-method" and not m.get("anomalies") and not m.get("n", m.get("accepted")):
        # the witness has only just started: nothing judged, nothing contradicts the steady state; after the
        # method the same tolerance needs min_tasks judged tasks
        return True, (f"before the method no witness task was judged yet ({m.get('reason') or 'none'}): nothing "
                      f"to contradict; after the method {min_tasks:g} are needed")
    gate = _gate(m)
    if gate:
        return gate
    anomalies = m.get("anomalies")
    n = m.get("n", m.get("accepted"))
    if anomalies is None:  # an older output: lost/duplicated lists or counts
        anomalies = sum(len(v) if isinstance(v, list) else int(v or 0)
                        for v in (m.get("lost"), m.get("duplicated")))
    if anomalies:
        counts = m.get("counts") or {}
        kinds = ", ".join(f"{k} {counts.get(k, len(m[k]) if isinstance(m[k], list) else m[k])}" for k in
                          ("lost", "duplicated", "run_twice", "unexpected", "forgotten", "completed_without_evidence")
                          if m.get(k))
        return False, f"{anomalies} of {n} accepted tasks not run exactly once ({kinds}; {m.get('source', '?')})"
    if m.get("phase") == "before-method":  # the run is young: no anomaly so far is all the steady state asks
        return True, f"no anomaly among the {n} accepted tasks so far ({m.get('source', '?')})"
    if n is None or n < min_tasks:
        return False, f"undecidable: only {n} accepted tasks judged, {min_tasks:g} needed"
    return True, f"all {n} accepted tasks ran exactly once ({m.get('source', '?')})"


JUDGES = {"at_most": ("limit", _judge_at_most), "at_least": ("threshold", _judge_at_least),
          "consistent": ("min_tasks", _judge_consistent)}


def judge(func: str, value: Any, argument: Any) -> Dict[str, Any]:
    """``{"met": bool, "reason": str}`` for tolerance ``func`` (at_most, at_least, consistent) of ``value`` with
    its threshold ``argument``; what the tolerance activities log and the report shows."""
    name, check = JUDGES[func]
    try:
        met, reason = check(_shape(value), _number(name, argument))
    except ChaosSchedulerError as e:
        met, reason = False, str(e)
    return {"met": bool(met), "reason": reason}


def fingerprint(output: Any) -> str:
    """A short digest of a probe output, to match a judgment to its journal entry."""
    import hashlib
    import json

    text = json.dumps(output, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _log(func: str, value: Any, argument: Any, result: Dict[str, Any]) -> bool:
    (logger.info if result["met"] else logger.warning)("tolerance %s (%s %s): %s", func, JUDGES[func][0], argument,
                                                       result["reason"])
    _JUDGMENTS.append({"func": func, "argument": argument, "met": result["met"], "reason": result["reason"],
                       "output": fingerprint(value)})
    del _JUDGMENTS[:-500]
    return result["met"]


def journal_section() -> Dict[str, Any]:
    """What the control stores in the journal under ``"chaosscheduler"."verdicts"``: every judgment of this process
    (tolerance, threshold as substituted, met, reason, the output's fingerprint) and the experiment's warnings."""
    from .experiment_checks import warnings_of_run

    return {"judgments": list(_JUDGMENTS), "warnings": warnings_of_run()}


def at_most(value: Any = None, limit: float = 0.0, configuration: Configuration = None,
            secrets: Secrets = None) -> bool:
    """Met when the measurement is not applicable, or decided, not still going on, and ``value <= limit``. A
    measurement still going on when its probe stopped waiting, or undecided (no fault, no evidence), fails."""
    return _log("at_most", value, limit, judge("at_most", value, limit))


def at_least(value: Any = None, threshold: float = 0.0, configuration: Configuration = None,
             secrets: Secrets = None) -> bool:
    """Met when the measurement is not applicable, or its one-sided 95 % lower bound is at least ``threshold`` (a
    value without bounds: the value itself). When n is too small for the bound to reach the threshold, fails with
    the n needed (no failure among n: Wilson lower bound n / (n + 2.706))."""
    return _log("at_least", value, threshold, judge("at_least", value, threshold))


def consistent(value: Any = None, min_tasks: float = 1, configuration: Configuration = None,
               secrets: Secrets = None) -> bool:
    """Met when the measurement is not applicable, or no accepted task was lost, run twice or duplicated and at least
    ``min_tasks`` accepted tasks were judged."""
    return _log("consistent", value, min_tasks, judge("consistent", value, min_tasks))


from .experiment_checks import check_experiment  # noqa: E402  (kept apart: it reads whole experiments)
