"""Network faults: partitions (drop or random loss between targets and peers) and isolation (everything but
loopback), as one nft table of the fault's own per target host (see rules.py). Latency is in latency.py."""

from typing import Any, Dict, List, Sequence

from ..errors import FaultError
from ..hosts import CommandError
from . import rules
from .base import Fault, register

__all__ = ["NetworkFault", "host_gone"]

_GONE = ("No such file or directory", "Cannot open network namespace", "does not exist")


def host_gone(error: CommandError) -> bool:
    """The command failed because its host (a namespace, with what was in it) no longer exists: nothing to undo."""
    return any(marker in (error.stderr or str(error)) for marker in _GONE)


@register
class NetworkFault(Fault):
    """Record fields: ``targets`` (nodes whose traffic is cut), ``addresses`` (peer IPs/CIDRs), ``direction``,
    ``loss`` (1.0 = drop all), ``duration`` (kernel self-expiry), ``table``."""

    kind = "network"

    def ruleset(self, exempt_tcp_ports: Sequence[int] = ()) -> str:
        r = self.record
        return rules.build_ruleset(r["id"], r["addresses"], r["direction"], r["loss"], r.get("duration"),
                                   r.get("exempt_tcp_ports") or exempt_tcp_ports)

    def inject(self, platform: Any) -> Dict[str, Any]:
        # remote hosts: the SSH port stays open (heal must reach the host) and a timer on the host deletes the table
        # at the deadline even if this process and the SSH connection are gone (platforms with arm_expiry)
        exempt = list(getattr(platform, "exempt_tcp_ports", lambda: [])())
        text = self.ruleset(exempt)
        table = rules.table_name(self.record["id"])
        arm = getattr(platform, "arm_expiry", None)
        applied: List[str] = []
        armed: List[str] = []
        for target in self.record["targets"]:
            try:
                platform.host(target).run(["nft", "-f", "-"], input=text, timeout=15)
                applied.append(target)
                if arm and self.record.get("duration"):
                    arm(target, self.record["id"], self.record["duration"], ["nft", "delete", "table", "inet", table])
                    armed.append(target)
            except CommandError as e:
                raise FaultError(f"could not install the rules of fault {self.record['id']} on {target}: {e}") from e
        facts: Dict[str, Any] = {"applied_on": applied}
        if exempt:
            facts["exempt_tcp_ports"] = exempt
        if arm:
            facts["remote_expiry_on"] = armed
        return facts

    def undo(self, platform: Any) -> Dict[str, Any]:
        table = rules.table_name(self.record["id"])
        removed, gone, errors = [], [], []
        disarm = getattr(platform, "disarm_expiry", None)
        for target in self.record["targets"]:
            if disarm:
                try:
                    disarm(target, self.record["id"])
                except CommandError:
                    pass  # the timer only deletes our table: left alone it is harmless
            try:
                platform.host(target).run(["nft", "delete", "table", "inet", table], timeout=15)
                removed.append(target)
            except CommandError as e:
                (gone if host_gone(e) else errors).append(target if host_gone(e) else f"{target}: {e}")
        if errors:
            raise FaultError(f"could not remove table {table} from {'; '.join(errors)}")
        return {"removed_from": removed, "already_gone": gone}
