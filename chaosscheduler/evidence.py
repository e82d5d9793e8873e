"""The witness history as the probes' first source of evidence (PLAN.md §2): the tasks we submitted through the
platform's own interface, each with an identity, and the execution records they left on the hosts, judged by the
witness's pure checker (``chaosscheduler.witness.checker``).

Every function returns a measurement, or None when this run has no witness history (the probe then falls back to
the platform's metrics or records and says so). Functions that judge something still going on poll the history
(collected afresh each time: the evidence as it is now) until it settles or their bound passes.
"""

import logging
import math
import time
from typing import Any, Dict, List, Optional, Tuple

from .context import Context
from .measurements import current_stall, longest_stall, measurement, ratio, undecided

__all__ = ["history", "submissions", "task_success", "consistency", "stall", "rescheduling", "SOURCE"]
logger = logging.getLogger("chaostoolkit")
SOURCE = "witness"
POLL = 0.5  # seconds between two readings of the witness history (each one collects the evidence as it is now)
# a task on a cut worker that finished within this long after the fault's recorded start (plus the spread of a fault
# applied to several hosts one after another), and was not run again, is not judged: it may have finished before its
# own host was cut (the two clocks' readings are taken in different processes)
CUT_MARGIN = 0.1


def _witness() -> Any:
    try:
        from . import witness
    except ImportError:
        return None
    return witness


def history(ctx: Context, collect: bool = True) -> Any:
    """This run's witness history: the workload the control started in this process, else the one recorded in the
    run directory; None when there is none (no witness, switched off, or no task submitted yet)."""
    witness = _witness()
    if witness is None:
        return None
    try:
        workload = witness.active()
        if workload is not None and workload.run_id == ctx.run_id:
            found = workload.history(collect=collect)
        else:
            found = witness.load(ctx.settings.home, ctx.run_id)
    except Exception as e:  # no history for this run
        logger.debug("no witness history: %s", e)
        return None
    if found is None or not found.tasks():
        return None
    if not any(e.get("type") == "completion" for e in found.events):
        # completions the platform reported are read back at the end: until then, no task is "forgotten"
        found.meta["completions_reported"] = False
    return found


def _checker() -> Any:
    from .witness import checker

    return checker


def _faults(ctx: Context) -> List[Dict[str, Any]]:
    """This run's faults with their target nodes, for the checker to tell a loss from a duplicate."""
    return [{"targets": f.get("targets") or [], "started_at": f["started_at"], "ended_at": f.get("undone_at")}
            for f in ctx.ledger.all() if f.get("run_id") == ctx.run_id and f.get("started_at")]


def _poll(ctx: Context, until: float, done: Any) -> Tuple[Any, Any]:
    """Read the history until ``done(history) -> result or None`` gives a result, or ``until`` (wall time)
    passes; returns (history, last result or the last ``done`` answer forced)."""
    while True:
        found = history(ctx)
        result = done(found, time.time() >= until)
        if result is not None:
            return found, result
        time.sleep(max(POLL, ctx.settings.poll_interval))


def submissions(ctx: Context, start: float, end: float) -> Optional[Dict[str, Any]]:
    """Our submissions invoked in [start, end]: accepted (acknowledged, or indeterminate but seen running) over
    invoked, waiting for the answers still in flight (up to the submit timeout)."""
    first = history(ctx)
    if first is None:
        return None
    timeout = float(((first.meta.get("options") or {}).get("submit_timeout")) or 10.0)

    def judged(h: Any, last: bool) -> Optional[Dict[str, Any]]:
        found = _checker().check(h, window=(start, end))
        return found if last or not found["counts"].get("unanswered") else None

    _, found = _poll(ctx, end + timeout + 1.0, judged)
    counts = found["counts"]
    accepted = counts["ok"] + len(found["indeterminate"]["executed"])
    return ratio(accepted, counts["invoked"], SOURCE, "each submission's own answer",
                 refused=found["refused"][:50], refusal_errors=found["refusal_errors"],
                 indeterminate=found["indeterminate"], latency=found["submission_latency"],
                 reason="" if counts["invoked"] else "no witness task was submitted in the window")


def task_success(ctx: Context, start: float, end: float, settle: float) -> Optional[Dict[str, Any]]:
    """Of our tasks invoked in [start, end] and accepted, the share that ran to completion exactly once (by their
    own execution records), once every one has settled or ``settle`` s after the window."""
    if history(ctx) is None:
        return None

    def judged(h: Any, last: bool) -> Optional[Dict[str, Any]]:
        found = _checker().check(h, settle=settle, faults=_faults(ctx), window=(start, end))
        return found if last or not found["unsettled"] else None

    _, found = _poll(ctx, end + settle + 1.0, judged)
    twice = [t for t in found["duplicated_ids"]]
    n = found["counts"]["judged"]
    bad = set(found["lost"]) | set(twice)
    return ratio(max(0, n - len(bad)), n, SOURCE, "each task's own start and end records",
                 lost=found["lost"][:100], duplicated=twice[:100], unsettled=found["unsettled"][:100],
                 reason="" if n else "no witness task accepted in the window could be judged")


def _unreported(h: Any, twice: List[Dict[str, Any]], faults: List[Dict[str, Any]],
                grace: float) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Split the checker's "executed twice" into (still duplicates, re-executed after a loss): a first execution
    that ended less than ``grace`` seconds before a fault cut its node off may never have been reported to the
    platform, which then rightly ran the task again (at least once) — the loss is the completion report's."""
    runs = _checker().executions(h.executions)
    keep, lost = [], []
    for entry in twice:
        first_node, first_start = entry["nodes"][0], entry["at"][0]
        first = next((r for r in runs.get(entry["task"], []) if r["node"] == first_node
                      and r["start"] == first_start), None)
        ended = first and first.get("end")
        cut = [f["started_at"] for f in faults if first_node in (f.get("targets") or [])
               and ended is not None and 0 <= f["started_at"] - ended <= grace]
        if cut:
            lost.append({"task": entry["task"], "from": first_node, "to": entry["nodes"][1], "lost_at": min(cut),
                         "ended_before_cut": round(min(cut) - ended, 3), "why": "completion report cut off"})
        else:
            keep.append(entry)
    return keep, lost


def consistency(ctx: Context, settle: float, allow_rerun_after_loss: bool,
                report_grace: float = 5.0) -> Optional[Dict[str, Any]]:
    """Every accepted witness task of the run: lost, duplicated (recorded twice, run on two hosts at once, run again
    after a complete undisturbed run), unexpected, completed without evidence, forgotten by the platform; run again
    after a loss reported apart (an anomaly only when ``allow_rerun_after_loss`` is false). A task that finished
    less than ``report_grace`` seconds before its worker was cut off, and ran again, was re-executed after the loss
    of its completion report (see :func:`_unreported`)."""
    if history(ctx) is None:
        return None
    started = time.time()  # the tasks invoked so far are judged; later ones are not waited for

    def judged(h: Any, last: bool) -> Optional[Dict[str, Any]]:
        found = _checker().check(h, settle=settle, faults=_faults(ctx), window=(0.0, started))
        return found if last or not found["unsettled"] else None

    h, found = _poll(ctx, started + settle + 1.0, judged)
    twice, unreported = _unreported(h, found["duplicated"]["executed_twice"], _faults(ctx), report_grace)
    explained = {u["task"] for u in unreported}
    duplicated = sorted(set(found["duplicated"]["recorded_twice"]) | {d["task"] for d in twice}
                        | {d["task"] for d in found["duplicated"]["concurrent"]})
    rerun = [r["task"] for r in found["reexecuted_after_loss"]] + sorted(explained)
    kinds = {"lost": found["lost"], "duplicated": duplicated, "unexpected": found["unexpected"],
             "completed_without_evidence": found["completed_without_evidence"], "forgotten": found["forgotten"]}
    bad = set().union(*kinds.values()) | (set() if allow_rerun_after_loss else set(rerun))
    n = found["counts"]["judged"]
    out = ratio(max(0, n - len(bad - set(found["unexpected"]))), n, SOURCE, "each task's own execution records",
                anomalies=len(bad), accepted=n, reexecuted_after_loss=rerun[:100],
                run_twice=[d["task"] for d in twice][:100], unreported_then_rerun=unreported[:20],
                concurrent=found["duplicated"]["concurrent"][:20], unsettled=found["unsettled"][:100],
                reason="" if n else "no witness task could be judged yet",
                counts=dict({k: len(v) for k, v in kinds.items()}, run_twice=len(twice),
                            reexecuted_after_loss=len(rerun)),
                **{k: v[:100] for k, v in kinds.items()})
    out["ratio"] = out["value"]
    return out


def _waits(h: Any) -> Tuple[List[Tuple[float, float]], List[float], List[float]]:
    """(closed waits, starts of waits still open, every execution start): a task waits from the moment we began
    submitting it (a submission retried while there is no leader is waiting work) until its first start."""
    runs = _checker().executions(h.executions)
    first: Dict[str, float] = {}
    starts: List[float] = []
    for task, runs_of in runs.items():
        for run in runs_of:
            if run["start"] is not None:
                starts.append(run["start"])
                first[task] = min(first.get(task, math.inf), run["start"])
    outcome: Dict[str, str] = {}
    invoked: Dict[str, float] = {}
    for event in h.events:
        if event.get("type") == "invoke":
            invoked.setdefault(event["task"], event["at"])
        elif event.get("type") in ("ok", "fail", "info"):
            outcome.setdefault(event["task"], event["type"])
    closed, still = [], []
    for task, at in invoked.items():
        if task in first:
            closed.append((at, first[task]))
        elif outcome.get(task) in ("ok", None):  # acknowledged or still being submitted: waiting
            still.append(at)
    return closed, still, sorted(starts)


def stall(ctx: Context, t0: float, timeout: float) -> Optional[Dict[str, Any]]:
    """The longest time after ``t0`` during which our work waited and none of our tasks started; a stall still
    going on is waited for until ``t0 + timeout``."""
    if history(ctx) is None:
        return None
    quiet = max(0.5, 2 * POLL)

    def judged(h: Any, last: bool) -> Optional[Tuple[Any, float]]:
        closed, still, starts = _waits(h)
        stalled = current_stall([s for s in still if s <= (h.end or time.time())], starts, h.end or time.time())
        return (h, stalled) if last or stalled < quiet else None

    _, (h, stalled) = _poll(ctx, t0 + timeout, judged)
    closed, still, starts = _waits(h)
    end = h.end or time.time()
    spans = closed + [(s, end) for s in still]
    if not [1 for a, b in spans if b >= t0]:
        return undecided("s", SOURCE, "no witness task waited after the fault: a stall cannot be seen without work")
    measured = measurement(longest_stall(spans, starts, t0), "s", SOURCE + " (submission to first start)",
                           "each task's own start record", waiting_now=len(still))
    if stalled >= quiet:
        measured.update(value=round(max(measured["value"], stalled), 6), ongoing=True,
                        reason=f"scheduling still stalled {stalled:.1f} s at the {timeout:g} s bound after the "
                               f"fault: {len(still)} witness tasks waiting, none started")
    return measured


def rescheduling(ctx: Context, targets: List[str], t0: float, bound: float,
                 spread: float = 0.0) -> Optional[Dict[str, Any]]:
    """For our tasks running on ``targets`` at ``t0``: when each started again on another host (seconds after the
    cut), waiting until every one did or ``bound`` seconds after the cut. ``spread``: how long before ``t0`` the
    first target was cut (a fault applied host after host)."""
    if history(ctx) is None:
        return None

    def judged(h: Any, last: bool) -> Optional[Dict[str, Any]]:
        found = _checker().rescheduling(h, targets, t0, deadline=bound)
        return found if last or not found["not_restarted"] else None

    h, found = _poll(ctx, t0 + bound, judged)
    runs = _checker().executions(h.executions)
    at_cut = []
    for v in found["tasks"]:
        ends = [r["end"] for r in runs.get(v["task"], []) if r["node"] in targets and r["end"] is not None
                and r["start"] is not None and r["start"] <= t0 < r["end"]]
        if v["latency"] is None and ends and min(ends) <= t0 + CUT_MARGIN + spread:
            at_cut.append(v["task"])  # finished as the cut came: its completion may have got through
    per_task = {v["task"]: {"moved": None if v["latency"] is None else round(v["latency"], 6),
                            "completed": None if v["latency"] is None else round(v["latency"], 6)}
                for v in found["tasks"] if v["task"] not in at_cut}
    return {"targets": targets, "per_task": per_task, "resolution": "each task's own start record",
            "source": SOURCE + " (task identities: started again on another host)", "event": "started elsewhere",
            "finished_in_place": [v["task"] for v in found["tasks"] if v["finished_in_place"]][:100],
            "finished_at_cut": at_cut}
