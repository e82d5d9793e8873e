"""The metrics forms of the probes: the same measurements computed from PromQL instead of the platform's records.

A platform that exposes Prometheus metrics but no task records (the ``hosts`` platform) answers the probes from
counts and gauges. Every query is configurable (``chaosscheduler_hosts.metrics.queries``); the defaults use the
embedded cluster's metric names and the scrape jobs ``masters``, ``workers``, ``registry`` and ``load``. A
query that selects per-node series is matched to a node by its ``instance`` label (host or address, port ignored,
or the node's ``metrics_instance``).

Resolution: every value inherits the scrape interval (a change is seen by the first scrape after it). Times are
taken from range queries evaluated every quarter of the scrape interval, so a time is late by at most one scrape
interval plus a quarter of it; counts of tasks are exact per scrape but, across targets scraped at different
moments, tasks in flight (rate x scrape interval) are not told from lost ones. Each result states its resolution.

Freshness: :meth:`MetricsForms.freshness` says how old the samples behind a figure could be (an exporter that blocks
during a failover leaves a gap); the probes widen the stated resolution by that age, or refuse to decide beyond ten
scrape intervals (``chaosscheduler.probe_windows.forms_fresh``).
"""

import logging
import math
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import ChaosSchedulerError
from ..platforms.leader import match_master

__all__ = ["MetricsForms", "DEFAULT_QUERIES", "counter_increase"]

logger = logging.getLogger("chaostoolkit")

_LEADER = "(scheduler_is_leader == 1)"
DEFAULT_QUERIES = {
    # the leader's count of live workers (the platform's own view: a drop = a worker declared dead)
    "workers_alive": f"sum(scheduler_workers_alive and on(instance) {_LEADER})",
    # one series per worker that is up and holds its heartbeat (instance label -> worker)
    "worker_up": "scheduler_worker_registered == 1",
    # tasks running per worker (instance label -> worker)
    "worker_running": "scheduler_worker_tasks_running",
    # task slots per worker; "" = chaosscheduler_hosts.slots / a worker's "slots"
    "worker_slots": "",
    # masters that claim to lead (a count)
    "leaders": "count(scheduler_is_leader == 1) or vector(0)",
    # tasks waiting for a worker, as the leader sees them
    "tasks_pending": f"sum(scheduler_tasks_pending and on(instance) {_LEADER})",
    # tasks assigned and not completed, as the leader sees them
    "tasks_running": f"sum(scheduler_tasks_running and on(instance) {_LEADER})",
    # counters (one or more series; resets handled per series)
    "tasks_rescheduled": "scheduler_task_rescheduled_total",
    "tasks_accepted": 'scheduler_job_submissions_total{job="load",outcome="accepted"}',
    "submissions": 'scheduler_job_submissions_total{job="load"}',
    "tasks_completed": 'scheduler_worker_completion_reports_total{stale="false"}',
    "tasks_failed": 'scheduler_worker_tasks_finished_total{outcome!="ok"}',
}

Samples = List[Tuple[float, float]]


def counter_increase(values: Samples) -> float:
    """The increase of one counter series over its samples, resets (a value below the previous one) included."""
    total = 0.0
    for (_, before), (_, after) in zip(values, values[1:]):
        total += after - before if after >= before else after
    return total


class MetricsForms:
    def __init__(self, prometheus: Any, description: Dict[str, Any], queries: Optional[Dict[str, str]] = None):
        self.prometheus = prometheus
        self.description = description
        self.queries = dict(DEFAULT_QUERIES, **(queries or {}))

    # ------------------------------------------------------------------ helpers
    @property
    def interval(self) -> float:
        return self.prometheus.scrape_interval()

    @property
    def step(self) -> float:
        return max(self.interval / 4.0, 0.05)

    def resolution(self) -> str:
        return f"Prometheus scrape interval {self.interval:g} s (+ evaluation step {self.step:g} s)"

    def _query(self, name: str) -> str:
        expr = self.queries.get(name) or ""
        if not expr:
            raise ChaosSchedulerError(f"metrics query {name!r} is empty: set chaosscheduler_hosts.metrics.queries."
                                      f"{name}")
        return expr

    def _node(self, labels: Dict[str, str], role: str) -> Optional[str]:
        return match_master(labels.get("instance"), self.description[role])

    def _scalar_series(self, name: str, start: float, end: float) -> Samples:
        """One value per step (the sum of the query's series at that step; steps without any sample are left out)."""
        by_time: Dict[float, float] = {}
        for _, values in self.prometheus.series(self._query(name), start, end, self.step):
            for t, v in values:
                by_time[t] = by_time.get(t, 0.0) + v
        return sorted(by_time.items())

    def _increase(self, name: str, start: float, end: float) -> float:
        """The increase of a counter query; a series that appears inside the window (a process started, or was
        first scraped, then) counts from zero, as counters do."""
        total = 0.0
        for _, values in self.prometheus.series(self._query(name), start, end, self.step):
            total += counter_increase(values)
            if values and values[0][0] > start + 2 * self.interval:
                total += values[0][1]
        return total

    def _rate(self, name: str, start: float, end: float) -> float:
        """Per-second increase of a counter query over the time its samples actually cover (a young platform has
        fewer seconds of history than asked for)."""
        total, covered = 0.0, 0.0
        for _, values in self.prometheus.series(self._query(name), start, end, self.interval):
            if len(values) > 1:
                total += counter_increase(values)
                covered = max(covered, values[-1][0] - values[0][0])
        return total / covered if covered else 0.0

    def _now(self, name: str) -> List[Tuple[Dict[str, str], float]]:
        return [(labels, value) for labels, _, value in self.prometheus.query(self._query(name))]

    # ------------------------------------------------------------------ workers
    def workers(self) -> List[Dict[str, Any]]:
        """The platform's workers: ``alive`` (a series in worker_up), ``running`` (placeholders: metrics give counts,
        not task ids), ``slots``."""
        up = {self._node(labels, "workers") for labels, _ in self._now("worker_up")}
        running: Dict[str, int] = {}
        for labels, value in self._now("worker_running"):
            node = self._node(labels, "workers")
            if node:
                running[node] = running.get(node, 0) + int(value)
        slots: Dict[str, int] = {}
        if self.queries.get("worker_slots"):
            for labels, value in self._now("worker_slots"):
                node = self._node(labels, "workers")
                if node:
                    slots[node] = int(value)
        out = []
        for worker in self.description["workers"]:
            name = worker["name"]
            count = running.get(name, 0) if name in up else 0
            out.append({"name": name, "alive": name in up, "running": [f"{name}#{i + 1}" for i in range(count)],
                        "running_count": count, "slots": slots.get(name) or worker.get("slots")
                        or self.description.get("slots", 4),
                        "declared_dead_at": None, "dead_declarations": [], "source": "metrics"})
        return out

    def detection_time(self, t0: float, targets: Sequence[str], timeout: float, poll: float) -> Dict[str, Any]:
        """Seconds from ``t0`` until the leader's live-worker count dropped by ``len(targets)``."""
        before = self._scalar_series("workers_alive", t0 - 3 * self.interval, t0)
        if not before:
            raise ChaosSchedulerError("no sample of the live-worker count before the fault: is Prometheus scraping "
                                      "the masters?")
        expected = before[-1][1] - len(targets)
        deadline = t0 + timeout
        while True:
            now = time.time()
            hit = [t for t, v in self._scalar_series("workers_alive", t0, now) if t > t0 and v <= expected]
            if hit:
                return {"value": hit[0] - t0, "resolution": self.resolution(), "alive_before": before[-1][1]}
            if now > deadline:
                return {"value": now - t0, "timed_out": True, "resolution": self.resolution()}
            time.sleep(max(poll, self.step))

    def lost_allowance(self, t0: float, targets: Sequence[str]) -> int:
        """Tasks the cut workers may have finished between their last scrape and the cut: counted as running when
        the fault was recorded, they were never lost (their completion rate x the age of that last sample)."""
        allowance = 0.0
        ages = {self._node(labels, "workers"): t0 - sampled  # timestamp() answers each series' sample time
                for labels, _, sampled in self.prometheus.query(f"timestamp({self._query('worker_running')})", t0)}
        for labels, values in self.prometheus.series(self._query("tasks_completed"), t0 - 30, t0, self.interval):
            node = self._node(labels, "workers")
            if node in targets and len(values) > 1:
                rate = counter_increase(values) / max(values[-1][0] - values[0][0], self.interval)
                allowance += rate * max(0.0, min(ages.get(node, self.interval), 2 * self.interval))
        return int(math.ceil(allowance - 1e-9))

    def rescheduling(self, t0: float, targets: Sequence[str], lost: int, until: float,
                     poll: float) -> Dict[str, Any]:
        """When the platform rescheduled each lost task after ``t0`` (seconds after t0): waits until every one of
        the ``lost`` tasks moved, or, once at least ``lost - allowance`` did, until the count stays still for two
        scrape intervals, or until ``until`` (wall time). ``expected`` = lost - allowance."""
        allowance = min(self.lost_allowance(t0, targets), max(0, lost - 1))
        expected = lost - allowance
        last_change, count = time.time(), -1
        while True:
            now = time.time()
            end = min(now, until)
            times: List[float] = []
            for _, values in self.prometheus.series(self._query("tasks_rescheduled"), t0 - self.step, end, self.step):
                for (_, before), (t, after) in zip(values, values[1:]):
                    grown = after - before if after >= before else after
                    times += [t - t0] * int(round(grown))
            times.sort()
            if len(times) != count:
                count, last_change = len(times), now
            settled = len(times) >= expected and now - last_change >= 2 * self.interval
            if len(times) >= lost or settled or now >= until:
                return {"times": times[:lost], "expected": expected, "allowance": allowance}
            time.sleep(max(poll, self.step))

    def wait_drained(self, since: float, until: float, poll: float) -> Optional[float]:
        """Wait until as many tasks completed after ``since`` as were running or waiting at ``since`` (the lost
        tasks went back to the front of the queue, so by then they ran elsewhere too); the wall time it happened,
        or None when ``until`` came first. Counts, not identities: a task that fails elsewhere is not told apart."""
        def total(name: str, at: float) -> float:
            return sum(value for _, _, value in self.prometheus.query(self._query(name), at))

        in_system = total("tasks_running", since) + total("tasks_pending", since)
        done_before = total("tasks_completed", since)
        while True:
            now = time.time()
            if total("tasks_completed", now) - done_before >= in_system:
                return now
            if now >= until:
                return None
            time.sleep(max(poll, self.interval / 2))

    # ------------------------------------------------------------------ submissions and tasks
    def submission_success(self, window: float) -> Dict[str, Any]:
        now = time.time()
        total = self._increase("submissions", now - window, now)
        if total <= 0:
            raise ChaosSchedulerError(f"no job was submitted in the last {window:g} s (metrics query "
                                      f"'submissions'): is there any load?")
        accepted = self._increase("tasks_accepted", now - window, now)
        return {"value": min(1.0, accepted / total), "accepted": accepted, "submitted": total,
                "resolution": self.resolution()}

    def unaccounted(self, at: Optional[float] = None) -> Optional[float]:
        """accepted - completed - pending - running on live workers, at one instant: tasks the platform cannot
        account for (a task assigned to a worker that is gone counts until it runs again elsewhere)."""
        parts = {}
        for name in ("tasks_accepted", "tasks_completed", "worker_running", "tasks_pending"):
            rows = self.prometheus.query(self._query(name), at)
            if not rows and name != "worker_running":
                return None
            parts[name] = sum(value for _, _, value in rows)
        return parts["tasks_accepted"] - parts["tasks_completed"] - parts["worker_running"] - parts["tasks_pending"]

    def consistency(self, window: float, settle: float, poll: float) -> Dict[str, Any]:
        """Conservation of tasks: every accepted task is pending, running or completed (once). Polls for ``settle``
        seconds; a loss shows as a lasting surplus of accepted tasks, a duplicate as a lasting deficit, beyond the
        tasks in flight between two scrapes (the allowance)."""
        now = time.time()
        span = window or self.description["metrics"]["lookback"]
        accepted = self._increase("tasks_accepted", now - span, now)
        allowance = math.ceil(self._rate("tasks_accepted", now - 30, now) * (self.interval + self.step) * 2)
        seen: List[float] = []
        deadline = now + settle
        while True:
            value = self.unaccounted()
            if value is not None:
                seen.append(value)
                if abs(value) <= allowance:
                    break
            if time.time() >= deadline:
                break
            time.sleep(max(poll, self.interval / 2))
        if not seen:
            raise ChaosSchedulerError("the task counts are missing from Prometheus (queries tasks_accepted, "
                                      "tasks_completed, worker_running, tasks_pending)")
        lost = max(0, math.floor(min(seen) - allowance))
        duplicated = max(0, math.floor(-max(seen) - allowance))
        ratio = 1.0 if accepted <= 0 else max(0.0, 1 - (lost + duplicated) / accepted)
        return {"ratio": round(ratio, 6), "accepted": int(accepted), "lost": lost, "duplicated": duplicated,
                "unaccounted": seen[-1], "allowance": allowance, "resolution": self.resolution()}

    def task_success(self, window: float, settle: float, poll: float) -> Dict[str, Any]:
        now = time.time()
        accepted = self._increase("tasks_accepted", now - window, now)
        if accepted <= 0:
            raise ChaosSchedulerError(f"no task was accepted in the last {window:g} s (metrics query "
                                      f"'tasks_accepted'): is there any load?")
        check = self.consistency(window, settle, poll)
        failed = self._increase("tasks_failed", now - window, time.time())
        value = max(0.0, 1 - (failed + check["lost"] + check["duplicated"]) / accepted)
        return {"value": round(min(1.0, value), 6), "accepted": accepted, "failed": failed, "lost": check["lost"],
                "resolution": self.resolution()}

    def interruption(self, window: float) -> Dict[str, Any]:
        """The longest run of scrape intervals with no leader, or with tasks waiting while no task was assigned
        (running + completed did not grow)."""
        now = time.time()
        step = self.interval
        start = round(now - window, 3)

        def per_step(name: str) -> Dict[float, float]:
            by_time: Dict[float, float] = {}
            for _, values in self.prometheus.series(self._query(name), start, now, step):
                for t, v in values:
                    by_time[round(t, 3)] = by_time.get(round(t, 3), 0.0) + v
            return by_time

        leaders, pending = per_step("leaders"), per_step("tasks_pending")
        running, completed = per_step("tasks_running"), per_step("tasks_completed")
        longest = run = 0.0
        stalled_at_end = False
        previous: Optional[float] = None
        # every step of the window: a step where no master claims to lead has no sample at all
        grid = [round(start + k * step, 3) for k in range(int(window / step) + 1)]
        first = min([t for t, v in leaders.items() if v >= 1] + [now])  # from the first leader on
        for t in (g for g in grid if g >= first):
            started = running.get(t, 0.0) + completed.get(t, 0.0) if t in running else None
            progressed = started is not None and previous is not None and started > previous
            if leaders.get(t, 0) < 1 or (pending.get(t, 0) > 0 and not progressed):
                run += step
                longest = max(longest, run)
                stalled_at_end = True
            else:
                run = 0.0
                stalled_at_end = False
            previous = started if started is not None else previous
        return {"value": round(longest, 6), "resolution": self.resolution(), "stalled_at_end": stalled_at_end}

    def wrongly_declared(self, start: float, end: float, excused: Sequence[str]) -> Dict[str, Any]:
        """Live workers the leader lost count of between ``start`` and ``end`` beyond those cut from the registry."""
        counts = [v for _, v in self._scalar_series("workers_alive", start, end)]
        total = len(self.description["workers"])
        judged = total - len(set(excused))
        if not counts or judged <= 0:
            return {"value": 1.0, "wrong": 0, "judged": judged, "resolution": self.resolution()}
        wrong = max(0, int(round(total - min(counts))) - len(set(excused)))
        return {"value": round(1 - min(wrong, judged) / judged, 6), "wrong": wrong, "judged": judged,
                "resolution": self.resolution()}

    def utilization_peak(self, cut: Sequence[str], start: float, end: float) -> Dict[str, Any]:
        """The peak over [start, end] of running tasks over slots on the workers not in ``cut``: the per-worker
        running gauge evaluated every quarter scrape interval through the window (not one sample)."""
        slots = {w["name"]: int(w.get("slots") or self.description.get("slots", 4))
                 for w in self.workers() if w["name"] not in cut}
        by_time: Dict[float, float] = {}
        for labels, values in self.prometheus.series(self._query("worker_running"), start, max(end, start + self.step),
                                                     self.step):
            if self._node(labels, "workers") in slots:
                for t, v in values:
                    by_time[t] = by_time.get(t, 0.0) + v
        total = sum(slots.values())
        if not by_time or not total:
            raise ChaosSchedulerError("no sample of the survivors' running tasks in the fault's window (metrics query "
                                      "'worker_running')")
        at, peak = max(by_time.items(), key=lambda item: item[1])
        return {"value": round(peak / total, 6), "peak_tasks": peak, "slots": total, "at": at,
                "resolution": self.resolution()}

    def freshness(self, start: float, end: float,
                  names: Sequence[str] = ("workers_alive", "worker_running", "leaders", "tasks_pending",
                                          "tasks_completed", "submissions"),
                  exclude: Sequence[str] = ()) -> Dict[str, Any]:
        """How old the samples behind a figure over [start, end] could be. For each query: the age of its samples
        (``timestamp()``, meaningful for plain selectors; computed series carry the evaluation time), the gaps inside
        each series (a scrape that failed or an exporter that blocked: the series went missing, then came back), and
        the scrape health (``up`` == 0 stretches) of the instances the series come from. A series that disappears for
        good (a killed node) is not a gap, and the nodes in ``exclude`` (the fault's own targets: a cut worker cannot
        be scraped, that is the fault) are left out. ``max_age`` is the worst of them; beyond ten scrape intervals
        ``refuse`` says why no figure should rest on these data."""
        interval, step = self.interval, self.step
        end = max(end, start + step)
        worst: Dict[str, float] = {}
        instances = set()

        def note(what: str, age: float) -> None:
            if age > worst.get(what, 0.0):
                worst[what] = age

        def excluded(labels: Dict[str, str]) -> bool:
            return bool(exclude) and any(self._node(labels, role) in exclude for role in ("workers", "masters"))

        for name in names:
            expr = self.queries.get(name) or ""
            if not expr:
                continue
            for labels, values in self.prometheus.series(expr, start, end, step):
                if excluded(labels):
                    continue
                if labels.get("instance"):
                    instances.add(labels["instance"])
                for (a, _), (b, _) in zip(values, values[1:]):
                    if b - a > 1.5 * step:
                        note(f"{name} gap", b - a)
            try:
                stamped = self.prometheus.series(f"timestamp({expr})", start, end, step)
            except ChaosSchedulerError:
                stamped = []
            for labels, values in stamped:
                if excluded(labels):
                    continue
                for t, sampled in values:
                    note(f"{name} age", t - sampled)
        for instance in sorted(instances):
            selector = 'up{instance="%s"}' % instance.replace('"', '')
            for _, values in self.prometheus.series(selector, start, end, step):
                down_since = None
                for t, v in values:
                    if v < 1 and down_since is None:
                        down_since = t
                    elif v >= 1 and down_since is not None:
                        note(f"{instance} scrapes failing", t - down_since + interval)
                        down_since = None
        max_age = max(worst.values(), default=0.0)
        stale = [f"{what} {age:.1f} s" for what, age in sorted(worst.items(), key=lambda i: -i[1])
                 if age > 1.5 * interval]
        refuse = (f"samples up to {max_age:.1f} s old ({'; '.join(stale)}), more than ten scrape intervals "
                  f"({10 * interval:g} s)") if max_age > 10 * interval else ""
        return {"max_age": round(max_age, 3), "interval": interval, "stale": stale, "refuse": refuse}

    def utilization(self, cut: Sequence[str]) -> Dict[str, Any]:
        survivors = [w for w in self.workers() if w["alive"] and w["name"] not in cut]
        slots = sum(w["slots"] or 0 for w in survivors)
        if not slots:
            raise ChaosSchedulerError("no worker is alive and reachable: utilisation of the survivors is undefined")
        value = sum(w["running_count"] for w in survivors) / slots
        return {"value": round(value, 6), "survivors": len(survivors), "resolution": self.resolution()}
