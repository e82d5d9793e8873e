"""Latency: ``tc netem`` where the kernel has it (and always on remote hosts), else, on this machine's namespaces,
a userspace delay through NFQUEUE.

The NFQUEUE fallback: this kernel's nftables has no native ``queue`` expression, so the fault gets an iptables chain
of its own (``csq-<id>``, through iptables-nft's compat layer) that sends the targets' packets to their peers to a
netfilter queue with ``--queue-bypass`` (packets pass undelayed whenever no process listens) and stops matching at
the deadline in the kernel (``-m time --datestop``). A delay process in the target's namespace (``python -m
chaosscheduler.faults.latency``), recorded by PID and start time, holds each packet for ``latency_ms`` before
accepting it and exits at the deadline by itself. The delay actually added is measured (TCP connect round trips to
a peer, before and after) and returned with the fault record.
"""

import functools
import heapq
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import procs
from ..errors import FaultError
from ..hosts import CommandError
from . import rules
from ..hosts.fanout import describe, failures
from .base import Fault, PartialFault, register
from .network import host_gone, spread_facts, unreachable

__all__ = ["LatencyFault", "netem_available", "kernel_netem", "nfqueue_available", "latency_ruleset",
           "latency_leftovers", "remove_latency_chain"]

# iptables' answers when our jump or chain is already gone
_ABSENT = re.compile(r"does not exist|No chain/target/match|Bad rule|Couldn't load target")


@functools.lru_cache(maxsize=1)
def kernel_netem() -> str:
    """"" when ``tc netem`` works on this machine; otherwise why not (tried in a throw-away network namespace)."""
    if shutil.which("tc") is None:
        return "the 'tc' command is missing (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "checking for tc netem needs root"
    try:
        proc = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay",
                               "1ms"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not test for tc netem: {e}"
    if proc.returncode == 0:
        return ""
    return f"this kernel has no tc netem (sch_netem): '{proc.stderr.strip()}'"


@functools.lru_cache(maxsize=1)
def nfqueue_available() -> str:
    """"" when the NFQUEUE delay fallback works here (NetfilterQueue importable, a queue can be bound in a
    throw-away namespace); otherwise why not."""
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return ("the NFQUEUE fallback needs NetfilterQueue (pip install 'chaosscheduler[latency]', after apt-get "
                "install libnetfilter-queue-dev)")
    if os.geteuid() != 0 or shutil.which("nft") is None:
        return "the NFQUEUE fallback needs root and nft"
    probe = "from netfilterqueue import NetfilterQueue as Q; q = Q(); q.bind(7, lambda p: None); q.unbind()"
    try:
        proc = subprocess.run(["unshare", "--net", sys.executable, "-c", probe], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not test NFQUEUE: {e}"
    return "" if proc.returncode == 0 else f"NFQUEUE does not work here: {proc.stderr.strip()[-200:]}"


def netem_available() -> str:
    """"" when latency can be injected here: the kernel has ``tc netem``, or the NFQUEUE userspace fallback works;
    otherwise why neither does (an actionable sentence)."""
    netem = kernel_netem()
    if not netem:
        return ""
    fallback = nfqueue_available()
    if not fallback:
        return ""
    return f"{netem}, and {fallback}; latency cannot be injected here, use mode 'loss' or 'drop'"


def _queue_number(fault_id: str) -> int:
    return int(fault_id[-4:], 16) % 65000 + 1


def _chain(fault_id: str) -> str:
    rules.table_name(fault_id)  # validates the id
    return f"csq-{fault_id}"


def latency_ruleset(record: Dict[str, Any], exempt_tcp_ports: Sequence[int] = (),
                    until: Optional[float] = None) -> str:
    """``iptables-restore --noflush`` input for the NFQUEUE fallback: a chain of the fault's own (``csq-<id>``),
    jumped to from OUTPUT (packets to the peers: "both", "to") or INPUT (from them: "from") by one rule tagged
    ``chaosscheduler <id>``. Its queue rules stop matching at ``until`` in the kernel itself (``-m time
    --datestop``), and ``--queue-bypass`` lets packets through whenever no delay process listens. (This kernel's
    nftables has no native ``queue`` expression; iptables-nft reaches the same hook through its compat layer.)"""
    v4, _ = rules.split_addresses(record["addresses"])
    if not v4:
        raise FaultError("the NFQUEUE latency fallback handles IPv4 peers only")
    chain = _chain(record["id"])
    hook, field, iface, port = (("INPUT", "-s", "-i", "--dport") if record["direction"] == "from"
                                else ("OUTPUT", "-d", "-o", "--sport"))
    expiry = ""
    if until:
        expiry = f" -m time --datestop {time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(until))}"
    lines = ["*filter", f":{chain} - [0:0]", f"-A {chain} {iface} lo -j RETURN"]
    lines += [f"-A {chain} -p tcp {port} {int(p)} -j RETURN" for p in sorted(set(exempt_tcp_ports))]
    lines += [f"-A {chain} {field} {a}{expiry} -j NFQUEUE --queue-num {_queue_number(record['id'])} --queue-bypass"
              for a in v4]
    lines += [f'-I {hook} 1 -m comment --comment "chaosscheduler {record["id"]}" -j {chain}', "COMMIT"]
    return "\n".join(lines) + "\n"


_MEASURE = """
import socket, statistics, sys, time
address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
samples = []
for _ in range(count):
    s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    s.settimeout(10)
    started = time.monotonic()
    try:
        s.connect((address, port))
    except OSError:
        pass
    samples.append((time.monotonic() - started) * 1000)
    s.close()
print(statistics.median(samples))
"""


def _round_trip_ms(host: Any, address: str, port: int = 9, count: int = 5) -> float:
    """Median TCP connect round trip (SYN to SYN-ACK or RST) from ``host`` to ``address``, in ms."""
    return float(host.run([sys.executable, "-c", _MEASURE, address, str(port), str(count)], timeout=60).stdout)


def _marker(fault_id: str) -> str:
    return f"chaosscheduler-delay-{fault_id}"


@register
class LatencyFault(Fault):
    """Adds ``latency_ms`` to the targets' packets. Where the kernel has ``tc netem`` (or the target is a remote
    host): netem on the targets' interface ``interface``, never replacing a root qdisc that is not ours. Elsewhere,
    on this machine's namespaces: the NFQUEUE fallback, to packets towards the peers ("both", "to") or from them
    ("from"); its record holds ``method``, ``baseline_ms`` and ``measured_added_ms`` (the delay actually added)."""

    kind = "latency"

    def _method(self, platform: Any) -> str:
        host = platform.host(self.record["targets"][0])
        if type(host).__name__ == "SSHHost" or not kernel_netem():
            return "netem"
        return "nfqueue"

    def prepare(self, platform: Any) -> Dict[str, str]:
        return self.fan_out(platform).connect()

    def inject(self, platform: Any) -> Dict[str, Any]:
        if self._method(platform) == "nfqueue":
            return self._inject_nfqueue(platform)
        iface, delay = self.record.get("interface", "eth0"), f"{int(self.record['latency_ms'])}ms"
        targets = list(self.record["targets"])
        fan = self.fan_out(platform)
        missing = fan.connect()
        if missing:
            raise unreachable(self.record["id"], targets, missing)
        done = fan.each(lambda node, host: host.run(["tc", "qdisc", "add", "dev", iface, "root", "handle", "ce:",
                                                     "netem", "delay", delay], timeout=15))
        facts = dict(spread_facts(fan, done), applied_on=[t for t in targets if done[t].ok], method="netem")
        failed = failures(done)
        if failed:
            names = [t for t in targets if t in failed]
            raise PartialFault(f"could not add latency on {len(names)} of {len(targets)} targets' {iface} (an "
                               f"existing root qdisc is never replaced): {describe(names, failed)}",
                               dict(facts, failed_on=failed))
        return facts

    def _inject_nfqueue(self, platform: Any) -> Dict[str, Any]:
        reason = nfqueue_available()
        if reason:
            raise FaultError(f"{kernel_netem()}, and {reason}")
        r = self.record
        deadline = time.time() + float(r.get("duration") or 24 * 3600)
        peer = next((a for a in r["addresses"] if "/" not in a), None)
        queue = _queue_number(r["id"])
        text = latency_ruleset(r, getattr(platform, "exempt_tcp_ports", lambda: [])(), deadline)
        baseline: Dict[str, float] = {}
        added: Dict[str, float] = {}
        r["delayers"] = {}  # filled per target as each starts, so a failed inject's undo stops every one of them
        r.setdefault("created_base", {})
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

        def one(target: str, host: Any) -> None:
            try:
                if peer:
                    baseline[target] = _round_trip_ms(host, peer)
                # detached, and recorded by PID + start time: undo signals exactly this process
                env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
                r["delayers"][target] = dict(procs.spawn(
                    host.prefix() + [sys.executable, "-m", "chaosscheduler.faults.latency", "--delay-ms",
                                     str(float(r["latency_ms"])), "--queue", str(queue), "--until", f"{deadline:.3f}",
                                     "--name", _marker(r["id"])], os.devnull, env=env))
                _wait_bound(host, queue)
                hook = "INPUT" if r["direction"] == "from" else "OUTPUT"
                if host.run(["nft", "list", "chain", "ip", "filter", hook], timeout=15, check=False).returncode:
                    # iptables-nft creates the base chain (and its table) for our jump: ours to remove on undo
                    absent = host.run(["nft", "list", "table", "ip", "filter"], timeout=15, check=False).returncode
                    r["created_base"][target] = "table" if absent else "chain"
                host.run(["iptables-restore", "--noflush", "-w"], input=text, timeout=15)
                if peer:
                    added[target] = round(_round_trip_ms(host, peer) - baseline[target], 3)
            except (CommandError, TimeoutError) as e:
                raise FaultError(f"through NFQUEUE: {e}") from e

        fan = self.fan_out(platform)
        done = fan.each(one)
        targets = list(r["targets"])
        facts = dict(spread_facts(fan, done), applied_on=[t for t in targets if done[t].ok], method="nfqueue",
                     queue=queue, measured_to=peer, baseline_ms=baseline, measured_added_ms=added,
                     created_base=r["created_base"], delayers=r["delayers"])
        failed = failures(done)
        if failed:
            names = [t for t in targets if t in failed]
            raise PartialFault(f"could not add latency on {len(names)} of {len(targets)} targets: "
                               f"{describe(names, failed)}", dict(facts, failed_on=failed))
        return facts

    def undo(self, platform: Any) -> Dict[str, Any]:
        if self.record.get("method") == "nfqueue" or (not self.record.get("method") and
                                                        self._method(platform) == "nfqueue"):
            return self._undo_nfqueue(platform)
        iface = self.record.get("interface", "eth0")
        targets = list(self.record["targets"])
        fan = self.fan_out(platform)
        missing = fan.connect()
        reachable = [t for t in targets if t not in missing]
        done = fan.each(lambda node, host: host.run(["tc", "qdisc", "del", "dev", iface, "root", "handle", "ce:",
                                                     "netem"], timeout=15), reachable)
        removed = [t for t in reachable if done[t].ok]
        gone = [t for t in reachable if not done[t].ok and (host_gone(done[t].error) or
                                                             "Invalid handle" in (done[t].error.stderr or ""))]
        errors = {t: e for t, e in failures(done).items() if t not in gone}
        errors.update(missing)
        facts = dict(spread_facts(fan, {t: done[t] for t in removed}, "removed_at"), removed_from=removed,
                     already_gone=gone)
        if errors:
            names = [t for t in targets if t in errors]
            raise PartialFault(f"could not remove latency from {len(names)} of {len(targets)} targets: "
                               f"{describe(names, errors)}", dict(facts, failed_on=errors))
        return facts

    def _undo_nfqueue(self, platform: Any) -> Dict[str, Any]:
        fault_id = self.record["id"]
        chain = _chain(fault_id)
        hook = "INPUT" if self.record.get("direction") == "from" else "OUTPUT"
        def one(target: str, host: Any) -> str:
            try:
                results = remove_latency_chain(host, hook, fault_id)
                created = (self.record.get("created_base") or {}).get(target)
                if created:  # the base chain (table) made for our jump goes too, if nothing else is in it
                    host.run(["nft", "delete", "chain", "ip", "filter", hook], timeout=15, check=False)
                    left = host.run(["nft", "list", "table", "ip", "filter"], timeout=15, check=False).stdout
                    if created == "table" and "chain " not in left and "set " not in left:
                        host.run(["nft", "delete", "table", "ip", "filter"], timeout=15, check=False)
                # the delay process lets its held packets go and exits on SIGTERM (it also exits by itself at the
                # deadline, and with --queue-bypass no packet waits for a dead one)
                procs.terminate((self.record.get("delayers") or {}).get(target) or {}, signal.SIGTERM)
            except CommandError as e:
                if host_gone(e):
                    return "gone"
                raise
            failed = [r.stderr.strip() for r in results if r.returncode != 0]
            if not failed:
                return "removed"
            if all(_ABSENT.search(f) for f in failed):
                return "gone"
            raise FaultError(failed[0][:200])

        fan = self.fan_out(platform)
        done = fan.each(one)
        targets = list(self.record["targets"])
        removed = [t for t in targets if done[t].ok and done[t].value == "removed"]
        gone = [t for t in targets if done[t].ok and done[t].value == "gone"]
        facts = dict(spread_facts(fan, {t: done[t] for t in removed}, "removed_at"), removed_from=removed,
                     already_gone=gone)
        errors = failures(done)
        if errors:
            names = [t for t in targets if t in errors]
            raise PartialFault(f"could not remove chain {chain} from {describe(names, errors)}",
                               dict(facts, failed_on=errors))
        return facts


_JUMP = re.compile(r'^-A (INPUT|OUTPUT) .*--comment "?chaosscheduler (f[a-z0-9]+)"? -j (csq-f[a-z0-9]+)\s*$')


def latency_leftovers(iptables_save: str) -> List[Tuple[str, str]]:
    """``(hook, fault id)`` of every jump to a latency chain of ours in ``iptables-save`` output: the kernel as
    the record for ``heal --from-hosts`` when the ledger is lost."""
    found = []
    for line in iptables_save.splitlines():
        match = _JUMP.match(line.strip())
        if match and match.group(3) == _chain(match.group(2)):
            found.append((match.group(1), match.group(2)))
    return found


def remove_latency_chain(host: Any, hook: str, fault_id: str) -> List[Any]:
    """Delete our jump (by its exact spec), then empty and delete our own chain ``csq-<id>``; nothing else. Returns
    each command's result (a missing rule or chain is not an error here: the caller judges)."""
    chain = _chain(fault_id)
    return [host.run(argv, timeout=15, check=False) for argv in (
        ["iptables", "-w", "-D", hook, "-m", "comment", "--comment", f"chaosscheduler {fault_id}", "-j", chain],
        ["iptables", "-w", "-F", chain], ["iptables", "-w", "-X", chain])]


def _wait_bound(host: Any, queue: int, timeout: float = 15.0) -> None:
    """Wait until a process listens on ``queue`` in the host's namespace (else ``bypass`` would not delay)."""
    deadline = time.monotonic() + timeout
    while True:
        listing = host.run(["cat", "/proc/net/netfilter/nfnetlink_queue"], timeout=15, check=False).stdout
        if any(line.split()[:1] == [str(queue)] for line in listing.splitlines()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no delay process bound NFQUEUE {queue} within {timeout} s")
        time.sleep(0.02)


def _delay(queue: int, delay_ms: float, until: float) -> int:
    """The delay process: hold every packet of ``queue`` for ``delay_ms``, then accept it; exit at ``until`` (wall
    time) or on SIGTERM, letting every held packet go first."""
    from netfilterqueue import NetfilterQueue

    held: List[Any] = []
    sequence = [0]
    stop = [False]

    def on_packet(packet: Any) -> None:
        sequence[0] += 1
        heapq.heappush(held, (time.monotonic() + delay_ms / 1000.0, sequence[0], packet))

    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    nfq = NetfilterQueue()
    nfq.bind(queue, on_packet, max_len=65536)
    sock = socket.fromfd(nfq.get_fd(), socket.AF_NETLINK, socket.SOCK_RAW)
    try:
        while not stop[0] and time.time() < until:
            now = time.monotonic()
            while held and held[0][0] <= now:
                heapq.heappop(held)[2].accept()
            wait = min(held[0][0] - now if held else 0.2, max(0.0, until - time.time()), 0.2)
            ready, _, _ = select.select([sock], [], [], max(0.0, wait))
            if ready:
                nfq.run(block=False)
    finally:
        while held:
            heapq.heappop(held)[2].accept()
        nfq.unbind()
        sock.close()
    return 0


def _main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="chaosscheduler NFQUEUE delay process (one per latency target)")
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--until", type=float, required=True)
    parser.add_argument("--name", default="", help="a marker in the command line, for undo")
    args = parser.parse_args(argv)
    return _delay(args.queue, args.delay_ms, args.until)


if __name__ == "__main__":
    sys.exit(_main())
