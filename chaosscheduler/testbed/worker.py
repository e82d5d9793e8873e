"""A worker of the embedded cluster.

It registers ``/cs/workers/<name>`` under an etcd lease and keeps the lease alive (the heartbeat); when the lease
has expired (the worker was cut off longer than its TTL) it registers again under a new one. Keep-alives go out on
two etcd connections of their own, each in its own thread: when packet loss stalls one TCP stream in retransmission
back-off (seconds, under 30 % loss), the other still renews the lease, and a stalled connection never holds the next
keep-alive back (docs/testbed.md, "Why the default heartbeat"). It runs the tasks the
leader dispatches (a sleep of the task's duration, or the task's argv, with ``CS_WITNESS_NODE`` (its name),
``CS_WITNESS_ATTEMPT`` and ``CS_WITNESS_DIR`` (a directory of its own, ``<state_dir>/nodes/<name>``, where a task
can leave files: the witness's evidence) in its environment), and reports each completion to the masters
until one records it, however long that takes. Completions carry the attempt number: the leader refuses (and
records as stale) a completion for an attempt it has since given to another worker.
"""

import json
import os
import queue
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge

from .client import ClientError, request
from .keys import WORKERS
from .node import NodeRuntime, health_ok, main_args, metrics_response, wait_port_free


KEEPALIVE_CONNECTIONS = 2  # etcd connections the keep-alives go out on, at the same time
KEEPALIVE_WAIT = 1.0       # seconds a heartbeat waits for the first answer, and each etcd call's timeout
COMMAND_GRACE = 10.0       # seconds a task's argv may run past its duration before it is killed


def node_dir(state_dir: str, name: str) -> str:
    """The directory of worker ``name`` where its tasks may leave files (``$CS_WITNESS_DIR``)."""
    return os.path.join(state_dir, "nodes", name)


class Worker:
    def __init__(self, rt: NodeRuntime):
        self.rt = rt
        self.name = rt.node.name
        self.spec = rt.spec
        # separate TCP connections (gRPC would otherwise share one): a stream stalled by loss stalls only its own
        self.channels = [rt.etcd_client(timeout=KEEPALIVE_WAIT, own_connection=True)
                         for _ in range(KEEPALIVE_CONNECTIONS)]
        self.busy = [threading.Event() for _ in self.channels]  # set while a call on that connection is under way
        self.register_attempts = 0
        self.lock = threading.Lock()
        self.lease = None
        self.registered = False
        self.seen: Set[Tuple[str, int]] = set()
        self.running: Dict[Tuple[str, int], float] = {}
        self.outbox: List[Dict[str, Any]] = []
        self.preferred_master: Optional[str] = None
        self.task_dir = node_dir(rt.state_dir, self.name)
        os.makedirs(self.task_dir, exist_ok=True)
        r = self.registry = CollectorRegistry()
        self.g_running = Gauge("scheduler_worker_tasks_running", "Tasks running on this worker", registry=r)
        self.g_registered = Gauge("scheduler_worker_registered", "1 while the heartbeat lease is alive",
                                  registry=r)
        self.c_finished = Counter("scheduler_worker_tasks_finished", "Tasks this worker ran to the end",
                                  ["outcome"], registry=r)
        self.c_reports = Counter("scheduler_worker_completion_reports", "Completion reports accepted by a master",
                                 ["stale"], registry=r)
        self.c_heartbeats = Counter("scheduler_worker_heartbeats", "Heartbeat attempts", ["result"], registry=r)

    # ------------------------------------------------------------------ heartbeat
    def _registration(self) -> str:
        return json.dumps({"name": self.name, "address": self.rt.node.address, "port": self.rt.node.port,
                           "slots": self.spec.slots, "registered_at": self.registered_at,
                           "last_heartbeat": time.time()})

    def register(self) -> bool:
        self.register_attempts += 1
        client = self.channels[self.register_attempts % len(self.channels)]  # alternate: one may be stalled
        try:
            lease = client.lease(self.spec.heartbeat_ttl)
            self.registered_at = time.time()
            client.put(WORKERS + self.name, self._registration(), lease=lease.id)
        except Exception:
            return False
        rejoined = self.lease is not None
        self.lease = lease
        self.registered = True
        self.g_registered.set(1)
        self.rt.events.emit("worker_registered", lease=lease.id, rejoined=rejoined)
        return True

    def _keepalive(self, index: int, lease_id: int, answers: "queue.Queue[Optional[bool]]") -> None:
        """One keep-alive on connection ``index``: True (renewed), False (the lease has expired) or None (failed).
        A renewal also rewrites the registration (its ``last_heartbeat``) on the same connection."""
        client = self.channels[index]
        try:
            responses = list(client.refresh_lease(lease_id))
            alive = bool(responses) and responses[0].TTL > 0
        except Exception:
            alive = None
        answers.put(alive)
        try:
            if alive:
                client.put(WORKERS + self.name, self._registration(), lease=lease_id)
        except Exception:
            pass
        finally:
            self.busy[index].clear()

    def heartbeat(self) -> None:
        if not self.registered:
            self.register()
            return
        lease_id = self.lease.id
        answers: "queue.Queue[Optional[bool]]" = queue.Queue()
        sent = 0
        for index, busy in enumerate(self.busy):
            if busy.is_set():
                continue  # still stuck in its previous call: leave it, the other connection carries the heartbeat
            busy.set()
            sent += 1
            threading.Thread(target=self._keepalive, args=(index, lease_id, answers), daemon=True).start()
        alive: Optional[bool] = None
        deadline = time.monotonic() + KEEPALIVE_WAIT
        for _ in range(sent):  # the first renewal is enough; an expiry answer is final
            try:
                alive = answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if alive is not None:
                break
        if alive is None:
            self.c_heartbeats.labels("error").inc()
            return
        self.c_heartbeats.labels("ok" if alive else "expired").inc()
        if not alive and self.lease is not None and self.lease.id == lease_id:
            self.registered = False
            self.g_registered.set(0)
            self.rt.events.emit("worker_lease_expired", lease=lease_id)
            self.register()

    def heartbeat_loop(self) -> None:
        interval = self.spec.keepalive_interval
        while not self.rt.stopping.is_set():
            started = time.monotonic()
            self.heartbeat()
            self.rt.stopping.wait(max(0.0, interval - (time.monotonic() - started)) if self.registered else 0.2)

    # ------------------------------------------------------------------ tasks
    def assign(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        if not isinstance(body, dict) or not {"task", "attempt"} <= set(body):
            return 400, {"error": "an assignment needs task and attempt"}
        key = (body["task"], int(body["attempt"]))
        with self.lock:
            if key in self.seen:
                return 200, {"duplicate": True}
            if len(self.running) >= self.spec.slots:
                return 409, {"error": f"{self.name} has no free slot ({self.spec.slots} in use)"}
            self.seen.add(key)
            self.running[key] = time.time()
            self.g_running.set(len(self.running))
        self.rt.events.emit("task_started", task=key[0], attempt=key[1])
        threading.Thread(target=self._run, args=(key, float(body.get("duration") or 0), body.get("command")),
                         daemon=True).start()
        return 200, {"duplicate": False}

    def _run(self, key: Tuple[str, int], duration: float, command: Optional[List[str]]) -> None:
        outcome = "ok"
        if command:
            try:
                env = dict(os.environ, CS_WITNESS_NODE=self.name, CS_WITNESS_ATTEMPT=str(key[1]),
                           CS_WITNESS_DIR=self.task_dir)
                proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                                      timeout=duration + max(duration, COMMAND_GRACE))
                outcome = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
            except (OSError, subprocess.TimeoutExpired) as e:
                outcome = type(e).__name__
        else:
            self.rt.stopping.wait(duration)
        if self.rt.stopping.is_set():
            return  # a worker that is shut down never reports a task it did not finish
        with self.lock:
            self.running.pop(key, None)
            self.g_running.set(len(self.running))
            self.outbox.append({"task": key[0], "attempt": key[1], "worker": self.name, "outcome": outcome})
        self.c_finished.labels("ok" if outcome == "ok" else "failed").inc()
        self.rt.events.emit("task_finished", task=key[0], attempt=key[1], outcome=outcome)

    def check(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        pairs = body.get("assignments", []) if isinstance(body, dict) else []
        with self.lock:
            unknown = [p for p in pairs if (p[0], int(p[1])) not in self.seen]
        return 200, {"unknown": unknown}

    def report_loop(self) -> None:
        masters = {n.name: n for n in self.rt.by_role("master")}
        while not self.rt.stopping.is_set():
            with self.lock:
                batch = list(self.outbox)
            for item in batch:
                answer = self._report(item, masters)
                if answer is not None:
                    with self.lock:
                        self.outbox.remove(item)
                    self.c_reports.labels(str(bool(answer.get("stale"))).lower()).inc()
                    self.rt.events.emit("completion_reported", task=item["task"], attempt=item["attempt"],
                                        stale=bool(answer.get("stale")), master=answer.get("leader"))
            self.rt.stopping.wait(0.05 if not self.outbox else 0.2)

    def _report(self, item: Dict[str, Any], masters: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        order = sorted(masters, key=lambda m: m != self.preferred_master)
        for name in order:
            node = masters[name]
            try:
                status, answer = request((node.address, node.port), "POST", "/api/complete", item, timeout=1.0)
            except ClientError:
                continue
            if status == 200:
                self.preferred_master = answer.get("leader") or name
                return answer
            if status == 404:  # the cluster never heard of this task: nothing to retry
                return {"stale": True, "leader": None}
        return None

    def health(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        with self.lock:
            running = sorted(f"{t}#{a}" for t, a in self.running)
            outbox = len(self.outbox)
        return health_ok({"name": self.name, "role": "worker", "registered": self.registered,
                          "lease": self.lease.id if self.lease else None, "running": running, "outbox": outbox})

    def routes(self) -> Dict[Tuple[str, str], Any]:
        return {("GET", "/health"): self.health, ("POST", "/api/assign"): self.assign,
                ("POST", "/api/check"): self.check,
                ("GET", "/metrics"): lambda q, b: metrics_response(self.registry)}


def main() -> None:
    args = main_args("a worker of the chaosscheduler embedded cluster")
    rt = NodeRuntime(args.state_dir, args.name)
    rt.install_signal_handlers()
    wait_port_free(rt.node.address, rt.node.port)
    worker = Worker(rt)
    rt.serve(worker.routes())
    rt.events.emit("node_started", role="worker")
    threading.Thread(target=worker.report_loop, daemon=True).start()
    try:
        worker.heartbeat_loop()
    finally:
        if worker.lease is not None and worker.registered:
            try:
                worker.lease.revoke()
            except Exception:
                pass
        rt.shutdown()


if __name__ == "__main__":
    main()
