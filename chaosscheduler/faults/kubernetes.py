"""Kubernetes faults: a pod killed (``kubernetes-pod``) and a network fault between pods (``kubernetes-network``).

Every object we create is named ``chaosscheduler-<fault id>`` and labelled ``app.kubernetes.io/managed-by:
chaosscheduler`` and ``chaosscheduler/fault: <fault id>``; undo deletes exactly that name, and heal finds them by
those labels (an object of anyone else is never touched). The network modes:

* ``chaos-mesh``: a ``NetworkChaos`` (``action: partition``, or ``loss``/``delay``), the targets selected by pod
  name, the peers by their role's label selector (so a replacement pod is cut too) or by pod name, **always with
  ``spec.duration``**: Chaos Mesh itself ends the fault at the deadline even if every process of ours is gone.
* ``networkpolicy``: a ``NetworkPolicy`` on the targets (labelled ``target.chaosscheduler/<id>: "true"``) that
  allows everything but the peers (labelled ``peer.chaosscheduler/<id>: "true"``, and their addresses excepted from
  ``ipBlock``), or nothing at all for an isolation. Policies only ever add allowances: one of the operator's that
  also selects a target would keep the traffic flowing, so it is refused. It does nothing on a CNI without
  NetworkPolicy support (Flannel). No expiry in the cluster: the reaper and heal remove it.
* ``exec-nft``: the same nft table as on hosts (:mod:`.rules`, with kernel timeouts) applied inside the target pods'
  network namespace through exec, where the container has ``nft`` and ``CAP_NET_ADMIN``.
"""

import math
import time
from typing import Any, Dict, List, Optional, Sequence

from ..errors import FaultError
from . import rules
from .base import Fault, register
from .network import NetworkFault

__all__ = ["KubernetesPodFault", "KubernetesNetworkFault", "object_name", "labels_for", "network_chaos_body",
           "network_policy_body", "selects", "heal_namespace", "MANAGED_BY", "FAULT_LABEL", "TARGET_PREFIX",
           "PEER_PREFIX"]

MANAGED_BY = ("app.kubernetes.io/managed-by", "chaosscheduler")
FAULT_LABEL = "chaosscheduler/fault"
TARGET_PREFIX = "target.chaosscheduler/"
PEER_PREFIX = "peer.chaosscheduler/"
MANAGED_SELECTOR = f"{MANAGED_BY[0]}={MANAGED_BY[1]},{FAULT_LABEL}"
PLURAL = "networkchaos"


def object_name(fault_id: str) -> str:
    rules.table_name(fault_id)  # validates the id: [a-z0-9]
    return f"chaosscheduler-{fault_id}"


def labels_for(record: Dict[str, Any]) -> Dict[str, str]:
    return {MANAGED_BY[0]: MANAGED_BY[1], FAULT_LABEL: record["id"],
            "chaosscheduler/action": str(record.get("action") or record["kind"]).replace("_", "-")}


def _metadata(record: Dict[str, Any], namespace: str) -> Dict[str, Any]:
    annotations = {"chaosscheduler/run": str(record.get("run_id") or "")}
    if record.get("deadline"):
        annotations["chaosscheduler/expires-at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                 time.gmtime(record["deadline"]))
    return {"name": object_name(record["id"]), "namespace": namespace, "labels": labels_for(record),
            "annotations": annotations}


# ---------------------------------------------------------------------------------------------------- pure builders
def network_chaos_body(record: Dict[str, Any], namespace: str, targets: Dict[str, List[str]],
                       peers: Dict[str, Any], device: Optional[str] = None) -> Dict[str, Any]:
    """The NetworkChaos of a partition/loss/latency fault. ``targets``: namespace -> pod names; ``peers``: a Chaos
    Mesh selector (``{"pods": {...}}``, or ``{"namespaces", "labelSelectors", "expressionSelectors"}``)."""
    if not record.get("duration"):
        raise FaultError("a NetworkChaos always carries spec.duration (its self-expiry): the fault has no duration")
    spec: Dict[str, Any] = {"mode": "all", "selector": {"pods": {ns: sorted(names) for ns, names in targets.items()}},
                            "direction": record.get("direction", "both"),
                            "target": {"mode": "all", "selector": peers},
                            "duration": f"{max(1, int(math.ceil(record['duration'])))}s"}
    mode = record.get("mode", "drop")
    if mode == "latency":
        spec["action"] = "delay"
        spec["delay"] = {"latency": f"{int(round(record['latency_ms']))}ms", "correlation": "0", "jitter": "0ms"}
    elif mode == "loss" and record.get("loss", 1.0) < 1.0:
        spec["action"] = "loss"
        spec["loss"] = {"loss": f"{record['loss'] * 100:g}", "correlation": "0"}
    else:
        spec["action"] = "partition"
    if device:
        spec["device"] = device
    return {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos", "metadata": _metadata(record, namespace),
            "spec": spec}


def network_policy_body(record: Dict[str, Any], namespace: str, peer_addresses: Sequence[str]) -> Dict[str, Any]:
    """The NetworkPolicy of a drop partition (allow all but the peers) or an isolation (allow nothing)."""
    fault_id = record["id"]
    types = {"both": ["Ingress", "Egress"], "to": ["Egress"], "from": ["Ingress"]}[record.get("direction", "both")]
    spec: Dict[str, Any] = {"podSelector": {"matchLabels": {TARGET_PREFIX + fault_id: "true"}}, "policyTypes": types}
    if record.get("peers") != ["*"]:
        v4, v6 = rules.split_addresses(peer_addresses)
        allowed: List[Dict[str, Any]] = [
            {"namespaceSelector": {},
             "podSelector": {"matchExpressions": [{"key": PEER_PREFIX + fault_id, "operator": "DoesNotExist"}]}}]
        for cidr, excepted, bits in (("0.0.0.0/0", v4, 32), ("::/0", v6, 128)):
            block: Dict[str, Any] = {"cidr": cidr}
            if excepted:
                block["except"] = [a if "/" in a else f"{a}/{bits}" for a in excepted]
            allowed.append({"ipBlock": block})
        if "Ingress" in types:
            spec["ingress"] = [{"from": allowed}]
        if "Egress" in types:
            spec["egress"] = [{"to": allowed}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _metadata(record, namespace),
            "spec": spec}


def selects(selector: Optional[Dict[str, Any]], labels: Dict[str, str]) -> bool:
    """Whether a LabelSelector (``matchLabels`` + ``matchExpressions``) selects a pod with ``labels``; an empty
    selector selects every pod."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        present = key in labels
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and present and labels[key] in values) \
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


# ---------------------------------------------------------------------------------------------------- pods
@register
class KubernetesPodFault(Fault):
    """Record fields: ``targets`` ([pod]), ``signal``. Inject: delete the pod (grace 0 for SIGKILL) or run
    ``kill.command`` in its container; undo: wait until the pod, or its replacement, is Ready (SIGSTOP: SIGCONT)."""

    kind = "kubernetes-pod"

    def inject(self, platform: Any) -> Dict[str, Any]:
        return platform.kill_pod(self.record["targets"][0], self.record["signal"])

    def undo(self, platform: Any) -> Dict[str, Any]:
        if not self.record.get("method"):  # the kill never happened (recorded, then the process died)
            return {"note": "the pod was not killed: nothing to wait for"}
        return platform.recover_pod(self.record, self.record["signal"])


# ---------------------------------------------------------------------------------------------------- network
class _PodHosts:
    """What :class:`NetworkFault` needs of a platform, for the exec-nft mode: each target's container."""

    def __init__(self, platform: Any):
        self.platform = platform
        self.concurrency = getattr(platform, "concurrency", None)

    def host(self, node: str) -> Any:
        return self.platform.host(node)


def _patch_label(api: Any, namespace: str, pod: str, key: str, add: bool) -> bool:
    """Add ``key: "true"`` to a pod, or remove it if present; False when the pod is gone (or had no such label)."""
    from ..platforms.kubernetes_api import KubernetesError

    if add:
        api.patch_pod(namespace, pod, {"metadata": {"labels": {key: "true"}}})
        return True
    current = api.pod(namespace, pod)
    if current is None or key not in (current["metadata"].get("labels") or {}):
        return False
    path = "/metadata/labels/" + key.replace("~", "~0").replace("/", "~1")
    try:
        api.patch_pod(namespace, pod, [{"op": "test", "path": path, "value": "true"}, {"op": "remove", "path": path}])
    except KubernetesError as e:
        if e.status in (404, 409, 422):  # gone meanwhile, or no longer ours
            return False
        raise
    return True


@register
class KubernetesNetworkFault(Fault):
    """Record fields: those of a network or latency fault (``targets``, ``peers``, ``addresses``, ``direction``,
    ``mode``, ``loss``, ``latency_ms``, ``duration``); facts: ``method`` and what was created."""

    kind = "kubernetes-network"

    def inject(self, platform: Any) -> Dict[str, Any]:
        method = platform.network_mode()
        r = self.record
        if method != "chaos-mesh" and r.get("mode") == "latency":
            raise FaultError(platform.latency_capable() or "latency needs Chaos Mesh")
        if method == "networkpolicy" and r.get("mode") == "loss" and r.get("loss", 1.0) < 1.0:
            raise FaultError("a NetworkPolicy cannot drop a share of the packets: random loss needs network.mode "
                             "'chaos-mesh' or 'exec-nft'")
        self.record = dict(r, method=method)  # so a failed inject undoes what this method made
        if method == "chaos-mesh":
            return dict(self._chaos_mesh(platform), method=method)
        if method == "networkpolicy":
            return dict(self._policy(platform), method=method)
        return dict(NetworkFault(self.record).inject(_PodHosts(platform)), method=method)

    def _namespace(self, platform: Any) -> str:
        return platform.namespace_of(self.record["targets"][0])

    def _chaos_mesh(self, platform: Any) -> Dict[str, Any]:
        r = self.record
        targets: Dict[str, List[str]] = {}
        for name in r["targets"]:
            targets.setdefault(platform.namespace_of(name), []).append(name)
        peers = self._peer_selector(platform)
        body = network_chaos_body(r, self._namespace(platform), targets, peers,
                                  platform.description["network"].get("device"))
        platform.api.create_custom(body["metadata"]["namespace"], PLURAL, body)
        return {"objects": [{"kind": "NetworkChaos", "namespace": body["metadata"]["namespace"],
                             "name": body["metadata"]["name"]}], "chaos_duration": body["spec"]["duration"],
                "peer_selector": peers}

    def _peer_selector(self, platform: Any) -> Dict[str, Any]:
        peers = self.record["peers"]
        if peers == ["*"]:  # isolation: every pod of the scheduler's namespaces
            return {"namespaces": platform.role_namespaces()}
        for role in ("masters", "registry"):
            spec = platform.role(role)
            names = [p["metadata"]["name"] for p in platform.role_pods(role, required=False)] if spec else []
            if names and sorted(names) == sorted(peers):  # a whole role: by its selector, replacements included
                selector: Dict[str, Any] = {"namespaces": [spec["namespace"]]}
                if spec["selector"]["matchLabels"]:
                    selector["labelSelectors"] = dict(spec["selector"]["matchLabels"])
                if spec["selector"]["matchExpressions"]:
                    selector["expressionSelectors"] = [dict(e) for e in spec["selector"]["matchExpressions"]]
                return selector
        pods: Dict[str, List[str]] = {}
        for name in peers:
            pods.setdefault(platform.namespace_of(name), []).append(name)
        return {"pods": {ns: sorted(names) for ns, names in pods.items()}}

    def _policy(self, platform: Any) -> Dict[str, Any]:
        r = self.record
        namespace = self._namespace(platform)
        if any(platform.namespace_of(t) != namespace for t in r["targets"]):
            raise FaultError("networkpolicy mode needs every target in one namespace")
        body = network_policy_body(r, namespace, [] if r["peers"] == ["*"] else r["addresses"])
        types = set(body["spec"]["policyTypes"])
        pods = {p["metadata"]["name"]: p for p in platform.role_pods("workers", required=False)}
        for policy in platform.api.policies(namespace):
            labels = policy["metadata"].get("labels") or {}
            if labels.get(MANAGED_BY[0]) == MANAGED_BY[1]:
                continue
            spec = policy.get("spec") or {}
            # only a policy that allows something in one of our directions defeats ours (deny-alls are fine)
            overlap = {t for t in types & set(spec.get("policyTypes") or ["Ingress"]) if spec.get(t.lower())}
            hit = [t for t in r["targets"] if selects(spec.get("podSelector"), pods.get(t, {}).get("metadata", {})
                                                      .get("labels") or {})]
            if overlap and hit:
                raise FaultError(f"NetworkPolicy {namespace}/{policy['metadata']['name']} also selects "
                                 f"{', '.join(hit)}: policies only add allowances, so ours could not cut what it "
                                 f"allows; use network.mode 'chaos-mesh' or 'exec-nft'")
        labelled: List[str] = []
        for name in r["targets"]:
            _patch_label(platform.api, namespace, name, TARGET_PREFIX + r["id"], add=True)
            labelled.append(name)
        if r["peers"] != ["*"]:
            for name in r["peers"]:
                _patch_label(platform.api, platform.namespace_of(name), name, PEER_PREFIX + r["id"], add=True)
                labelled.append(name)
        platform.api.create_policy(namespace, body)
        platform.forget()
        return {"objects": [{"kind": "NetworkPolicy", "namespace": namespace, "name": body["metadata"]["name"]}],
                "labelled": labelled}

    def undo(self, platform: Any) -> Dict[str, Any]:
        r = self.record
        method = r.get("method") or platform.network_mode()
        name = object_name(r["id"])
        if method == "exec-nft":
            return dict(NetworkFault(r).undo(_PodHosts(platform)), method=method)
        namespace = (r.get("objects") or [{}])[0].get("namespace")
        if not namespace:
            try:
                namespace = self._namespace(platform)
            except Exception:  # the target pod is gone: fall back on the workers' namespace
                namespace = platform.role("workers")["namespace"]
        if method == "chaos-mesh":
            deleted = platform.api.delete_custom(namespace, PLURAL, name)
            return {"method": method, "deleted" if deleted else "already_gone": [f"NetworkChaos {namespace}/{name}"]}
        deleted = platform.api.delete_policy(namespace, name)
        unlabelled = []
        peers = [] if r.get("peers") == ["*"] else list(r.get("peers") or [])
        for pod, prefix in [(t, TARGET_PREFIX) for t in r["targets"]] + [(p, PEER_PREFIX) for p in peers]:
            try:
                pod_namespace = platform.namespace_of(pod)
            except Exception:
                continue  # the pod is gone, and its label with it
            if _patch_label(platform.api, pod_namespace, pod, prefix + r["id"], add=False):
                unlabelled.append(pod)
        platform.forget()
        return {"method": method, "deleted" if deleted else "already_gone": [f"NetworkPolicy {namespace}/{name}"],
                "unlabelled": unlabelled}


# ---------------------------------------------------------------------------------------------------- heal
def heal_namespace(api: Any, namespace: str, dry_run: bool = False, nft_hosts: Sequence[Any] = (),
                   concurrency: Optional[int] = None) -> Dict[str, Any]:
    """Every object of ours in ``namespace`` (by label), our labels on its pods, our nft tables in ``nft_hosts``:
    found, and removed unless ``dry_run``. Objects of anyone else are never touched."""
    from ..platforms.kubernetes_api import CHAOS_MESH, KubernetesError

    found: List[str] = []
    errors: List[str] = []

    def ours(obj: Dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        fault_id = labels.get(FAULT_LABEL, "")
        return labels.get(MANAGED_BY[0]) == MANAGED_BY[1] and bool(fault_id) and \
            meta.get("name") == f"chaosscheduler-{fault_id}"

    try:
        if api.has_resource(*CHAOS_MESH):
            for obj in filter(ours, api.list_custom(namespace, PLURAL, MANAGED_SELECTOR)):
                found.append(f"NetworkChaos {namespace}/{obj['metadata']['name']}")
                if not dry_run:
                    api.delete_custom(namespace, PLURAL, obj["metadata"]["name"])
        for obj in filter(ours, api.policies(namespace, MANAGED_SELECTOR)):
            found.append(f"NetworkPolicy {namespace}/{obj['metadata']['name']}")
            if not dry_run:
                api.delete_policy(namespace, obj["metadata"]["name"])
        for pod in api.pods(namespace, ""):
            for key in sorted(pod["metadata"].get("labels") or {}):
                if key.startswith((TARGET_PREFIX, PEER_PREFIX)):
                    found.append(f"label {key} on pod {namespace}/{pod['metadata']['name']}")
                    if not dry_run:
                        _patch_label(api, namespace, pod["metadata"]["name"], key, add=False)
    except KubernetesError as e:
        errors.append(f"namespace {namespace}: {e}")
    from ..hosts.fanout import FanOut

    def tables_of(name: str, host: Any) -> List[str]:
        tables = rules.tables_in_ruleset(host.run(["nft", "list", "tables"], timeout=15).stdout)
        for table in tables:
            if not dry_run:
                host.run(["nft", "delete", "table", "inet", table], timeout=15)
        return tables

    # every pod at once (exec is one websocket per call): heal is as wide as the fan-out of a fault
    hosts = {f"{h.name}#{i}": h for i, h in enumerate(nft_hosts)}
    done = FanOut(hosts, concurrency).each(tables_of) if hosts else {}
    for key, host in hosts.items():
        outcome = done[key]
        if outcome.ok:
            found += [f"nft table {table} in {host.name}" for table in outcome.value]
        else:
            errors.append(f"{host.name}: {outcome.error}")
    return {"found": found, "errors": errors}


def heal_cluster(ledger: Any, namespaces: Sequence[str] = (), dry_run: bool = False) -> Dict[str, Any]:
    """``chaosscheduler heal --from-hosts`` on Kubernetes: our objects, labels and nft tables in the namespaces of
    every kubernetes platform the ledger ever recorded (when it is readable) and in ``namespaces`` (with the client
    configuration of this process: kubeconfig, in-cluster or KUBERNETES_* environment)."""
    import json

    from ..errors import ChaosSchedulerError
    from ..platforms import from_reference
    from ..platforms.kubernetes_api import KubeAPI

    report: Dict[str, Any] = {"found": [], "errors": []}
    references: Dict[str, Dict[str, Any]] = {}
    try:
        for record in ledger.all():
            reference = record.get("platform") or {}
            if reference.get("platform") == "kubernetes":
                references[json.dumps(reference, sort_keys=True)] = reference
    except ChaosSchedulerError:
        pass  # an unreadable ledger: the namespaces given are all we know
    covered = set()
    for reference in references.values():
        try:
            platform = from_reference(reference)
            part = platform.heal_leftovers(dry_run)
            covered |= set(platform.role_namespaces())
        except ChaosSchedulerError as e:
            part = {"found": [], "errors": [str(e)]}
        report["found"] += [f for f in part["found"] if f not in report["found"]]
        report["errors"] += part["errors"]
    rest = [n for n in dict.fromkeys(namespaces) if n not in covered]
    if rest:
        try:
            api = KubeAPI(None)
        except ChaosSchedulerError as e:
            report["errors"].append(str(e))
            return report
        for namespace in rest:
            part = heal_namespace(api, namespace, dry_run)
            report["found"] += part["found"]
            report["errors"] += part["errors"]
    return report
