"""What a probe returns (a *measurement*), how a fault-timed probe finds its fault, and how it remembers what it
measured: pure helpers over ledger records, the run's observed faults and platform answers (unit-tested without a
platform).

A measurement is a plain dict (docs/activities.md, "Measurements")::

    {"value": number or None, "unit": "s" | "ratio" | ..., "source": where the figure comes from,
     "resolution": seconds or a sentence, "applicable": bool, "decided": bool, "ongoing": bool, "reason": "...",
     "n", "successes", "lower", "upper", "confidence" (ratios: one-sided 95 % bounds), "fault": {...}, ...}

- ``applicable`` false: the figure has no meaning now (a fault-timed probe before the method); a tolerance passes it
  and a report never shows it as measured.
- ``decided`` false: the probe could not measure (no fault in the run, too little evidence); a tolerance fails it.
- ``ongoing`` true: what the probe measures was still going on when its bound ran out; ``value`` is the time waited
  (a lower bound of the truth); a tolerance fails it.
"""

import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .context import Context
from .errors import ChaosSchedulerError

__all__ = ["CUT_ACTIONS", "Z95", "phase", "observed_faults", "measurement", "not_applicable", "undecided", "ratio",
           "needed_n", "find_fault", "timed_fault", "fault_summary", "forms_of", "remember", "recall",
           "cut_from_registry", "declared_after", "lost_tasks", "longest_stall", "current_stall", "fault_span"]

CUT_ACTIONS = ["isolate_worker", "partition_workers"]
Z95 = 1.6448536269514722  # one-sided 95 %
_OBSERVED_MEMORY: Dict[Tuple[str, float], Dict[str, Dict[str, Any]]] = {}  # observed fault -> probe -> measurement


# ---------------------------------------------------------------------- the run, as the control sees it
def _runs() -> Any:
    try:
        from . import runs  # the control's run record (PLAN.md §1); absent in older versions
    except ImportError:
        return None
    return runs


def phase() -> Optional[str]:
    """``"before-method"``, ``"method"``, ``"after-method"``, or None when no chaosscheduler control runs in this
    process (a probe called on its own, or from an experiment without the control): then the phase is unknown."""
    runs = _runs()
    if runs is None or not hasattr(runs, "current_phase"):
        return None
    try:
        return runs.current_phase()
    except Exception:
        return None


def observed_faults() -> List[Dict[str, Any]]:
    """Every action of the method so far, whoever provides it, with its window (the control records them)."""
    runs = _runs()
    if runs is None or not hasattr(runs, "observed_faults"):
        return []
    try:
        return [f for f in runs.observed_faults() or [] if isinstance(f, dict)]
    except Exception:
        return []


# ---------------------------------------------------------------------- measurement shapes
def measurement(value: Optional[float], unit: str, source: str, resolution: Any = None, **details: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"value": None if value is None else round(float(value), 6), "unit": unit, "source": source,
                           "resolution": resolution, "applicable": True, "decided": value is not None,
                           "ongoing": False, "reason": ""}
    out.update(details)
    return out


def not_applicable(unit: str, reason: str, **details: Any) -> Dict[str, Any]:
    return measurement(None, unit, "none", None, applicable=False, decided=True, reason=reason, **details)


def undecided(unit: str, source: str, reason: str, **details: Any) -> Dict[str, Any]:
    return measurement(None, unit, source, None, decided=False, reason=reason, **details)


def ratio(successes: int, n: int, source: str, resolution: Any = None, **details: Any) -> Dict[str, Any]:
    """A ratio with its n and one-sided 95 % Wilson bounds (``lower``: the truth is above it with 95 % confidence).
    n = 0 gives an undecided measurement."""
    if n <= 0:
        return undecided("ratio", source, details.pop("reason", "") or "nothing to count (n = 0)", n=0, successes=0,
                         **details)
    p = successes / n
    z2 = Z95 * Z95
    centre = p + z2 / (2 * n)
    margin = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lower = max(0.0, (centre - margin) / (1 + z2 / n))
    upper = min(1.0, (centre + margin) / (1 + z2 / n))
    return measurement(p, "ratio", source, resolution, n=int(n), successes=int(successes), lower=round(lower, 6),
                       upper=round(upper, 6), confidence=0.95, method="wilson", **details)


def needed_n(threshold: float) -> int:
    """The smallest n whose one-sided 95 % Wilson lower bound reaches ``threshold`` when nothing failed."""
    if threshold >= 1:
        return 0  # never: a bound below 1 cannot reach 1
    return max(1, math.ceil(threshold * Z95 * Z95 / (1 - threshold) - 1e-9))


# ---------------------------------------------------------------------- faults
def forms_of(ctx: Context) -> Any:
    """The platform's metrics forms (Prometheus) when it answers from metrics instead of records, else None."""
    return getattr(ctx.platform, "metrics", None)


def fault_summary(fault: Dict[str, Any]) -> Dict[str, Any]:
    keys = ("id", "name", "action", "provider", "targets", "started_at", "ended_at", "origin")
    return {k: fault[k] for k in keys if fault.get(k) is not None}


def _ledger_faults(ctx: Context, actions: Sequence[str]) -> List[Dict[str, Any]]:
    return [dict(f, origin="ledger", ended_at=f.get("undone_at")) for f in ctx.ledger.all()
            if f.get("action") in actions and f.get("started_at") and f.get("run_id") == ctx.run_id]


def find_fault(ctx: Context, actions: Sequence[str], fault_id: str = "",
               accept: Callable[[Dict[str, Any]], bool] = lambda f: True,
               observed: Optional[List[Dict[str, Any]]] = None, probe: str = "") -> Tuple[Optional[Dict[str, Any]], str]:
    """``(fault, "")`` or ``(None, why there is none)``. The fault is, in order: the ledger record ``fault_id``;
    this run's latest fault of ``actions`` that ``accept`` takes; else an observed fault of the run that is not ours
    (an action of another provider: a ``process`` kill, chaostoolkit-kubernetes, Chaos Mesh...), with its window
    (``origin`` "observed"): the latest one ``probe`` already measured (a probe placed right after the fault in the
    method ties the figure to it), else the latest. Ours that injected nothing (refused, dry) never count."""
    ctx.platform  # a platform that is not running is an error, not a missing fault
    if not isinstance(fault_id, str):
        raise ChaosSchedulerError(f"argument 'fault_id' must be a fault id string, got {fault_id!r}")
    if fault_id:
        record = ctx.ledger.get(fault_id)
        if record.get("action") not in actions:
            raise ChaosSchedulerError(f"fault {fault_id} was made by {record.get('action')}, not by "
                                      f"{' or '.join(actions)}")
        return dict(record, origin="ledger", ended_at=record.get("undone_at")), ""
    ours = _ledger_faults(ctx, actions)
    taken = [f for f in ours if accept(f)]
    if taken:
        return taken[-1], ""
    seen = observed if observed is not None else observed_faults()
    external = [f for f in seen if not f.get("ours") and f.get("started_at") and f.get("status") != "failed"]
    if external:
        measured = [f for f in external if probe and probe in _OBSERVED_MEMORY.get(_memory_key(f), {})]
        latest = max(measured or external, key=lambda f: f["started_at"])
        return dict(latest, origin="observed", action=latest.get("name"), targets=[]), ""
    if ours:
        return None, (f"{ours[-1]['action']} hit {', '.join(ours[-1].get('targets') or ['nothing'])}, which is not "
                      f"a fault this probe measures (e.g. a follower, not the leader)")
    refused = [f for f in seen if f.get("ours") and f.get("status") == "failed"]
    if refused:
        return None, f"our action '{refused[-1].get('name')}' failed (refused or could not inject): nothing was broken"
    return None, f"no {' or '.join(actions)} fault and no other action of the method happened in this run"


def timed_fault(ctx: Context, probe: str, unit: str, actions: Sequence[str], fault_id: str = "",
                accept: Callable[[Dict[str, Any]], bool] = lambda f: True,
                ) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """For a fault-timed probe: ``(fault, None)`` to measure from, or ``(None, measurement)`` to return as it is:
    "not applicable" before the method and during it while no fault happened yet (passes), "no fault" after it
    (fails), "cannot tell" without the control (fails)."""
    where = phase()
    if where == "before-method" and not fault_id:
        return None, not_applicable(unit, "before the method: no fault yet, nothing to time", phase=where)
    fault, why = find_fault(ctx, actions, fault_id, accept, probe=probe)
    if fault is not None:
        return fault, None
    if where == "method":  # during the method (a continuous hypothesis, a probe before the fault): not yet
        return None, not_applicable(unit, f"during the method, before any fault: {why}", phase=where)
    if where is None:
        why += ("; without the chaosscheduler control in this process the probe cannot tell 'before the method' "
                "from 'the method broke nothing', so it does not pass")
    return None, undecided(unit, "none", f"no fault: {why}", phase=where, no_fault=True)


def fault_span(ctx: Context, actions: Sequence[str]) -> Optional[Tuple[float, Optional[float]]]:
    """(first start, last end or None while one is still open) over this run's faults of ``actions`` and the
    observed faults not ours; None when there is none."""
    faults = _ledger_faults(ctx, actions)
    faults += [f for f in observed_faults() if not f.get("ours") and f.get("started_at") and f.get("status") != "failed"]
    if not faults:
        return None
    start = min(f["started_at"] for f in faults)
    ends = [f.get("ended_at") for f in faults]
    return start, (None if any(e is None for e in ends) else max(ends))


def _memory_key(fault: Dict[str, Any]) -> Tuple[str, float]:
    return (str(fault.get("name") or fault.get("id")), float(fault.get("started_at") or 0.0))


def remember(ctx: Context, fault: Dict[str, Any], probe: str, measured: Dict[str, Any]) -> None:
    """Store a measurement with its fault (ledger faults: in the ledger, so any process reads it back)."""
    if fault.get("origin") == "observed":
        _OBSERVED_MEMORY.setdefault(_memory_key(fault), {})[probe] = dict(measured)
        return

    def store(record: Dict[str, Any]) -> None:
        record.setdefault("measurements", {})[probe] = measured

    ctx.ledger.update_with(fault["id"], store)


def recall(fault: Dict[str, Any], probe: str) -> Optional[Dict[str, Any]]:
    """The measurement stored with ``fault`` by ``probe`` (a copy), or None. Old records stored a bare value."""
    if fault.get("origin") == "observed":
        stored = _OBSERVED_MEMORY.get(_memory_key(fault), {}).get(probe)
    else:
        stored = (fault.get("measurements") or {}).get(probe)
    if stored is None:
        return None
    out = dict(stored)
    if "unit" not in out:  # an older record: {"value": ...} only
        out = measurement(out.get("value"), "", "ledger", out.get("resolution"), **{k: v for k, v in out.items()
                                                                                     if k not in ("value", "resolution")})
    out["recalled"] = True
    return out


# ---------------------------------------------------------------------- platform answers
def cut_from_registry(fault: Dict[str, Any]) -> bool:
    """Whether a fault takes its targets' heartbeats away (so the platform is right to declare them dead)."""
    return fault.get("mode") == "drop" and (fault.get("peers") == ["*"] or bool(fault.get("cuts_registry")))


def declared_after(worker: Dict[str, Any], t0: float) -> Optional[float]:
    times = [t for t in worker.get("dead_declarations") or [] if t >= t0]
    if not times and worker.get("declared_dead_at") and worker["declared_dead_at"] >= t0:
        times = [worker["declared_dead_at"]]
    return min(times) if times else None


def lost_tasks(fault: Dict[str, Any]) -> List[str]:
    return sorted({t for tasks in (fault.get("running_tasks") or {}).values() for t in tasks})


def longest_stall(waits: Sequence[Tuple[float, float]], assignments: Sequence[float], since: float) -> float:
    """The longest stretch, after ``since``, inside one of the ``waits`` (start, end) during which no assignment
    (times in ``assignments``) happened at all."""
    longest = 0.0
    for start, end in waits:
        if end < since:
            continue
        start = max(start, since)
        points = [start] + [a for a in assignments if start < a < end] + [end]
        longest = max(longest, max(b - a for a, b in zip(points, points[1:])))
    return longest


def current_stall(open_since: Sequence[float], assignments: Sequence[float], now: float) -> float:
    """How long scheduling has been stalled at ``now``: work is still waiting (``open_since``: when each task still
    waiting began to wait) and nothing was assigned since the later of the oldest wait's start and the last
    assignment. 0.0 when nothing waits."""
    if not open_since:
        return 0.0
    start = max([min(open_since)] + [a for a in assignments if a <= now])
    return max(0.0, now - start)


def now() -> float:
    return time.time()
