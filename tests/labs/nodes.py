"""Hosts of a lab on this machine: each node a process tree in network, UTS, PID and mount namespaces of its own,
started through ``nodeinit.py`` (its PID 1), joined to the others by the embedded cluster's bridge
(:mod:`chaosscheduler.testbed.network`). Nothing here knows about Slurm: :mod:`tests.labs.slurm` builds on it.

A lab's record (a dict saved as JSON before anything it names exists) holds ``netns`` (names) and ``processes``
(name -> PID and start time). :func:`remove` undoes exactly that: a SIGKILL to a node's ``unshare`` process takes
its PID 1 with it (``--kill-child``), and the kernel then ends every process of the node's PID namespace.
"""

import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Sequence

from chaosscheduler import procs
from chaosscheduler.metrics.transport import TransportError, connect
from chaosscheduler.testbed import network
from chaosscheduler.timing import Deadline

__all__ = ["NODEINIT", "start", "init_pid", "enter", "dead", "wait_ssh", "remove"]

NODEINIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nodeinit.py")
UNSHARE = "/usr/bin/unshare"


def start(netns: str, node_file: str, log: str, owner: str) -> procs.ProcessRecord:
    """Start a node (``node_file`` is read by nodeinit.py) inside network namespace ``netns``; its ``unshare``
    process is what the record keeps."""
    return procs.spawn(["ip", "netns", "exec", netns, UNSHARE, "--uts", "--pid", "--mount", "--fork", "--kill-child",
                        "--mount-proc", "--propagation", "private", sys.executable, NODEINIT, node_file],
                       log, owner=owner)


def init_pid(record: Dict[str, Any]) -> int:
    """The node's PID 1 (nodeinit.py) seen from here: the only child of the recorded ``unshare``."""
    pid = record["pid"]
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        children = handle.read().split()
    if not children:
        raise RuntimeError(f"the node process {pid} has no child: the node is gone")
    return int(children[0])


def enter(record: Dict[str, Any], argv: Sequence[str], timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run ``argv`` inside the node (its network, host name, processes and mounts), as an operator at its console
    would: not through the platform under test."""
    return subprocess.run(["nsenter", "-t", str(init_pid(record)), "-n", "-u", "-p", "-m", "--"] + list(argv),
                          capture_output=True, text=True, timeout=timeout)


def dead(record: Dict[str, Any]) -> List[str]:
    """The lab's processes that died, and the node services that exited (nodeinit.py writes
    ``<log dir>/<service>.exited``)."""
    found = [name for name, proc in record["processes"].items() if not procs.is_running(proc)]
    for node in record["nodes"]:
        logs = os.path.join(record["state_dir"], "nodes", node["name"], "log")
        if os.path.isdir(logs):
            found += [f"{f[:-len('.exited')]}@{node['name']}" for f in sorted(os.listdir(logs))
                      if f.endswith(".exited")]
    return found


def wait_ssh(switch: str, addresses: Sequence[str], record: Dict[str, Any], deadline: Deadline) -> None:
    """Until every node's sshd accepts a connection from the switch namespace (the operator's seat); fails at once
    when a lab process or a node service died."""
    pending = set(addresses)
    while pending:
        if dead(record):
            raise RuntimeError(f"lab processes died: {', '.join(dead(record))}; logs under "
                               f"{record['state_dir']}/nodes/*/log")
        for address in sorted(pending):
            try:
                connect(address, 22, 1.0, switch).close()
                pending.discard(address)
            except TransportError:
                pass
        if pending and deadline.expired():
            raise TimeoutError(f"sshd does not answer on {', '.join(sorted(pending))}")
        if pending:
            time.sleep(0.05)


def remove(record: Dict[str, Any]) -> Dict[str, List[str]]:
    """Kill the recorded processes and delete the recorded namespaces; idempotent. Returns what was removed."""
    removed: Dict[str, List[str]] = {"processes": [], "netns": []}
    for name, proc in sorted((record.get("processes") or {}).items()):
        if procs.terminate(proc, signal.SIGKILL, wait=10):
            removed["processes"].append(name)
    removed["netns"] = network.delete(record.get("netns") or [])
    return removed
