"""A master of the embedded cluster.

Every master stands for election through an etcd lease on ``/cs/leader``. Only the leader schedules: it keeps the
authoritative task table in memory (reloaded from etcd when it wins), assigns pending tasks to the least loaded
live worker, declares workers dead when their heartbeat lease expires and re-runs their unfinished tasks
elsewhere. Every write the leader makes is *fenced*: an etcd transaction that only succeeds while the leader key
still has the create revision it won with, so a deposed leader can never write.

Followers accept job submissions and completion reports and forward them to the leader.
"""

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .client import ClientError, request
from .keys import LEADER_KEY, STATUS, TASKS, WORKERS
from .master_api import MasterAPI, NotLeader
from .node import NodeRuntime, logger, main_args, metrics_response, wait_port_free

LOOP = 0.05  # seconds between scheduling passes and between election checks


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.is_leader = Gauge("scheduler_is_leader", "1 when this master is the leader", registry=r)
        self.leader_changes = Counter("scheduler_leader_changes", "Leader changes seen by this master", registry=r)
        self.workers_alive = Gauge("scheduler_workers_alive", "Workers with a live heartbeat lease", registry=r)
        self.submitted = Counter("scheduler_task_submitted", "Tasks accepted by this master as leader", registry=r)
        self.completed = Counter("scheduler_task_completed", "Task completions recorded (first, fenced)", registry=r)
        self.stale = Counter("scheduler_task_stale_completions", "Completions refused as stale", registry=r)
        self.rescheduled = Counter("scheduler_task_rescheduled", "Tasks re-run after their worker was lost",
                                   registry=r)
        self.tasks_pending = Gauge("scheduler_tasks_pending", "Tasks waiting for a worker", registry=r)
        self.tasks_running = Gauge("scheduler_tasks_running", "Tasks assigned and not completed", registry=r)
        self.resched_duration = Histogram(
            "scheduler_rescheduling_duration_seconds", "From a worker declared dead to its task assigned again",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.detection = Gauge("scheduler_worker_failure_detection_seconds",
                               "Last worker failure: seconds from its last heartbeat to declared dead", registry=r)
        self.submissions = Counter("scheduler_job_submissions", "Job submissions received by this master",
                                   ["outcome"], registry=r)


class Master(MasterAPI):
    def __init__(self, rt: NodeRuntime):
        self.rt = rt
        self.name = rt.node.name
        self.spec = rt.spec
        self.etcd = rt.etcd_client()
        self.tx = self.etcd.transactions
        self.m = Metrics()
        self.lock = threading.RLock()
        self.claim_lock = threading.Lock()  # held only to flip is_leader off: one step-down reports the loss
        self.is_leader = False
        self.leader_rev = 0           # create revision of the leader key we hold
        self.leader_name: Optional[str] = None
        self.lease = None
        self.last_refresh = 0.0
        self.tasks: Dict[str, Dict[str, Any]] = {}
        self.pending: List[str] = []
        self.workers: Dict[str, Dict[str, Any]] = {}     # name -> registration (live only)
        self.dead: Dict[str, Dict[str, Any]] = {}        # name -> status record of dead workers
        self.declarations: Dict[str, List[float]] = {}   # name -> times it was declared dead (history)
        self.unreachable: Dict[str, float] = {}          # worker -> monotonic time until we retry it
        self.dispatcher = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dispatch")
        self.dispatch_failures: List[Tuple[str, int, str, bool]] = []  # (task, attempt, worker, refused)
        self.last_reconcile = 0.0
        self.seen_other_leader = False  # knob stall_after_election: only a failover's winner stalls
        self.stall_until = 0.0
        self.last_merge = 0.0
        self.rng = random.Random()

    def knob(self, share: float) -> bool:
        """Whether a broken-platform knob given as a share (0 = never, 1 = always) strikes this time."""
        return share > 0 and (share >= 1 or self.rng.random() < share)

    # ------------------------------------------------------------------ election
    def election_step(self) -> None:
        if self.is_leader:
            return  # the keeper thread holds the lease
        try:
            value, meta = self.etcd.get(LEADER_KEY)
        except Exception:
            return
        current = json.loads(value)["name"] if value else None
        self.seen_other_leader = self.seen_other_leader or (current is not None and current != self.name)
        if current != self.leader_name:
            self.leader_name = current
            self.m.leader_changes.inc()
        # campaign=False is the "no failover" knob: only master-1 ever stands for election
        if current is None and (self.spec.campaign or self.rt.node.index == 1):
            self._campaign()

    def _campaign(self) -> None:
        try:
            lease = self.etcd.lease(self.spec.election_ttl)
        except Exception:
            return
        since = time.time()
        value = json.dumps({"name": self.name, "since": since})
        try:
            won, _ = self.etcd.transaction(compare=[self.tx.create(LEADER_KEY) == 0],
                                           success=[self.tx.put(LEADER_KEY, value, lease=lease.id)], failure=[])
            _, meta = self.etcd.get(LEADER_KEY) if won else (None, None)
        except Exception:
            won = False
        if not won or meta is None or meta.lease_id != lease.id:
            try:
                lease.revoke()
            except Exception:
                pass
            return
        with self.lock:
            self.lease, self.leader_rev, self.last_refresh = lease, meta.create_revision, time.monotonic()
            try:
                self._load_state()
            except Exception as e:
                logger.warning("could not load state after winning: %s; stepping down", e)
                self._step_down("state load failed")
                return
            self.is_leader = True
            self.leader_name = self.name
            self.m.is_leader.set(1)
            self.m.leader_changes.inc()
        self.rt.events.emit("leader_acquired", term=self.leader_rev, since=since)
        logger.info("became leader (term %s)", self.leader_rev)
        if self.spec.stall_after_election and self.seen_other_leader:  # broken knob: a new leader that idles
            self.stall_until = time.monotonic() + self.spec.stall_after_election
            self.rt.events.emit("leader_stalling", seconds=self.spec.stall_after_election)

    def keeper_loop(self) -> None:
        """Keep the leader lease alive in a thread of its own, so that scheduling work blocked on an unreachable
        etcd never delays a refresh, nor the step-down when the lease can no longer be kept."""
        while not self.rt.stopping.is_set():
            if self.is_leader:
                self._keep_leadership()
            self.rt.stopping.wait(LOOP)

    def _keep_leadership(self) -> None:
        if self.spec.split_brain:  # broken knob: never step down, whatever becomes of the lease
            try:
                self.lease.refresh()
            except Exception:
                pass
            self.last_refresh = time.monotonic()
            return
        now = time.monotonic()
        if now - self.last_refresh > self.spec.election_ttl:
            # by our own clock the lease has run out (last_refresh is when the refresh was *sent*): stop claiming
            self._step_down("etcd unreachable for a whole TTL")
            return
        if now - self.last_refresh < self.spec.election_ttl / 3.0:
            return
        try:
            responses = self.lease.refresh()
            alive = bool(responses) and responses[0].TTL > 0
        except Exception:
            alive = None  # unknown: etcd unreachable
        if alive:
            self.last_refresh = now
        elif alive is False or now - self.last_refresh > self.spec.election_ttl:
            self._step_down("lease expired" if alive is False else "etcd unreachable for a whole TTL")

    def _step_down(self, reason: str) -> None:
        # the claim goes at once, before waiting for the lock a blocked scheduling pass may hold; claim_lock makes
        # one step-down the one that reports it when the keeper thread and a refused fenced write race
        with self.claim_lock:
            was, self.is_leader = self.is_leader, False
        self.m.is_leader.set(0)
        with self.lock:
            self.leader_rev = 0
            self.leader_name = None
            self.tasks, self.pending, self.workers, self.dead = {}, [], {}, {}
        if was:
            self.rt.events.emit("leader_lost", reason=reason)
            logger.info("stepped down: %s", reason)

    def resign(self) -> None:
        if self.is_leader and self.lease is not None:
            try:
                self.lease.revoke()
            except Exception:
                pass
            self._step_down("shutdown")

    # ------------------------------------------------------------------ fenced writes
    def _write(self, puts: Dict[str, Any], deletes: Tuple[str, ...] = ()) -> None:
        """Write ``puts`` (key -> JSON value) and ``deletes`` in one transaction fenced on our leadership."""
        ops = [self.tx.put(k, json.dumps(v)) for k, v in puts.items()] + [self.tx.delete(k) for k in deletes]
        if self.spec.split_brain:  # broken knob: no fence, and a write that fails is forgotten
            try:
                self.etcd.transaction(compare=[], success=ops, failure=[])
            except Exception:
                pass
            return
        try:
            ok, _ = self.etcd.transaction(compare=[self.tx.create(LEADER_KEY) == self.leader_rev],
                                          success=ops, failure=[])
        except Exception as e:
            raise NotLeader(f"etcd write failed: {e}") from e
        if not ok:
            self._step_down("fenced write refused: another master holds the leader key")
            raise NotLeader("lost leadership")

    def _load_state(self) -> None:
        self.tasks = {json.loads(v)["id"]: json.loads(v) for v, _ in self.etcd.get_prefix(TASKS)}
        self.pending = sorted((t["id"] for t in self.tasks.values() if t["state"] == "pending"),
                              key=lambda i: self.tasks[i]["submitted_at"])
        self.dead = {}
        self.declarations = {}
        for v, _ in self.etcd.get_prefix(STATUS):
            status = json.loads(v)
            self.declarations[status["name"]] = status.get("dead_declarations", [])
            if status.get("state") == "dead":
                self.dead[status["name"]] = status
        # start from the workers last recorded alive: the first sync declares dead those whose lease expired
        # while there was no leader, and greets the others
        self.workers = {}
        for v, _ in self.etcd.get_prefix(STATUS):
            status = json.loads(v)
            if status.get("state") == "alive":
                self.workers[status["name"]] = {"name": status["name"], "last_heartbeat": status.get("since")}

    # ------------------------------------------------------------------ leader work
    def leader_step(self) -> None:
        plan: List[Tuple[str, Tuple[str, int], List[Dict[str, Any]]]] = []
        with self.lock:
            if not self.is_leader:
                return
            try:
                self._sync_workers()
                self._handle_dispatch_failures()
                self._reschedule_orphans()
                if self.spec.split_brain:
                    self._merge_pending()
                if time.monotonic() >= self.stall_until:
                    self._schedule()
                if time.monotonic() - self.last_reconcile > 1.0:
                    self.last_reconcile = time.monotonic()
                    plan = self._reconcile_plan()
                self._update_gauges()
            except NotLeader:
                return
        if plan:
            self._reconcile(plan)

    def _sync_workers(self) -> None:
        try:
            current = {json.loads(v)["name"]: json.loads(v) for v, _ in self.etcd.get_prefix(WORKERS)}
        except Exception:
            return  # etcd unreachable: decide nothing
        now = time.time()
        for name, reg in current.items():
            if name not in self.workers or name in self.dead:
                rejoined = name in self.dead
                self._write({STATUS + name: {"name": name, "state": "alive", "since": now,
                                             "dead_declarations": self.declarations.get(name, [])}})
                self.dead.pop(name, None)
                self.rt.events.emit("worker_seen", worker=name, rejoined=rejoined)
        for name, reg in self.workers.items():
            if name not in current and name not in self.dead:
                last = reg.get("last_heartbeat") or reg.get("registered_at") or now
                self.declarations[name] = (self.declarations.get(name, []) + [now])[-100:]
                status = {"name": name, "state": "dead", "since": now, "declared_dead_at": now,
                          "last_heartbeat": last, "dead_declarations": self.declarations[name]}
                self._write({STATUS + name: status})
                self.dead[name] = status
                self.m.detection.set(max(0.0, now - last))
                self.rt.events.emit("worker_declared_dead", worker=name, last_heartbeat=last)
        self.workers = current

    def _running_on(self, worker: str) -> List[Dict[str, Any]]:
        return [t for t in self.tasks.values() if t["state"] == "assigned" and t["worker"] == worker]

    def _reschedule_orphans(self) -> None:
        """Re-run the unfinished tasks of workers that are not alive (if rescheduling is enabled). Broken knobs:
        ``drop_lost`` deletes them silently instead; ``reschedule_delay`` holds them back that long."""
        if not (self.spec.reschedule or self.spec.drop_lost):
            return
        now = time.time()
        for task in [t for t in self.tasks.values() if t["state"] == "assigned" and t["worker"] not in self.workers]:
            if self.spec.drop_lost:
                self._write({}, deletes=(TASKS + task["id"],))
                del self.tasks[task["id"]]
                self.rt.events.emit("task_dropped", task=task["id"], from_worker=task["worker"],
                                    attempt=task["attempt"])
                continue
            moved = {"event": "rescheduled", "at": now, "from": task["worker"], "attempt": task["attempt"] + 1}
            updated = dict(task, state="pending", worker=None, attempt=task["attempt"] + 1,
                           history=task["history"] + [moved])
            if self.spec.reschedule_delay:
                updated["not_before"] = now + self.spec.reschedule_delay
            self._write({TASKS + task["id"]: updated})
            self.tasks[task["id"]] = updated
            self.pending.insert(0, task["id"])
            self.m.rescheduled.inc()
            self.rt.events.emit("task_rescheduled", task=task["id"], from_worker=task["worker"],
                                attempt=updated["attempt"], not_before=updated.get("not_before"))

    def _merge_pending(self) -> None:
        """Split-brain knob: take every pending task found in etcd that this leader does not know (twice a second),
        as a scheduler sharing a task table with no lock would; two leaders then both schedule them."""
        if time.monotonic() - self.last_merge < 0.5:
            return
        self.last_merge = time.monotonic()
        try:
            stored = [json.loads(v) for v, _ in self.etcd.get_prefix(TASKS)]
        except Exception:
            return
        for task in stored:
            if task["state"] == "pending" and task["id"] not in self.tasks:
                self.tasks[task["id"]] = task
                self.pending.append(task["id"])

    def _handle_dispatch_failures(self) -> None:
        """A refused dispatch puts the task back in the queue with a new attempt. A timed-out one may have reached
        the worker (a slow worker on a loaded machine): re-running it elsewhere would run it twice, so it stays
        assigned; reconciliation sends it again if the worker never got it, and a worker that is gone is declared
        dead and its tasks rescheduled. Either way the worker is skipped for 2 s."""
        failures, self.dispatch_failures = self.dispatch_failures, []
        now = time.time()
        for task_id, attempt, worker, refused in failures:
            task = self.tasks.get(task_id)
            if not task or task["state"] != "assigned" or task["attempt"] != attempt:
                continue
            self.unreachable[worker] = time.monotonic() + 2.0
            if not refused:
                self.rt.events.emit("task_dispatch_unconfirmed", task=task_id, worker=worker, attempt=attempt)
                continue
            updated = dict(task, state="pending", worker=None, attempt=attempt + 1,
                           history=task["history"] + [{"event": "dispatch_failed", "at": now, "worker": worker,
                                                       "attempt": attempt}])
            self._write({TASKS + task_id: updated})
            self.tasks[task_id] = updated
            self.pending.insert(0, task_id)
            self.rt.events.emit("task_dispatch_failed", task=task_id, worker=worker, attempt=attempt)

    def _schedule(self) -> None:
        if not self.pending:
            return
        now_mono = time.monotonic()
        load = {w: 0 for w in self.workers
                if w not in self.dead and self.unreachable.get(w, 0) <= now_mono}
        for task in self.tasks.values():
            if task["state"] == "assigned" and task["worker"] in load:
                load[task["worker"]] += 1
        index = 0
        while index < len(self.pending):
            free = [w for w, n in load.items() if n < self.workers[w].get("slots", self.spec.slots)]
            if not free:
                return
            task_id = self.pending[index]
            task = self.tasks[task_id]
            now = time.time()
            if task.get("not_before", 0) > now:  # held back (reschedule_delay): later tasks may go first
                index += 1
                continue
            worker = min(free, key=lambda w: (load[w], w))
            updated = dict(task, state="assigned", worker=worker, assigned_at=now,
                           history=task["history"] + [{"event": "assigned", "at": now, "worker": worker,
                                                       "attempt": task["attempt"]}])
            updated.pop("not_before", None)
            self._write({TASKS + task_id: updated})
            self.pending.pop(index)
            self.tasks[task_id] = updated
            load[worker] += 1
            rescheduled_from = [h for h in task["history"] if h["event"] == "rescheduled"]
            if rescheduled_from:
                dead = self.dead.get(rescheduled_from[-1]["from"])
                if dead:
                    self.m.resched_duration.observe(max(0.0, now - dead["declared_dead_at"]))
            self.rt.events.emit("task_assigned", task=task_id, worker=worker, attempt=task["attempt"])
            self._dispatch(updated)
            others = sorted((w for w in load if w != worker), key=lambda w: (load[w], w))
            if others and self.knob(self.spec.duplicate_dispatch):  # broken knob: a second copy, same attempt
                self.rt.events.emit("task_duplicate_dispatched", task=task_id, worker=others[0],
                                    attempt=task["attempt"])
                self._dispatch(updated, worker=others[0], retry=False)

    def _dispatch(self, task: Dict[str, Any], worker: Optional[str] = None, retry: bool = True) -> None:
        """Send ``task``'s assignment to its worker (or to ``worker``) in the background; a failed send puts the
        task back in the queue unless ``retry`` is False."""
        reg = self.workers[worker or task["worker"]]
        body = {"task": task["id"], "attempt": task["attempt"], "duration": task["duration"],
                "command": task.get("command")}

        def send() -> None:
            refused = True
            try:
                status, _ = request((reg["address"], reg["port"]), "POST", "/api/assign", body, timeout=0.5)
                ok = status == 200
            except ClientError as e:
                ok = False
                refused = isinstance(e.__cause__, (ConnectionRefusedError, FileNotFoundError, BlockingIOError))
            if not ok and retry:
                with self.lock:
                    self.dispatch_failures.append((task["id"], task["attempt"], task["worker"], refused))

        self.dispatcher.submit(send)

    def _reconcile_plan(self) -> List[Tuple[str, Tuple[str, int], List[Dict[str, Any]]]]:
        """Per reachable worker, its assignments older than 1.5 s (checked outside the lock by _reconcile)."""
        cutoff = time.time() - 1.5
        plan = []
        for worker, reg in self.workers.items():
            if self.unreachable.get(worker, 0) > time.monotonic():
                continue
            stale = [dict(t) for t in self._running_on(worker) if t["assigned_at"] < cutoff]
            if stale:
                plan.append((worker, (reg["address"], reg["port"]), stale))
        return plan

    def _reconcile(self, plan: List[Tuple[str, Tuple[str, int], List[Dict[str, Any]]]]) -> None:
        """Ask each worker which of its assignments it never received (a leader that died between writing an
        assignment and dispatching it), and dispatch those again. Workers ignore duplicates. The HTTP calls run
        outside the lock, so an unreachable worker never stalls scheduling or submissions."""
        for worker, target, stale in plan:
            body = {"assignments": [[t["id"], t["attempt"]] for t in stale]}
            try:
                status, answer = request(target, "POST", "/api/check", body, timeout=0.5)
            except ClientError:
                continue
            if status != 200:
                continue
            unknown = {tuple(a) for a in answer.get("unknown", [])}
            with self.lock:
                for task in stale:
                    current = self.tasks.get(task["id"])
                    if (task["id"], task["attempt"]) in unknown and self.is_leader and current \
                            and current["state"] == "assigned" and current["attempt"] == task["attempt"] \
                            and current["worker"] == worker and worker in self.workers:
                        self.rt.events.emit("task_redispatched", task=task["id"], worker=worker,
                                            attempt=task["attempt"])
                        self._dispatch(current)

    def _update_gauges(self) -> None:
        self.m.workers_alive.set(len(self.workers))
        self.m.tasks_pending.set(len(self.pending))
        self.m.tasks_running.set(sum(1 for t in self.tasks.values() if t["state"] == "assigned"))

    def routes(self) -> Dict[Tuple[str, str], Any]:
        return {("GET", "/health"): self.health, ("GET", "/api/leader"): self.api_leader,
                ("GET", "/api/summary"): self.api_summary,
                ("GET", "/api/workers"): self.api_workers, ("GET", "/api/tasks"): self.api_tasks,
                ("POST", "/api/jobs"): self.submit, ("POST", "/api/complete"): self.complete,
                ("POST", "/api/cancel"): self.cancel,
                ("GET", "/metrics"): lambda q, b: metrics_response(self.m.registry)}


def main() -> None:
    args = main_args("a master of the chaosscheduler embedded cluster")
    rt = NodeRuntime(args.state_dir, args.name)
    rt.install_signal_handlers()
    wait_port_free(rt.node.address, rt.node.port)
    master = Master(rt)
    rt.serve(master.routes())
    rt.events.emit("node_started", role="master")
    threading.Thread(target=master.keeper_loop, daemon=True, name="lease-keeper").start()
    try:
        while not rt.stopping.is_set():
            master.election_step()
            master.leader_step()
            rt.stopping.wait(LOOP)
    finally:
        master.resign()
        rt.shutdown()


if __name__ == "__main__":
    main()
