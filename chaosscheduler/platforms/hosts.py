"""Any platform on hosts reached over SSH: the ``chaosscheduler_hosts`` description (see docs/platforms.md).

Who is who comes from the description (masters, workers, registry, each with a host and an address); who leads from
a leader source (:mod:`.leader`); what the workers do from the scheduler's own commands
(:mod:`.hosts_commands`: ``sinfo``, ``squeue``...) or from Prometheus (:mod:`chaosscheduler.metrics.forms`);
faults run as argv lists over SSH (:class:`chaosscheduler.hosts.ssh.SSHHost`). A master's (or a worker's) process is
found by a pid file, a pattern matched against the process list, a systemd unit or the TCP port it listens on; it
is restarted by its systemd unit or by a command started detached on its host.

Workers are managed like masters: after a network fault is undone, :meth:`HostsPlatform.restore_workers` starts a
worker process that stopped (a worker that shuts itself down when cut off), waits for the platform to see the
worker again, and resumes a worker the platform left unhealthy (drained) if it was healthy before the fault.
"""

import re
import signal as _signal
import time
from typing import Any, Dict, List, Optional

from ..errors import ChaosSchedulerError, ConfigurationError
from ..hosts import CommandError, LocalHost, NetnsHost
from ..hosts.ssh import SSHHost
from . import hosts_workers
from .base import Platform
from .commands import Runner
from .hosts_commands import CommandForms
from .leader import LeaderSource, SourceEnv, build, expand

__all__ = ["HostsPlatform", "NoRecords"]

_FATAL = (_signal.SIGKILL, _signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT)
_SS_PID = re.compile(r"pid=(\d+)")
_START_SCRIPT = 'exec </dev/null >/dev/null 2>&1; exec "$@"'


class NoRecords(ChaosSchedulerError, NotImplementedError):
    """The platform keeps no such records (the base contract's NotImplementedError, with a complete message)."""


class HostsPlatform(Platform):
    kind = "hosts"

    def __init__(self, description: Dict[str, Any], prometheus_base_url: str = "",
                 secrets: Optional[Dict[str, Any]] = None, poll_interval: Optional[float] = None):
        from ..pacing import default_poll_interval

        self.description = description
        self.prometheus_base_url = prometheus_base_url
        self.secrets = secrets or {}
        self.poll_interval = poll_interval if poll_interval is not None else \
            default_poll_interval("hosts", description)
        self.same_clock = bool(description.get("same_clock"))
        self._nodes = {n["name"]: dict(n, role=role) for role in ("masters", "workers", "registry")
                       for n in description[role]}
        self._hosts: Dict[str, SSHHost] = {}
        self._leader: Optional[LeaderSource] = None
        self._prometheus: Any = None
        self._runner: Optional[Runner] = None

    # ------------------------------------------------------------------ description
    def reference(self) -> Dict[str, Any]:
        return {"platform": "hosts", "hosts": self.description, "prometheus_base_url": self.prometheus_base_url}

    def masters(self) -> List[str]:
        return [n["name"] for n in self.description["masters"]]

    def worker_names(self) -> List[str]:
        return [n["name"] for n in self.description["workers"]]

    def registry(self) -> List[str]:
        return [n["name"] for n in self.description["registry"]]

    def nodes(self) -> List[str]:
        return list(self._nodes)

    def node(self, name: str) -> Dict[str, Any]:
        if name not in self._nodes:
            raise ConfigurationError(f"no node {name!r} in chaosscheduler_hosts; nodes: {', '.join(self._nodes)}")
        return self._nodes[name]

    def address(self, node: str) -> str:
        return self.node(node)["address"]

    def heartbeat_peers(self) -> List[str]:
        """The nodes whose loss makes the platform declare a worker dead: the registry, or the masters themselves
        (``heartbeat_to: "masters"``: Slurm's slurmd answers the controllers' pings)."""
        return self.masters() if self.description.get("heartbeat_to") == "masters" else self.registry()

    def network_capable(self) -> Optional[str]:
        return None

    def exempt_tcp_ports(self) -> List[int]:
        """Ports a network fault never cuts on a host: the SSH session that must be able to undo it."""
        return list(self.description.get("exempt_tcp_ports") or [])

    def host(self, node: str) -> SSHHost:
        if node not in self._hosts:
            n = self.node(node)
            self._hosts[node] = SSHHost(n["host"], n["ssh"], self.description.get("connect_netns"), self.secrets,
                                        node=node)
        return self._hosts[node]

    # ------------------------------------------------------------------ sources
    @property
    def prometheus(self) -> Any:
        if self._prometheus is None and self.prometheus_base_url:
            from ..metrics.prometheus import for_description

            self._prometheus = for_description(self.prometheus_base_url, self.description["metrics"], self.secrets,
                                               "chaosscheduler_hosts", netns=self.description.get("connect_netns"))
        return self._prometheus

    @property
    def metrics(self) -> Any:
        """The metrics forms of the probes (None without prometheus_base_url)."""
        if not self.prometheus_base_url:
            return None
        from ..metrics.forms import MetricsForms

        return MetricsForms(self.prometheus, self.description, self.description["metrics"]["queries"])

    @property
    def runner(self) -> Runner:
        """Runs command sources and other argv lists where the description says (SSH, or this machine)."""
        if self._runner is None:
            netns = self.description.get("connect_netns")
            self._runner = Runner(self.host, NetnsHost(netns) if netns else LocalHost(), self.description["masters"],
                                  self.description["workers"], expand, others=self.description["registry"])
        return self._runner

    @property
    def commands(self) -> CommandForms:
        """The command sources (``chaosscheduler_hosts.commands``)."""
        return CommandForms(self.description, self.runner)

    @property
    def leader_source(self) -> LeaderSource:
        if self._leader is None:
            env = SourceEnv(masters=self.description["masters"], registry=self.description["registry"],
                            netns=self.description.get("connect_netns"), secrets=self.secrets,
                            prometheus=self.prometheus if self.prometheus_base_url else None,
                            poll_interval=self.poll_interval, runner=self.runner)
            self._leader = build(self.description["leader"], env)
        return self._leader

    def leader(self) -> Dict[str, Any]:
        return self.leader_source.leader()

    def leader_claims(self) -> List[str]:
        return list(self.leader_source.leader().get("claims") or [])

    def workers(self) -> List[Dict[str, Any]]:
        if not self.description["workers"]:
            return []
        if self.commands.has("workers"):
            return self.commands.workers()
        forms = self.metrics
        if forms is None:
            raise ChaosSchedulerError("the hosts platform learns about workers from the scheduler's commands "
                                      "(chaosscheduler_hosts.commands.workers) or from Prometheus "
                                      "(prometheus_base_url): give one")
        return forms.workers()

    def worker_states(self) -> List[Dict[str, Any]]:
        if self.description["workers"] and self.commands.has("workers"):
            return self.commands.workers(with_tasks=False)
        return self.workers()

    def task_records(self) -> List[Dict[str, Any]]:
        """The scheduler's own task records (``commands.tasks``), e.g. Slurm's jobs by job id."""
        return self.commands.task_records()

    def health_problems(self) -> List[str]:
        """The platform's own unhealthy states as it reports them (drained workers, held tasks); [] without
        command sources."""
        return self.commands.health_problems()

    def run_on(self, place: str, argv: List[str], timeout: float = 30.0) -> Any:
        """Run ``argv`` like a command source: ``place`` is "masters" (the first master host that answers),
        "local" or a node name. Returns the result (``returncode``, ``stdout``, ``stderr``); raises when no host
        could run it."""
        result, _ = self.runner.run({"argv": list(argv), "on": place, "timeout": timeout})
        return result

    def tasks(self, since: float = 0.0) -> List[Dict[str, Any]]:
        raise NoRecords("the hosts platform has no task records in the embedded cluster's shape; probes use the "
                        "witness, or their metrics form")

    def submissions(self, since: float = 0.0) -> List[Dict[str, Any]]:
        raise NoRecords("the hosts platform has no submission records; probes use the witness, or their metrics "
                        "form")

    # ------------------------------------------------------------------ master processes
    def _process(self, node: str) -> Dict[str, Any]:
        n = self.node(node)
        if "process" not in n:
            raise ConfigurationError(f"{node} has no 'process' in chaosscheduler_hosts: masters need one, workers "
                                     f"get one from 'worker_process' or their own 'process'")
        return n["process"]

    def pid(self, node: str) -> Optional[int]:
        """The PID of the node's process (a master's, or a managed worker's) on its host, or None."""
        p, host, n = self._process(node), self.host(node), self.node(node)
        if p["pid_file"]:
            result = host.run(["cat", "--", expand(p["pid_file"], n)], check=False, timeout=15)
            text = result.stdout.strip()
            pid = int(text) if result.returncode == 0 and text.isdigit() else None
            return pid if pid and self._alive(host, pid) else None
        if p["systemd_unit"]:
            text = host.run(["systemctl", "show", "--property=MainPID", "--value", p["systemd_unit"]],
                            timeout=15, privileged=False).stdout.strip()
            return int(text) if text.isdigit() and int(text) > 0 else None
        if p["listen_port"]:
            text = host.run(["ss", "-Hltnp", "sport", "=", f":{p['listen_port']}"], timeout=15).stdout
            pids = sorted({int(x) for x in _SS_PID.findall(text)})
            return pids[0] if pids else None
        pattern = re.compile(expand(p["pattern"], n))
        listing = host.run(["ps", "-eo", "pid=,args="], timeout=15, privileged=False).stdout
        found = []
        for line in listing.splitlines():
            pid_text, _, args = line.strip().partition(" ")
            if pid_text.isdigit() and pattern.search(args.strip()):
                found.append(int(pid_text))
        if len(found) > 1:
            raise ChaosSchedulerError(f"the pattern for {node} matches {len(found)} processes ({found}): make it "
                                      f"match exactly one process")
        return found[0] if found else None

    def is_running(self, node: str) -> bool:
        if "process" not in self.node(node):
            return True  # nodes without a process description are taken to run
        return self.pid(node) is not None

    def signal(self, node: str, sig: _signal.Signals) -> Dict[str, Any]:
        pid = self.pid(node)
        if pid is None:
            return {"delivered": False, "pid": None}
        host = self.host(node)
        result = host.run(["kill", "-s", _signal.Signals(sig).name[3:], str(pid)], check=False, timeout=15)
        if result.returncode != 0:
            return {"delivered": False, "pid": pid, "error": result.stderr.strip()[:200]}
        info = {"delivered": True, "pid": pid, "host": self.node(node)["host"]}
        if sig in _FATAL:
            deadline = time.monotonic() + 10
            while self._alive(host, pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        elif sig in (_signal.SIGSTOP, _signal.SIGCONT):  # wait for the state to show it, as for a kill
            deadline = time.monotonic() + 10
            while (self._state(host, pid) == "T") != (sig == _signal.SIGSTOP) and time.monotonic() < deadline:
                time.sleep(0.02)
            info["stopped"] = self._state(host, pid) == "T"
        return info

    @staticmethod
    def _state(host: SSHHost, pid: int) -> str:
        """The first letter of ``pid``'s state on ``host`` (``ps -o stat=``: "R", "S", "T" stopped, "Z", ...; a
        traced stop "t" reads as "T"), or "" when there is no such process."""
        result = host.run(["ps", "-o", "stat=", "-p", str(pid)], check=False, timeout=15, privileged=False)
        state = result.stdout.strip()[:1] if result.returncode == 0 else ""
        return "T" if state == "t" else state

    @classmethod
    def _alive(cls, host: SSHHost, pid: int) -> bool:
        """Whether ``pid`` runs on ``host``; a zombie (dead, not yet reaped by its parent) counts as gone."""
        return cls._state(host, pid) not in ("", "Z", "X")

    def restart(self, node: str) -> Dict[str, Any]:
        p, host, n = self._process(node), self.host(node), self.node(node)
        if p["systemd_unit"]:
            host.run(["systemctl", "start", p["systemd_unit"]], timeout=p["restart_timeout"])
        elif p["restart_command"]:
            argv = [expand(a, n) for a in p["restart_command"]]
            host.run(["setsid", "-f", "sh", "-c", _START_SCRIPT, "chaosscheduler-start"] + argv, timeout=30)
        else:
            raise ChaosSchedulerError(f"{node}: no way to restart it (give process.systemd_unit or "
                                      f"process.restart_command in chaosscheduler_hosts)")
        deadline = time.monotonic() + p["restart_timeout"]
        while True:
            try:
                pid = self.pid(node)
            except CommandError:
                pid = None
            if pid is not None:
                return {"pid": pid, "host": n["host"]}
            if time.monotonic() > deadline:
                raise ChaosSchedulerError(f"{node} did not start within {p['restart_timeout']} s on {n['host']}")
            time.sleep(0.05)

    # ------------------------------------------------------------------ workers back into service
    def worker_snapshot(self, states: List[Dict[str, Any]], names: List[str]) -> Dict[str, Any]:
        """The targets' health before a fault (kept in its record): see :mod:`.hosts_workers`."""
        return hosts_workers.snapshot(states, names)

    def restore_workers(self, names: List[str], before: Optional[Dict[str, Any]] = None,
                        timeout: Optional[float] = None) -> Dict[str, Any]:
        """Workers cut off by a fault back into service once it is undone: see :func:`.hosts_workers.restore`."""
        return hosts_workers.restore(self, names, before, timeout)

    # ------------------------------------------------------------------ remote self-expiry
    def arm_expiry(self, node: str, marker: str, seconds: float, argv: List[str]) -> Dict[str, Any]:
        """Arm the host's own timer; returns what :meth:`disarm_expiry` needs to stop it cheaply."""
        return self.host(node).expire_later(marker, seconds, argv)

    def disarm_expiry(self, node: str, marker: str, timer: Optional[Dict[str, Any]] = None) -> bool:
        return self.host(node).cancel_expiry(marker, timer)
