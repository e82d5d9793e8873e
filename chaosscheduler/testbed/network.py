"""The cluster's network: one namespace per node, each joined by a veth pair to a bridge in a "switch" namespace.

Nothing is created in the root network namespace: the bridge and the switch-side veth ends live in the switch
namespace. Deleting the namespaces removes every link with them.
"""

import os
from typing import Iterable, List, Optional

from ..hosts import CommandError, LocalHost
from .spec import SUBNET, Node

__all__ = ["netns_supported", "existing_namespaces", "create", "delete", "switch_name"]

_local = LocalHost()


def switch_name(cluster: str) -> str:
    return f"cs-{cluster}-sw"


def existing_namespaces() -> List[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def netns_supported() -> Optional[str]:
    """None when this process can create network namespaces; otherwise the reason it cannot."""
    if os.geteuid() != 0:
        return ("network namespaces need root: run as root, or inside an unprivileged user namespace with "
                "'chaosscheduler userns -- <command>'; otherwise network='loopback' runs the cluster on 127.0.0.1, "
                "where master kills work but network faults do not")
    try:
        _local.run(["ip", "-V"], timeout=5)
    except CommandError:
        return "the 'ip' command is missing: apt-get install iproute2"
    return None


def _batch(commands: Iterable[str], netns: Optional[str] = None) -> None:
    lines = "\n".join(commands) + "\n"
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    _local.run(argv, input=lines, timeout=60)


def create(cluster: str, nodes: List[Node]) -> None:
    """Create the switch namespace, the bridge and one namespace + veth per node. Names come from the validated
    spec (``[a-z0-9-]``), never from free text, so the batch lines cannot be abused."""
    switch = switch_name(cluster)
    _batch([f"netns add {switch}"] + [f"netns add {n.netns}" for n in nodes])
    prefix = SUBNET.prefixlen
    switch_cmds = ["link add br0 type bridge", "link set br0 up", "link set lo up"]
    for i, node in enumerate(nodes, start=1):
        switch_cmds += [f"link add v{i} type veth peer name eth0 netns {node.netns}",
                        f"link set v{i} master br0", f"link set v{i} up"]
    _batch(switch_cmds, netns=switch)
    for node in nodes:
        _batch(["link set lo up", f"addr add {node.address}/{prefix} dev eth0", "link set eth0 up"],
               netns=node.netns)


def delete(names: Iterable[str]) -> List[str]:
    """Delete the namespaces that still exist among ``names``; return those deleted."""
    present = set(existing_namespaces())
    doomed = [n for n in names if n in present]
    if doomed:
        _local.run(["ip", "-force", "-batch", "-"], input="".join(f"netns del {n}\n" for n in doomed),
                   timeout=60, check=False)
    return doomed


def pids_in(netns: str) -> List[int]:
    """PIDs of every process living in ``netns`` (the kernel is the record)."""
    try:
        result = _local.run(["ip", "netns", "pids", netns], timeout=10, check=False)
    except CommandError:
        return []
    return [int(p) for p in result.stdout.split() if p.isdigit()]
