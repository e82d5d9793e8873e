"""The probes of chaosscheduler.probes that judge the whole run rather than one fault's timing: the stall, data
consistency, heartbeat accuracy, the survivors' utilisation and cluster health. Import them from
``chaosscheduler.probes`` (the module experiments name); they live here to keep each module readable."""

import logging
import math
import time
from typing import Any, Dict

from chaoslib.types import Configuration, Secrets

from . import evidence, measurements, records
from .context import Context, boundary, flag, number
from .errors import ChaosSchedulerError, ConfigurationError
from .measurements import (CUT_ACTIONS, current_stall, cut_from_registry, fault_span, fault_summary, forms_of,
                           longest_stall, measurement, not_applicable, ratio, recall, remember, timed_fault,
                           undecided)
from .probe_windows import forms_fresh, run_targets, victims, wait_window
from .timing import Deadline

__all__ = ["scheduling_interruption", "data_consistency", "heartbeat_detection_accuracy", "cluster_health",
           "remaining_workers_utilization"]
logger = logging.getLogger("chaostoolkit")


def phase() -> Any:
    """The run's phase, as chaosscheduler.measurements tells it (one place to ask, one place to patch in tests)."""
    return measurements.phase()


FAULT_ACTIONS = ["kill_master"] + CUT_ACTIONS


def _done(name: str, measured: Dict[str, Any]) -> Dict[str, Any]:
    from .probes import _done as done

    return done(name, measured)


@boundary
def scheduling_interruption(timeout: float = 30.0, fault_id: str = "", window: float = 120.0,
                            configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """The longest time, from this run's latest fault (or ``fault_id``, or another provider's action) on, during
    which work was waiting and nothing started (witness: our tasks' own start records; records: assignments): how
    long scheduling stopped, e.g. while there was no leader, or while a new leader assigned nothing. A stall still
    going on when the probe runs is waited for, until ``timeout`` seconds after the fault; still stalled then:
    ``ongoing`` (fails), never a short value. No work waiting after the fault: undecided (nothing shown). Without
    the control and without a fault: the longest stall of the last ``window`` seconds."""
    name = "scheduling_interruption"
    ctx = Context(configuration)
    timeout = number("timeout", timeout, 0, 3600)
    window = number("window", window, 0, 86400, low_open=True)
    fault, early = timed_fault(ctx, name, "s", FAULT_ACTIONS, fault_id)
    if early and not (early.get("no_fault") and phase() is None):
        return _done(name, early)
    if fault is not None:
        recalled = recall(fault, name)
        if recalled is not None:
            return recalled
    t0 = fault["started_at"] if fault is not None else time.time() - window
    span = fault_span(ctx, FAULT_ACTIONS) if fault is not None and not fault_id else None
    if span is not None:  # from the run's first fault on: a stall after any of its faults counts
        t0 = min(t0, span[0])
    details = {"fault": fault_summary(fault) if fault else None, "phase": phase(), "bound": timeout,
               "from": round(t0, 3)}
    witnessed = evidence.stall(ctx, t0, timeout)
    if witnessed is not None:
        measured = dict(witnessed, **details)
    elif forms_of(ctx) is not None:
        measured = _forms_stall(ctx, t0, timeout, details)
    else:
        measured = _records_stall(ctx, t0, timeout, details)
    if fault is not None and measured.get("decided") and not measured.get("ongoing"):
        remember(ctx, fault, name, measured)
    return _done(name, measured)


NO_WORK_GRACE = 5.0  # seconds: how long the records may show no work after a fault before "no work waited"
CALM_CONFIRM = 0.6   # seconds scheduling must stay calm before the probe concludes the stall is over


def _records_stall(ctx: Context, t0: float, timeout: float, details: Dict[str, Any]) -> Dict[str, Any]:
    bound = Deadline(max(0.0, t0 + timeout - time.time()))
    # work retried through a failover is recorded only once the new leader answers it: right after the election
    # no work that arrived after the fault may show yet (a stall in progress is then invisible), so the probe does
    # not conclude before such work shows, or this grace (or the bound) has passed
    no_work_grace = Deadline(max(NO_WORK_GRACE, 2 * ctx.settings.poll_interval))
    calm_since = None
    while True:
        now = time.time()
        tasks = ctx.platform.tasks(since=t0 - 600)
        try:
            subs = ctx.platform.submissions(since=t0 - 60)
        except ChaosSchedulerError:
            subs = []
        closed, still = records.waits(tasks, subs, now)
        assigned = records.assignments(tasks)
        stalled = current_stall(still, assigned, now)
        spans = closed + [(s, now) for s in still]
        seen = any(a >= t0 for a, b in spans)  # work that arrived after the fault
        if stalled < max(0.25, 2 * ctx.settings.poll_interval) and (seen or no_work_grace.expired()):
            # calm now; but a leader that has just accepted work and assigns none looks calm for a moment:
            # conclude only when it is still calm CALM_CONFIRM seconds later
            calm_since = now if calm_since is None else calm_since
            if now - calm_since >= CALM_CONFIRM:
                break
        else:
            calm_since = None
        if bound.expired():
            break
        time.sleep(max(ctx.settings.poll_interval, 0.05))
    if not [1 for a, b in spans if b >= t0]:
        return undecided("s", "the platform's task records", "no work waited after the fault: a stall cannot be "
                         "seen without work (is there any load?)", **details)
    longest = longest_stall(spans, assigned, t0)
    measured = measurement(longest, "s", "the platform's task records (submission to assignment)", 0.001,
                           waiting_now=len(still), **details)
    if stalled >= max(0.25, 2 * ctx.settings.poll_interval):
        measured.update(value=round(max(longest, stalled), 6), ongoing=True,
                        reason=f"scheduling still stalled {stalled:.1f} s at the {timeout:g} s bound after the "
                               f"fault: {len(still)} tasks waiting, nothing assigned")
    return measured


def _forms_stall(ctx: Context, t0: float, timeout: float, details: Dict[str, Any]) -> Dict[str, Any]:
    forms = forms_of(ctx)
    bound = Deadline(max(0.0, t0 + timeout - time.time()))
    while True:
        found = forms.interruption(time.time() - t0)
        if not found.get("stalled_at_end") or bound.expired():
            break
        time.sleep(max(ctx.settings.poll_interval, forms.interval / 2))
    measured = measurement(found["value"], "s", "metrics", found["resolution"], **details)
    if found.get("stalled_at_end"):
        measured.update(ongoing=True, reason=f"scheduling still stalled at the {timeout:g} s bound after the fault "
                                             f"(metrics)")
    return forms_fresh(forms, measured, t0, time.time())


@boundary
def data_consistency(window: float = 0.0, settle: float = 30.0, allow_rerun_after_loss: bool = True,
                     report_grace: float = 5.0, configuration: Configuration = None,
                     secrets: Secrets = None) -> Dict[str, Any]:
    """Whether every accepted task ran to completion exactly once. Witness (first): our tasks, judged by their own
    execution records; else the platform's records (``window`` seconds back, 0 = all) or its metrics. Waits up to
    ``settle`` seconds for accepted tasks to finish. A ratio (tasks run exactly once over tasks accepted, with n and
    bounds) with the anomalies by task id: ``lost`` (accepted, never completed), ``duplicated`` (completed more than
    once), ``run_twice`` (run again without any loss, e.g. by two leaders), and, reported apart,
    ``reexecuted_after_loss`` (run again after its worker was lost: the scheduler's right; counted as an anomaly
    when ``allow_rerun_after_loss`` is false). A task that finished less than ``report_grace`` seconds before its
    worker was cut off may never have been reported: running it again is counted as a re-execution after a loss.
    Judge it with the ``consistent`` tolerance."""
    name = "data_consistency"
    ctx = Context(configuration)
    window = number("window", window, 0, 86400)
    settle = number("settle", settle, 0, 3600)
    flag("allow_rerun_after_loss", allow_rerun_after_loss)
    report_grace = number("report_grace", report_grace, 0, 3600)
    details = {"phase": phase()}
    witnessed = evidence.consistency(ctx, settle, allow_rerun_after_loss, report_grace)
    if witnessed is not None:
        return _done(name, dict(witnessed, **details))
    forms = forms_of(ctx)
    if forms is not None:
        found = forms.consistency(window, settle, ctx.settings.poll_interval)
        bad = found["lost"] + found["duplicated"]
        measured = ratio(max(0, found["accepted"] - bad), found["accepted"], "metrics (counts, not identities)",
                         found["resolution"], anomalies=bad, lost=found["lost"], duplicated=found["duplicated"],
                         accepted=found["accepted"], **details)
        measured["ratio"] = measured["value"]
        return _done(name, forms_fresh(forms, measured, time.time() - (window or 600), time.time(), run_targets(ctx)))
    cutoff = time.time()  # judge the tasks accepted so far; later ones are not waited for
    since = cutoff - window if window else 0.0
    accepted: set = set()
    try:
        accepted = {t for s in ctx.platform.submissions(since=since) if s["outcome"] == "accepted"
                    and s["at"] <= cutoff for t in s.get("tasks", [])}
    except ChaosSchedulerError as e:
        logger.info("data_consistency: no submission record (%s); checking the platform's tasks only", e)
    deadline = Deadline(settle)
    while True:
        tasks = [t for t in ctx.platform.tasks(since=since) if t["submitted_at"] <= cutoff]
        ids = accepted | {t["id"] for t in tasks}
        found = records.consistency(tasks, sorted(ids))
        if not found["lost"] or deadline.expired():
            break
        time.sleep(max(ctx.settings.poll_interval, 0.1))
    judged = ["lost", "duplicated", "run_twice"] + ([] if allow_rerun_after_loss else ["reexecuted_after_loss"])
    bad = set().union(*(found[k] for k in judged))
    stale = sum(len(t.get("stale_completions") or []) for t in tasks)
    measured = ratio(len(ids) - len(bad), len(ids), "the platform's task records", 0.001, anomalies=len(bad),
                     accepted=len(ids), counts={k: len(v) for k, v in found.items()}, stale_completions=stale,
                     **{k: v[:100] for k, v in found.items()},
                     reason="" if ids else "no task was accepted: is there any load?", **details)
    measured["ratio"] = measured["value"]  # the name older experiments' range tolerances target
    return _done(name, measured)


MIN_HEARTBEAT = 0.01  # seconds: a shorter heartbeat period is no platform's, and would make n astronomical


def _heartbeat_interval(ctx: Context, given: float) -> float:
    if given:
        return given
    tb = getattr(ctx.platform, "tb", None)
    if tb is not None:
        return float(tb.spec.keepalive_interval)
    return 0.0


@boundary
def heartbeat_detection_accuracy(window: float = 60.0, grace: float = 5.0, heartbeat_interval: float = 0.0,
                                 heartbeat_timeout: float = 0.0, configuration: Configuration = None,
                                 secrets: Secrets = None) -> Dict[str, Any]:
    """How rarely the platform wrongly declared a live worker dead while the network was split or degraded: from the
    start of this run's first partition_workers fault (or another provider's action) to ``grace`` seconds after the
    last one ended. A declaration is wrong when the worker was not cut off from the registry (loss, latency or a
    masters-only split must not kill a worker). The unit judged is one heartbeat period of one worker
    (``heartbeat_interval``: 0 = the platform's own when known (the embedded cluster's keep-alive interval), else
    at least 0.01 s); a
    worker wrongly declared dead fails every period from the declaration until it is back (or the window ends).
    A ratio with n and one-sided 95 % bounds. Before the method: not applicable; without the control and without a
    fault: the last ``window`` seconds. When every drop split of the run was shorter than the platform's heartbeat
    timeout (``heartbeat_timeout``, 0 or null = the platform's own when known), the measurement says that the split
    could not have made the platform declare a worker dead (``split_too_short``)."""
    name = "heartbeat_detection_accuracy"
    ctx = Context(configuration)
    window = number("window", window, 0, 86400, low_open=True)
    grace = number("grace", grace, 0, 3600)
    given = number("heartbeat_interval", heartbeat_interval, 0, 3600)
    if 0 < given < MIN_HEARTBEAT:
        raise ConfigurationError(f"argument 'heartbeat_interval' must be 0 (the platform's own) or at least "
                                 f"{MIN_HEARTBEAT:g} s, got {heartbeat_interval!r}")
    interval = _heartbeat_interval(ctx, given)
    where = phase()
    if where == "before-method":
        return _done(name, not_applicable("ratio", "before the method: no network fault yet", phase=where))
    span = fault_span(ctx, ["partition_workers"])
    if span is None and where == "method":
        return _done(name, not_applicable("ratio", "during the method, before any network fault", phase=where))
    if span is None and where is not None:
        return _done(name, undecided("ratio", "none", "no fault: no partition_workers fault and no other action of "
                                     "the method happened in this run", phase=where, no_fault=True))
    if not interval:
        return _done(name, undecided("ratio", "none", "the platform's heartbeat interval is unknown: set the "
                                     "probe's heartbeat_interval (seconds)", phase=where))
    if span is None:
        start, end = time.time() - window, time.time()
    else:
        start, end = span[0], (span[1] or time.time()) + grace
        wait_window(end)
    excused = set()
    for other in ctx.ledger.all():
        if other.get("run_id") == ctx.run_id and other.get("started_at") and cut_from_registry(other):
            excused |= set(other["targets"])
    details = {"window": [round(start, 3), round(end, 3)], "heartbeat_interval": interval,
               "excused": sorted(excused), "phase": where}
    details.update(_split_check(ctx, heartbeat_timeout))
    periods = max(1, int((end - start) // interval))
    forms = forms_of(ctx)
    if forms is not None:
        found = forms.wrongly_declared(start, end, sorted(excused))
        n = found["judged"] * periods
        return _done(name, forms_fresh(forms, ratio(n - min(n, found["wrong"] * periods), n, "metrics (the "
                                                    "leader's live-worker count)", found["resolution"],
                                                    wrong=found["wrong"], **details), start, end,
                                       run_targets(ctx)))
    workers = ctx.platform.worker_states()
    judged = [w for w in workers if w["name"] not in excused]
    failed, wrong = 0, {}
    for worker in judged:
        for declared in (d for d in (worker.get("dead_declarations") or []) if start <= d <= end):
            back = worker.get("since") if worker.get("state") == "alive" and (worker.get("since") or 0) > declared \
                else end
            failed += max(1, math.ceil((min(back, end) - declared) / interval))
            wrong.setdefault(worker["name"], []).append(round(declared - start, 3))
    n = len(judged) * periods
    return _done(name, ratio(n - min(n, failed), n, "the platform's declarations", interval,
                             wrongly_declared=wrong, workers_judged=len(judged), **details))


def _split_check(ctx: Context, heartbeat_timeout: Any) -> Dict[str, Any]:
    """Whether the run's drop splits lasted long enough for the platform to declare a split worker dead at all."""
    timeout = number("heartbeat_timeout", heartbeat_timeout or 0, 0, 86400)
    tb = getattr(ctx.platform, "tb", None)
    if not timeout and tb is not None:
        timeout = float(tb.spec.heartbeat_ttl)
    splits = [(f.get("undone_at") or time.time()) - f["started_at"] for f in ctx.ledger.all()
              if f.get("run_id") == ctx.run_id and f.get("action") == "partition_workers" and f.get("mode") == "drop"
              and f.get("started_at")]
    if not splits or not timeout:
        return {}
    longest = max(splits)
    if longest >= timeout:
        return {"longest_split": round(longest, 3), "heartbeat_timeout": timeout}
    return {"longest_split": round(longest, 3), "heartbeat_timeout": timeout, "split_too_short": True,
            "warning": f"the longest split lasted {longest:.1f} s, shorter than the {timeout:g} s heartbeat timeout: "
                       f"the platform could not have declared a split worker dead, so the split could not fail"}


@boundary
def cluster_health(configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Exactly one leader, every master process running, every worker alive, and none of the platform's own
    unhealthy states (drained workers, held tasks, where its command sources report them): ``{"healthy": bool,
    "leader": name, "leaders": [masters claiming leadership], "masters_running": n, "masters": n, "workers_alive": n,
    "workers": n, "problems": [...], "problem_count": n}``. Judge it with a range tolerance [0, 0] on target
    "problem_count"."""
    ctx = Context(configuration)
    platform = ctx.platform
    masters = platform.masters()
    running = [m for m in masters if platform.is_running(m)]
    claims = platform.leader_claims() if hasattr(platform, "leader_claims") else []
    leader = platform.leader().get("leader")
    workers = platform.worker_states()
    alive = [w["name"] for w in workers if w["alive"]]
    problems = []
    if not leader:
        problems.append("no leader")
    if len(claims) > 1:
        problems.append(f"split brain: {len(claims)} masters claim to lead: {', '.join(claims)}")
    if len(running) < len(masters):
        problems.append(f"masters not running: {', '.join(sorted(set(masters) - set(running)))}")
    if len(alive) < len(workers):
        problems.append(f"workers not alive: {', '.join(sorted(w['name'] for w in workers if not w['alive']))}")
    problems += getattr(platform, "health_problems", list)()  # the platform's own: drained workers, held tasks
    return {"healthy": not problems, "leader": leader, "leaders": claims, "masters_running": len(running),
            "masters": len(masters), "workers_alive": len(alive), "workers": len(workers), "problems": problems,
            "problem_count": len(problems), "source": f"the platform ({platform.kind})", "phase": phase()}


@boundary
def remaining_workers_utilization(fault_id: str = "", configuration: Configuration = None,
                                  secrets: Secrets = None) -> Dict[str, Any]:
    """The peak, during this run's latest worker loss (isolate_worker or partition_workers, or ``fault_id``, or
    another provider's action), of running tasks over task slots on the workers that were not cut off: how hard
    the survivors worked while they took the lost work over (the article's limit is 0.9). Swept through every
    assignment and release in the fault's window from the platform's task records (or the metrics' range), not one
    sample; a platform with neither is sampled at each call and the peak kept. Before the method: not applicable."""
    name = "remaining_workers_utilization"
    ctx = Context(configuration)
    fault, early = timed_fault(ctx, name, "ratio", CUT_ACTIONS, fault_id)
    if early:
        return _done(name, early)
    t0 = fault["started_at"]
    end = fault.get("ended_at") or time.time()
    cut = set(victims(ctx, fault, end - t0))
    states = ctx.platform.workers()
    slots = {w["name"]: int(w.get("slots") or 0) for w in states if w["name"] not in cut}
    details = {"fault": fault_summary(fault), "window": [round(t0, 3), round(end, 3)], "survivors": sorted(slots),
               "phase": phase(), "fault_open": fault.get("ended_at") is None}
    if not sum(slots.values()):
        return _done(name, undecided("ratio", "none", "no worker survived the fault: utilisation of the survivors "
                                     "is undefined", **details))
    forms = forms_of(ctx)
    if forms is not None and hasattr(forms, "utilization_peak"):
        found = forms.utilization_peak(sorted(cut), t0, end)
        measured = forms_fresh(forms, measurement(found["value"], "ratio", "metrics (range over the fault)",
                                                  found["resolution"], **details), t0, end)
    else:
        try:
            tasks = ctx.platform.tasks(since=t0 - 3600)
        except NotImplementedError:
            tasks = None
        if tasks is not None:
            found = records.peak_utilisation(tasks, slots, t0, end)
            measured = measurement(found["value"], "ratio", "the platform's task records (every assignment and "
                                   "release in the fault's window)", 0.001, peak_tasks=found["peak_tasks"],
                                   slots=found["slots"], peak_at=round(found["at"] - t0, 3),
                                   per_worker=found["per_worker"], **details)
        else:
            running = sum(len(w.get("running", [])) for w in states if w["name"] in slots and w["alive"])
            previous = recall(fault, name) or {}
            peak = max(running / sum(slots.values()), previous.get("value") or 0.0)
            measured = measurement(peak, "ratio", "samples at each call (the platform keeps no task history)",
                                   "one sample per call", samples=previous.get("samples", 0) + 1, **details)
    remember(ctx, fault, name, measured)
    return _done(name, measured)
