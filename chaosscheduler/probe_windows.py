"""Where a probe looks: the window around the run's faults, the lost workers of a fault, and the freshness of
the metrics behind a figure. Shared by chaosscheduler.probes and chaosscheduler.probes_more."""

import time
from typing import Any, Dict, List, Sequence

from . import measurements
from .context import Context
from .measurements import declared_after, fault_span, not_applicable, undecided

__all__ = ["fault_window", "wait_window", "victims", "forms_fresh", "run_targets"]


def phase() -> Any:
    """The run's phase, as chaosscheduler.measurements tells it (one place to ask, one place to patch in tests)."""
    return measurements.phase()


def fault_window(ctx: Context, probe: str, actions: Sequence[str], window: float) -> Dict[str, Any]:
    """``{"start", "end", "fault"}``: ``window`` seconds from the start of the run's first fault (ours of
    ``actions`` or another provider's action); or ``{"measurement": ...}`` to return at once: not applicable before
    the method, "no fault" after it. Without the control (phase unknown) and no fault: the last ``window`` s."""
    where = phase()
    if where == "before-method":
        return {"measurement": not_applicable("ratio", "before the method: the figure is taken around the fault",
                                              phase=where)}
    span = fault_span(ctx, actions)
    if span is not None:
        return {"start": span[0], "end": span[0] + window, "fault": {"started_at": span[0], "ended_at": span[1]}}
    if where == "method":
        return {"measurement": not_applicable("ratio", "during the method, before any fault", phase=where)}
    if where is None:
        now = time.time()
        return {"start": now - window, "end": now, "fault": None}
    return {"measurement": undecided("ratio", "none", f"no fault: no {' or '.join(actions)} fault and no other "
                                     f"action of the method happened in this run, so there is no window to judge",
                                     phase=where, no_fault=True)}


def wait_window(end: float, sleep: Any = time.sleep) -> None:
    """Wait until wall time ``end`` (the end of a measuring window that began at a fault): bounded by the window."""
    while True:
        left = end - time.time()
        if left <= 0:
            return
        sleep(min(left, 0.5))


def victims(ctx: Context, fault: Dict[str, Any], bound: float) -> List[str]:
    """The workers a fault cut off: its targets; for another provider's action, the workers the platform declared
    dead within ``bound`` seconds of it."""
    if fault.get("targets"):
        return list(fault["targets"])
    t0 = fault["started_at"]
    return sorted(w["name"] for w in ctx.platform.worker_states()
                  if (declared_after(w, t0) or float("inf")) <= t0 + bound)


def run_targets(ctx: Context) -> List[str]:
    """Every node a fault of this run hit (cut off, killed)."""
    return sorted({t for f in ctx.ledger.all() if f.get("run_id") == ctx.run_id and f.get("started_at")
                   for t in f.get("targets") or []})


def forms_fresh(forms: Any, measured: Dict[str, Any], start: float, end: float,
                exclude: Sequence[str] = ()) -> Dict[str, Any]:
    """Check the age of the metrics samples behind ``measured`` over [start, end] (Prometheus ``timestamp()`` of the
    queries used, and scrape health ``up``), leaving out the nodes the measurement's fault cut off or killed (their
    scrapes fail: that is the fault): stale samples widen the stated resolution by their age; samples older than ten
    scrape intervals make the figure undecided."""
    check = getattr(forms, "freshness", None)
    if check is None:
        return measured
    targets = sorted(set((measured.get("fault") or {}).get("targets") or []) | set(exclude))
    try:
        fresh = check(start, min(end, time.time()), exclude=targets) if targets else \
            check(start, min(end, time.time()))
    except Exception as e:  # a freshness check that fails is said, never silently skipped
        return dict(measured, freshness={"error": str(e)},
                    resolution=f"{measured.get('resolution')} (sample age unknown: {e})")
    out = dict(measured, freshness=fresh)
    age, interval = fresh.get("max_age") or 0.0, fresh.get("interval") or 0.0
    if age > 1.5 * interval:
        base = measured.get("resolution")
        base_s = base if isinstance(base, (int, float)) else interval
        out["resolution"] = round(base_s + age, 3)
        out["reason"] = ((measured.get("reason") + "; ") if measured.get("reason") else "") + \
            f"metrics samples up to {age:.1f} s old in the window ({', '.join(fresh.get('stale') or [])}): the " \
            f"figure may be late by that much"
    if fresh.get("refuse"):
        out.update(decided=False, reason=f"metrics too stale to decide: {fresh['refuse']}")
    return out
