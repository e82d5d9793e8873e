#!/usr/bin/env python3
"""Injection and heal latency: kill_master, partition_workers and isolate_worker on the embedded cluster, and our
nft tables against one `iptables` process per rule for 1 to 1,000 peer addresses, in the same run.

    python benchmarks/latency.py              # 10 runs of each action; 1, 10, 100, 1000 peers (about 2 minutes,
                                              # half of it iptables at 1,000 peers)
    python benchmarks/latency.py --quick      # 2 runs; 1, 10, 100 peers, iptables up to 10 peers
    python benchmarks/latency.py --sizes 1,10,100,1000,10000 --iptables-max 100

Part 1, the actions as an experiment calls them (in-process, configuration targeting the cluster):

* ``kill_master``: from the call until the leader's process is gone (an exit notification through a pidfd opened on
  every master before the call), split into resolution + record (call → signal: leader lookup, ledger record,
  reaper spawn) and signal → gone; also call → return.
* ``partition_workers(workers="50%", peers="masters")`` (2 workers, 3 peer addresses) and ``isolate_worker``:
  call → return (the rules are in place when it returns), and the heal: ``heal_partition`` / ``undo_all_faults``
  call → return (the worker's re-registration afterwards is not counted).

Part 2, rules against peer count: a network namespace of our own, an nft fault of N peer addresses drawn from
198.18.0.0/15, applied and healed through the same code the faults use (``NetworkFault.inject``/``undo``: one
``ip netns exec NS nft -f -`` / ``nft delete table``); then the same through the whole fault lifecycle an action
uses (``faults.lifecycle.inject``/``undo``: ledger record, reaper armed, nft, ledger update; undo through the
ledger, reaper stopped); against the naive way: one ``iptables -I`` per address and direction to apply, one
``iptables -D`` per rule to heal, each its own process in the same namespace.

Part 3, rules against the number of target hosts (one ``nft -f -`` per target): K namespaces, 10 peers.

Targets (issue 6): kill <= 50 ms; partition apply and heal <= 100 ms at 1,000 addresses, flat in N.
"""

import argparse
import ipaddress
import json
import os
import random
import select
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import _bench
from _bench import Load, Session, median, ms, secs, table, verdict

from chaosscheduler import actions, rollbacks  # noqa: E402
from chaosscheduler.faults import lifecycle  # noqa: E402
from chaosscheduler.faults.network import NetworkFault  # noqa: E402
from chaosscheduler.hosts import NetnsHost  # noqa: E402
from chaosscheduler.ledger import new_fault_id  # noqa: E402
from chaosscheduler.timing import wait_until  # noqa: E402

TARGET_KILL, TARGET_RULES = 0.050, 0.100
POOL = ipaddress.ip_network("198.18.0.0/15")


class ExitWatcher(threading.Thread):
    """Wall time at which each watched process exits (pidfd readable), for processes that are not our children."""

    def __init__(self, pids: List[int]):
        super().__init__(daemon=True)
        self.fds = {os.pidfd_open(pid): pid for pid in pids}
        self.exited: Dict[int, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        poller = select.poll()
        for fd in self.fds:
            poller.register(fd, select.POLLIN)
        while not self.stopping.is_set() and len(self.exited) < len(self.fds):
            for fd, _ in poller.poll(50):
                self.exited[self.fds[fd]] = time.time()
                poller.unregister(fd)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        for fd in self.fds:
            os.close(fd)


# ---------------------------------------------------------------------------------------------------- part 1
def kill_run(bench: Session, tb: Any) -> Dict[str, float]:
    cfg = bench.cfg(tb)
    tb.wait_healthy(30)
    pids = [tb.process(m.name)["pid"] for m in tb.nodes_of("master") if tb.is_running(m.name)]
    watcher = ExitWatcher(pids)
    watcher.start()
    try:
        called = time.time()
        record = actions.kill_master(duration=60, configuration=cfg)
        returned = time.time()
        gone = wait_until(lambda: watcher.exited.get(record["pid"]), 5, 0.005, "the killed master gone")
    finally:
        watcher.stop()
    killed = record["targets"][0]
    # the leader key outlives a killed leader by up to its TTL: wait for the successor before going on
    wait_until(lambda: tb.leader() not in (None, killed), 30, 0.02, "a new leader")
    rollbacks.restart_master(configuration=cfg)
    return {"resolve": record["started_at"] - called, "signal_to_gone": gone - record["started_at"],
            "call_to_gone": gone - called, "call_to_return": returned - called}


def network_run(bench: Session, tb: Any, action: str) -> Dict[str, float]:
    cfg = bench.cfg(tb)
    tb.wait_healthy(30)
    called = time.time()
    if action == "partition_workers":
        record = actions.partition_workers(workers="50%", peers="masters", duration=60, configuration=cfg)
    else:
        record = actions.isolate_worker(duration=60, configuration=cfg)
    returned = time.time()
    healing = time.time()
    if action == "partition_workers":
        rollbacks.heal_partition(configuration=cfg)
    else:
        rollbacks.undo_all_faults(configuration=cfg)
    healed = time.time()
    state = bench.ledger.get(record["id"])["state"]
    if state != "undone":
        raise RuntimeError(f"{action} fault {record['id']} is {state} after the heal")
    return {"apply": returned - called, "started_to_return": returned - record["started_at"],
            "heal": healed - healing, "targets": len(record["targets"]), "peers": len(record["addresses"])}


# ---------------------------------------------------------------------------------------------------- part 2, 3
class Namespaces:
    """The platform seam the network fault needs (``host(target)``), over namespaces we created."""

    def host(self, node: str) -> NetnsHost:
        return NetnsHost(node)

    def available(self) -> Optional[str]:
        return None


def addresses(count: int, rng: random.Random) -> List[str]:
    picks = rng.sample(range(1, POOL.num_addresses - 1), count)
    return [str(POOL.network_address + p) for p in picks]


def fault_record(targets: List[str], peers: List[str]) -> Dict[str, Any]:
    return {"id": new_fault_id(), "kind": "network", "targets": targets, "addresses": peers, "direction": "both",
            "loss": 1.0, "duration": 60.0}


def elements_in(netns: str, table: str) -> int:
    out = NetnsHost(netns).run(["nft", "-j", "list", "set", "inet", table, "peers4"], timeout=60).stdout
    sets = [item["set"] for item in json.loads(out)["nftables"] if "set" in item]
    return len(sets[0].get("elem", [])) if sets else 0


def nft_run(targets: List[str], peers: List[str], check: bool) -> Dict[str, float]:
    fault = NetworkFault(fault_record(targets, peers))
    platform = Namespaces()
    started = time.perf_counter()
    fault.inject(platform)
    applied = time.perf_counter() - started
    if check:
        table_ = f"chaosscheduler_{fault.record['id']}"
        found = elements_in(targets[0], table_)
        if found != len(peers):
            fault.undo(platform)
            raise RuntimeError(f"{table_} holds {found} addresses, expected {len(peers)}")
    started = time.perf_counter()
    result = fault.undo(platform)
    healed = time.perf_counter() - started
    if result["removed_from"] != targets:
        raise RuntimeError(f"undo removed the table from {result['removed_from']}, expected {targets}")
    return {"apply": applied, "heal": healed}


def lifecycle_run(ledger: Any, netns: str, peers: List[str]) -> Dict[str, float]:
    """The whole path of an action: ledger record, reaper armed, nft, ledger update; undo through the ledger."""
    record = dict(fault_record([netns], peers), action="partition_workers", run_id="benchmark",
                  platform={"platform": "benchmark-netns"}, created_at=time.time())
    platform = Namespaces()
    started = time.perf_counter()
    lifecycle.inject(ledger, record, platform)
    applied = time.perf_counter() - started
    started = time.perf_counter()
    closed = lifecycle.undo(ledger, record["id"], platform=platform)
    healed = time.perf_counter() - started
    if closed["state"] != "undone":
        raise RuntimeError(f"fault {record['id']} is {closed['state']} after undo")
    return {"apply": applied, "heal": healed}


def iptables_run(netns: str, peers: List[str]) -> Dict[str, float]:
    host = NetnsHost(netns)
    rules = [(chain, flag, a) for a in peers for chain, flag in (("INPUT", "-s"), ("OUTPUT", "-d"))]
    started = time.perf_counter()
    for chain, flag, address in rules:
        host.run(["iptables", "-I", chain, flag, address, "-j", "DROP"], timeout=60)
    applied = time.perf_counter() - started
    started = time.perf_counter()
    for chain, flag, address in rules:
        host.run(["iptables", "-D", chain, flag, address, "-j", "DROP"], timeout=60)
    healed = time.perf_counter() - started
    left = host.run(["iptables", "-S"], timeout=60).stdout
    if "-j DROP" in left:
        raise RuntimeError(f"iptables rules left in {netns} after the heal")
    return {"apply": applied, "heal": healed}


# ---------------------------------------------------------------------------------------------------- report
def row(label: str, values: List[float], target: Optional[float] = None, extra: str = "") -> List[str]:
    fmt = ms if max(values) < 10 else secs
    check = ""
    if target is not None:
        check = f"<= {target * 1000:.0f} ms: {verdict(median(values) <= target)}"
        if median(values) <= target < max(values):
            check += " (max over)"
    return [label, str(len(values)), fmt(median(values)), fmt(min(values)), fmt(max(values)), check or extra]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each action on the cluster (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="nft apply/heal repeats per peer count (default 5)")
    parser.add_argument("--sizes", default="1,10,100,1000", help="peer address counts (default 1,10,100,1000)")
    parser.add_argument("--iptables-max", type=int, default=1000,
                        help="largest peer count also done with one iptables process per rule (default 1000)")
    parser.add_argument("--hosts", default="1,4,16,64", help="target host counts for part 3 (default 1,4,16,64)")
    parser.add_argument("--quick", action="store_true", help="2 runs, 1-100 peers, iptables up to 10, hosts 1,4")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    runs, repeats = (2, 2) if args.quick else (args.runs, args.repeats)
    sizes = [1, 10, 100] if args.quick else [int(s) for s in args.sizes.split(",")]
    iptables_max = 10 if args.quick else args.iptables_max
    host_counts = [1, 4] if args.quick else [int(h) for h in args.hosts.split(",")]
    if runs < 1 or repeats < 1 or min(sizes) < 1 or max(sizes) > POOL.num_addresses // 2:
        parser.error("--runs and --repeats must be >= 1, sizes 1..65536")
    problem = _bench.requirements()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    _bench.interrupt_on_sigterm()
    rng = random.Random(6)
    figures: Dict[str, Any] = {}
    try:
        with Session("lat") as bench:
            # ---------------------------------------------------------------- part 1
            load = Load()
            tb = bench.cluster()
            kills, parts, isolations = [], [], []
            for i in range(1, runs + 1):
                kills.append(kill_run(bench, tb))
                parts.append(network_run(bench, tb, "partition_workers"))
                isolations.append(network_run(bench, tb, "isolate_worker"))
                load.sample()
                print(f"  run {i:>2}: kill_master call->gone {kills[-1]['call_to_gone'] * 1000:.1f} ms; "
                      f"partition apply {parts[-1]['apply'] * 1000:.1f} ms, heal {parts[-1]['heal'] * 1000:.1f} ms; "
                      f"isolate apply {isolations[-1]['apply'] * 1000:.1f} ms, "
                      f"heal {isolations[-1]['heal'] * 1000:.1f} ms", flush=True)
            tb.wait_healthy(30)
            bench.remove_cluster(tb)
            rows = [row("kill_master: call -> leader's process gone", [k["call_to_gone"] for k in kills], TARGET_KILL),
                    row("  call -> signal (resolve leader, record, arm reaper)", [k["resolve"] for k in kills]),
                    row("  signal -> process gone", [k["signal_to_gone"] for k in kills]),
                    row("  call -> return", [k["call_to_return"] for k in kills]),
                    row(f"partition_workers 50% from masters ({parts[0]['targets']} hosts x {parts[0]['peers']} "
                        f"peers): call -> return", [p["apply"] for p in parts]),
                    row("  of which fault start -> return (nft + ledger)", [p["started_to_return"] for p in parts]),
                    row("  heal_partition: call -> return", [p["heal"] for p in parts]),
                    row("isolate_worker: call -> return", [p["apply"] for p in isolations]),
                    row("  of which fault start -> return (nft + ledger)",
                        [p["started_to_return"] for p in isolations]),
                    row("  undo_all_faults: call -> return", [p["heal"] for p in isolations])]
            print()
            print("Actions on the embedded cluster (in-process calls, 3 masters, 4 workers)")
            print(table(["what", "n", "median", "min", "max", "target"], rows))
            print(load.summary())
            figures["actions"] = {"kill_master": kills, "partition_workers": parts, "isolate_worker": isolations,
                                  "load": load.figures()}

            # ---------------------------------------------------------------- part 2
            load = Load()
            netns = bench.netns()
            by_size: Dict[int, Dict[str, List[Dict[str, float]]]] = {}
            for size in sizes:
                peers = addresses(size, rng)
                nft = [nft_run([netns], peers, check=(r == 0)) for r in range(repeats)]
                full = [lifecycle_run(bench.ledger, netns, peers) for _ in range(repeats)]
                ipt = []
                if size <= iptables_max:
                    for _ in range(1 if size >= 1000 else repeats):
                        ipt.append(iptables_run(netns, peers))
                by_size[size] = {"nft": nft, "lifecycle": full, "iptables": ipt}
                load.sample()
                line = (f"  {size:>5} peers: nft apply {median([r['apply'] for r in nft]) * 1000:.1f} ms, "
                        f"heal {median([r['heal'] for r in nft]) * 1000:.1f} ms")
                if ipt:
                    line += (f"; iptables per rule apply {median([r['apply'] for r in ipt]):.2f} s, "
                             f"heal {median([r['heal'] for r in ipt]):.2f} s")
                print(line, flush=True)
            rows = []
            smallest = sizes[0]
            for size, found in by_size.items():
                nft, full, ipt = found["nft"], found["lifecycle"], found["iptables"]
                for phase in ("apply", "heal"):
                    values = [r[phase] for r in nft]
                    target = ""
                    growth = median(values) / median([r[phase] for r in by_size[smallest]["nft"]])
                    ipt_values = [r[phase] for r in ipt]
                    full_values = [r[phase] for r in full]
                    if size >= 1000:
                        target = f"<= 100 ms: {verdict(max(values + full_values) <= TARGET_RULES)}"
                    rows.append([f"{size} peers" if phase == "apply" else "", phase, ms(median(values)),
                                 ms(max(values)), f"x{growth:.2f}", ms(median(full_values)), ms(max(full_values)),
                                 secs(median(ipt_values)) if ipt else "-",
                                 f"x{median(ipt_values) / median(values):.0f}" if ipt else "-", target])
            print()
            print(f"Rules against peer count, one target namespace (nft: {repeats} repeats; iptables: "
                  f"{repeats} repeats, 1 at >= 1000 peers; {2} rules per peer, both directions)")
            print(table(["peers", "phase", "nft median", "nft max", f"vs {smallest} peer(s)", "+ ledger, reaper",
                         "(max)", "iptables per rule", "iptables / nft", "target"], rows, left=2))
            print(load.summary())
            figures["peers"] = {str(k): v for k, v in by_size.items()}
            figures["peers_load"] = load.figures()

            # ---------------------------------------------------------------- part 3
            load = Load()
            rows = []
            peers = addresses(10, rng)
            spaces = [netns] + [bench.netns() for _ in range(max(host_counts) - 1)]
            by_hosts = {}
            for count in host_counts:
                found = [nft_run(spaces[:count], peers, check=(r == 0)) for r in range(repeats)]
                by_hosts[count] = found
                load.sample()
                apply_, heal = median([r["apply"] for r in found]), median([r["heal"] for r in found])
                rows.append([f"{count} host(s)", ms(apply_), ms(apply_ / count), ms(heal), ms(heal / count)])
            print()
            print(f"Rules against target host count (10 peers, one nft process per host, {repeats} repeats)")
            print(table(["targets", "apply median", "per host", "heal median", "per host"], rows))
            print(load.summary())
            figures["hosts"] = {str(k): v for k, v in by_hosts.items()}
            figures["hosts_load"] = load.figures()
    except KeyboardInterrupt:
        print("interrupted: everything started was removed", file=sys.stderr)
        return 130
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
