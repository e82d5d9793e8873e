"""What an embedded cluster is made of: its settings (validated) and the layout of its nodes.

The layout is pure: names, namespaces, addresses and ports follow from the settings alone, so every process
(the CLI, a node, a later ``down``) derives the same answer.
"""

import dataclasses
import ipaddress
import os
import re
from typing import Any, Dict, List, Optional

from ..errors import ConfigurationError

__all__ = ["ClusterSpec", "Node", "layout", "default_home", "NAME_RE"]

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
SUBNET = ipaddress.ip_network("198.18.0.0/16")
API_PORT = 8080
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
NETWORK_MODES = ("auto", "netns", "loopback")


def default_home() -> str:
    """Where state lives: ``$CHAOSSCHEDULER_HOME``, else ``$XDG_STATE_HOME/chaosscheduler``,
    else ``~/.local/state/chaosscheduler``."""
    home = os.environ.get("CHAOSSCHEDULER_HOME")
    if home:
        return os.path.abspath(home)
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(xdg, "chaosscheduler")


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigurationError(f"testbed setting '{name}' must be an integer from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise ConfigurationError(f"testbed setting '{name}' must be from {low} to {high}, got {value!r}")
    return int(value)


def _float(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigurationError(f"testbed setting '{name}' must be a number from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise ConfigurationError(f"testbed setting '{name}' must be from {low} to {high}, got {value!r}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"testbed setting '{name}' must be true or false, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """Settings of one embedded cluster. The defaults are a healthy platform; the documented "broken" knobs
    (``reschedule=False``, ``campaign=False``, a long ``election_ttl``, ``heartbeat_interval`` close to
    ``heartbeat_ttl``) make it fail the experiments realistically."""

    name: str = "default"
    masters: int = 3
    workers: int = 4
    etcd_members: int = 1
    election_ttl: int = 2           # seconds: the leader's etcd lease
    heartbeat_ttl: int = 5          # seconds: a worker's etcd lease; expiry = the worker is dead
    heartbeat_interval: float = 0.0  # seconds between keep-alives; 0 means heartbeat_ttl / 5
    slots: int = 4                  # tasks a worker runs at once
    task_duration: float = 4.0      # seconds a load-generator task runs
    load_rate: float = 2.0          # jobs per second submitted by the load generator; 0 = no load generator
    reschedule: bool = True         # the leader re-runs the unfinished tasks of a dead worker elsewhere
    campaign: bool = True           # False: only master-1 ever stands for election (no failover)
    network: str = "auto"           # auto | netns | loopback
    home: str = ""                  # state home; "" = default_home()
    sshd: bool = False              # an sshd in every node's namespace (the cluster as remote hosts; netns only)
    prometheus: bool = False        # a Prometheus scraping every node, in the switch namespace (netns only)
    # ---- broken-platform knobs (default off; docs/testbed.md "Broken platforms"), each caught by a probe or the
    # witness: shares are of the tasks concerned (0 = never, 1 = every one), seconds are delays
    duplicate_completion: float = 0.0  # share of completions the leader records twice (two "completed" entries)
    duplicate_dispatch: float = 0.0    # share of assignments also sent, same attempt, to a second live worker
    drop_lost: bool = False            # a dead worker's unfinished tasks are silently deleted (no rescheduling,
                                       # no error, no record left)
    reschedule_delay: float = 0.0      # seconds a rescheduled task waits before it may be assigned again
    # broken knobs of the verdict work: a new leader that assigns nothing for this many seconds after winning a
    # failover (not the first election); a split brain: leaders never step down, write without the fence and
    # schedule every pending task they find in etcd (a zombie leader after a pause acts beside the new one)
    stall_after_election: float = 0.0
    split_brain: bool = False

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, Any]]) -> "ClusterSpec":
        """Build and validate settings from a JSON-like dict; unknown keys are refused by name."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown testbed setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ConfigurationError(
                f"testbed name must be 1-12 lowercase letters or digits starting with a letter, got {self.name!r}")
        _int("masters", self.masters, 1, 9)
        _int("workers", self.workers, 1, 1000)
        _int("etcd_members", self.etcd_members, 1, 5)
        _int("election_ttl", self.election_ttl, 1, 600)
        _int("heartbeat_ttl", self.heartbeat_ttl, 1, 600)
        _float("heartbeat_interval", self.heartbeat_interval, 0.0, 600.0)
        if self.heartbeat_interval and self.heartbeat_interval >= self.heartbeat_ttl:
            raise ConfigurationError("testbed setting 'heartbeat_interval' must be below 'heartbeat_ttl' (a slower "
                                     "keep-alive can never keep the lease)")
        _int("slots", self.slots, 1, 1000)
        _float("task_duration", self.task_duration, 0.0, 3600.0)
        _float("load_rate", self.load_rate, 0.0, 1000.0)
        _bool("reschedule", self.reschedule)
        _bool("campaign", self.campaign)
        if self.network not in NETWORK_MODES:
            raise ConfigurationError(f"testbed setting 'network' must be one of {', '.join(NETWORK_MODES)}, "
                                     f"got {self.network!r}")
        _float("stall_after_election", self.stall_after_election, 0.0, 3600.0)
        _bool("split_brain", self.split_brain)
        _bool("sshd", self.sshd)
        _float("duplicate_completion", self.duplicate_completion, 0.0, 1.0)
        _float("duplicate_dispatch", self.duplicate_dispatch, 0.0, 1.0)
        _bool("drop_lost", self.drop_lost)
        _float("reschedule_delay", self.reschedule_delay, 0.0, 3600.0)
        if self.duplicate_dispatch and self.workers < 2:
            raise ConfigurationError("testbed setting 'duplicate_dispatch' needs at least 2 workers (the second "
                                     "copy runs on another worker)")
        _bool("prometheus", self.prometheus)
        if (self.sshd or self.prometheus) and self.network == "loopback":
            raise ConfigurationError("testbed settings 'sshd' and 'prometheus' need network namespaces "
                                     "(network 'netns' or 'auto' as root)")
        if not isinstance(self.home, str):
            raise ConfigurationError(f"testbed setting 'home' must be a path, got {self.home!r}")

    @property
    def keepalive_interval(self) -> float:
        return self.heartbeat_interval or self.heartbeat_ttl / 5.0

    @property
    def state_dir(self) -> str:
        return os.path.join(self.home or default_home(), "testbed", self.name)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Node:
    """One host of the cluster. ``address`` is where peers reach it; ``socket`` is where we (outside the
    cluster's network) reach its HTTP API."""

    name: str
    role: str                 # etcd | master | worker | load
    netns: Optional[str]      # None in loopback mode
    address: str
    port: int                 # HTTP API port (etcd: client port)
    peer_port: int = 0        # etcd only
    socket: str = ""
    index: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Node":
        return cls(**data)


def _address(role_block: int, index: int) -> str:
    """Role blocks: 1 = etcd, 2 = masters, 3 = load generator, 16.. = workers (250 per /24)."""
    if role_block >= 16:
        role_block += (index - 1) // 250
        index = (index - 1) % 250 + 1
    return str(SUBNET.network_address + role_block * 256 + index)


def layout(spec: ClusterSpec, mode: str, ports: Optional[List[int]] = None) -> List[Node]:
    """The nodes of ``spec`` for network ``mode`` ("netns" or "loopback"). In loopback mode every node lives on
    127.0.0.1 and ``ports`` (one per port needed, in order) must be given."""
    roles = ([("etcd", f"etcd-{i}", 1, i) for i in range(1, spec.etcd_members + 1)]
             + [("master", f"master-{i}", 2, i) for i in range(1, spec.masters + 1)]
             + [("worker", f"worker-{i}", 16, i) for i in range(1, spec.workers + 1)])
    if spec.load_rate > 0:
        roles.append(("load", "load", 3, 1))
    sock_dir = os.path.join(spec.state_dir, "sock")
    free = list(ports or [])
    nodes = []
    for role, name, block, index in roles:
        if mode == "netns":
            netns, address = f"cs-{spec.name}-{name}", _address(block, index)
            port = ETCD_CLIENT_PORT if role == "etcd" else API_PORT
            peer = ETCD_PEER_PORT if role == "etcd" else 0
        else:
            netns, address = None, "127.0.0.1"
            port = free.pop(0)
            peer = free.pop(0) if role == "etcd" else 0
        nodes.append(Node(name=name, role=role, netns=netns, address=address, port=port, peer_port=peer,
                          socket=os.path.join(sock_dir, f"{name}.sock"), index=index))
    return nodes


def ports_needed(spec: ClusterSpec) -> int:
    return spec.etcd_members * 2 + spec.masters + spec.workers + (1 if spec.load_rate > 0 else 0)
