#!/usr/bin/env python3
"""Probe overhead: requests per second our probes and the timeline recorder send to the platform while they poll,
the etcd reads those requests cause, and the CPU they cost the client and the platform.

    python benchmarks/overhead.py             # 3 runs per probe, poll intervals 10 ms (default) and 100 ms
    python benchmarks/overhead.py --quick     # 1 run, 10 ms only
    python benchmarks/overhead.py --intervals 0.01,0.05,0.1 --runs 5

One embedded cluster (defaults). Every request to the cluster's HTTP API is counted by wrapping the testbed client
(``chaosscheduler.testbed.cluster.request``, which every platform call goes through; the recorder's client is
wrapped separately). For each probe call the benchmark counts the requests from the call to its return, by path:

* ``leader_election_time`` after ``kill_master`` (polls ``GET /api/leader``);
* ``worker_failure_detection_time`` after ``isolate_worker`` (polls ``GET /api/workers?running=0``);
* ``rescheduling_success_rate`` right after it (polls ``GET /api/tasks`` until the lost tasks completed elsewhere).

*etcd reads* are what the masters do per request: ``/api/leader`` 1 range read, ``/api/workers?running=0`` 2
(workers, statuses), ``/api/workers`` 3 (and every task), ``/api/tasks`` 1 (every task); ``/api/summary`` and
``/health`` none. *Client CPU* is this
process's CPU time over the window; *platform CPU* is the CPU time of every process of the cluster over the window
(in cores), next to the same cluster idle (the load generator running, nothing polling) before the runs.

The timeline recorder (``chaosscheduler.timeline``, 0.2 s, the control's default) samples the cluster through the
whole benchmark; its rate is given for a quiet stretch and over the fault runs.
"""

import argparse
import collections
import json
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import _bench
from _bench import Load, Session, median, secs, table

from chaosscheduler import actions, probes, procs, rollbacks, timeline  # noqa: E402
from chaosscheduler.testbed import cluster as cluster_module  # noqa: E402
from chaosscheduler.timing import wait_until  # noqa: E402

ETCD_READS = {"/api/leader": 1, "/api/workers": 3, "/api/workers?running=0": 2, "/api/tasks": 1}
TICKS = os.sysconf("SC_CLK_TCK")


class Counted:
    """Counts the requests made through a wrapped ``request`` function, by path (thread-safe)."""

    def __init__(self) -> None:
        self.by_path: Dict[str, int] = collections.Counter()
        self.lock = threading.Lock()

    def wrap(self, request: Callable[..., Any]) -> Callable[..., Any]:
        def counted(target: Any, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            with self.lock:
                # the path without its query, but ?running=0 kept: it spares the masters a read of every task
                self.by_path[path if path.endswith("?running=0") else path.split("?", 1)[0]] += 1
            return request(target, method, path, *args, **kwargs)

        return counted

    def snapshot(self) -> Dict[str, int]:
        with self.lock:
            return dict(self.by_path)


def delta(after: Dict[str, int], before: Dict[str, int]) -> Dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def platform_cpu(tb: Any) -> float:
    total = 0
    for record in tb.record.get("processes", {}).values():
        if not procs.is_running(record):
            continue
        try:
            with open(f"/proc/{record['pid']}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / TICKS


def measure(counter: Counted, tb: Any, call: Callable[[], Any]) -> Dict[str, Any]:
    before, cpu, platform, started = counter.snapshot(), time.process_time(), platform_cpu(tb), time.monotonic()
    call()
    seconds = time.monotonic() - started
    paths = delta(counter.snapshot(), before)
    requests = sum(paths.values())
    return {"seconds": seconds, "requests": requests, "paths": paths, "rate": requests / seconds,
            "etcd_rate": sum(ETCD_READS.get(p, 0) * n for p, n in paths.items()) / seconds,
            "client_cores": (time.process_time() - cpu) / seconds,
            "platform_cores": (platform_cpu(tb) - platform) / seconds}


def run_probes(bench: Session, tb: Any, counter: Counted, interval: float) -> Dict[str, Dict[str, Any]]:
    cfg = bench.cfg(tb, poll_interval=interval)
    out = {}
    tb.wait_healthy(30)
    record = actions.kill_master(duration=60, configuration=cfg)
    out["leader_election_time"] = measure(counter, tb,
                                          lambda: probes.leader_election_time(timeout=20, configuration=cfg))
    killed = record["targets"][0]
    wait_until(lambda: tb.leader() not in (None, killed), 30, 0.02, "a new leader")
    rollbacks.restart_master(configuration=cfg)
    tb.wait_healthy(30)
    actions.isolate_worker(duration=60, configuration=cfg)
    out["worker_failure_detection_time"] = measure(
        counter, tb, lambda: probes.worker_failure_detection_time(timeout=30, configuration=cfg))
    out["rescheduling_success_rate"] = measure(
        counter, tb, lambda: probes.rescheduling_success_rate(deadline=30, configuration=cfg))
    rollbacks.rejoin_worker(timeout=30, configuration=cfg)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per poll interval (default 3)")
    parser.add_argument("--intervals", default="0.01,0.1", help="chaosscheduler_poll_interval values (default "
                                                                "0.01,0.1)")
    parser.add_argument("--quick", action="store_true", help="1 run at the default 10 ms")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    intervals = [0.01] if args.quick else [float(i) for i in args.intervals.split(",")]
    if runs < 1 or min(intervals) <= 0:
        parser.error("--runs >= 1, intervals > 0")
    problem = _bench.requirements()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    _bench.interrupt_on_sigterm()
    counter, recorder_counter = Counted(), Counted()
    original_cluster, original_timeline = cluster_module.request, timeline.request
    cluster_module.request = counter.wrap(original_cluster)
    timeline.request = recorder_counter.wrap(original_timeline)
    load = Load()
    results: Dict[float, List[Dict[str, Dict[str, Any]]]] = {}
    try:
        with Session("ov") as bench:
            tb = bench.cluster()
            tb.wait_healthy(30)
            recorder = timeline.Recorder(timeline.TestbedSource(tb.state_dir), interval=0.2).start()
            try:
                quiet_window = 2.0 if args.quick else 5.0
                idle = measure(counter, tb, lambda: time.sleep(quiet_window))  # a deliberate quiet window
                quiet = recorder_counter.snapshot().get("/api/summary", 0)
                quiet_seconds = time.time() - recorder.started_at
                faults_started = time.monotonic()
                for interval in intervals:
                    for i in range(runs):
                        found = run_probes(bench, tb, counter, interval)
                        results.setdefault(interval, []).append(found)
                        load.sample()
                        print(f"  poll {interval * 1000:g} ms, run {i + 1}: " + "; ".join(
                            f"{name} {m['rate']:.0f} req/s over {m['seconds']:.2f} s" for name, m in found.items()),
                            flush=True)
                busy_seconds = time.monotonic() - faults_started
            finally:
                line = recorder.stop()
            busy = recorder_counter.snapshot()
    except KeyboardInterrupt:
        print("interrupted: everything started was removed", file=sys.stderr)
        return 130
    finally:
        cluster_module.request, timeline.request = original_cluster, original_timeline
    rows = []
    for interval, found in results.items():
        for name in found[0]:
            ms_ = [f[name] for f in found]
            paths = collections.Counter()
            for m in ms_:
                paths.update(m["paths"])
            rows.append([f"{name} (poll {interval * 1000:g} ms)", len(ms_), secs(median([m["seconds"] for m in ms_])),
                         f"{median([m['rate'] for m in ms_]):.0f}", f"{median([m['etcd_rate'] for m in ms_]):.0f}",
                         ", ".join(f"{p} {n}" for p, n in paths.most_common()),
                         f"{median([m['client_cores'] for m in ms_]):.2f}",
                         f"{median([m['platform_cores'] for m in ms_]):.2f}"])
    rows.append(["(cluster idle, nothing polling)", 1, secs(idle["seconds"]), "0", "0", "", "-",
                 f"{idle['platform_cores']:.2f}"])
    summary_quiet = quiet / quiet_seconds if quiet_seconds else 0.0
    total = sum(busy.values())
    rows.append(["timeline recorder, 0.2 s: quiet stretch", 1, secs(quiet_seconds), f"{summary_quiet:.1f}", "0",
                 f"/api/summary {quiet}", "-", "-"])
    rows.append(["timeline recorder, 0.2 s: whole run incl. faults", 1, secs(line["duration"]),
                 f"{total / line['duration']:.1f}", "0", ", ".join(f"{p} {n}" for p, n in busy.items()), "-", "-"])
    print()
    print("Requests our probes send to the platform while they poll (medians over the runs)")
    print(table(["who", "n", "window", "req/s", "etcd reads/s", "requests by path (all runs)", "client CPU (cores)",
                 "platform CPU (cores)"], rows))
    print(f"(the recorder's own count: {line['requests']} requests, {line['requests_per_second']} req/s over "
          f"{line['duration']:.0f} s; fault runs took {busy_seconds:.0f} s)")
    print(load.summary())
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"probes": {str(k): v for k, v in results.items()}, "idle": idle,
                       "recorder": {k: line[k] for k in ("requests", "requests_per_second", "duration")},
                       "load": load.figures()}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
