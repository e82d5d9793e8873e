#!/usr/bin/env python3
"""Time the embedded cluster: how long until it is healthy, and how long a leader failover takes.

    python benchmarks/testbed.py            # 5 runs, default settings (3 masters, 4 workers, 1 etcd member)
    python benchmarks/testbed.py --quick    # 2 runs
    python benchmarks/testbed.py --runs 10 --workers 8

Each run starts a fresh cluster and measures

* time to healthy: from calling ``up()`` until it returns (network created, every process started, one leader,
  every worker registered and taken on by the leader);
* leader failover, observed: from ``kill -9`` of the leader's process until a master names another leader
  (``GET /api/leader`` polled every 10 ms over the operator's Unix sockets);
* leader failover, ground truth: from the kill until the new leader's ``leader_acquired`` event in the cluster's
  event log (both on CLOCK_MONOTONIC, which every process on this machine shares).

Targets (issue 2): healthy < 5 s, failover < 3 s with the default election TTL.

Everything runs under a temporary CHAOSSCHEDULER_HOME; every cluster is removed by its own record after its run,
also when a run fails or the script is interrupted (Ctrl-C or SIGTERM).
"""

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chaosscheduler.testbed import ClusterSpec, down, up  # noqa: E402
from chaosscheduler.timing import wait_until  # noqa: E402

POLL = 0.01
TARGETS = {"healthy": 5.0, "failover_observed": 3.0, "failover_event": 3.0}
LABELS = {"healthy": "time to healthy (up() returns)",
          "failover_observed": "leader failover, observed (poll 10 ms)",
          "failover_event": "leader failover, event log (leader_acquired)"}


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def one_run(spec: ClusterSpec, timeout: float) -> Dict[str, float]:
    started = time.monotonic()
    tb = up(spec, timeout=timeout)
    try:
        result = {"healthy": time.monotonic() - started}
        old = tb.leader()
        if old is None:
            raise RuntimeError("cluster reported healthy without a leader")
        killed_mono = time.monotonic()
        tb.signal_node(old, signal.SIGKILL)
        deadline = killed_mono + timeout
        new: Optional[str] = None
        while time.monotonic() < deadline:
            new = tb.leader(timeout=0.5)
            if new not in (None, old):
                break
            time.sleep(POLL)
        else:
            raise RuntimeError(f"no new leader within {timeout} s after killing {old}")
        result["failover_observed"] = time.monotonic() - killed_mono
        # the leader key is visible a moment before the new leader has loaded its state and logged the event
        acquired = wait_until(
            lambda: [e for e in tb.events("leader_acquired") if e["mono"] > killed_mono and e["node"] == new],
            5.0, POLL, f"leader_acquired of {new} in the event log")
        result["failover_event"] = acquired[0]["mono"] - killed_mono
        result["old"], result["new"] = old, new  # type: ignore[assignment]
        return result
    finally:
        down(tb.state_dir)


def summarise(runs: List[Dict[str, float]]) -> str:
    lines = [f"{'measure':<46} {'median':>8} {'max':>8} {'min':>8}   target",
             "-" * 84]
    for key, label in LABELS.items():
        values = [r[key] for r in runs]
        med, top = statistics.median(values), max(values)
        verdict = "ok" if top < TARGETS[key] else ("median ok, max over" if med < TARGETS[key] else "MISSED")
        lines.append(f"{label:<46} {med:>7.2f}s {top:>7.2f}s {min(values):>7.2f}s   < {TARGETS[key]:.0f} s  {verdict}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="clusters to start (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 runs, for a smoke check")
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--etcd-members", type=int, default=1)
    parser.add_argument("--network", choices=["auto", "netns", "loopback"], default="auto")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds allowed for each phase")
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs
    if runs < 1:
        parser.error("--runs must be at least 1")

    signal.signal(signal.SIGTERM, _interrupt)
    # short: Unix socket paths are limited; CHAOSSCHEDULER_BENCH_TMP lets a test find what was left behind
    home = tempfile.mkdtemp(prefix="csb", dir=os.environ.get("CHAOSSCHEDULER_BENCH_TMP") or "/tmp")
    os.environ["CHAOSSCHEDULER_HOME"] = home
    prefix = "b" + uuid.uuid4().hex[:5]
    results: List[Dict[str, float]] = []
    state_dirs: List[str] = []
    defaults = ClusterSpec()
    print(f"embedded cluster: {args.masters} masters, {args.workers} workers, {args.etcd_members} etcd member(s), "
          f"election_ttl {defaults.election_ttl} s, heartbeat_ttl {defaults.heartbeat_ttl} s, "
          f"load {defaults.load_rate}/s; {runs} run(s)")
    try:
        for i in range(1, runs + 1):
            spec = ClusterSpec(name=f"{prefix}{i}", masters=args.masters, workers=args.workers,
                               etcd_members=args.etcd_members, network=args.network, home=home)
            state_dirs.append(spec.state_dir)
            try:
                result = one_run(spec, args.timeout)
            finally:
                down(spec.state_dir)  # idempotent: also removes what a failed up() or run left
            results.append(result)
            print(f"  run {i}: healthy {result['healthy']:.2f} s, failover {result['old']} -> {result['new']}: "
                  f"observed {result['failover_observed']:.2f} s, event log {result['failover_event']:.2f} s",
                  flush=True)
    except KeyboardInterrupt:
        print("interrupted: removing the clusters started so far", file=sys.stderr)
        return 130
    finally:
        for state_dir in state_dirs:
            down(state_dir)
        shutil.rmtree(home, ignore_errors=True)
    print()
    print(summarise(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
