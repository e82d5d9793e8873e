"""Start, inspect and stop an embedded cluster.

Record first, then create: ``cluster.json`` names every namespace before it is created and every process as soon
as it is started, and each node process carries a marker in its environment, so ``down`` removes everything even
after a ``kill -9`` of the process that ran ``up``.
"""

import contextlib
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

from .. import procs
from ..errors import TestbedError
from . import network, state
from .client import ClientError, request
from .node import read_events
from .spec import ClusterSpec, Node, layout, ports_needed

__all__ = ["Testbed", "up", "down", "find", "testbed"]

MODULES = {"master": "chaosscheduler.testbed.master", "worker": "chaosscheduler.testbed.worker",
           "load": "chaosscheduler.testbed.loadgen"}


def _free_ports(count: int) -> List[int]:
    sockets, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def _require_binaries() -> None:
    if shutil.which("etcd") is None:
        raise TestbedError("etcd is not installed: apt-get install etcd-server (Debian/Ubuntu) "
                           "or put an etcd 3.4+ binary on PATH")


def _package_env() -> Dict[str, str]:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("CHAOSSCHEDULER_OWNER", None)
    return env


class Testbed:
    """A handle on one embedded cluster, identified by its state directory."""

    __test__ = False

    def __init__(self, state_dir: str):
        self.state_dir = state_dir

    # ------------------------------------------------------------------ description
    @property
    def record(self) -> Dict[str, Any]:
        return state.load(self.state_dir)

    @property
    def spec(self) -> ClusterSpec:
        return ClusterSpec.from_dict(self.record["spec"])

    @property
    def nodes(self) -> Dict[str, Node]:
        return {n["name"]: Node.from_dict(n) for n in self.record["nodes"]}

    def nodes_of(self, role: str) -> List[Node]:
        return [n for n in self.nodes.values() if n.role == role]

    @property
    def mode(self) -> str:
        return self.record["mode"]

    @property
    def events_path(self) -> str:
        return state.events_path(self.state_dir)

    def events(self, kind: Optional[str] = None) -> List[Dict[str, Any]]:
        return [e for e in read_events(self.events_path) if kind is None or e["event"] == kind]

    def process(self, name: str) -> Optional[Dict[str, Any]]:
        return self.record.get("processes", {}).get(name)

    def is_running(self, name: str) -> bool:
        return procs.is_running(self.process(name))

    # ------------------------------------------------------------------ node API
    def call(self, name: str, method: str, path: str, body: Any = None, timeout: float = 2.0):
        node = self.nodes[name]
        return request(node.socket, method, path, body, timeout=timeout)

    def leader(self, timeout: float = 1.0) -> Optional[str]:
        """The leader as the masters see it (the first live master that answers), or None."""
        for master in self.nodes_of("master"):
            if not self.is_running(master.name):
                continue
            try:
                status, body = self.call(master.name, "GET", "/api/leader", timeout=timeout)
            except ClientError:
                continue
            if status == 200:
                return body["leader"]
        return None

    def any_master(self, method: str, path: str, body: Any = None, timeout: float = 2.0):
        errors = []
        for master in self.nodes_of("master"):
            if not self.is_running(master.name):
                continue
            try:
                status, answer = self.call(master.name, method, path, body, timeout=timeout)
            except ClientError as e:
                errors.append(str(e))
                continue
            if status == 200:
                return answer
            errors.append(f"{master.name}: {status} {answer}")
        raise TestbedError(f"no master of {self.spec.name} answered {path}: {'; '.join(errors) or 'none running'}")

    def workers(self, running: bool = True) -> List[Dict[str, Any]]:
        """Every worker as the masters see it; ``running=False`` leaves out the running tasks (much cheaper)."""
        return self.any_master("GET", "/api/workers" if running else "/api/workers?running=0")["workers"]

    def tasks(self, since: float = 0.0) -> List[Dict[str, Any]]:
        return self.any_master("GET", f"/api/tasks?since={since}")["tasks"]

    def submissions(self, since: float = 0.0) -> List[Dict[str, Any]]:
        status, body = self.call("load", "GET", f"/api/submissions?since={since}")
        return body["submissions"]

    def submit(self, tasks: int = 1, duration: float = 1.0, command: Optional[List[str]] = None,
               deadline: float = 5.0) -> Dict[str, Any]:
        from .client import submit_job

        masters = [(m.name, m.socket) for m in self.nodes_of("master") if self.is_running(m.name)]
        return submit_job(masters, {"tasks": tasks, "duration": duration, "command": command}, deadline=deadline)

    def healthy(self) -> Optional[str]:
        """None when the cluster is healthy (one leader, every worker alive, every node process running);
        otherwise what is wrong."""
        down = [n for n in self.nodes if not self.is_running(n)]
        if down:
            return f"not running: {', '.join(down)}"
        leader = self.leader()
        if not leader:
            return "no leader"
        try:
            workers = self.workers()
        except TestbedError as e:
            return str(e)
        dead = [w["name"] for w in workers if not w["alive"]]
        if dead:
            return f"workers not registered: {', '.join(dead)}"
        unseen = [w["name"] for w in workers if w["state"] != "alive"]
        if unseen:  # registered, but the leader has not taken them on yet: it cannot schedule there
            return f"workers not yet seen by the leader: {', '.join(unseen)}"
        return None

    def wait_healthy(self, timeout: float = 30.0) -> float:
        started = time.monotonic()
        deadline = started + timeout
        problem = "not checked"
        while time.monotonic() < deadline:
            problem = self.healthy()
            if problem is None:
                return time.monotonic() - started
            time.sleep(0.05)
        raise TestbedError(f"cluster {self.spec.name} not healthy after {timeout:.0f} s: {problem}; "
                           f"node logs are in {os.path.join(self.state_dir, 'logs')}")

    # ------------------------------------------------------------------ processes
    def _argv(self, node: Node, spec: ClusterSpec, nodes: List[Node], token: str) -> List[str]:
        if node.role == "etcd":
            members = [n for n in nodes if n.role == "etcd"]
            argv = ["etcd", "--name", node.name, "--data-dir", os.path.join(self.state_dir, "etcd", node.name),
                    "--listen-client-urls", f"http://{node.address}:{node.port}",
                    "--advertise-client-urls", f"http://{node.address}:{node.port}",
                    "--listen-peer-urls", f"http://{node.address}:{node.peer_port}",
                    "--initial-advertise-peer-urls", f"http://{node.address}:{node.peer_port}",
                    "--initial-cluster", ",".join(f"{m.name}=http://{m.address}:{m.peer_port}" for m in members),
                    "--initial-cluster-state", "new", "--initial-cluster-token", token,
                    "--heartbeat-interval", "50", "--election-timeout", "250",
                    "--logger", "zap", "--log-level", "warn"]
        else:
            argv = [sys.executable, "-m", MODULES[node.role], "--state-dir", self.state_dir, "--name", node.name]
        if node.netns:
            argv = ["ip", "netns", "exec", node.netns] + argv
        return argv

    def _start(self, node: Node, record: Dict[str, Any]) -> None:
        spec = ClusterSpec.from_dict(record["spec"])
        nodes = [Node.from_dict(n) for n in record["nodes"]]
        argv = self._argv(node, spec, nodes, record["token"])
        proc = procs.spawn(argv, state.log_path(self.state_dir, node.name), env=_package_env(),
                           owner=self.state_dir)
        record.setdefault("processes", {})[node.name] = dict(proc, started_at=time.time())
        state.save(self.state_dir, record)

    def restart_node(self, name: str, wait: float = 10.0) -> Dict[str, Any]:
        """Start node ``name`` again (it must not be running) and wait until it answers /health."""
        with state.lock(self.state_dir):
            record = self.record
            nodes = self.nodes
            if name not in nodes:
                raise TestbedError(f"no node {name!r} in cluster {record['spec']['name']}; "
                                   f"nodes: {', '.join(sorted(nodes))}")
            if self.is_running(name):
                raise TestbedError(f"{name} is already running (pid {self.process(name)['pid']})")
            orphan = self._unrecorded(name)
            if orphan:  # its starter died between starting it and recording it: adopt it, never start a second
                record.setdefault("processes", {})[name] = dict(orphan, started_at=time.time())
                state.save(self.state_dir, record)
            else:
                self._start(nodes[name], record)
        self.wait_node(name, wait)
        return self.process(name)

    def _unrecorded(self, name: str) -> Optional[procs.ProcessRecord]:
        """A live process of node ``name`` that cluster.json does not name, found by the cluster's marker."""
        for pid in procs.pids_with_marker(self.state_dir):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    argv = handle.read().split(b"\0")
            except OSError:
                continue
            if b"--name" in argv[:-1] and argv[argv.index(b"--name") + 1] == name.encode():
                return procs.ProcessRecord.of(pid)
        return None

    def wait_node(self, name: str, timeout: float = 10.0) -> None:
        node = self.nodes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running(name):
                raise TestbedError(f"{name} exited while starting; see {state.log_path(self.state_dir, name)}")
            if node.role == "etcd":
                return
            with contextlib.suppress(ClientError):
                if self.call(name, "GET", "/health", timeout=0.5)[0] == 200:
                    return
            time.sleep(0.02)
        raise TestbedError(f"{name} did not answer /health within {timeout} s")

    def signal_node(self, name: str, sig: int = signal.SIGKILL) -> bool:
        """Send ``sig`` to node ``name`` if it runs; wait until it is gone for fatal signals."""
        if name not in self.nodes:
            raise TestbedError(f"no node {name!r}; nodes: {', '.join(sorted(self.nodes))}")
        return procs.terminate(self.process(name) or {}, sig)

    # ------------------------------------------------------------------ status
    def status(self) -> Dict[str, Any]:
        record = self.record
        nodes = []
        for node in self.nodes.values():
            proc = record.get("processes", {}).get(node.name) or {}
            entry = {"name": node.name, "role": node.role, "running": procs.is_running(proc),
                     "pid": proc.get("pid"), "netns": node.netns, "address": f"{node.address}:{node.port}",
                     "socket": node.socket}
            if entry["running"] and node.role != "etcd":
                with contextlib.suppress(ClientError):
                    code, health = self.call(node.name, "GET", "/health", timeout=0.5)
                    entry["health"] = health if code == 200 else {"ok": False, "status": code}
            nodes.append(entry)
        return {"name": record["spec"]["name"], "state_dir": self.state_dir, "mode": record["mode"],
                "leader": self.leader(), "nodes": nodes, "problem": self.healthy(),
                "events": self.events_path}

    def __enter__(self) -> "Testbed":
        return self

    def __exit__(self, *exc: Any) -> None:
        down(self.state_dir)


def find(name: str = "default", home: str = "") -> Testbed:
    """The running cluster ``name`` under ``home`` (default: the state home). Raises if there is none."""
    spec = ClusterSpec(name=name, home=home)
    if not state.exists(spec.state_dir):
        raise TestbedError(f"no embedded cluster named {name!r} at {spec.state_dir}: "
                           f"start it with 'chaosscheduler testbed up --name {name}'")
    return Testbed(spec.state_dir)


def _leftovers(spec: ClusterSpec) -> List[str]:
    """What exists of a cluster with this name: recorded processes alive, namespaces, state."""
    found = []
    if state.exists(spec.state_dir):
        found.append(f"state at {spec.state_dir}")
    prefix = f"cs-{spec.name}-"
    found += [f"namespace {n}" for n in network.existing_namespaces() if n.startswith(prefix)]
    found += [f"process {p}" for p in procs.pids_with_marker(spec.state_dir)]
    return found


def up(spec: Optional[ClusterSpec] = None, replace: bool = False, timeout: float = 30.0) -> Testbed:
    """Start the cluster described by ``spec`` and return once it is healthy (a leader, every worker registered).

    A cluster of the same name that is running or left something behind is refused unless ``replace`` (then it is
    removed first). If start-up fails, everything started so far is removed before the error is raised."""
    spec = spec or ClusterSpec()
    _require_binaries()
    mode = spec.network
    if mode in ("auto", "netns"):
        reason = network.netns_supported()
        if reason and mode == "netns":
            raise TestbedError(reason)
        mode = "loopback" if reason else "netns"
    state_dir = spec.state_dir
    if len(os.path.join(state_dir, "sock", "worker-1000.sock")) > 100:
        raise TestbedError(f"state directory {state_dir} is too long for Unix sockets (limit ~100 characters): "
                           f"set CHAOSSCHEDULER_HOME to a shorter path")
    leftovers = _leftovers(spec)
    if leftovers:
        if not replace:
            raise TestbedError(f"a cluster named {spec.name!r} already exists ({'; '.join(leftovers[:3])}): "
                               f"run 'chaosscheduler testbed down --name {spec.name}' or up with --replace")
        down(state_dir, force=True)
    nodes = layout(spec, mode, _free_ports(ports_needed(spec)) if mode == "loopback" else None)
    tb = Testbed(state_dir)
    with state.lock(state_dir):
        leftovers = _leftovers(spec)  # again, under the lock: a concurrent up() may have created it meanwhile
        if leftovers:
            raise TestbedError(f"a cluster named {spec.name!r} already exists ({'; '.join(leftovers[:3])}): "
                               f"another process started it just now")
        os.makedirs(os.path.join(state_dir, "sock"), exist_ok=True)
        os.makedirs(os.path.join(state_dir, "logs"), exist_ok=True)
        switch = network.switch_name(spec.name) if mode == "netns" else None
        record = {"spec": spec.to_dict(), "mode": mode, "created_at": time.time(), "token": uuid.uuid4().hex,
                  "nodes": [n.to_dict() for n in nodes], "processes": {},
                  "namespaces": ([switch] + [n.netns for n in nodes]) if switch else []}
        state.save(state_dir, record)
        try:
            if mode == "netns":
                network.create(spec.name, nodes)
            for node in nodes:
                tb._start(node, record)
            if spec.sshd or spec.prometheus:
                from . import remote

                remote.start(state_dir, record, nodes, mode)
        except Exception:
            _teardown(state_dir, record)
            raise
    try:
        tb.wait_healthy(timeout)
    except BaseException:
        logs = _log_tails(state_dir, [n.name for n in nodes])
        down(state_dir)
        raise TestbedError(f"cluster {spec.name} did not become healthy within {timeout:.0f} s; "
                           f"removed what was started. {logs}") from None
    return tb


def _log_tails(state_dir: str, names: List[str]) -> str:
    tails = []
    for name in names:
        with contextlib.suppress(OSError):
            with open(state.log_path(state_dir, name)) as handle:
                lines = [ln.strip() for ln in handle.readlines()[-2:] if ln.strip()]
            if lines:
                tails.append(f"{name}: {lines[-1][:200]}")
    return "Last log lines: " + " | ".join(tails) if tails else ""


def _teardown(state_dir: str, record: Dict[str, Any], extra_namespaces: Optional[List[str]] = None) -> int:
    """Kill the cluster's processes and delete its namespaces; return how many processes were killed."""
    namespaces = list(record.get("namespaces", [])) + list(extra_namespaces or [])
    victims = [p for p in record.get("processes", {}).values() if procs.is_running(p)]
    victims += [procs.ProcessRecord.of(pid) for pid in procs.pids_with_marker(state_dir)]
    present = set(network.existing_namespaces())
    for netns in namespaces:
        if netns in present:
            victims += [procs.ProcessRecord.of(pid) for pid in network.pids_in(netns)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if procs.is_running(victim):
                os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(procs.is_running(v) for v in victims) and time.monotonic() < deadline:
        time.sleep(0.01)
    network.delete(namespaces)
    return len({v["pid"] for v in victims})


def down(state_dir: str, force: bool = False, keep_state: bool = False) -> Dict[str, Any]:
    """Remove every process, namespace (with its veths and bridge) and the state directory of the cluster at
    ``state_dir``. Idempotent. With ``force``, an unreadable ``cluster.json`` is not an error: namespaces named
    ``cs-<name>-*`` and processes carrying this cluster's marker are removed. The result says what was found:
    ``existed`` (a state directory was there), ``namespaces_removed``, ``processes_killed``."""
    name = os.path.basename(state_dir.rstrip("/"))
    existed = os.path.isdir(state_dir)
    if not existed and not procs.pids_with_marker(state_dir) and \
            not any(n.startswith(f"cs-{name}-") for n in network.existing_namespaces()):
        # nothing of it anywhere: say so, and leave no lock file behind for a cluster that never was
        return {"cluster": name, "namespaces_removed": [], "existed": False, "processes_killed": 0}
    with state.lock(state_dir):
        try:
            record = state.load(state_dir) if state.exists(state_dir) else {}
        except TestbedError:
            if not force:
                raise
            record = {}
        extra = []
        if force or not record:
            extra = [n for n in network.existing_namespaces() if n.startswith(f"cs-{name}-")]
        before = set(network.existing_namespaces())
        killed = _teardown(state_dir, record, extra)
        removed = sorted(before - set(network.existing_namespaces()))
        if not keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
    return {"cluster": name, "namespaces_removed": removed, "existed": existed, "processes_killed": killed}


@contextlib.contextmanager
def testbed(spec: Optional[ClusterSpec] = None, replace: bool = False, timeout: float = 30.0) -> Iterator[Testbed]:
    """``with testbed(ClusterSpec(...)) as tb:`` — a healthy cluster for the block, removed afterwards."""
    tb = up(spec, replace=replace, timeout=timeout)
    try:
        yield tb
    finally:
        down(tb.state_dir)
