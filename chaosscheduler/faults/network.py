"""Network faults: partitions (drop or random loss between targets and peers), isolation (everything but
loopback), and latency where the kernel has ``tc netem``."""

import functools
import os
import shutil
import subprocess
from typing import Any, Dict, List

from ..errors import FaultError
from ..hosts import CommandError
from . import rules
from .base import Fault, register

__all__ = ["NetworkFault", "LatencyFault", "netem_available"]

_GONE = ("No such file or directory", "Cannot open network namespace", "does not exist")


def _gone(error: CommandError) -> bool:
    return any(marker in (error.stderr or str(error)) for marker in _GONE)


@functools.lru_cache(maxsize=1)
def netem_available() -> str:
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
    return (f"this kernel has no tc netem (sch_netem): '{proc.stderr.strip()}'; latency cannot be injected here, "
            f"use mode 'loss' or 'drop'")


@register
class NetworkFault(Fault):
    """Record fields: ``targets`` (nodes whose traffic is cut), ``addresses`` (peer IPs/CIDRs), ``direction``,
    ``loss`` (1.0 = drop all), ``duration`` (kernel self-expiry), ``table``."""

    kind = "network"

    def ruleset(self) -> str:
        r = self.record
        return rules.build_ruleset(r["id"], r["addresses"], r["direction"], r["loss"], r.get("duration"),
                                   r.get("exempt_tcp_ports", ()))

    def inject(self, platform: Any) -> Dict[str, Any]:
        text = self.ruleset()
        applied: List[str] = []
        for target in self.record["targets"]:
            try:
                platform.host(target).run(["nft", "-f", "-"], input=text, timeout=15)
            except CommandError as e:
                raise FaultError(f"could not install the rules of fault {self.record['id']} on {target}: {e}") from e
            applied.append(target)
        return {"applied_on": applied}

    def undo(self, platform: Any) -> Dict[str, Any]:
        table = rules.table_name(self.record["id"])
        removed, gone, errors = [], [], []
        for target in self.record["targets"]:
            try:
                platform.host(target).run(["nft", "delete", "table", "inet", table], timeout=15)
                removed.append(target)
            except CommandError as e:
                (gone if _gone(e) else errors).append(target if _gone(e) else f"{target}: {e}")
        if errors:
            raise FaultError(f"could not remove table {table} from {'; '.join(errors)}")
        return {"removed_from": removed, "already_gone": gone}


@register
class LatencyFault(Fault):
    """Adds ``latency_ms`` to every packet leaving the targets' interface ``interface`` with tc netem. Only where
    the kernel has netem; refused (before anything is recorded) elsewhere. A root qdisc already on the interface
    is not ours: the fault is refused rather than replacing it."""

    kind = "latency"

    def inject(self, platform: Any) -> Dict[str, Any]:
        reason = netem_available()
        if reason:
            raise FaultError(reason)
        iface, delay = self.record.get("interface", "eth0"), f"{int(self.record['latency_ms'])}ms"
        applied = []
        for target in self.record["targets"]:
            try:
                platform.host(target).run(["tc", "qdisc", "add", "dev", iface, "root", "handle", "ce:", "netem",
                                           "delay", delay], timeout=15)
            except CommandError as e:
                raise FaultError(f"could not add latency on {target} {iface} (an existing root qdisc is never "
                                 f"replaced): {e}") from e
            applied.append(target)
        return {"applied_on": applied}

    def undo(self, platform: Any) -> Dict[str, Any]:
        iface = self.record.get("interface", "eth0")
        removed, gone = [], []
        for target in self.record["targets"]:
            try:
                platform.host(target).run(["tc", "qdisc", "del", "dev", iface, "root", "handle", "ce:", "netem"],
                                          timeout=15)
                removed.append(target)
            except CommandError as e:
                if not (_gone(e) or "Invalid handle" in (e.stderr or "")):
                    raise FaultError(f"could not remove latency from {target}: {e}") from e
                gone.append(target)
        return {"removed_from": removed, "already_gone": gone}
