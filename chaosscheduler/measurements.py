"""How fault-timed probes find their fault and remember what they measured: pure helpers over ledger records and
platform answers, shared by the probes (and unit-tested without a platform)."""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .context import Context
from .errors import ChaosSchedulerError

__all__ = ["CUT_ACTIONS", "fault_of_run", "forms_of", "remember", "recall", "cut_from_registry", "declared_after",
           "lost_tasks", "longest_stall"]

CUT_ACTIONS = ["isolate_worker", "partition_workers"]


def fault_of_run(ctx: Context, actions: List[str], fault_id: str,
           accept: Callable[[Dict[str, Any]], bool] = lambda f: True) -> Optional[Dict[str, Any]]:
    ctx.platform  # a platform that is not running is an error, not a neutral value
    if not isinstance(fault_id, str):
        raise ChaosSchedulerError(f"argument 'fault_id' must be a fault id string, got {fault_id!r}")
    if fault_id:
        record = ctx.ledger.get(fault_id)
        if record.get("action") not in actions:
            raise ChaosSchedulerError(f"fault {fault_id} was made by {record.get('action')}, not by "
                                      f"{' or '.join(actions)}")
        return record
    candidates = [f for f in ctx.ledger.all() if f.get("action") in actions and f.get("started_at")
                  and f.get("run_id") == ctx.run_id and accept(f)]
    return candidates[-1] if candidates else None


def forms_of(ctx: Context) -> Any:
    """The platform's metrics forms (Prometheus) when it answers from metrics instead of records, else None."""
    return getattr(ctx.platform, "metrics", None)


def remember(ctx: Context, fault: Dict[str, Any], probe: str, measurement: Dict[str, Any]) -> None:
    def store(record: Dict[str, Any]) -> None:
        record.setdefault("measurements", {})[probe] = measurement

    ctx.ledger.update_with(fault["id"], store)


def recall(fault: Dict[str, Any], probe: str) -> Optional[float]:
    measurement = fault.get("measurements", {}).get(probe)
    return None if measurement is None else round(measurement["value"], 6)  # as the first answer was rounded


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
