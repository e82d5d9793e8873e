"""Pure builders of the firewall rules a network fault installs: no I/O, so every shape is unit-tested.

A fault's rules live in one nftables table of their own, ``inet chaosscheduler_<fault id>``; undo deletes that
table and nothing else. The addresses to cut sit in sets whose elements carry a kernel timeout equal to the
fault's duration: at the deadline the kernel itself stops dropping, even if every process of ours is dead (the
reaper then deletes the empty table).
"""

import ipaddress
import re
from typing import Iterable, List, Optional, Sequence, Tuple

__all__ = ["table_name", "build_ruleset", "split_addresses", "DIRECTIONS", "TABLE_PREFIX", "tables_in_ruleset"]

TABLE_PREFIX = "chaosscheduler_"
DIRECTIONS = ("both", "to", "from")
EVERYTHING = ["0.0.0.0/0", "::/0"]
_FAULT_ID = re.compile(r"^[a-z0-9]{1,32}$")
LOSS_SCALE = 10000  # loss is applied with 0.01 % granularity


def table_name(fault_id: str) -> str:
    if not _FAULT_ID.match(fault_id):
        raise ValueError(f"fault id {fault_id!r} is not [a-z0-9]{{1,32}}")
    return TABLE_PREFIX + fault_id


def split_addresses(addresses: Iterable[str]) -> Tuple[List[str], List[str]]:
    """Validate and split into (IPv4, IPv6) networks in canonical text; raise ValueError on anything else."""
    v4, v6 = [], []
    for address in addresses:
        net = ipaddress.ip_network(str(address), strict=False)
        (v4 if net.version == 4 else v6).append(str(net) if net.prefixlen != net.max_prefixlen
                                                else str(net.network_address))
    return sorted(set(v4)), sorted(set(v6))


def _duration(seconds: float) -> str:
    return f"{max(1, int(round(seconds * 1000)))}ms"


def _set(name: str, family: str, elements: Sequence[str], timeout: Optional[float]) -> str:
    flags = "interval, timeout" if timeout else "interval"
    suffix = f" timeout {_duration(timeout)}" if timeout else ""
    body = f"    set {name} {{ type {family}; flags {flags};"
    if elements:
        body += " elements = { " + ", ".join(e + suffix for e in elements) + " };"
    return body + " }"


def build_ruleset(fault_id: str, addresses: Sequence[str], direction: str = "both", loss: float = 1.0,
                  timeout: Optional[float] = None, exempt_tcp_ports: Sequence[int] = ()) -> str:
    """The ``nft -f`` input for one fault on one host.

    ``addresses``: peers (IPs or CIDRs) whose traffic is cut; ``["0.0.0.0/0", "::/0"]`` isolates the host.
    ``direction``: "both", "to" (this host → peers) or "from" (peers → this host).
    ``loss``: share of matching packets dropped, 1.0 = all (a partition), below 1 = random loss.
    ``timeout``: seconds after which the kernel forgets the addresses (self-expiry); None = no expiry.
    ``exempt_tcp_ports``: local TCP ports whose traffic is never cut (the SSH session that must undo the fault).
    Loopback traffic is never cut."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if not 0 < loss <= 1:
        raise ValueError(f"loss must be in (0, 1], got {loss!r}")
    v4, v6 = split_addresses(addresses)
    if not v4 and not v6:
        raise ValueError("a network fault needs at least one peer address")
    ports = sorted({int(p) for p in exempt_tcp_ports})
    if any(not 0 < p < 65536 for p in ports):
        raise ValueError(f"exempt TCP ports must be 1-65535, got {ports}")
    threshold = int(round(loss * LOSS_SCALE))
    verdict = "drop" if threshold >= LOSS_SCALE else f"numgen random mod {LOSS_SCALE} < {threshold} drop"
    table = table_name(fault_id)
    lines = [f"table inet {table} {{", _set("peers4", "ipv4_addr", v4, timeout),
             _set("peers6", "ipv6_addr", v6, timeout)]
    for chain, hook, iface, field, port_field in (("out", "output", "oifname", "daddr", "sport"),
                                                  ("in", "input", "iifname", "saddr", "dport")):
        if (direction == "to" and hook == "input") or (direction == "from" and hook == "output"):
            continue
        lines.append(f"    chain {chain} {{")
        lines.append(f"        type filter hook {hook} priority -200; policy accept;")
        lines.append(f'        {iface} "lo" accept')
        if ports:
            lines.append(f"        tcp {port_field} {{ {', '.join(map(str, ports))} }} accept")
        lines.append(f"        ip {field} @peers4 {verdict}")
        lines.append(f"        ip6 {field} @peers6 {verdict}")
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def tables_in_ruleset(listing: str) -> List[str]:
    """Names of our tables in the output of ``nft list tables`` (the kernel as a record, for heal --from-hosts)."""
    found = []
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[1] == "inet" and parts[2].startswith(TABLE_PREFIX):
            found.append(parts[2])
    return found
