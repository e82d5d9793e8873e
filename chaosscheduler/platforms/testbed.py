"""The embedded cluster as a platform: answers come from the masters' JSON API over their Unix sockets."""

import signal
from typing import Any, Dict, List, Optional

from .. import procs
from ..errors import ChaosSchedulerError, TestbedError
from ..hosts import LocalHost, NetnsHost
from ..testbed import ClusterSpec, Testbed
from ..testbed import state as tb_state
from ..testbed.client import ClientError
from .base import Platform

__all__ = ["TestbedPlatform"]


class TestbedPlatform(Platform):
    kind = "testbed"
    same_clock = True  # the cluster runs on this machine: its timestamps are ours
    __test__ = False

    def __init__(self, cluster: str, home: str, must_exist: bool = True):
        self.cluster = cluster
        self.home = home
        self.tb = Testbed(ClusterSpec(name=cluster, home=home).state_dir)
        if must_exist and not self.exists():
            raise TestbedError(f"the embedded cluster {cluster!r} is not running (no {self.tb.state_dir}): start it "
                               f"with 'chaosscheduler testbed up --name {cluster}' or add the chaosscheduler control")

    def exists(self) -> bool:
        return tb_state.exists(self.tb.state_dir)

    def available(self) -> Optional[str]:
        if not self.exists():
            return f"the embedded cluster {self.cluster!r} is not running"
        return None

    def reference(self) -> Dict[str, Any]:
        return {"platform": "testbed", "cluster": self.cluster, "home": self.home}

    def _names(self, role: str) -> List[str]:
        return [n.name for n in self.tb.nodes_of(role)]

    def masters(self) -> List[str]:
        return self._names("master")

    def worker_names(self) -> List[str]:
        return self._names("worker")

    def registry(self) -> List[str]:
        return self._names("etcd")

    def nodes(self) -> List[str]:
        return list(self.tb.nodes)

    def leader(self) -> Dict[str, Any]:
        errors = []
        for master in self.masters():
            if not self.tb.is_running(master):
                continue
            try:
                status, body = self.tb.call(master, "GET", "/api/leader", timeout=1.0)
            except ClientError as e:
                errors.append(str(e))
                continue
            if status == 200:
                return {"leader": body["leader"], "since": body["since"], "term": body.get("term"),
                        "source": master}
            errors.append(f"{master}: {body}")
        return {"leader": None, "since": None, "term": None, "source": None, "errors": errors}

    def leader_claims(self) -> List[str]:
        """Masters that believe they lead (two at once would be split brain)."""
        claims = []
        for master in self.masters():
            if self.tb.is_running(master):
                try:
                    status, body = self.tb.call(master, "GET", "/health", timeout=1.0)
                except ClientError:
                    continue
                if status == 200 and body.get("leader"):
                    claims.append(master)
        return claims

    def workers(self) -> List[Dict[str, Any]]:
        return self.tb.workers()

    def worker_states(self) -> List[Dict[str, Any]]:
        return self.tb.workers(running=False)

    def tasks(self, since: float = 0.0) -> List[Dict[str, Any]]:
        return self.tb.tasks(since)

    def submissions(self, since: float = 0.0) -> List[Dict[str, Any]]:
        if "load" not in self.tb.nodes:
            raise ChaosSchedulerError(f"the embedded cluster {self.cluster!r} runs no load generator "
                                      f"(load_rate is 0): job submissions are not recorded")
        try:
            return self.tb.submissions(since)
        except ClientError as e:
            raise ChaosSchedulerError(f"the load generator of {self.cluster!r} did not answer: {e}") from e

    def is_running(self, node: str) -> bool:
        return self.tb.is_running(node)

    def signal(self, node: str, sig: signal.Signals) -> Dict[str, Any]:
        record = self.tb.process(node) or {}
        delivered = procs.terminate(record, sig, wait=procs.STOP_WAIT) if procs.is_running(record) else False
        info = {"delivered": delivered, "pid": record.get("pid")}
        if delivered and sig in (signal.SIGSTOP, signal.SIGCONT):
            info["stopped"] = procs.is_stopped(record)
        return info

    def restart(self, node: str) -> Dict[str, Any]:
        return self.tb.restart_node(node)

    def address(self, node: str) -> str:
        return self.tb.nodes[node].address

    def network_capable(self) -> Optional[str]:
        if self.tb.mode != "netns":
            return (f"the embedded cluster {self.cluster!r} runs in loopback mode (no network namespaces: not root?), "
                    f"so network faults cannot be injected; master kills still work")
        return None

    def host(self, node: str) -> LocalHost:
        netns = self.tb.nodes[node].netns
        if not netns:
            raise ChaosSchedulerError(self.network_capable() or f"{node} has no network namespace")
        return NetnsHost(netns)
