#!/usr/bin/env python3
"""Which etcd client the embedded cluster's nodes should use: etcd's HTTP/JSON gateway (our
``testbed/etcd_http.py``, standard library only), or gRPC through ``etcd-sdk-python`` (grpcio + protobuf). The
figures behind docs/testbed.md, "Which etcd client".

    python benchmarks/etcd_client.py                       # 2 rounds: cost 60 s, 3 failovers, 30 % loss 180 s
    python benchmarks/etcd_client.py --rounds 2 --workers 12 --loss-seconds 300
    python benchmarks/etcd_client.py --rounds 4 --failovers 4 --cost-seconds 30 --loss-seconds 0   # failovers
    python benchmarks/etcd_client.py --rounds 2 --failovers 3 --cost-seconds 5 --loss-seconds 0 --table 5000
    python benchmarks/etcd_client.py --quick               # 1 round, short phases: the script works

Each round runs both clients one after the other (the order alternates between rounds, so the load of this shared
machine weighs on both alike) on fresh clusters (3 masters, 1 etcd member, load generator at 2 jobs/s, heartbeat
5 s / 1 s on two connections), selected by ``CHAOSSCHEDULER_ETCD_CLIENT``:

* **cost**: CPU seconds (user + system, from /proc) the masters and the workers use over ``--cost-seconds`` of
  steady work, per node and as a share of one core; resident memory (VmRSS) per node at the end;
* **failover**: ``kill -9`` of the leader, ``--failovers`` times: seconds until the new leader's ``leader_acquired``
  event (CLOCK_MONOTONIC, shared by every process here), and of them the reload (from winning the leader key to
  acting as leader: the task table read back); ``--table N`` puts N completed task records in etcd first;
* **heartbeat under loss**: ``partition_workers(workers="all", peers="all", mode="loss", loss=0.3)`` for
  ``--loss-seconds`` (the network-partition experiment's loss step), then the false "dead" declarations of live
  workers in the event log (as ``benchmarks/heartbeat_loss.py``);
* **import**: seconds to import what the client needs beyond our own package in a fresh interpreter (median of
  5), and the size on disk of the distributions it needs beyond ours;
* **per call**: CPU and wall time of one ``get_prefix`` of the workers' keys, from a master's namespace to the
  cluster's etcd (median of 3 x 300 calls), and of one ``get_prefix`` of ``--big-range`` task-sized keys (~260
  bytes; a master reloads every task when it wins; median of 3).

gRPC needs ``pip install 'chaosscheduler[etcd-grpc]'`` (no longer installed with chaosscheduler); without it only
the HTTP client is measured, and the script says so.
"""

import argparse
import importlib.metadata
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

import _bench
from _bench import Load, Session, table
from heartbeat_loss import measure as loss_measure

from chaosscheduler.timing import wait_until  # noqa: E402

# module: what the client needs imported beyond our own package (the gateway client needs only the standard library)
CLIENTS = {"http": {"module": "http.client", "distributions": []},
           "grpc": {"module": "pyetcd", "distributions": ["etcd-sdk-python", "grpcio", "protobuf"]}}


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


FILL = """
import json, sys, time
from chaosscheduler.testbed.etcd_http import EtcdHTTPClient
client, now = EtcdHTTPClient([(sys.argv[1], int(sys.argv[2]))], timeout=10), time.time()
for i in range(int(sys.argv[3])):
    task = {"id": f"fill{i:06d}", "job": "fill", "state": "completed", "worker": "worker-1", "attempt": 1,
            "submitted_at": now - 3600, "duration": 4.0, "completions": 1, "completed_by": "worker-1",
            "completed_attempt": 1, "stale_completions": [],
            "history": [{"event": "submitted", "at": now - 3600},
                        {"event": "assigned", "at": now - 3600, "worker": "worker-1", "attempt": 1},
                        {"event": "completed", "at": now - 3596, "worker": "worker-1", "attempt": 1}]}
    client.put(f"/cs/tasks/fill{i:06d}", json.dumps(task))
"""


def fill_tasks(tb: Any, count: int) -> None:
    """``count`` completed task records in the cluster's etcd: the table a new leader reloads when it wins."""
    etcd = tb.nodes_of("etcd")[0]
    prefix = ["ip", "netns", "exec", etcd.netns] if etcd.netns else []
    subprocess.run(prefix + [sys.executable, "-c", FILL, etcd.address, str(etcd.port), str(count)], check=True,
                   env=dict(os.environ, PYTHONPATH=_bench.ROOT), timeout=600)


def cost_and_failover(bench: Session, workers: int, seconds: float, failovers: int, big: int,
                      table: int = 0) -> Dict[str, Any]:
    tb = bench.cluster(workers=workers)
    try:
        if table:
            fill_tasks(tb, table)
        time.sleep(3)  # past the start-up work (imports, first registrations), so the window sees steady work
        roles = {name: node.role for name, node in tb.nodes.items() if node.role in ("master", "worker")}
        pids = {name: tb.process(name)["pid"] for name in roles}
        before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        time.sleep(seconds)  # the measured window itself
        elapsed = time.monotonic() - started
        cpu = {name: _cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        rss = {name: _rss_mb(pid) for name, pid in pids.items()}
        result: Dict[str, Any] = {"cost_seconds": round(elapsed, 1)}
        for role in ("master", "worker"):
            names = [n for n, r in roles.items() if r == role]
            result[f"{role}_cpu_share"] = round(statistics.mean(cpu[n] / elapsed for n in names), 4)
            result[f"{role}_rss_mb"] = round(statistics.median(rss[n] for n in names), 1)
        takeovers, reloads = [], []
        for _ in range(failovers):
            tb.wait_healthy(60)
            old = tb.leader()
            killed, killed_wall = time.monotonic(), time.time()
            tb.signal_node(old, signal.SIGKILL)
            acquired = wait_until(lambda: [e for e in tb.events("leader_acquired") if e["mono"] > killed], 30, 0.01,
                                  "a new leader in the event log")
            takeovers.append(round(acquired[0]["mono"] - killed, 3))
            # from winning the key (its "since") to acting as leader: the reload of the task table
            reloads.append(round(acquired[0]["mono"] - killed - (acquired[0]["since"] - killed_wall), 3))
            tb.restart_node(old)
        result["failovers"], result["reloads"] = takeovers, reloads
        result["per_call"] = per_call(tb, os.environ["CHAOSSCHEDULER_ETCD_CLIENT"], big)
        return result
    finally:
        bench.remove_cluster(tb)


PER_CALL = """
import json, resource, statistics, sys, time
kind, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "http":
    from chaosscheduler.testbed.etcd_http import EtcdHTTPClient
    client = EtcdHTTPClient([(address, port)], timeout=5)
else:
    import pyetcd
    client = pyetcd.MultiEndpointEtcd3Client(endpoints=[pyetcd.Endpoint(address, port, secure=False, time_retry=1)],
                                             timeout=5, failover=True)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
list(client.get_prefix("/cs/workers/"))
cpus, walls = [], []
for _ in range(3):
    wall, used = time.perf_counter(), cpu()
    for _ in range(300):
        list(client.get_prefix("/cs/workers/"))
    walls.append((time.perf_counter() - wall) / 300)
    cpus.append((cpu() - used) / 300)
big = int(sys.argv[4])  # a large range: keys of ~260 bytes, like task records
for i in range(big):
    client.put(f"/bench/t{i:06d}", json.dumps({"id": f"t{i:06d}", "state": "completed", "pad": "x" * 200}))
big_cpu, big_wall = [], []
for _ in range(3):
    wall, used = time.perf_counter(), cpu()
    assert len([json.loads(v) for v, _ in client.get_prefix("/bench/")]) == big
    big_wall.append(time.perf_counter() - wall)
    big_cpu.append(cpu() - used)
client.delete_prefix("/bench/")
print(json.dumps({"cpu_ms": statistics.median(cpus) * 1000, "wall_ms": statistics.median(walls) * 1000,
                  "big_cpu_ms": statistics.median(big_cpu) * 1000, "big_wall_ms": statistics.median(big_wall) * 1000}))
"""


def per_call(tb: Any, kind: str, big: int) -> Dict[str, float]:
    """CPU and wall time of one get_prefix of the workers' keys, and of ``big`` task-sized keys, from a master's
    namespace to the cluster's etcd."""
    etcd, master = tb.nodes_of("etcd")[0], tb.nodes_of("master")[0]
    prefix = ["ip", "netns", "exec", master.netns] if master.netns else []
    env = dict(os.environ, PYTHONPATH=_bench.ROOT)
    out = subprocess.run(prefix + [sys.executable, "-c", PER_CALL, kind, etcd.address, str(etcd.port), str(big)],
                         capture_output=True, text=True, check=True, env=env, timeout=600).stdout
    return {k: round(v, 3) for k, v in json.loads(out).items()}


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    values = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                   cwd=_bench.ROOT).stdout) for _ in range(5)]
    return statistics.median(values)


def disk_mb(distributions: List[str]) -> float:
    total = 0
    for name in distributions:
        dist = importlib.metadata.distribution(name)
        total += sum(os.path.getsize(dist.locate_file(f)) for f in dist.files or []
                     if os.path.isfile(dist.locate_file(f)))
    return total / 1e6


def available(kind: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {CLIENTS[kind]['module']}"], capture_output=True,
                          cwd=_bench.ROOT).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=12, help="workers of each cluster (default 12)")
    parser.add_argument("--cost-seconds", type=float, default=60.0)
    parser.add_argument("--failovers", type=int, default=3, help="leader kills per round and client (default 3)")
    parser.add_argument("--loss-seconds", type=float, default=180.0, help="0: no loss phase")
    parser.add_argument("--big-range", type=int, default=5000, help="keys of the large-range read (default 5000)")
    parser.add_argument("--table", type=int, default=0,
                        help="completed task records put in etcd before the failovers (the table a winner reloads)")
    parser.add_argument("--quick", action="store_true", help="1 round, 4 workers, 5 s phases, 1 failover")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.workers, args.cost_seconds, args.failovers, args.loss_seconds = 1, 4, 5.0, 1, 5.0
        args.big_range = 200
    problem = _bench.requirements()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    kinds = [k for k in CLIENTS if available(k)]
    for missing in sorted(set(CLIENTS) - set(kinds)):
        print(f"{missing}: not installed ({CLIENTS[missing]['module']}), not measured", flush=True)
    _bench.interrupt_on_sigterm()
    load = Load()
    results: Dict[str, List[Dict[str, Any]]] = {k: [] for k in kinds}
    with Session("etcd") as bench:
        for round_index in range(args.rounds):
            for kind in (kinds if round_index % 2 == 0 else list(reversed(kinds))):
                os.environ["CHAOSSCHEDULER_ETCD_CLIENT"] = kind
                figures = cost_and_failover(bench, args.workers, args.cost_seconds, args.failovers, args.big_range,
                                            args.table)
                figures["loss"] = loss_measure(bench, 5, 1.0, args.workers, args.loss_seconds, 0.3) \
                    if args.loss_seconds > 0 else {"worker_seconds": 0, "false_deaths": 0}
                figures["load1"] = load.sample()
                results[kind].append(figures)
                print(f"  round {round_index + 1}, {kind}: {json.dumps(figures)}", flush=True)
    rows = []
    for kind in kinds:
        runs = results[kind]
        takeovers = [t for r in runs for t in r["failovers"]]
        worker_seconds = sum(r["loss"]["worker_seconds"] for r in runs)
        deaths = sum(r["loss"]["false_deaths"] for r in runs)
        reloads = [t for r in runs for t in r["reloads"]]
        rows.append([kind, f"{deaths} in {worker_seconds:,}",
                     f"{statistics.median(takeovers):.2f} s / {max(takeovers):.2f} s (n={len(takeovers)})",
                     f"{statistics.median(reloads):.2f} s / {max(reloads):.2f} s",
                     f"{statistics.mean(r['master_cpu_share'] for r in runs) * 100:.1f} %",
                     f"{statistics.mean(r['worker_cpu_share'] for r in runs) * 100:.1f} %",
                     f"{statistics.median(r['master_rss_mb'] for r in runs):.0f} / "
                     f"{statistics.median(r['worker_rss_mb'] for r in runs):.0f} MB",
                     f"{statistics.median(r['per_call']['cpu_ms'] for r in runs):.2f} / "
                     f"{statistics.median(r['per_call']['wall_ms'] for r in runs):.2f} ms",
                     f"{statistics.median(r['per_call']['big_cpu_ms'] for r in runs):.0f} / "
                     f"{statistics.median(r['per_call']['big_wall_ms'] for r in runs):.0f} ms",
                     f"{import_seconds(CLIENTS[kind]['module']) * 1000:.0f} ms",
                     f"{disk_mb(CLIENTS[kind]['distributions']):.0f} MB"])
    print()
    print(table(["client", "false deaths in worker-s (30 % loss)", "failover median / max", "of which reload",
                 "CPU per master", "CPU per worker", "RSS master / worker", "per call CPU / wall",
                 f"{args.big_range} keys CPU / wall", "import",
                 "extra on disk"], rows))
    print(f"{args.workers} workers, 3 masters, heartbeat 5 s / 1 s, {args.rounds} round(s); {load.summary()}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"results": results, "load": load.figures()}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
