"""The few Kubernetes API calls the kubernetes platform makes, on the official ``kubernetes`` client configured
exactly as chaostoolkit-kubernetes configures it (``chaosk8s.create_k8s_api_client(secrets)``: a kubeconfig and
``KUBERNETES_CONTEXT``, in-cluster with ``CHAOSTOOLKIT_IN_POD=true``, or the ``KUBERNETES_*`` keys of the secrets
and the environment).

Answers are the API's JSON as plain dicts (``_preload_content=False``): the same code reads every client version
and every field a real cluster sends. Errors become :class:`KubernetesError` with one complete line; a 404 is
:class:`NotFound`. ``exec`` runs an argv in a container over the ``v5.channel.k8s.io`` websocket protocol (stdin is
closed with the v5 CLOSE signal, so ``nft -f -`` reads its rules and ends).
"""

import json
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import ChaosSchedulerError, ConfigurationError
from ..hosts import CommandError, Result

__all__ = ["KubeAPI", "KubernetesError", "NotFound", "PodHost", "CLIENT_KEYS", "client_reference"]

# the keys chaosk8s reads; only these (never a token, key or password value) go into a platform reference
CLIENT_KEYS = ("KUBERNETES_HOST", "KUBERNETES_CONTEXT", "KUBERNETES_VERIFY_SSL", "KUBERNETES_CA_CERT_FILE",
               "KUBERNETES_CERT_FILE", "KUBERNETES_KEY_FILE")
CHAOS_MESH = ("chaos-mesh.org", "v1alpha1", "networkchaos")


class KubernetesError(ChaosSchedulerError):
    """The Kubernetes API refused a call or could not be reached."""

    def __init__(self, message: str, status: Optional[int] = None):
        self.status = status
        super().__init__(message)


class NotFound(KubernetesError):
    """The object does not exist (HTTP 404)."""


def client_reference(secrets: Optional[Dict[str, Any]]) -> Dict[str, str]:
    """The non-secret client settings among ``secrets`` (a platform rebuilt elsewhere reads the rest from its
    environment or kubeconfig)."""
    return {k: str(v) for k, v in (secrets or {}).items() if k in CLIENT_KEYS and v not in (None, "")}


def _status_message(body: Any) -> str:
    try:
        data = json.loads(body)
        return str(data.get("message") or data.get("reason") or body)[:300]
    except (TypeError, ValueError):
        return str(body or "")[:300].strip()


class KubeAPI:
    def __init__(self, secrets: Optional[Dict[str, Any]] = None, timeout: float = 10.0):
        try:
            from chaosk8s import create_k8s_api_client
            from kubernetes import client
        except ImportError as e:
            raise ConfigurationError("the kubernetes platform needs chaostoolkit-kubernetes and kubernetes: "
                                     "pip install 'chaosscheduler[kubernetes]'") from e
        self.timeout = timeout
        self.api_client = create_k8s_api_client(secrets or {})
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.networking = client.NetworkingV1Api(self.api_client)
        self.coordination = client.CoordinationV1Api(self.api_client)
        self.host = self.api_client.configuration.host
        # kubernetes.stream.stream() swaps the ApiClient's call_api while it opens the websocket: exec gets a client
        # of its own, and the swap is serialised, so a fan-out's concurrent execs never see each other's (the
        # exchange itself, after the handshake, runs concurrently)
        self._exec_core = client.CoreV1Api(client.ApiClient(self.api_client.configuration))
        self._exec_lock = threading.Lock()

    # ------------------------------------------------------------------ transport
    def call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)`` without the client's models; the JSON answer, or KubernetesError."""
        from kubernetes.client.rest import ApiException

        try:
            response = method(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            status, body = response.status, response.data
        except ApiException as e:
            status, body = e.status, e.body
        except Exception as e:  # connection refused, DNS, TLS: the client raises urllib3's errors as they are
            raise KubernetesError(f"{what}: the Kubernetes API at {self.host} is unreachable: "
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if status == 404:
            raise NotFound(f"{what}: not found ({_status_message(body)})", 404)
        if not status or not 200 <= status <= 299:
            hint = " (check the RBAC rules in docs/kubernetes.md)" if status == 403 else ""
            raise KubernetesError(f"{what}: the Kubernetes API answered {status}: {_status_message(body)}{hint}",
                                  status)
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        return json.loads(body) if body else {}

    # ------------------------------------------------------------------ pods
    def pods(self, namespace: str, selector: str) -> List[Dict[str, Any]]:
        answer = self.call(f"list pods in {namespace} with {selector!r}", self.core.list_namespaced_pod,
                           namespace, label_selector=selector)
        return list(answer.get("items") or [])

    def pod(self, namespace: str, name: str) -> Optional[Dict[str, Any]]:
        try:
            return self.call(f"get pod {namespace}/{name}", self.core.read_namespaced_pod, name, namespace)
        except NotFound:
            return None

    def delete_pod(self, namespace: str, name: str, grace_period: Optional[int]) -> Dict[str, Any]:
        from kubernetes import client

        kwargs: Dict[str, Any] = {}
        if grace_period is not None:
            kwargs["grace_period_seconds"] = grace_period
            kwargs["body"] = client.V1DeleteOptions(grace_period_seconds=grace_period)
        return self.call(f"delete pod {namespace}/{name}", self.core.delete_namespaced_pod, name, namespace, **kwargs)

    def patch_pod(self, namespace: str, name: str, patch: Any) -> Dict[str, Any]:
        """A JSON patch (a list of operations) or a merge patch (a dict)."""
        return self.call(f"patch pod {namespace}/{name}", self.core.patch_namespaced_pod, name, namespace, patch)

    def lease(self, namespace: str, name: str) -> Dict[str, Any]:
        return self.call(f"get lease {namespace}/{name}", self.coordination.read_namespaced_lease, name, namespace)

    # ------------------------------------------------------------------ Chaos Mesh
    def has_resource(self, group: str, version: str, plural: str) -> bool:
        """Whether the API serves ``plural`` in ``group/version`` (discovery: no CRD read permission needed)."""
        try:
            answer = self.call(f"discover {group}/{version}", self.custom.get_api_resources, group, version)
        except NotFound:
            return False
        return any(r.get("name") == plural for r in answer.get("resources") or [])

    def create_custom(self, namespace: str, plural: str, body: Dict[str, Any]) -> Dict[str, Any]:
        group, version, _ = CHAOS_MESH
        return self.call(f"create {plural} {namespace}/{body['metadata']['name']}",
                         self.custom.create_namespaced_custom_object, group, version, namespace, plural, body)

    def get_custom(self, namespace: str, plural: str, name: str) -> Optional[Dict[str, Any]]:
        group, version, _ = CHAOS_MESH
        try:
            return self.call(f"get {plural} {namespace}/{name}", self.custom.get_namespaced_custom_object, group,
                             version, namespace, plural, name)
        except NotFound:
            return None

    def delete_custom(self, namespace: str, plural: str, name: str) -> bool:
        """True when deleted, False when it was already gone."""
        group, version, _ = CHAOS_MESH
        try:
            self.call(f"delete {plural} {namespace}/{name}", self.custom.delete_namespaced_custom_object, group,
                      version, namespace, plural, name)
            return True
        except NotFound:
            return False

    def list_custom(self, namespace: str, plural: str, selector: str) -> List[Dict[str, Any]]:
        group, version, _ = CHAOS_MESH
        answer = self.call(f"list {plural} in {namespace}", self.custom.list_namespaced_custom_object, group,
                           version, namespace, plural, label_selector=selector)
        return list(answer.get("items") or [])

    # ------------------------------------------------------------------ network policies
    def create_policy(self, namespace: str, body: Dict[str, Any]) -> Dict[str, Any]:
        return self.call(f"create networkpolicy {namespace}/{body['metadata']['name']}",
                         self.networking.create_namespaced_network_policy, namespace, body)

    def delete_policy(self, namespace: str, name: str) -> bool:
        try:
            self.call(f"delete networkpolicy {namespace}/{name}", self.networking.delete_namespaced_network_policy,
                      name, namespace)
            return True
        except NotFound:
            return False

    def policies(self, namespace: str, selector: Optional[str] = None) -> List[Dict[str, Any]]:
        kwargs = {"label_selector": selector} if selector else {}
        answer = self.call(f"list networkpolicies in {namespace}", self.networking.list_namespaced_network_policy,
                           namespace, **kwargs)
        return list(answer.get("items") or [])

    # ------------------------------------------------------------------ exec
    def exec(self, namespace: str, pod: str, container: Optional[str], argv: Sequence[str],
             input: Optional[str] = None, timeout: float = 30.0) -> Result:
        """Run ``argv`` in the container (no shell); its exit code, stdout and stderr."""
        from kubernetes.client.rest import ApiException
        from kubernetes.stream import stream
        from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL, V5_CHANNEL_PROTOCOL

        where = f"{namespace}/{pod}" + (f" ({container})" if container else "")
        kwargs: Dict[str, Any] = {"command": list(argv), "stdin": input is not None, "stdout": True, "stderr": True,
                                  "tty": False, "_preload_content": False, "_request_timeout": timeout}
        if container:
            kwargs["container"] = container
        try:
            with self._exec_lock:
                ws = stream(self._exec_core.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
        except ApiException as e:
            message = _status_message(e.body) if e.body else str(e.reason)
            if e.status == 404 or "404" in str(e.reason):
                raise CommandError(argv, f"exec in {where}: the pod does not exist", None,
                                   f"pod {where} does not exist") from None
            raise CommandError(argv, f"exec in {where} refused: {message}", None, message) from None
        try:
            if input is not None:
                if ws.subprotocol != V5_CHANNEL_PROTOCOL:
                    raise CommandError(argv, f"exec in {where}: the API server speaks {ws.subprotocol!r}, which "
                                             f"cannot end stdin; exec with input needs Kubernetes 1.30 or later "
                                             f"({V5_CHANNEL_PROTOCOL})")
                ws.write_stdin(input)
                ws.close_channel(0)
            ws.run_forever(timeout=timeout)
            if ws.is_open():
                raise CommandError(argv, f"{' '.join(argv)} in {where} did not finish within {timeout} s")
            stdout = ws.read_channel(STDOUT_CHANNEL)
            stderr = ws.read_channel(STDERR_CHANNEL)
            status = ws.read_channel(ERROR_CHANNEL)
        finally:
            ws.close()
        code = _exit_code(status)
        return Result(code, stdout, stderr)


def _exit_code(status: str) -> int:
    """The exit code in the exec status document (channel 3): 0 on Success, the ExitCode cause otherwise."""
    try:
        data = json.loads(status) if status else {}
    except ValueError:
        return 1
    if data.get("status") == "Success":
        return 0
    for cause in (data.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return 1
    return 126 if data else 0


class PodHost:
    """A container as a host for argv lists (the :class:`chaosscheduler.hosts.LocalHost` interface), through exec.
    Used by the ``exec-nft`` network mode and the ``exec-kill`` kill mode."""

    def __init__(self, api: KubeAPI, namespace: str, pod: str, container: Optional[str]):
        self.api = api
        self.namespace = namespace
        self.pod = pod
        self.container = container
        self.name = f"pod {namespace}/{pod}" + (f" ({container})" if container else "")

    def run(self, argv: Sequence[str], input: Optional[str] = None, timeout: float = 30.0,
            check: bool = True) -> Result:
        result = self.api.exec(self.namespace, self.pod, self.container, [str(a) for a in argv], input, timeout)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise CommandError(argv, f"{' '.join(argv)} in {self.name} failed ({result.returncode}): "
                                     f"{detail[0] if detail else 'no output'}", result.returncode, result.stderr)
        return result

    def __repr__(self) -> str:
        return f"PodHost({self.name!r})"
