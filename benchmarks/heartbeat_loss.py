#!/usr/bin/env python3
"""False "dead" declarations of live workers under packet loss: the figure behind the embedded cluster's default
heartbeat (docs/testbed.md, "Why the default heartbeat").

    python benchmarks/heartbeat_loss.py                            # 5 s / 1 s, 12 workers, 30 % loss, 300 s
    python benchmarks/heartbeat_loss.py --settings 3/1,5/1 --seconds 120
    python benchmarks/heartbeat_loss.py --quick                    # 4 workers, 10 s: the script works

For each heartbeat setting (lease TTL / keep-alive interval, seconds) it starts a fresh cluster (3 masters,
1 etcd member, the load generator at 2 jobs/s), applies ``partition_workers(workers="all", peers="all", mode="loss")``
(the network-partition experiment's second fault: every worker, every peer, both directions) for ``--seconds``, then
counts ``worker_declared_dead`` in the event log during the loss window plus one lease TTL after it (a lease the
loss starved expires up to a TTL later). Every worker was alive the whole time, so every declaration is false.
"""

import argparse
import json
import sys
import time
from typing import Any, Dict, List

import _bench
from _bench import Load, Session, table

from chaosscheduler import actions, rollbacks  # noqa: E402
from chaosscheduler.timing import wait_until  # noqa: E402


def measure(bench: Session, ttl: int, interval: float, workers: int, seconds: float, loss: float) -> Dict[str, Any]:
    tb = bench.cluster(workers=workers, heartbeat_ttl=ttl, heartbeat_interval=interval)
    try:
        cfg = bench.cfg(tb)
        record = actions.partition_workers(workers="all", peers="all", mode="loss", loss=loss, direction="both",
                                           duration=seconds + 60, configuration=cfg)
        started = record["started_at"]
        time.sleep(seconds)  # the measured window itself, not a stand-in for synchronisation
        rollbacks.heal_partition(configuration=cfg)
        ended = time.time()
        time.sleep(ttl + 1)  # a lease starved just before the heal expires up to one TTL later
        dead = [e for e in tb.events("worker_declared_dead") if started <= e["ts"] <= ended + ttl + 1]
        wait_until(lambda: tb.healthy() is None, 60, 0.1, "the cluster healthy again after the loss")
        return {"ttl": ttl, "interval": interval, "workers": workers, "loss": loss,
                "worker_seconds": round(workers * (ended - started)), "false_deaths": len(dead),
                "workers_hit": len({e["worker"] for e in dead}),
                "gaps": sorted(round(e["ts"] - e["last_heartbeat"], 2) for e in dead if e.get("last_heartbeat"))}
    finally:
        bench.remove_cluster(tb)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="5/1", help="TTL/interval pairs, comma-separated (default 5/1)")
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=300.0, help="loss window per setting (default 300)")
    parser.add_argument("--loss", type=float, default=0.3)
    parser.add_argument("--quick", action="store_true", help="4 workers, 10 s, the default setting")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.seconds, args.settings = 4, 10.0, "5/1"
    problem = _bench.requirements()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    settings = [(int(a), float(b)) for a, b in (s.split("/") for s in args.settings.split(","))]
    _bench.interrupt_on_sigterm()
    load = Load()
    results: List[Dict[str, Any]] = []
    with Session("heartbeat") as bench:
        for ttl, interval in settings:
            results.append(measure(bench, ttl, interval, args.workers, args.seconds, args.loss))
            load.sample()
    print(table(["lease TTL / interval", "workers", "worker-seconds under loss", "false deaths", "workers hit",
                 "last heartbeat to declaration"],
                [[f"{r['ttl']} s / {r['interval']:g} s", r["workers"], r["worker_seconds"], r["false_deaths"],
                  r["workers_hit"], ", ".join(f"{g:.2f} s" for g in r["gaps"]) or "-"] for r in results]))
    print(f"{int(args.loss * 100)} % loss, both directions, every worker to every peer; {load.summary()}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"results": results, "load": load.figures()}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
