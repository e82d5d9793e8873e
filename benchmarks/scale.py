#!/usr/bin/env python3
"""Scale of the embedded cluster: the largest worker count that still starts healthy in under 10 s on this
machine, and leader failover / worker failure detection at each size.

    python benchmarks/scale.py                      # 4, 8, ... 128 workers until one misses (about 4 minutes)
    python benchmarks/scale.py --quick              # 4 workers, one fault of each kind
    python benchmarks/scale.py --sizes 24,40 --runs 5

For each size (3 masters, 1 etcd member, load generator at the default 2 jobs/s) the benchmark starts a fresh
cluster and measures

* *time to healthy*: ``up()`` until it returns (network, every process started, one leader, every worker
  registered and taken on by the leader);
* the cluster's memory (RSS of its processes) and its CPU use while idle (over 3 s, in cores);
* ``--runs`` leader kills: ``kill_master`` then ``leader_election_time`` (probe) and the ground truth
  (``leader_acquired`` in the event log);
* ``--runs`` worker losses: ``isolate_worker`` then ``worker_failure_detection_time`` and its ground truth
  (``worker_declared_dead``).

The search stops at the first size that is not healthy within 10 s (it is still measured, so the table shows how
far off it is), or when the machine's available memory would not hold the next size.

Target (issue 6): report the largest size healthy in < 10 s on 2 cores, with its failover and detection times.
"""

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

import _bench
from _bench import Load, Session, median, ms, secs, table

from chaosscheduler import actions, probes, procs, rollbacks  # noqa: E402
from chaosscheduler.timing import wait_until  # noqa: E402

TARGET = 10.0
MB_PER_NODE = 80  # a Python node process here holds ~50 MB resident; keep a margin
TICKS = os.sysconf("SC_CLK_TCK")


def available_mb() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def cluster_pids(tb: Any) -> List[int]:
    return [p["pid"] for p in tb.record.get("processes", {}).values() if procs.is_running(p)]


def rss_mb(pids: List[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total / 2 ** 20


def cpu_seconds(pids: List[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            continue
    return total / TICKS


def first_event(tb: Any, kind: str, after: float, accept: Any) -> Dict[str, Any]:
    def find() -> Optional[Dict[str, Any]]:
        found = [e for e in tb.events(kind) if e["ts"] >= after and accept(e)]
        return min(found, key=lambda e: e["ts"]) if found else None

    return wait_until(find, 30, 0.02, f"a {kind} event")


def faults(bench: Session, tb: Any, runs: int) -> Dict[str, List[float]]:
    cfg = bench.cfg(tb)
    out: Dict[str, List[float]] = {"failover": [], "failover_error": [], "detection": [], "detection_error": []}
    for _ in range(runs):
        tb.wait_healthy(60)
        record = actions.kill_master(duration=120, configuration=cfg)
        killed, t0 = record["targets"][0], record["started_at"]
        measured = probes.leader_election_time(timeout=60, configuration=cfg)["value"]
        truth = first_event(tb, "leader_acquired", t0, lambda e: e["node"] != killed)["ts"] - t0
        out["failover"].append(truth)
        out["failover_error"].append(measured - truth)
        rollbacks.restart_master(configuration=cfg)
        tb.wait_healthy(60)
        record = actions.isolate_worker(duration=120, configuration=cfg)
        worker, t0 = record["targets"][0], record["started_at"]
        measured = probes.worker_failure_detection_time(timeout=60, configuration=cfg)["value"]
        truth = first_event(tb, "worker_declared_dead", t0, lambda e: e.get("worker") == worker)["ts"] - t0
        out["detection"].append(truth)
        out["detection_error"].append(measured - truth)
        rollbacks.rejoin_worker(timeout=60, configuration=cfg)
    return out


def one_size(bench: Session, workers: int, runs: int, timeout: float, window: float) -> Dict[str, Any]:
    started = time.monotonic()
    try:
        tb = bench.cluster(workers=workers, timeout=timeout)
    except Exception as e:
        return {"workers": workers, "healthy": None, "error": str(e).splitlines()[0]}
    result: Dict[str, Any] = {"workers": workers, "healthy": time.monotonic() - started}
    try:
        pids = cluster_pids(tb)
        result["processes"] = len(pids)
        result["rss_mb"] = rss_mb(pids)
        before, at = cpu_seconds(pids), time.monotonic()
        time.sleep(window)  # a deliberate measurement window, not a synchronisation
        result["idle_cores"] = (cpu_seconds(pids) - before) / (time.monotonic() - at)
        result.update(faults(bench, tb, runs))
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        bench.remove_cluster(tb)
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4,8,16,32,48,64,96,128", help="worker counts, in increasing order")
    parser.add_argument("--runs", type=int, default=3, help="leader kills and worker losses per size (default 3)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds allowed for a start (default 90)")
    parser.add_argument("--quick", action="store_true", help="4 workers only, 1 fault of each kind")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [4] if args.quick else [int(s) for s in args.sizes.split(",")]
    runs = 1 if args.quick else args.runs
    if runs < 1 or sizes != sorted(sizes) or min(sizes) < 1 or max(sizes) > 1000:
        parser.error("--runs >= 1; --sizes increasing, 1-1000")
    problem = _bench.requirements()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    _bench.interrupt_on_sigterm()
    results: List[Dict[str, Any]] = []
    stop_reason = "every size tried"
    try:
        with Session("sc") as bench:
            for workers in sizes:
                need = (workers + 5) * MB_PER_NODE
                if available_mb() < need + 2048:
                    stop_reason = f"{workers} workers would need ~{need:.0f} MB, {available_mb():.0f} MB available"
                    break
                load = Load()
                result = one_size(bench, workers, runs, args.timeout, 1.0 if args.quick else 3.0)
                result["load"] = load.summary()
                result["load_figures"] = load.figures()
                results.append(result)
                healthy = result["healthy"]
                print(f"  {workers:>4} workers: healthy in {secs(healthy)}"
                      + (f", {result['rss_mb']:.0f} MB, idle {result['idle_cores']:.2f} cores" if "rss_mb" in result
                         else "")
                      + (f", failover {secs(median(result['failover']))}, detection "
                         f"{secs(median(result['detection']))}" if result.get("failover") else "")
                      + (f"; error: {result['error']}" if result.get("error") else "")
                      + f"  [{result['load']}]", flush=True)
                if healthy is None or healthy >= TARGET:
                    stop_reason = f"{workers} workers did not start healthy within {TARGET:.0f} s"
                    break
    except KeyboardInterrupt:
        print("interrupted: everything started was removed", file=sys.stderr)
        return 130
    rows = []
    for r in results:
        def fig(key: str, fmt: Any = secs) -> str:
            return fmt(median(r[key])) + f" (max {fmt(max(r[key]))})" if r.get(key) else "-"

        def err(key: str) -> str:
            return ms(max(abs(e) for e in r[key])) if r.get(key) else "-"

        rows.append([r["workers"], r.get("processes", "-"), secs(r["healthy"]) if r["healthy"] else "failed",
                     f"{r['rss_mb']:.0f} MB" if "rss_mb" in r else "-",
                     f"{r['idle_cores']:.2f}" if "idle_cores" in r else "-", fig("failover"), err("failover_error"),
                     fig("detection"), err("detection_error"),
                     f"{r['load_figures']['load1_median']:.1f}"])
    good = [r for r in results if r["healthy"] is not None and r["healthy"] < TARGET and not r.get("error")]
    print()
    print(f"Embedded cluster by worker count (3 masters, 1 etcd member, load 2 jobs/s; {runs} fault(s) of each kind "
          f"per size; failover and detection are ground truth, probe error = max |probe - truth|)")
    print(table(["workers", "processes", "time to healthy", "memory", "idle CPU (cores)", "failover",
                 "probe error", "detection", "probe error", "load 1 min"], rows))
    print(f"largest size healthy in < {TARGET:.0f} s: {good[-1]['workers'] if good else 'none'} workers "
          f"(search stopped: {stop_reason})")
    for r in results:
        print(f"  {r['workers']} workers: {r['load']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"sizes": results, "stop": stop_reason}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
