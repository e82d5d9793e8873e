"""The load generator: submits one job of one task every ``1 / load_rate`` seconds through the client helper
(which retries the other masters for up to 5 s) and records every submission's outcome, so job-submission success
can be measured during faults."""

import threading
import time
from typing import Any, Dict, List, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram

from .client import ClientError, request, submit_job
from .node import NodeRuntime, health_ok, main_args, metrics_response, wait_port_free

SUBMIT_DEADLINE = 5.0
MAX_IN_FLIGHT = 32


class LoadGenerator:
    def __init__(self, rt: NodeRuntime):
        self.rt = rt
        self.masters = [(n.name, (n.address, n.port)) for n in rt.by_role("master")]
        self.lock = threading.Lock()
        self.records: List[Dict[str, Any]] = []
        self.leader = None
        self.in_flight = threading.Semaphore(MAX_IN_FLIGHT)
        r = self.registry = CollectorRegistry()
        self.c_submissions = Counter("scheduler_job_submissions", "Jobs the load generator submitted",
                                     ["outcome"], registry=r)
        self.h_latency = Histogram("scheduler_job_submission_latency_seconds", "Submission latency incl. retries",
                                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r)

    def submit_one(self, seq: int) -> None:
        started_wall, started = time.time(), time.monotonic()
        try:
            result = submit_job(self.masters, {"tasks": 1, "duration": self.rt.spec.task_duration},
                                deadline=SUBMIT_DEADLINE, preferred=self.leader)
        finally:
            self.in_flight.release()
        latency = time.monotonic() - started
        outcome = "accepted" if result["accepted"] else "failed"
        if result.get("leader"):
            self.leader = result["leader"]
        record = {"seq": seq, "at": started_wall, "latency": latency, "outcome": outcome, "tries": result["tries"],
                  "tasks": result.get("response", {}).get("tasks", []), "errors": result["errors"][-2:]}
        with self.lock:
            self.records.append(record)
        self.c_submissions.labels(outcome).inc()
        self.h_latency.observe(latency)
        self.rt.events.emit("job_submission", seq=seq, outcome=outcome, latency=latency,
                            tasks=record["tasks"], submitted_at=started_wall)

    def wait_for_leader(self) -> None:
        """Submit nothing before the cluster has a leader: start-up is not a fault."""
        while not self.rt.stopping.is_set():
            for name, target in self.masters:
                try:
                    status, body = request(target, "GET", "/api/leader", timeout=0.5)
                except ClientError:
                    continue
                if status == 200 and body.get("leader"):
                    self.leader = body["leader"]
                    return
            self.rt.stopping.wait(0.05)

    def run(self) -> None:
        self.wait_for_leader()
        period = 1.0 / self.rt.spec.load_rate
        next_at = time.monotonic()
        seq = 0
        while not self.rt.stopping.is_set():
            if self.in_flight.acquire(timeout=period):
                seq += 1
                threading.Thread(target=self.submit_one, args=(seq,), daemon=True).start()
            next_at += period
            self.rt.stopping.wait(max(0.0, next_at - time.monotonic()))

    def submissions(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        since = float(query.get("since", 0) or 0)
        with self.lock:
            return 200, {"submissions": [r for r in self.records if r["at"] >= since]}

    def routes(self) -> Dict[Tuple[str, str], Any]:
        return {("GET", "/health"): lambda q, b: health_ok({"name": "load", "role": "load",
                                                             "submitted": len(self.records)}),
                ("GET", "/api/submissions"): self.submissions,
                ("GET", "/metrics"): lambda q, b: metrics_response(self.registry)}


def main() -> None:
    args = main_args("the load generator of the chaosscheduler embedded cluster")
    rt = NodeRuntime(args.state_dir, args.name)
    rt.install_signal_handlers()
    wait_port_free(rt.node.address, rt.node.port)
    load = LoadGenerator(rt)
    rt.serve(load.routes())
    rt.events.emit("node_started", role="load")
    try:
        load.run()
    finally:
        rt.shutdown()


if __name__ == "__main__":
    main()
