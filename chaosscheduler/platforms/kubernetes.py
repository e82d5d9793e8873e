"""Schedulers that run as pods: the ``chaosscheduler_kubernetes`` description (see docs/kubernetes.md).

Who is who: the pods of a namespace that match each role's label selector (a master is a pod, named by the pod's
name; a replacement pod has a new name, except in a StatefulSet). Who leads: a Lease (``coordination.k8s.io/v1``)
whose holder is mapped to a master pod, or the hosts platform's PromQL and HTTP sources. What the workers do:
Prometheus (the probes' metrics forms) or, without it, the pods' readiness. Faults are Kubernetes objects or
commands in containers (:mod:`chaosscheduler.faults.kubernetes`): the leader pod deleted with grace period 0 or its
process killed through exec; partitions as a Chaos Mesh ``NetworkChaos`` with ``spec.duration``, a
``NetworkPolicy``, or nft rules in the pod's network namespace through exec.

The client is configured exactly as chaostoolkit-kubernetes does it (``chaosk8s.create_k8s_api_client``). The
platform's reference (stored with every fault) holds the description and the non-secret client keys only.
"""

import signal as _signal
import time
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ChaosSchedulerError, ConfigurationError, FaultError
from .base import Platform
from .kubernetes_api import CHAOS_MESH, KubeAPI, KubernetesError, PodHost, client_reference
from .kubernetes_config import KEY, ROLES

__all__ = ["KubernetesPlatform", "pod_ready", "pod_ip", "controller_of", "restart_count"]

_ROLE_OF = {"master": "masters", "worker": "workers", "registry": "registry"}
_FATAL = ("SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT")
LIST_TTL = 0.25  # seconds a role's pod list is reused (probes poll fast; the API server need not answer each poll)


# ---------------------------------------------------------------------------------------------------- pod facts
def pod_ready(pod: Dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if pod.get("metadata", {}).get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_ip(pod: Dict[str, Any]) -> Optional[str]:
    return (pod.get("status") or {}).get("podIP") or None


def pod_alive(pod: Dict[str, Any]) -> bool:
    """A pod that is or may become a running node: not terminating, not finished."""
    return not pod.get("metadata", {}).get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def controller_of(pod: Dict[str, Any]) -> Optional[Dict[str, str]]:
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return {"kind": ref.get("kind"), "name": ref.get("name"), "uid": ref.get("uid")}
    return None


def container_status(pod: Dict[str, Any], container: Optional[str]) -> Dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if container is None or status.get("name") == container:
            return status
    return {}


def restart_count(pod: Dict[str, Any], container: Optional[str]) -> int:
    return int(container_status(pod, container).get("restartCount") or 0)


class KubernetesPlatform(Platform):
    kind = "kubernetes"
    fault_kinds = {"process": "kubernetes-pod", "network": "kubernetes-network", "latency": "kubernetes-network"}

    def __init__(self, description: Dict[str, Any], prometheus_base_url: str = "",
                 secrets: Optional[Dict[str, Any]] = None, poll_interval: Optional[float] = None,
                 client: Optional[Dict[str, str]] = None):
        from ..pacing import default_poll_interval

        self.description = description
        self.prometheus_base_url = prometheus_base_url
        self.secrets = dict(client or {}, **(secrets or {}))
        self.poll_interval = poll_interval if poll_interval is not None else \
            default_poll_interval("kubernetes", kubernetes=description)
        self.same_clock = bool(description.get("same_clock"))
        self._api: Optional[KubeAPI] = None
        self._lists: Dict[str, Tuple[float, List[Dict[str, Any]]]] = {}
        self._leader: Any = None
        self._prometheus: Any = None
        self._network_mode: Optional[str] = None

    # ------------------------------------------------------------------ description
    @property
    def api(self) -> KubeAPI:
        if self._api is None:
            self._api = KubeAPI(self.secrets, self.description["request_timeout"])
        return self._api

    def reference(self) -> Dict[str, Any]:
        return {"platform": "kubernetes", "kubernetes": self.description,
                "prometheus_base_url": self.prometheus_base_url, "client": client_reference(self.secrets)}

    def role(self, role: str) -> Optional[Dict[str, Any]]:
        return self.description.get(role)

    def role_pods(self, role: str, required: bool = True) -> List[Dict[str, Any]]:
        """The role's pods that are or may become nodes (not terminating, not finished), sorted by name."""
        spec = self.role(role)
        if spec is None:
            return []
        cached = self._lists.get(role)
        if cached and time.monotonic() - cached[0] < LIST_TTL:
            pods = cached[1]
        else:
            pods = sorted((p for p in self.api.pods(spec["namespace"], spec["selector"]["text"]) if pod_alive(p)),
                          key=lambda p: p["metadata"]["name"])
            self._lists[role] = (time.monotonic(), pods)
        if required and not pods:
            raise ConfigurationError(f"{KEY}.{role}.selector {spec['selector']['text']!r} matches no pod in "
                                     f"namespace {spec['namespace']!r}: check the selector and the namespace")
        return pods

    def forget(self) -> None:
        """Drop the cached pod lists (after a change of ours)."""
        self._lists.clear()

    def masters(self) -> List[str]:
        return [p["metadata"]["name"] for p in self.role_pods("masters")]

    def worker_names(self) -> List[str]:
        return [p["metadata"]["name"] for p in self.role_pods("workers")]

    def registry(self) -> List[str]:
        return [p["metadata"]["name"] for p in self.role_pods("registry", required=False)]

    def nodes(self) -> List[str]:
        return [p["metadata"]["name"] for role in ROLES for p in self.role_pods(role, required=False)]

    def find(self, node: str) -> Tuple[str, Dict[str, Any]]:
        """(role, pod) of a node name; ConfigurationError naming the known pods when there is none."""
        known = []
        for role in ROLES:
            for pod in self.role_pods(role, required=False):
                if pod["metadata"]["name"] == node:
                    return role, pod
                known.append(pod["metadata"]["name"])
        raise ConfigurationError(f"no pod {node!r} among the masters, workers and registry of {KEY}; pods: "
                                 f"{', '.join(known) or 'none'}")

    def namespace_of(self, node: str) -> str:
        return self.role(self.find(node)[0])["namespace"]

    def address(self, node: str) -> str:
        address = pod_ip(self.find(node)[1])
        if not address:
            raise ChaosSchedulerError(f"pod {node} has no IP yet (not scheduled or not started)")
        return address

    def is_running(self, node: str) -> bool:
        for role in ROLES:
            if self.role(role) is None:
                continue
            pod = self.api.pod(self.role(role)["namespace"], node)
            if pod is not None and pod_ready(pod):
                return True
        return False

    def _node_dict(self, pod: Dict[str, Any]) -> Dict[str, Any]:
        name, address = pod["metadata"]["name"], pod_ip(pod) or ""
        template = self.description["metrics"]["instance"]
        instance = None if template == "{address}" else \
            template.replace("{name}", name).replace("{address}", address).replace("{host}", address)
        return {"name": name, "host": address, "address": address, "metrics_instance": instance}

    def description_for_metrics(self) -> Dict[str, Any]:
        """The shape :class:`chaosscheduler.metrics.forms.MetricsForms` reads, built from the pods right now."""
        workers = [dict(self._node_dict(p), slots=self.role("workers").get("slots"))
                   for p in self.role_pods("workers", required=False)]
        return {"masters": [self._node_dict(p) for p in self.role_pods("masters", required=False)],
                "workers": workers,
                "registry": [self._node_dict(p) for p in self.role_pods("registry", required=False)],
                "slots": self.description["slots"], "metrics": self.description["metrics"]}

    # ------------------------------------------------------------------ leader, workers, metrics
    @property
    def prometheus(self) -> Any:
        if self._prometheus is None and self.prometheus_base_url:
            from ..metrics.prometheus import for_description

            self._prometheus = for_description(self.prometheus_base_url, self.description["metrics"], self.secrets,
                                               KEY)
        return self._prometheus

    @property
    def metrics(self) -> Any:
        """The probes' metrics forms (None without prometheus_base_url)."""
        if not self.prometheus_base_url:
            return None
        from ..metrics.forms import MetricsForms

        return MetricsForms(self.prometheus, self.description_for_metrics(), self.description["metrics"]["queries"])

    @property
    def leader_source(self) -> Any:
        if self._leader is None:
            from .leader import SourceEnv, build
            from .leader.lease import Source as LeaseSource

            options = self.description["leader"]
            env = SourceEnv(masters=[], registry=[], secrets=self.secrets,
                            prometheus=self.prometheus if self.prometheus_base_url else None,
                            poll_interval=self.poll_interval)
            self._leader = LeaseSource(options, env, self.api) if options["source"] == "lease" else build(options, env)
        self._leader.env.masters = [self._node_dict(p) for p in self.role_pods("masters", required=False)]
        return self._leader

    def leader(self) -> Dict[str, Any]:
        return self.leader_source.leader()

    def leader_claims(self) -> List[str]:
        return list(self.leader().get("claims") or [])

    def worker_status(self) -> str:
        mode = self.description["worker_status"]
        if mode == "auto":
            return "metrics" if self.prometheus_base_url else "pods"
        if mode == "metrics" and not self.prometheus_base_url:
            raise ConfigurationError(f"{KEY}.worker_status 'metrics' needs prometheus_base_url in the configuration")
        return mode

    def workers(self) -> List[Dict[str, Any]]:
        if self.worker_status() == "metrics":
            return self.metrics.workers()
        slots = self.role("workers").get("slots") or self.description["slots"]
        return [{"name": p["metadata"]["name"], "alive": pod_ready(p), "running": [], "slots": slots,
                 "declared_dead_at": None, "dead_declarations": None, "source": "pod readiness"}
                for p in self.role_pods("workers", required=False)]

    def tasks(self, since: float = 0.0) -> List[Dict[str, Any]]:
        raise ChaosSchedulerError("the kubernetes platform has no task records: set prometheus_base_url so the "
                                  "probes use their metrics forms")

    def submissions(self, since: float = 0.0) -> List[Dict[str, Any]]:
        raise ChaosSchedulerError("the kubernetes platform has no submission records: set prometheus_base_url so "
                                  "the probes use their metrics forms")

    # ------------------------------------------------------------------ killing and replacing pods
    def _container(self, role: str, pod: Dict[str, Any], configured: Optional[str]) -> str:
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        chosen = configured or self.role(role).get("container") or (names[0] if names else None)
        if not chosen or (names and chosen not in names):
            raise ConfigurationError(f"pod {pod['metadata']['name']} has no container {chosen!r}; containers: "
                                     f"{', '.join(n for n in names if n) or 'none'}")
        return chosen

    def kill_pod(self, node: str, signal_name: str) -> Dict[str, Any]:
        """Kill the node's pod as ``kill.mode`` says; the facts the undo needs."""
        role, pod = self.find(node)
        namespace, kill = self.role(role)["namespace"], self.description["kill"]
        before = [p["metadata"]["uid"] for p in self.role_pods(role, required=False)]
        facts: Dict[str, Any] = {"method": kill["mode"], "pod": node, "namespace": namespace, "role": role,
                                 "uid": pod["metadata"].get("uid"), "pods_before": before,
                                 "owner": controller_of(pod), "node_name": (pod.get("spec") or {}).get("nodeName")}
        if kill["mode"] == "delete-pod":
            if signal_name not in ("SIGKILL", "SIGTERM"):
                raise ConfigurationError(f"{KEY}.kill.mode 'delete-pod' kills with SIGKILL (grace period 0) or "
                                         f"SIGTERM (the pod's own grace period); {signal_name} needs kill.mode "
                                         f"'exec-kill'")
            if facts["owner"] is None:
                raise FaultError(f"refusing to delete pod {namespace}/{node}: no controller owns it, so nothing "
                                 f"would replace it; use {KEY}.kill.mode 'exec-kill'")
            grace = 0 if signal_name == "SIGKILL" else None
            self.api.delete_pod(namespace, node, grace)
            self.forget()
            return dict(facts, grace_period=grace)
        container = self._container(role, pod, kill["container"])
        count = restart_count(pod, container)
        argv = [a.replace("{signal}", signal_name[3:]) for a in kill["command"]]
        PodHost(self.api, namespace, node, container).run(argv, timeout=30)
        self.forget()
        facts.update(container=container, restart_count_before=count, command=argv)
        if signal_name in _FATAL:
            self._wait_stopped(facts, min(kill["ready_timeout"], 30.0))
        return facts

    def _wait_stopped(self, facts: Dict[str, Any], timeout: float) -> None:
        """After an exec kill: the container must stop (restart, not ready) or the pod go; otherwise say why."""
        deadline = time.monotonic() + timeout
        while True:
            pod = self.api.pod(facts["namespace"], facts["pod"])
            if pod is None or pod["metadata"].get("uid") != facts["uid"] or \
                    restart_count(pod, facts["container"]) > facts["restart_count_before"] or \
                    not container_status(pod, facts["container"]).get("ready", True):
                return
            if time.monotonic() > deadline:
                raise FaultError(f"{' '.join(facts['command'])} in {facts['pod']} did not stop container "
                                 f"{facts['container']} within {timeout:.0f} s: PID 1 of a container ignores "
                                 f"SIGKILL sent from inside its own PID namespace; set {KEY}.kill.command to kill "
                                 f"the main process by another PID, or use kill.mode 'delete-pod'")
            time.sleep(max(self.poll_interval, 0.05))

    def recover_pod(self, facts: Dict[str, Any], signal_name: str) -> Dict[str, Any]:
        """Undo of a kill: resume a stopped process, or wait until the pod (or its replacement) is Ready again."""
        namespace, name = facts["namespace"], facts["pod"]
        if signal_name == "SIGSTOP":
            pod = self.api.pod(namespace, name)
            if pod is None or pod["metadata"].get("uid") != facts.get("uid"):
                return {"resumed": False, "pod_gone": True}
            argv = [a.replace("{signal}", "CONT") for a in self.description["kill"]["command"]]
            PodHost(self.api, namespace, name, facts.get("container")).run(argv, timeout=30)
            return {"resumed": True}
        timeout = self.description["kill"]["ready_timeout"]
        started = time.monotonic()
        before = set(facts.get("pods_before") or [])
        while True:
            self.forget()
            pods = self.role_pods(facts["role"], required=False)
            same = next((p for p in pods if p["metadata"].get("uid") == facts.get("uid")), None)
            if same is not None and facts["method"] == "exec-kill" and pod_ready(same) and \
                    restart_count(same, facts.get("container")) > facts.get("restart_count_before", 0):
                return {"restarted_in_place": name, "waited": round(time.monotonic() - started, 3)}
            fresh = [p for p in pods if p["metadata"].get("uid") not in before and pod_ready(p)]
            if same is None and fresh:
                return {"replacement": fresh[0]["metadata"]["name"], "waited": round(time.monotonic() - started, 3)}
            if time.monotonic() - started > timeout:
                owner = facts.get("owner") or {}
                raise FaultError(f"no replacement of pod {namespace}/{name}"
                                 f"{' (' + owner.get('kind', '') + ' ' + owner.get('name', '') + ')' if owner else ''}"
                                 f" was Ready within {timeout:.0f} s ({KEY}.kill.ready_timeout)")
            time.sleep(max(self.poll_interval, 0.05))

    def signal(self, node: str, sig: _signal.Signals) -> Dict[str, Any]:
        facts = self.kill_pod(node, _signal.Signals(sig).name)
        return dict(facts, delivered=True, pid=None)

    def restart(self, node: str) -> Dict[str, Any]:
        """Wait for ``node``'s pod, or a new pod of its role, to be Ready (Kubernetes restarts pods itself)."""
        role = next((r for r in ROLES if self.role(r) and any(p["metadata"]["name"] == node
                                                               for p in self.role_pods(r, required=False))),
                    "masters")
        return self.recover_pod({"namespace": self.role(role)["namespace"], "pod": node, "role": role, "uid": None,
                                 "method": "delete-pod", "pods_before": []}, "SIGKILL")

    # ------------------------------------------------------------------ network faults
    def network_mode(self) -> str:
        """The network mode in force: the configured one, or for "auto" Chaos Mesh when its NetworkChaos resource is
        served, else NetworkPolicy."""
        if self._network_mode is None:
            mode = self.description["network"]["mode"]
            if mode == "auto":
                mode = "chaos-mesh" if self.api.has_resource(*CHAOS_MESH) else "networkpolicy"
            self._network_mode = mode
        return self._network_mode

    def network_capable(self) -> Optional[str]:
        try:
            mode = self.network_mode()
            if mode == "chaos-mesh" and not self.api.has_resource(*CHAOS_MESH):
                return (f"{KEY}.network.mode is 'chaos-mesh' but the API serves no networkchaos in "
                        f"chaos-mesh.org/v1alpha1 (Chaos Mesh is not installed): install it, or set network.mode "
                        f"to 'networkpolicy' or 'exec-nft'")
        except KubernetesError as e:
            return f"cannot tell how to inject network faults: {e}"
        return None

    def latency_capable(self) -> Optional[str]:
        reason = self.network_capable()
        if reason:
            return reason
        if self.network_mode() != "chaos-mesh":
            return (f"latency on Kubernetes needs Chaos Mesh ({KEY}.network.mode is '{self.network_mode()}'): "
                    f"use mode 'drop' or 'loss'")
        return None

    def host(self, node: str) -> PodHost:
        role, pod = self.find(node)
        container = self._container(role, pod, self.description["network"]["container"])
        return PodHost(self.api, self.role(role)["namespace"], node, container)

    def role_namespaces(self) -> List[str]:
        return sorted({self.role(r)["namespace"] for r in ROLES if self.role(r)})

    def heal_leftovers(self, dry_run: bool = False) -> Dict[str, Any]:
        """Find and remove (unless ``dry_run``) every object and label of ours in the roles' namespaces, and our nft
        tables in the workers' pods when the network mode is exec-nft: heal without the ledger."""
        from ..faults.kubernetes import heal_namespace

        report: Dict[str, Any] = {"found": [], "errors": []}
        nft_pods = []
        if self.description["network"]["mode"] == "exec-nft":
            nft_pods = [self.host(p["metadata"]["name"]) for p in self.role_pods("workers", required=False)]
        for namespace in self.role_namespaces():
            part = heal_namespace(self.api, namespace, dry_run,
                                  [h for h in nft_pods if h.namespace == namespace], getattr(self, "concurrency", None))
            report["found"] += part["found"]
            report["errors"] += part["errors"]
        return report
