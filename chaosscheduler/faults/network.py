"""Network faults: partitions (drop or random loss between targets and peers) and isolation (everything but
loopback), as one nft table of the fault's own per target host (see rules.py). Latency is in latency.py.

Every target is cut at once (see :mod:`chaosscheduler.hosts.fanout`): the connections to all targets are opened
first, then the table is applied on all of them together, then the remote expiry timers are armed. The record
keeps each host's ``applied_at`` (when its ``nft -f`` returned: the rules were in place by then) and, on undo, its
``removed_at``; :func:`chaosscheduler.faults.lifecycle.inject` makes the last ``applied_at`` the fault's
``started_at``. A host that fails makes the whole injection fail: the caller removes the table from every other
host, and the error names the hosts that failed.
"""

from typing import Any, Dict, List, Sequence

from ..hosts import CommandError
from ..hosts.fanout import describe, failures, timing
from . import rules
from .base import Fault, PartialFault, register

__all__ = ["NetworkFault", "host_gone", "spread_facts"]

_GONE = ("No such file or directory", "Cannot open network namespace", "does not exist")


def host_gone(error: BaseException) -> bool:
    """The command failed because its host (a namespace, with what was in it) no longer exists: nothing to undo."""
    return isinstance(error, CommandError) and any(marker in (error.stderr or str(error)) for marker in _GONE)


def spread_facts(fan: Any, outcomes: Dict[str, Any], field: str = "applied_at") -> Dict[str, Any]:
    """Per-host times and their spread, plus how wide the fan-out was and how long connecting took."""
    facts = timing(outcomes, field)
    facts["fanout"] = {"concurrency": fan.concurrency, "hosts": len(outcomes), "connect_s": fan.connect_seconds}
    return facts


def unreachable(fault_id: str, targets: List[str], errors: Dict[str, str]) -> PartialFault:
    """The error of a fault that could not connect to every target: raised before anything is applied."""
    failed = [t for t in targets if t in errors]
    return PartialFault(f"cannot reach {len(failed)} of {len(targets)} targets of fault {fault_id} "
                        f"({describe(failed, errors)}); nothing was applied",
                        {"applied_on": [], "nothing_applied": True, "unreachable": errors})


@register
class NetworkFault(Fault):
    """Record fields: ``targets`` (nodes whose traffic is cut), ``addresses`` (peer IPs/CIDRs), ``direction``,
    ``loss`` (1.0 = drop all), ``duration`` (kernel self-expiry), ``table``."""

    kind = "network"

    def ruleset(self, exempt_tcp_ports: Sequence[int] = ()) -> str:
        r = self.record
        return rules.build_ruleset(r["id"], r["addresses"], r["direction"], r["loss"], r.get("duration"),
                                   r.get("exempt_tcp_ports") or exempt_tcp_ports)

    def prepare(self, platform: Any) -> Dict[str, str]:
        return self.fan_out(platform).connect()

    def inject(self, platform: Any) -> Dict[str, Any]:
        # remote hosts: the SSH port stays open (heal must reach the host) and a timer on the host deletes the table
        # at the deadline even if this process and the SSH connection are gone (platforms with arm_expiry)
        exempt = list(getattr(platform, "exempt_tcp_ports", lambda: [])())
        text = self.ruleset(exempt)
        fault_id, targets = self.record["id"], list(self.record["targets"])
        table = rules.table_name(fault_id)
        fan = self.fan_out(platform)
        missing = fan.connect()
        if missing:
            raise unreachable(fault_id, targets, missing)
        done = fan.each(lambda node, host: host.run(["nft", "-f", "-"], input=text, timeout=15))
        facts: Dict[str, Any] = spread_facts(fan, done)
        facts["applied_on"] = [t for t in targets if done[t].ok]
        if exempt:
            facts["exempt_tcp_ports"] = exempt
        failed = failures(done)
        if failed:
            names = [t for t in targets if t in failed]
            raise PartialFault(f"could not install the rules of fault {fault_id} on {len(names)} of {len(targets)} "
                               f"targets: {describe(names, failed)}", dict(facts, failed_on=failed))
        arm = getattr(platform, "arm_expiry", None)
        if arm and self.record.get("duration"):
            command = ["nft", "delete", "table", "inet", table]
            armed = fan.each(lambda node, host: arm(node, fault_id, self.record["duration"], command))
            facts["remote_expiry_on"] = [t for t in targets if armed[t].ok]
            facts["remote_timers"] = {t: armed[t].value for t in targets if armed[t].ok and
                                      isinstance(armed[t].value, dict)}
            failed = failures(armed)
            if failed:
                names = [t for t in targets if t in failed]
                raise PartialFault(f"could not arm the remote expiry of fault {fault_id} on {len(names)} of "
                                   f"{len(targets)} targets: {describe(names, failed)}", dict(facts, failed_on=failed))
        elif arm:
            facts["remote_expiry_on"] = []
        return facts

    def undo(self, platform: Any) -> Dict[str, Any]:
        fault_id, targets = self.record["id"], list(self.record["targets"])
        table = rules.table_name(fault_id)
        fan = self.fan_out(platform)
        missing = fan.connect()
        reachable = [t for t in targets if t not in missing]
        done = fan.each(lambda node, host: host.run(["nft", "delete", "table", "inet", table], timeout=15),
                        reachable)
        removed = [t for t in reachable if done[t].ok]
        gone = [t for t in reachable if not done[t].ok and host_gone(done[t].error)]
        errors = {t: e for t, e in failures(done).items() if t not in gone}
        errors.update(missing)
        disarm = getattr(platform, "disarm_expiry", None)
        if disarm:  # after the table is gone (traffic back first); a host we could not clean keeps its timer
            timers = self.record.get("remote_timers") or {}
            fan.each(lambda node, host: _quietly(disarm, node, fault_id, timers.get(node)), removed + gone)
        facts = dict(spread_facts(fan, {t: done[t] for t in removed}, "removed_at"), removed_from=removed,
                     already_gone=gone)
        if errors:
            names = [t for t in targets if t in errors]
            raise PartialFault(f"could not remove table {table} from {len(names)} of {len(targets)} targets: "
                               f"{describe(names, errors)}", dict(facts, failed_on=errors))
        return facts


def _quietly(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except CommandError:
        return None  # the timer only deletes our table: left alone it is harmless
