"""Probes: what the platform did under the fault, as *measurements* (dicts, see chaosscheduler.measurements) that the
tolerances of chaosscheduler.tolerances judge.

Fault-timed probes time events from the fault's recorded start: this run's latest fault of ours of the relevant kind
in the ledger (or ``fault_id``), else the latest action of the method from another provider (a ``process`` kill,
chaostoolkit-kubernetes, ...), as the chaosscheduler control observed it. Before the method they return "not
applicable" (a tolerance passes it, a report never shows it as measured); after it, with no fault in the run, they
fail with the reason. A measurement is stored with its fault, so a later call (the hypothesis after the method)
returns the same figure.

Evidence, in order: the witness history (tasks we submitted through the platform's own interface, with the
execution records they left), the platform's Prometheus metrics (hosts platforms), the platform's own records
(the embedded cluster). Every measurement names its ``source``. Waits are bounded by arguments; something still
going on at the bound is reported as such ("ongoing"), never as a short value.
"""

import logging
import math
import time
from typing import Any, Dict

from chaoslib.types import Configuration, Secrets

from . import evidence, measurements, records
from .context import Context, boundary, number
from .measurements import (CUT_ACTIONS, declared_after, fault_summary, forms_of, lost_tasks, measurement, ratio,
                           recall, remember, timed_fault, undecided)
from .probe_windows import fault_window, forms_fresh, run_targets, victims, wait_window
from .timing import Deadline

__all__ = ["leader_election_time", "worker_failure_detection_time", "rescheduling_success_rate",
           "rescheduling_latency", "job_submission_success_rate", "task_execution_success_rate",
           "scheduling_interruption", "data_consistency", "heartbeat_detection_accuracy", "cluster_health",
           "remaining_workers_utilization"]
logger = logging.getLogger("chaostoolkit")


def phase() -> Any:
    """The run's phase, as chaosscheduler.measurements tells it (one place to ask, one place to patch in tests)."""
    return measurements.phase()


FAULT_ACTIONS = ["kill_master"] + CUT_ACTIONS


def _done(name: str, measured: Dict[str, Any]) -> Dict[str, Any]:
    shown = "not applicable" if not measured.get("applicable", True) else \
        f"{measured['value']} {measured.get('unit', '')}".strip() if measured.get("decided") else "undecided"
    (logger.info if measured.get("decided") and not measured.get("ongoing") else logger.warning)(
        "%s: %s (%s)%s", name, shown, measured.get("source"),
        f": {measured['reason']}" if measured.get("reason") else "")
    return measured


@boundary
def leader_election_time(timeout: float = 30.0, fault_id: str = "", configuration: Configuration = None,
                         secrets: Secrets = None) -> Dict[str, Any]:
    """Seconds from the recorded kill of the leader (this run's latest kill_master that hit the leader, or
    ``fault_id``, or else the latest action of the method from another provider) until a *different* master
    leads. Waits until ``timeout`` seconds after the fault; no new leader by then: ``ongoing`` (fails).

    Resolution: the new leader's own timestamp of its election when the platform shares this machine's clock (the
    embedded cluster: well under 1 ms); otherwise the poll interval plus one request's latency. After another
    provider's action, the kill happened somewhere inside that action's window, which widens the resolution."""
    name = "leader_election_time"
    ctx = Context(configuration)
    timeout = number("timeout", timeout, 0, 3600)
    fault, early = timed_fault(ctx, name, "s", ["kill_master"], fault_id, accept=lambda f: bool(f.get("was_leader")))
    if early:
        return _done(name, early)
    recalled = recall(fault, name)
    if recalled is not None:
        return recalled
    t0, observed = fault["started_at"], fault["origin"] == "observed"
    killed = None if observed else fault["targets"][0]
    same_clock = getattr(ctx.platform, "same_clock", False)
    deadline = Deadline(max(0.0, timeout - (time.time() - t0)))
    while True:
        info = ctx.platform.leader()
        now = time.time()
        since = info.get("since")
        if info.get("leader") and (info["leader"] != killed if not observed else
                                   (since is not None and same_clock and since >= t0)):
            break
        if observed and info.get("leader") and (since is None or not same_clock):
            return _done(name, undecided("s", "leader source", f"cannot tell a new leader from the old one after "
                                         f"'{fault.get('name')}': the leader source gives no election time on this "
                                         f"machine's clock", fault=fault_summary(fault)))
        if deadline.expired():
            measured = measurement(now - t0, "s", "leader source", ctx.settings.poll_interval, ongoing=True,
                                   reason=f"no new leader {now - t0:.1f} s after the fault (still going on at the "
                                          f"{timeout:g} s bound)", fault=fault_summary(fault), phase=phase())
            remember(ctx, fault, name, measured)
            return _done(name, measured)
        time.sleep(ctx.settings.poll_interval)
    observed_after = now - t0
    if same_clock and since and t0 <= since <= now:
        value = since - t0
        resolution: Any = info.get("resolution", 0.001) if info.get("leader_source") else 0.001
        source = (f"{info['leader_source']} leader source's timestamp of the new leader" if info.get("leader_source")
                  else "the new leader's own election timestamp")
    else:
        value = observed_after
        resolution = info.get("resolution") or ctx.settings.poll_interval
        source = f"{info['leader_source']} leader source" if info.get("leader_source") else "leader poll"
    if observed and fault.get("ended_at"):
        resolution = f"the fault's action took {fault['ended_at'] - t0:.3f} s; the kill happened inside it"
    measured = measurement(value, "s", source, resolution, new_leader=info["leader"], killed=killed,
                           observed_after=round(observed_after, 6), fault=fault_summary(fault), phase=phase(),
                           poll_interval=ctx.settings.poll_interval, bound=timeout)
    if info.get("leader_source") == "promql" and forms_of(ctx) is not None:  # the leader read from metrics
        measured = forms_fresh(forms_of(ctx), measured, t0, now)
    remember(ctx, fault, name, measured)
    return _done(name, measured)


@boundary
def worker_failure_detection_time(timeout: float = 90.0, fault_id: str = "", configuration: Configuration = None,
                                  secrets: Secrets = None) -> Dict[str, Any]:
    """Seconds from the recorded loss of a worker (this run's latest isolate_worker or partition_workers, or
    ``fault_id``, or the latest action of another provider) until the platform declares it dead (the slowest of its
    targets; after another provider's action: the first worker declared dead). Waits until ``timeout`` seconds after
    the fault; a target not declared dead by then: ``ongoing`` (fails).

    Resolution: the platform's own declaration timestamp when it keeps one (the embedded cluster does); otherwise
    the poll interval plus one request's latency (metrics: the scrape interval, widened when samples are stale)."""
    name = "worker_failure_detection_time"
    ctx = Context(configuration)
    timeout = number("timeout", timeout, 0, 3600)
    fault, early = timed_fault(ctx, name, "s", CUT_ACTIONS, fault_id)
    if early:
        return _done(name, early)
    recalled = recall(fault, name)
    if recalled is not None:
        return recalled
    t0, targets = fault["started_at"], set(fault.get("targets") or [])
    forms = forms_of(ctx)
    if forms is not None:
        found = forms.detection_time(t0, sorted(targets) or ["?"], timeout, ctx.settings.poll_interval)
        measured = forms_fresh(forms, measurement(found["value"], "s", "metrics", found["resolution"],
                                                  ongoing=bool(found.get("timed_out")), fault=fault_summary(fault),
                                                  phase=phase()), t0, time.time())
        if measured.get("ongoing"):
            measured["reason"] = f"the live-worker count had not dropped {found['value']:.1f} s after the fault"
        remember(ctx, fault, name, measured)
        return _done(name, measured)
    deadline = Deadline(max(0.0, timeout - (time.time() - t0)))
    seen: Dict[str, float] = {}
    while True:
        now = time.time()
        for worker in ctx.platform.worker_states():
            if worker["name"] in seen or (targets and worker["name"] not in targets):
                continue
            declared = declared_after(worker, t0)
            if declared is not None:
                seen[worker["name"]] = declared - t0
            elif targets and not worker["alive"] and worker.get("dead_declarations") is None \
                    and worker.get("declared_dead_at") is None:
                seen[worker["name"]] = now - t0  # a platform that keeps no declarations: a lost heartbeat is all
        if (targets and set(seen) >= targets) or (not targets and seen):
            measured = measurement(max(seen.values()), "s", "the platform's declarations", ctx.settings.poll_interval,
                                   per_worker={k: round(v, 6) for k, v in seen.items()}, fault=fault_summary(fault),
                                   phase=phase(), bound=timeout)
            break
        if deadline.expired():
            missing = sorted(targets - set(seen)) or ["any worker"]
            measured = measurement(now - t0, "s", "the platform's declarations", ctx.settings.poll_interval,
                                   ongoing=True, per_worker=seen, fault=fault_summary(fault), phase=phase(),
                                   reason=f"{', '.join(missing)} not declared dead {now - t0:.1f} s after the fault "
                                          f"(still going on at the {timeout:g} s bound)")
            break
        time.sleep(ctx.settings.poll_interval)
    remember(ctx, fault, name, measured)
    return _done(name, measured)


def _rescheduling(ctx: Context, name: str, fault_id: str, bound: float) -> Dict[str, Any]:
    """Per lost task: when it was moved to another worker and when it completed there (seconds after the fault),
    waiting until every lost task moved and completed, or ``bound`` seconds after the fault."""
    fault, early = timed_fault(ctx, name, "ratio", CUT_ACTIONS, fault_id)
    if early:
        return {"early": early}
    t0 = fault["started_at"]
    targets = victims(ctx, fault, bound)
    spread = max(0.0, t0 - (fault.get("first_applied_at") or t0))
    witnessed = evidence.rescheduling(ctx, targets, t0, bound, spread)
    if witnessed is not None:
        return dict(witnessed, fault=fault)
    forms = forms_of(ctx)
    if forms is not None:
        return {"fault": fault, "forms": forms, "targets": targets}
    lost = lost_tasks(fault) if fault["origin"] == "ledger" else \
        records.running_at(ctx.platform.tasks(since=t0 - 3600), targets, t0)
    until = Deadline(max(0.0, t0 + bound - time.time()))
    while True:
        tasks = {t["id"]: t for t in ctx.platform.tasks(since=t0 - 3600) if t["id"] in lost}
        moves = {i: records.first_move(tasks[i], t0, targets) for i in lost if i in tasks}
        settled = all(m is not None and m[1] is not None for m in moves.values()) and len(moves) == len(lost)
        if settled or until.expired():
            break
        time.sleep(max(ctx.settings.poll_interval, 0.05))
    per_task = {i: {"moved": None if not moves.get(i) else round(moves[i][0] - t0, 6),
                    "completed": None if not moves.get(i) or moves[i][1] is None else round(moves[i][1] - t0, 6)}
                for i in lost}
    return {"fault": fault, "targets": targets, "per_task": per_task, "source": "the platform's task records",
            "resolution": 0.001, "event": "assigned to another worker"}


@boundary
def rescheduling_success_rate(deadline: float = 60.0, fault_id: str = "", configuration: Configuration = None,
                              secrets: Secrets = None) -> Dict[str, Any]:
    """Of the tasks that were running on the lost worker(s) when this run's latest isolate_worker or
    partition_workers (or ``fault_id``, or another provider's action: then the workers the platform declared dead)
    cut them off, the share that ran again on *another* worker within ``deadline`` seconds of the fault, judged task
    by task (witness: started again on another host; records: completed on another worker). A ratio with n and
    one-sided 95 % bounds; no task running there: undecided (fails: nothing was shown). Waits until every such task
    has settled or the deadline has passed."""
    name = "rescheduling_success_rate"
    ctx = Context(configuration)
    deadline = number("deadline", deadline, 0, 86400)
    found = _rescheduling(ctx, name, fault_id, deadline)
    if "early" in found:
        return _done(name, found["early"])
    fault = found["fault"]
    if "forms" in found:
        return _done(name, _forms_rescheduling_rate(ctx, found, deadline))
    per_task = found["per_task"]
    done = sorted(i for i, m in per_task.items() if m["completed"] is not None and m["completed"] <= deadline)
    missing = sorted(set(per_task) - set(done))
    where = ", ".join(found["targets"]) or "the lost worker"
    measured = ratio(len(done), len(per_task), found["source"], found["resolution"], fault=fault_summary(fault),
                     targets=found["targets"], not_rescheduled=missing[:100], deadline=deadline, phase=phase(),
                     finished_at_cut=found.get("finished_at_cut", []),
                     reason="" if per_task else f"no task was running on {where} at the cut: nothing to "
                                                 f"reschedule, nothing shown")
    return _done(name, measured)


def _forms_rescheduling_rate(ctx: Context, found: Dict[str, Any], deadline: float) -> Dict[str, Any]:
    fault, forms = found["fault"], found["forms"]
    t0, lost = fault["started_at"], lost_tasks(fault)
    if not lost:
        return undecided("ratio", "metrics", "no task was running on the lost worker at the cut (metrics)",
                         fault=fault_summary(fault))
    moves = forms.rescheduling(t0, found["targets"], len(lost), t0 + deadline, ctx.settings.poll_interval)
    moved = moves["times"]
    drained = forms.wait_drained(t0 + max(moved), t0 + deadline, ctx.settings.poll_interval) if moved else None
    done = len(moved) if drained is not None else 0
    return forms_fresh(forms, ratio(min(done, moves["expected"]), moves["expected"], "metrics (counts, not "
                                    "identities: a witness judges task by task)", forms.resolution(),
                                    fault=fault_summary(fault), allowance=moves["allowance"], phase=phase()),
                       t0, time.time())


@boundary
def rescheduling_latency(quantile: float = 0.95, timeout: float = 60.0, fault_id: str = "",
                         configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """The ``quantile`` (0-1, default p95) of the seconds from this run's latest worker loss (or ``fault_id``, or
    another provider's action) to each lost task running again on another worker (witness: its new start; records:
    its new assignment). Waits until ``timeout`` seconds after the fault; a task not moved by then makes the
    figure ``ongoing`` (fails), with those tasks named. No task to move: undecided."""
    name = "rescheduling_latency"
    ctx = Context(configuration)
    quantile = number("quantile", quantile, 0, 1)
    timeout = number("timeout", timeout, 0, 3600)
    found = _rescheduling(ctx, name, fault_id, timeout)
    if "early" in found:
        return _done(name, dict(found["early"], unit="s"))
    fault = found["fault"]
    if "forms" in found:
        forms = found["forms"]
        t0, lost = fault["started_at"], lost_tasks(fault)
        moves = forms.rescheduling(t0, found["targets"], len(lost), t0 + timeout, ctx.settings.poll_interval)
        times = moves["times"]
        waiting = max(0, moves["expected"] - len(times))
        per_task = {f"#{i}": {"moved": t} for i, t in enumerate(times)}
        per_task.update({f"#w{i}": {"moved": None} for i in range(waiting)})
        source, resolution = "metrics (counts, not identities)", forms.resolution()
    else:
        per_task, source, resolution = found["per_task"], found["source"], found["resolution"]
    if not per_task:
        return _done(name, undecided("s", source, "no task was running on the lost worker at the cut: no latency "
                                     "to measure", fault=fault_summary(fault)))
    waited = time.time() - fault["started_at"]
    stuck = sorted(i for i, m in per_task.items() if m["moved"] is None or m["moved"] > timeout)
    values = sorted(m["moved"] if m["moved"] is not None else waited for m in per_task.values())
    value = values[min(len(values) - 1, max(0, math.ceil(quantile * len(values)) - 1))]
    measured = measurement(value, "s", source, resolution, n=len(values), quantile=quantile,
                           fault=fault_summary(fault), phase=phase(), not_moved=stuck[:100])
    if stuck and value >= timeout - 1e-9:
        measured.update(ongoing=True, reason=f"{len(stuck)} of {len(values)} lost tasks not running elsewhere "
                                             f"{timeout:g} s after the fault (still going on at the bound)")
    return _done(name, measured)


def _waited_window(ctx: Context, name: str, window: float) -> Dict[str, Any]:
    """The window a windowed ratio judges (from this run's first fault, see :func:`fault_window`), once it has
    passed, with the details every such measurement carries; or ``{"measurement": ...}`` when none applies."""
    span = fault_window(ctx, name, FAULT_ACTIONS, window)
    if span.get("measurement"):
        return span
    wait_window(span["end"])
    return dict(span, details={"window": [round(span["start"], 3), round(span["end"], 3)],
                               "fault": span.get("fault"), "phase": phase()})


@boundary
def job_submission_success_rate(window: float = 60.0, configuration: Configuration = None,
                                secrets: Secrets = None) -> Dict[str, Any]:
    """The share of job submissions the platform accepted in the ``window`` seconds from the start of this run's
    first fault (waits until the window has passed), with n and one-sided 95 % bounds. Witness: our own submissions
    (an indeterminate one, e.g. a timeout, counts as accepted only when its task was seen running); else the load
    generator's record or the metrics. Before the method: not applicable (the figure is taken around the fault);
    without the control and without a fault: the last ``window`` seconds."""
    name = "job_submission_success_rate"
    ctx = Context(configuration)
    window = number("window", window, 0, 86400, low_open=True)
    span = _waited_window(ctx, name, window)
    if span.get("measurement"):
        return _done(name, span["measurement"])
    start, end, details = span["start"], span["end"], span["details"]
    witnessed = evidence.submissions(ctx, start, end)
    if witnessed is not None:
        return _done(name, dict(witnessed, **details))
    forms = forms_of(ctx)
    if forms is not None:
        found = forms.submission_success(time.time() - start)
        return _done(name, forms_fresh(forms, ratio(int(found["accepted"]), int(found["submitted"]), "metrics",
                                                    found["resolution"], **details), start, end, run_targets(ctx)))
    subs = [s for s in ctx.platform.submissions(since=start) if s["at"] <= end]
    accepted = sum(1 for s in subs if s["outcome"] == "accepted")
    return _done(name, ratio(accepted, len(subs), "the load generator's submission record", 0.001,
                             reason="" if subs else "no job was submitted in the window: is there any load?",
                             refused=[s.get("error") for s in subs if s["outcome"] != "accepted"][:20], **details))


@boundary
def task_execution_success_rate(window: float = 60.0, settle: float = 30.0, configuration: Configuration = None,
                                secrets: Secrets = None) -> Dict[str, Any]:
    """Of the tasks submitted in the ``window`` seconds from the start of this run's first fault (waits until the
    window has passed), the share that completed successfully exactly once, with n and one-sided 95 % bounds.
    Waits up to ``settle`` seconds for tasks still running. Before the method: not applicable; without the control
    and without a fault: the last ``window`` seconds."""
    name = "task_execution_success_rate"
    ctx = Context(configuration)
    window = number("window", window, 0, 86400, low_open=True)
    settle = number("settle", settle, 0, 3600)
    span = _waited_window(ctx, name, window)
    if span.get("measurement"):
        return _done(name, span["measurement"])
    start, end, details = span["start"], span["end"], span["details"]
    witnessed = evidence.task_success(ctx, start, end, settle)
    if witnessed is not None:
        return _done(name, dict(witnessed, **details))
    forms = forms_of(ctx)
    if forms is not None:
        found = forms.task_success(time.time() - start, settle, ctx.settings.poll_interval)
        ok = int(round(found["value"] * found["accepted"]))
        return _done(name, forms_fresh(forms, ratio(ok, int(found["accepted"]), "metrics", found["resolution"],
                                                    **details), start, end, run_targets(ctx)))
    deadline = Deadline(settle)
    while True:
        tasks = [t for t in ctx.platform.tasks(since=start) if t["submitted_at"] <= end]
        ok = [t for t in tasks if t["state"] == "completed" and t.get("outcome", "ok") == "ok"
              and t.get("completions", 1) == 1]
        if all(t["state"] == "completed" for t in tasks) or deadline.expired():
            break
        time.sleep(max(ctx.settings.poll_interval, 0.1))
    failed = sorted(t["id"] for t in tasks if t not in ok)
    return _done(name, ratio(len(ok), len(tasks), "the platform's task records", None, failed=failed[:100],
                             reason="" if tasks else "no task was submitted in the window: is there any load?",
                             **details))


from .probes_more import (cluster_health, data_consistency, heartbeat_detection_accuracy,  # noqa: E402,F401
                          remaining_workers_utilization, scheduling_interruption)
