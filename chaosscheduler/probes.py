"""Probes: what the platform did under the fault, as numbers a tolerance can judge.

Times are measured from the fault's recorded ``started_at`` in the ledger (this run's most recent fault of the
relevant kind, or ``fault_id``). Before any such fault in this run a fault-timed probe returns its neutral value
(0.0 s, ratio 1.0) and says so in the log, so the same probe serves the steady state before and after the method.
A measurement is stored with its fault, so a later call (the hypothesis after the method) returns the same value.
"""

import logging
import math
import time
from typing import Any, Dict

from chaoslib.types import Configuration, Secrets

from .context import Context, boundary, number
from .errors import ChaosSchedulerError
from .ledger import OPEN_STATES
from .measurements import (CUT_ACTIONS, cut_from_registry, declared_after, fault_of_run, forms_of, lost_tasks,
                           longest_stall, recall, remember)
from .timing import Deadline

__all__ = ["leader_election_time", "worker_failure_detection_time", "rescheduling_success_rate",
           "rescheduling_latency", "job_submission_success_rate", "task_execution_success_rate",
           "scheduling_interruption", "data_consistency", "heartbeat_detection_accuracy", "cluster_health",
           "remaining_workers_utilization"]
logger = logging.getLogger("chaostoolkit")

@boundary
def leader_election_time(timeout: float = 30.0, fault_id: str = "", configuration: Configuration = None,
                         secrets: Secrets = None) -> float:
    """Seconds from the recorded kill of the leader (this run's latest kill_master that hit the leader, or
    ``fault_id``) until a *different* master is leader. Waits up to ``timeout`` seconds; if no new leader appears,
    returns the time waited (at least ``timeout``), which a tolerance below it rejects. Before any leader kill in
    this run: seconds until a leader exists (0.0 when there is one).

    Resolution: the new leader's own timestamp of its election when the platform shares this machine's clock (the
    embedded cluster: well under 1 ms); otherwise the poll interval (configuration chaosscheduler_poll_interval,
    default 10 ms) plus one request's latency."""
    ctx = Context(configuration)
    timeout = number("timeout", timeout, 0, 3600)
    fault = fault_of_run(ctx, ["kill_master"], fault_id, accept=lambda f: bool(f.get("was_leader")))
    if fault is None:
        deadline = Deadline(timeout)
        while not ctx.platform.leader().get("leader") and not deadline.expired():
            time.sleep(ctx.settings.poll_interval)
        logger.info("leader_election_time: no leader was killed in this run; a leader is present after %.3f s",
                    deadline.elapsed())
        return round(deadline.elapsed(), 6) if deadline.elapsed() > ctx.settings.poll_interval else 0.0
    recalled = recall(fault, "leader_election_time")
    if recalled is not None:
        return recalled
    killed, t0 = fault["targets"][0], fault["started_at"]
    deadline = Deadline(max(0.0, timeout - (time.time() - t0)))
    while True:
        info = ctx.platform.leader()
        now = time.time()
        if info.get("leader") and info["leader"] != killed:
            break
        if deadline.expired():
            value = now - t0
            logger.warning("leader_election_time: no new leader %.1f s after killing %s", value, killed)
            remember(ctx, fault, "leader_election_time", {"value": value, "timed_out": True})
            return round(value, 6)
        time.sleep(ctx.settings.poll_interval)
    observed = now - t0
    since = info.get("since")
    same_clock = getattr(ctx.platform, "same_clock", False)
    if same_clock and since and t0 <= since <= now:
        value, resolution = since - t0, "the new leader's own election timestamp"
        if info.get("leader_source"):
            resolution = (f"{info['leader_source']} leader source's timestamp of the new leader, resolution "
                          f"{info.get('resolution', 0):.3f} s")
    elif info.get("leader_source"):
        value = observed
        resolution = f"{info['leader_source']} leader source, resolution {info.get('resolution', 0):.3f} s"
    else:
        value, resolution = observed, f"poll every {ctx.settings.poll_interval} s"
    remember(ctx, fault, "leader_election_time",
              {"value": value, "observed": observed, "new_leader": info["leader"], "resolution": resolution})
    logger.info("leader_election_time: %s → %s in %.3f s (%s; first seen after %.3f s)", killed, info["leader"],
                value, resolution, observed)
    return round(value, 6)


@boundary
def worker_failure_detection_time(timeout: float = 90.0, fault_id: str = "", configuration: Configuration = None,
                                  secrets: Secrets = None) -> float:
    """Seconds from the recorded loss of a worker (this run's latest isolate_worker or partition_workers, or
    ``fault_id``) until the platform declares it dead (the slowest of its targets). Waits up to ``timeout``
    seconds; if a target is still not declared dead, returns the time waited (at least ``timeout``). Before any
    such fault in this run: 0.0.

    Resolution: the platform's own declaration timestamp when it keeps one (the embedded cluster does);
    otherwise the poll interval plus one request's latency."""
    ctx = Context(configuration)
    timeout = number("timeout", timeout, 0, 3600)
    fault = fault_of_run(ctx, CUT_ACTIONS, fault_id)
    if fault is None:
        logger.info("worker_failure_detection_time: no worker was cut off in this run")
        return 0.0
    recalled = recall(fault, "worker_failure_detection_time")
    if recalled is not None:
        return recalled
    t0, targets = fault["started_at"], set(fault["targets"])
    forms = forms_of(ctx)
    if forms is not None:
        measured = forms.detection_time(t0, sorted(targets), timeout, ctx.settings.poll_interval)
        remember(ctx, fault, "worker_failure_detection_time", measured)
        logger.info("worker_failure_detection_time: %.3f s (%s)", measured["value"], measured["resolution"])
        return round(measured["value"], 6)
    deadline = Deadline(max(0.0, timeout - (time.time() - t0)))
    seen: Dict[str, float] = {}
    while True:
        now = time.time()
        for worker in ctx.platform.worker_states():
            if worker["name"] in targets and worker["name"] not in seen:
                declared = declared_after(worker, t0)
                if declared is not None:
                    seen[worker["name"]] = declared - t0
                elif not worker["alive"] and worker.get("dead_declarations") is None \
                        and worker.get("declared_dead_at") is None:
                    # only a platform that keeps no declarations: there a lost heartbeat is all we can see
                    seen[worker["name"]] = now - t0
        if set(seen) >= targets:
            value = max(seen.values())
            break
        if deadline.expired():
            value = now - t0
            logger.warning("worker_failure_detection_time: %s not declared dead %.1f s after the fault",
                           ", ".join(sorted(targets - set(seen))), value)
            break
        time.sleep(ctx.settings.poll_interval)
    remember(ctx, fault, "worker_failure_detection_time", {"value": value, "per_worker": seen})
    logger.info("worker_failure_detection_time: %.3f s (%s)", value, seen)
    return round(value, 6)


@boundary
def rescheduling_success_rate(deadline: float = 60.0, fault_id: str = "", configuration: Configuration = None,
                              secrets: Secrets = None) -> float:
    """Of the tasks that were running on the lost worker(s) when this run's latest isolate_worker or
    partition_workers (or ``fault_id``) cut them off, the share that completed on *another* worker within
    ``deadline`` seconds of the fault. Waits until every such task has settled or the deadline has passed.
    1.0 when no task was running there (nothing to reschedule) or before any such fault in this run."""
    ctx = Context(configuration)
    deadline = number("deadline", deadline, 0, 86400)
    fault = fault_of_run(ctx, CUT_ACTIONS, fault_id)
    if fault is None:
        logger.info("rescheduling_success_rate: no worker was cut off in this run")
        return 1.0
    lost = lost_tasks(fault)
    if not lost:
        logger.warning("rescheduling_success_rate: no task was running on %s when it was cut off",
                       ", ".join(fault["targets"]))
        return 1.0
    t0, targets = fault["started_at"], set(fault["targets"])
    forms = forms_of(ctx)
    if forms is not None:
        moves = forms.rescheduling(t0, sorted(targets), len(lost), t0 + deadline, ctx.settings.poll_interval)
        moved = moves["times"]
        drained = forms.wait_drained(t0 + max(moved), t0 + deadline, ctx.settings.poll_interval) if moved else None
        done = len(moved) if drained is not None else 0
        logger.info("rescheduling_success_rate: %d of %d lost tasks (%d may have finished before the cut) "
                    "rescheduled, and run elsewhere by %s, within %.0f s (%s)", len(moved), len(lost),
                    moves["allowance"], f"{drained - t0:.1f} s" if drained else "never", deadline, forms.resolution())
        return round(min(1.0, done / moves["expected"]), 6)
    until = Deadline(max(0.0, t0 + deadline - time.time()))

    def succeeded(task: Dict[str, Any]) -> bool:
        return (task["state"] == "completed" and task.get("completed_by") not in targets
                and task["completed_at"] <= t0 + deadline)

    while True:
        tasks = {t["id"]: t for t in ctx.platform.tasks(since=t0 - 3600) if t["id"] in lost}
        done = [i for i in lost if i in tasks and succeeded(tasks[i])]
        settled = all(i in tasks and tasks[i]["state"] == "completed" for i in lost)
        if settled or until.expired():
            break
        time.sleep(max(ctx.settings.poll_interval, 0.05))
    rate = len(done) / len(lost)
    logger.info("rescheduling_success_rate: %d of %d lost tasks completed elsewhere within %.0f s: %s", len(done),
                len(lost), deadline, sorted(set(lost) - set(done)) or "all")
    return round(rate, 6)


@boundary
def rescheduling_latency(quantile: float = 0.95, timeout: float = 60.0, fault_id: str = "",
                         configuration: Configuration = None, secrets: Secrets = None) -> float:
    """The ``quantile`` (0-1, default p95) of the seconds from this run's latest worker loss (or ``fault_id``) to
    each lost task being assigned to another worker. Waits up to ``timeout`` seconds for every lost task to be
    reassigned; a task never reassigned counts as the time waited. 0.0 when nothing had to move."""
    ctx = Context(configuration)
    quantile = number("quantile", quantile, 0, 1)
    timeout = number("timeout", timeout, 0, 3600)
    fault = fault_of_run(ctx, CUT_ACTIONS, fault_id)
    lost = lost_tasks(fault) if fault else []
    if not lost:
        logger.info("rescheduling_latency: no task had to be rescheduled in this run")
        return 0.0
    t0, targets = fault["started_at"], set(fault["targets"])
    forms = forms_of(ctx)
    if forms is not None:
        moves = forms.rescheduling(t0, sorted(targets), len(lost), t0 + timeout, ctx.settings.poll_interval)
        moved = moves["times"]
        waited = time.time() - t0
        values = sorted(moved + [waited] * max(0, moves["expected"] - len(moved)))
        value = values[min(len(values) - 1, max(0, math.ceil(quantile * len(values)) - 1))]
        logger.info("rescheduling_latency: p%g = %.3f s over %d tasks (%s)", quantile * 100, value, len(values),
                    forms.resolution())
        return round(value, 6)
    deadline = Deadline(max(0.0, timeout - (time.time() - t0)))
    while True:
        latencies: Dict[str, float] = {}
        for task in ctx.platform.tasks(since=t0 - 3600):
            if task["id"] in lost:
                moved = [h["at"] for h in task["history"]
                         if h["event"] == "assigned" and h["at"] >= t0 and h.get("worker") not in targets]
                if moved:
                    latencies[task["id"]] = min(moved) - t0
        if len(latencies) == len(lost) or deadline.expired():
            break
        time.sleep(max(ctx.settings.poll_interval, 0.05))
    waited = time.time() - t0
    values = sorted(latencies.get(t, waited) for t in lost)
    value = values[min(len(values) - 1, max(0, math.ceil(quantile * len(values)) - 1))]
    logger.info("rescheduling_latency: p%g = %.3f s over %d tasks (%d reassigned)", quantile * 100, value,
                len(values), len(latencies))
    return round(value, 6)


@boundary
def job_submission_success_rate(window: float = 60.0, configuration: Configuration = None,
                                secrets: Secrets = None) -> float:
    """The share of job submissions of the last ``window`` seconds that the platform accepted (the load
    generator retries other masters for up to 5 s, as a client would). Raises when nothing was submitted in the
    window (is the load generator running?)."""
    ctx = Context(configuration)
    window = number("window", window, 0, 86400, low_open=True)
    forms = forms_of(ctx)
    if forms is not None:
        measured = forms.submission_success(window)
        logger.info("job_submission_success_rate: %s", measured)
        return round(measured["value"], 6)
    subs = ctx.platform.submissions(since=time.time() - window)
    if not subs:
        raise ChaosSchedulerError(f"no job was submitted in the last {window:g} s: is the load generator running?")
    accepted = sum(1 for s in subs if s["outcome"] == "accepted")
    logger.info("job_submission_success_rate: %d of %d accepted in the last %g s", accepted, len(subs), window)
    return round(accepted / len(subs), 6)


@boundary
def task_execution_success_rate(window: float = 60.0, settle: float = 30.0, configuration: Configuration = None,
                                secrets: Secrets = None) -> float:
    """Of the tasks submitted in the last ``window`` seconds, the share that completed successfully exactly once.
    Waits up to ``settle`` seconds for tasks still running. Raises when no task was submitted in the window."""
    ctx = Context(configuration)
    window = number("window", window, 0, 86400, low_open=True)
    settle = number("settle", settle, 0, 3600)
    forms = forms_of(ctx)
    if forms is not None:
        measured = forms.task_success(window, settle, ctx.settings.poll_interval)
        logger.info("task_execution_success_rate: %s", measured)
        return measured["value"]
    cutoff = time.time()  # judge the tasks submitted so far; later ones are not waited for
    since = cutoff - window
    deadline = Deadline(settle)
    while True:
        tasks = [t for t in ctx.platform.tasks(since=since) if t["submitted_at"] <= cutoff]
        if not tasks:
            raise ChaosSchedulerError(f"no task was submitted in the last {window:g} s: is there any load?")
        ok = [t for t in tasks if t["state"] == "completed" and t.get("outcome", "ok") == "ok"
              and t.get("completions", 1) == 1]
        if all(t["state"] == "completed" for t in tasks) or deadline.expired():
            break
        time.sleep(max(ctx.settings.poll_interval, 0.1))
    logger.info("task_execution_success_rate: %d of %d tasks succeeded exactly once", len(ok), len(tasks))
    return round(len(ok) / len(tasks), 6)


@boundary
def scheduling_interruption(window: float = 120.0, configuration: Configuration = None,
                            secrets: Secrets = None) -> float:
    """The longest time, in the last ``window`` seconds, during which work was waiting and no task at all was
    assigned: how long scheduling stopped (e.g. while there was no leader). Work waits from the moment a client
    starts submitting it (the load generator's record, when there is one: a submission retried while there is no
    leader is waiting work) or a task becomes pending, until that task is assigned. 0.0 when nothing waited."""
    ctx = Context(configuration)
    window = number("window", window, 0, 86400, low_open=True)
    forms = forms_of(ctx)
    if forms is not None:
        measured = forms.interruption(window)
        logger.info("scheduling_interruption: longest stall %.3f s in the last %g s (%s)", measured["value"], window,
                    measured["resolution"])
        return measured["value"]
    now = time.time()
    since = now - window
    tasks = ctx.platform.tasks(since=since - 3600)
    try:
        submissions = ctx.platform.submissions(since=since - 60)
    except ChaosSchedulerError:
        submissions = []
    submitted = {t: s["at"] for s in submissions for t in s.get("tasks", [])}
    assignments = sorted(h["at"] for t in tasks for h in t["history"] if h["event"] == "assigned")
    waits = [(s["at"], s["at"] + s["latency"]) for s in submissions if s["outcome"] != "accepted"]
    for task in tasks:
        ready = [min(task["submitted_at"], submitted.get(task["id"], task["submitted_at"]))]
        ready += [h["at"] for h in task["history"] if h["event"] in ("rescheduled", "dispatch_failed")]
        for start in ready:
            later = [h["at"] for h in task["history"] if h["event"] == "assigned" and h["at"] >= start]
            waits.append((start, min(later) if later else now))
    longest = longest_stall(waits, assignments, since)
    logger.info("scheduling_interruption: longest stall %.3f s in the last %g s", longest, window)
    return round(longest, 6)


@boundary
def data_consistency(window: float = 0.0, settle: float = 30.0, configuration: Configuration = None,
                     secrets: Secrets = None) -> Dict[str, Any]:
    """Whether every accepted task ran to completion exactly once: of the tasks accepted in the last ``window``
    seconds (0 = all), waits up to ``settle`` seconds for them to finish, then reports ``{"ratio": share
    consistent, "accepted": n, "lost": [ids never completed or unknown to the platform], "duplicated": [ids
    completed more than once], "stale_completions": n}``. Judge it with a range tolerance on target "ratio"."""
    ctx = Context(configuration)
    window = number("window", window, 0, 86400)
    settle = number("settle", settle, 0, 3600)
    forms = forms_of(ctx)
    if forms is not None:
        measured = forms.consistency(window, settle, ctx.settings.poll_interval)
        logger.info("data_consistency: %s", measured)
        return measured
    cutoff = time.time()  # judge the tasks accepted so far; later ones are not waited for
    since = cutoff - window if window else 0.0
    accepted_ids: set = set()
    try:
        accepted_ids = {t for s in ctx.platform.submissions(since=since) if s["outcome"] == "accepted"
                        and s["at"] <= cutoff for t in s.get("tasks", [])}
    except ChaosSchedulerError as e:
        logger.info("data_consistency: no submission record (%s); checking the platform's tasks only", e)
    deadline = Deadline(settle)
    while True:
        tasks = {t["id"]: t for t in ctx.platform.tasks(since=since)}
        ids = accepted_ids | {i for i, t in tasks.items() if t["submitted_at"] <= cutoff}
        unfinished = [i for i in ids if i not in tasks or tasks[i]["state"] != "completed"]
        if not unfinished or deadline.expired():
            break
        time.sleep(max(ctx.settings.poll_interval, 0.1))
    lost = sorted(unfinished)
    duplicated = sorted(i for i, t in tasks.items() if t.get("completions", 0) > 1)
    stale = sum(len(t.get("stale_completions", [])) for t in tasks.values())
    ratio = 1.0 if not ids else (len(ids) - len(set(lost) | set(duplicated))) / len(ids)
    result = {"ratio": round(ratio, 6), "accepted": len(ids), "lost": lost[:100], "duplicated": duplicated[:100],
              "stale_completions": stale}
    logger.info("data_consistency: %s", result)
    return result


@boundary
def heartbeat_detection_accuracy(window: float = 60.0, grace: float = 5.0, fault_id: str = "",
                                 configuration: Configuration = None, secrets: Secrets = None) -> float:
    """The share of workers the platform did *not* wrongly declare dead. A declaration is wrong when the worker
    was not cut off from the registry at the time (loss, latency or a masters-only partition must not kill a
    worker). Looks at this run's latest partition_workers fault (or ``fault_id``) from its start to ``grace``
    seconds after it ended, or at the last ``window`` seconds when there is none."""
    ctx = Context(configuration)
    window = number("window", window, 0, 86400, low_open=True)
    grace = number("grace", grace, 0, 3600)
    fault = fault_of_run(ctx, ["partition_workers"], fault_id)
    if fault:
        start, end = fault["started_at"], (fault.get("undone_at") or time.time()) + grace
    else:
        start, end = time.time() - window, time.time()
    excused = set()
    for other in ctx.ledger.all():
        if other.get("run_id") == ctx.run_id and other.get("started_at") and cut_from_registry(other):
            excused |= set(other["targets"])
    forms = forms_of(ctx)
    if forms is not None:
        measured = forms.wrongly_declared(start, end, sorted(excused))
        logger.info("heartbeat_detection_accuracy: %s", measured)
        return measured["value"]
    workers = ctx.platform.worker_states()
    wrong = sorted(w["name"] for w in workers if w["name"] not in excused
                   and any(start <= t <= end for t in (w.get("dead_declarations") or [])))
    judged = [w for w in workers if w["name"] not in excused]
    if not judged:
        return 1.0
    logger.info("heartbeat_detection_accuracy: wrongly declared dead: %s", wrong or "none")
    return round(1 - len(wrong) / len(judged), 6)


@boundary
def cluster_health(configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Exactly one leader, every master process running, every worker alive, and none of the platform's own
    unhealthy states (drained workers, held tasks, where its command sources report them): ``{"healthy": bool,
    "leader": name,
    "leaders": [masters claiming leadership], "masters_running": n, "masters": n, "workers_alive": n,
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
        problems.append(f"{len(claims)} masters claim to lead: {', '.join(claims)}")
    if len(running) < len(masters):
        problems.append(f"masters not running: {', '.join(sorted(set(masters) - set(running)))}")
    if len(alive) < len(workers):
        problems.append(f"workers not alive: {', '.join(sorted(w['name'] for w in workers if not w['alive']))}")
    problems += getattr(platform, "health_problems", list)()  # the platform's own: drained workers, held tasks
    return {"healthy": not problems, "leader": leader, "leaders": claims, "masters_running": len(running),
            "masters": len(masters), "workers_alive": len(alive), "workers": len(workers), "problems": problems,
            "problem_count": len(problems)}


@boundary
def remaining_workers_utilization(configuration: Configuration = None, secrets: Secrets = None) -> float:
    """Running tasks over task slots on the workers that are alive and not cut off: how hard the survivors work
    (the article's limit is 0.9). While this run's latest worker fault is in place the value is measured and its
    peak stored with the fault; once the fault is undone, that peak is returned (the utilisation *during* the
    fault). Without such a fault: the utilisation of every live worker now."""
    ctx = Context(configuration)
    fault = fault_of_run(ctx, CUT_ACTIONS, "")
    if fault and fault.get("state") not in OPEN_STATES:
        recalled = recall(fault, "remaining_workers_utilization")
        if recalled is not None:
            return recalled
    cut = {t for f in ctx.ledger.open_faults(run_id=ctx.run_id) if f.get("action") in CUT_ACTIONS
           for t in f["targets"]}
    survivors = [w for w in ctx.platform.workers() if w["alive"] and w["name"] not in cut]
    slots = sum(w.get("slots") or 0 for w in survivors)
    if not slots:
        raise ChaosSchedulerError("no worker is alive and reachable: utilisation of the survivors is undefined")
    value = round(sum(len(w.get("running", [])) for w in survivors) / slots, 6)
    if fault and fault.get("state") in OPEN_STATES:
        peak = max(value, recall(fault, "remaining_workers_utilization") or 0.0)
        remember(ctx, fault, "remaining_workers_utilization", {"value": peak, "survivors": len(survivors)})
    logger.info("remaining_workers_utilization: %.3f over %d survivors", value, len(survivors))
    return value
