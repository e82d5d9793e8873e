"""A fake Kubernetes API server: no real one can run on these machines, so the kubernetes platform's tests talk to
this one through the real ``kubernetes`` client, over HTTP on 127.0.0.1.

It speaks the API's real paths, JSON shapes, status codes and the ``v5.channel.k8s.io`` exec websocket for the
endpoints the platform uses: pods (list with label selectors, get, delete with a grace period, JSON and merge
patches of labels, exec), leases, API discovery of ``chaos-mesh.org/v1alpha1``, ``NetworkChaos`` custom objects and
``NetworkPolicies`` (create, get, delete, list with label selectors). It holds state and plays the controllers:

* a deleted pod owned by a ReplicaSet is replaced by a new pod (new name, new IP) that becomes Ready after
  ``ready_delay``; a StatefulSet's pod comes back under the same name;
* when the pod holding the Lease is deleted or its process killed, another Ready master takes the Lease after
  ``election_delay`` (``elections`` is the ground truth: when and who);
* ``kill -s SIG 1`` through exec restarts the container (restartCount + 1, Ready again after ``ready_delay``),
  unless the pod is marked ``pid1_ignores_kill`` (what the kernel does to SIGKILL sent to a PID namespace's init
  from inside it); ``nft -f -``, ``nft list tables`` and ``nft delete table inet NAME`` keep a per-pod set of tables.

* a ``batch/v1`` Job gets one pod (labels ``job-name``, ``controller-uid`` and the template's) on a node; the
  fake kubelet really runs the container's ``command`` + ``args`` as a local process (the environment from the
  container's ``env``, ``fieldRef: spec.nodeName`` resolved), keeps its stdout as the pod's log
  (``GET .../pods/NAME/log``) and sets the pod's phase and the Job's ``succeeded``/``failed`` and
  ``completionTime`` when it exits; deleting the Job kills the process and removes the pod.

Nothing is sent to the pods' addresses (they are data only). Delays are applied lazily, on the next request.
"""

import base64
import copy
import hashlib
import heapq
import itertools
import json
import os
import re
import struct
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlparse

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_REQ = re.compile(r"^\s*(!?)\s*([^\s=!()]+)\s*(?:(==|=|!=)\s*([^\s=!(),]*)|\s+(in|notin)\s*\(([^()]*)\))?\s*$")


def now_rfc3339(at: Optional[float] = None) -> str:
    at = time.time() if at is None else at
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int((at % 1) * 1e6):06d}Z"


def matches(selector: str, labels: Dict[str, str]) -> bool:
    """kubectl label selector semantics (an independent implementation from the platform's parser)."""
    depth, part, parts = 0, "", []
    for char in selector or "":
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += char
    parts.append(part)
    for part in filter(str.strip, parts):
        found = _REQ.match(part)
        if not found:
            raise ValueError(f"unable to parse requirement: {part!r}")
        bang, key, op, value, set_op, values = found.groups()
        if op in ("=", "=="):
            ok = labels.get(key) == value
        elif op == "!=":
            ok = labels.get(key) != value
        elif set_op == "in":
            ok = labels.get(key) in [v.strip() for v in values.split(",")]
        elif set_op == "notin":
            ok = labels.get(key) not in [v.strip() for v in values.split(",")]
        else:
            ok = (key in labels) != bool(bang)
        if not ok:
            return False
    return True


def _status(code: int, reason: str, message: str) -> Dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


class FakeCluster:
    """The state and the controllers. ``start()`` serves it on 127.0.0.1; ``stop()`` ends the server."""

    def __init__(self, namespace: str = "schedule-system", masters: int = 3, workers: int = 4,
                 chaos_mesh: bool = True, token: Optional[str] = "fake-token", ready_delay: float = 0.3,
                 election_delay: float = 0.5, lease_name: str = "scheduler-master", v5: bool = True):
        self.namespace = namespace
        self.chaos_mesh = chaos_mesh
        self.token = token
        self.ready_delay = ready_delay
        self.election_delay = election_delay
        self.v5 = v5
        self.lock = threading.RLock()
        self.pods: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.leases: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.chaos: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.policies: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.nft: Dict[Tuple[str, str], Dict[str, str]] = {}
        self.requests: List[Dict[str, Any]] = []
        self.execs: List[Dict[str, Any]] = []
        self.exec_seconds = 0.0  # how long each exec takes after its command ran (outside the lock): shows overlap
        self.elections: List[Dict[str, Any]] = []
        self.deletions: List[Dict[str, Any]] = []
        self.jobs: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.logs: Dict[Tuple[str, str], str] = {}
        self.job_processes: Dict[Tuple[str, str], subprocess.Popen] = {}
        self._events: List[Tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._ips = itertools.count(11)
        self.master_rs = {"kind": "ReplicaSet", "name": "scheduler-master-7c9f8d", "uid": str(uuid.uuid4())}
        self.worker_sts = {"kind": "StatefulSet", "name": "scheduler-worker", "uid": str(uuid.uuid4())}
        self.registry_sts = {"kind": "StatefulSet", "name": "zookeeper", "uid": str(uuid.uuid4())}
        for _ in range(masters):
            self.add_pod(self._rs_name(), {"app": "scheduler-master", "app.kubernetes.io/component": "master"},
                         "master", self.master_rs)
        for i in range(workers):
            self.add_pod(f"scheduler-worker-{i}", {"app": "scheduler-worker"}, "worker", self.worker_sts)
        self.add_pod("zookeeper-0", {"app": "zookeeper"}, "zookeeper", self.registry_sts)
        first = sorted(n for (ns, n), p in self.pods.items() if p["metadata"]["labels"]["app"] == "scheduler-master")
        if first:
            self.leases[(namespace, lease_name)] = {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": lease_name, "namespace": namespace, "resourceVersion": "1"},
                "spec": {"holderIdentity": f"{first[0]}_{uuid.uuid4()}", "leaseDurationSeconds": 15,
                         "acquireTime": now_rfc3339(), "renewTime": now_rfc3339(), "leaseTransitions": 0}}
        self.lease_name = lease_name
        self.server: Optional[ThreadingHTTPServer] = None

    # ------------------------------------------------------------------ controllers
    def _rs_name(self) -> str:
        return f"{self.master_rs['name']}-{uuid.uuid4().hex[:5]}"

    def add_pod(self, name: str, labels: Dict[str, str], container: str, owner: Optional[Dict[str, str]],
                ready: bool = True, namespace: Optional[str] = None) -> Dict[str, Any]:
        namespace = namespace or self.namespace
        refs = [dict(owner, apiVersion="apps/v1", controller=True, blockOwnerDeletion=True)] if owner else []
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "labels": dict(labels),
                            "ownerReferences": refs, "creationTimestamp": now_rfc3339(), "resourceVersion": "1"},
               "spec": {"containers": [{"name": container, "image": f"example/{container}:1"}],
                        "nodeName": f"node-{next(self._ips) % 3 + 1}", "restartPolicy": "Always"},
               "status": {"phase": "Running", "podIP": f"127.10.0.{next(self._ips)}",
                          "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                          "containerStatuses": [{"name": container, "ready": ready, "restartCount": 0,
                                                 "image": f"example/{container}:1", "imageID": "",
                                                 "state": {"running": {"startedAt": now_rfc3339()}}}]},
               "_fake": {"pid1_ignores_kill": False, "stopped": False, "nft": True}}
        self.pods[(namespace, name)] = pod
        return pod

    def later(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (time.monotonic() + delay, next(self._seq), action))

    def tick(self) -> None:
        with self.lock:
            while self._events and self._events[0][0] <= time.monotonic():
                heapq.heappop(self._events)[2]()

    def _set_ready(self, pod: Dict[str, Any], ready: bool) -> None:
        pod["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
        for status in pod["status"]["containerStatuses"]:
            status["ready"] = ready
            status["state"] = {"running": {"startedAt": now_rfc3339()}} if ready else \
                {"waiting": {"reason": "ContainerCreating"}}

    def _ready_later(self, key: Tuple[str, str], uid: str) -> None:
        def become_ready() -> None:
            pod = self.pods.get(key)
            if pod is not None and pod["metadata"]["uid"] == uid:
                self._set_ready(pod, True)

        self.later(self.ready_delay, become_ready)

    def holder_pod(self) -> Optional[str]:
        lease = self.leases.get((self.namespace, self.lease_name))
        holder = (lease or {}).get("spec", {}).get("holderIdentity") or ""
        return holder.split("_", 1)[0] or None

    def _elect_later(self, lost: str) -> None:
        def elect() -> None:
            lease = self.leases[(self.namespace, self.lease_name)]
            candidates = sorted(p["metadata"]["name"] for (ns, n), p in self.pods.items()
                                if ns == self.namespace and p["metadata"]["labels"].get("app") == "scheduler-master"
                                and n != lost and p["status"]["conditions"][0]["status"] == "True"
                                and not p["_fake"]["stopped"])
            if not candidates:
                self.later(0.05, elect)
                return
            at = time.time()
            lease["spec"].update(holderIdentity=f"{candidates[0]}_{uuid.uuid4()}", acquireTime=now_rfc3339(at),
                                 renewTime=now_rfc3339(at))
            lease["spec"]["leaseTransitions"] += 1
            self.elections.append({"at": at, "leader": candidates[0], "lost": lost})

        self.later(self.election_delay, elect)

    def delete_pod(self, namespace: str, name: str, grace: Optional[int]) -> Dict[str, Any]:
        key = (namespace, name)
        pod = self.pods.get(key)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        self.deletions.append({"at": time.time(), "pod": name, "grace": grace})
        was_leader = self.holder_pod() == name
        owner = (pod["metadata"]["ownerReferences"] or [None])[0]

        def replace() -> None:
            self.pods.pop(key, None)
            self.nft.pop(key, None)
            if not owner:
                return
            labels = dict(pod["metadata"]["labels"])
            for k in [k for k in labels if k.startswith(("target.chaosscheduler/", "peer.chaosscheduler/"))]:
                del labels[k]  # a replacement is created from the controller's template
            new_name = self._rs_name() if owner["kind"] == "ReplicaSet" else name
            fresh = self.add_pod(new_name, labels, pod["spec"]["containers"][0]["name"],
                                 {k: owner[k] for k in ("kind", "name", "uid")}, ready=False, namespace=namespace)
            self._ready_later((namespace, new_name), fresh["metadata"]["uid"])

        if grace == 0:
            replace()
        else:
            pod["metadata"]["deletionTimestamp"] = now_rfc3339()
            self._set_ready(pod, False)
            self.later(0.1, replace)
        if was_leader:
            self._elect_later(name)
        return pod

    def exec(self, namespace: str, name: str, container: str, argv: List[str], stdin: str) -> Tuple[int, str, str]:
        pod = self.pods.get((namespace, name))
        self.execs.append({"pod": name, "container": container, "argv": list(argv), "stdin": stdin})
        if pod is None:
            return 1, "", "pod not found"
        fake = pod["_fake"]
        if argv[:2] == ["kill", "-s"] and len(argv) == 4:
            sig = argv[2]
            if sig == "STOP":
                fake["stopped"] = True
                if self.holder_pod() == name:
                    self._elect_later(name)
                return 0, "", ""
            if sig == "CONT":
                fake["stopped"] = False
                return 0, "", ""
            if sig == "KILL" and fake["pid1_ignores_kill"]:
                return 0, "", ""  # the kernel drops SIGKILL to a PID namespace's init sent from inside it
            self._set_ready(pod, False)
            for status in pod["status"]["containerStatuses"]:
                status["restartCount"] += 1
            self._ready_later((namespace, name), pod["metadata"]["uid"])
            if self.holder_pod() == name:
                self._elect_later(name)
            return 0, "", ""
        if argv[:1] == ["nft"]:
            if not fake["nft"]:
                return 1, "", "Error: Operation not permitted (you must be root)"
            tables = self.nft.setdefault((namespace, name), {})
            if argv[1:] == ["-f", "-"]:
                found = re.findall(r"^table inet (\S+) \{", stdin or "", re.M)
                if not found:
                    return 1, "", "Error: syntax error"
                for table in found:
                    if table in tables:
                        return 1, "", f"Error: table {table} exists"
                    tables[table] = stdin
                return 0, "", ""
            if argv[1:] == ["list", "tables"]:
                return 0, "".join(f"table inet {t}\n" for t in sorted(tables)) + "table ip operator_nat\n", ""
            if argv[1:4] == ["delete", "table", "inet"] and len(argv) == 5:
                if tables.pop(argv[4], None) is None:
                    return 1, "", "Error: Could not process rule: No such file or directory"
                return 0, "", ""
        return 127, "", f"exec: {argv[0]!r}: executable file not found in $PATH"

    # ------------------------------------------------------------------ the Job controller and a kubelet
    def create_job(self, namespace: str, body: Dict[str, Any]) -> Dict[str, Any]:
        key = (namespace, body["metadata"]["name"])
        if key in self.jobs:
            raise ApiError(409, "AlreadyExists", f'jobs.batch "{key[1]}" already exists')
        job = copy.deepcopy(body)
        uid = str(uuid.uuid4())
        job["metadata"].update(namespace=namespace, uid=uid, creationTimestamp=now_rfc3339(), resourceVersion="1")
        job["status"] = {}
        self.jobs[key] = job
        template = job["spec"]["template"]
        labels = dict(template.get("metadata", {}).get("labels") or {}, **{"job-name": key[1], "controller-uid": uid})
        container = template["spec"]["containers"][0]
        pod = self.add_pod(f"{key[1]}-{uuid.uuid4().hex[:5]}", labels, container["name"],
                           {"kind": "Job", "name": key[1], "uid": uid}, ready=False, namespace=namespace)
        pod["status"]["phase"] = "Pending"
        self._run_pod(namespace, job, pod, container)
        return job

    def _run_pod(self, namespace: str, job: Dict[str, Any], pod: Dict[str, Any], container: Dict[str, Any]) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOSTNAME": pod["metadata"]["name"]}
        for item in container.get("env") or []:
            ref = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            env[item["name"]] = pod["spec"]["nodeName"] if ref == "spec.nodeName" else str(item.get("value", ""))
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        key = (namespace, pod["metadata"]["name"])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        self.job_processes[key] = proc
        pod["status"]["phase"] = "Running"
        job["status"].update(active=1, startTime=now_rfc3339())

        def wait() -> None:
            output = proc.stdout.read().decode(errors="replace")
            code = proc.wait()
            with self.lock:
                self.logs[key] = output
                self.job_processes.pop(key, None)
                if key in self.pods:
                    self.pods[key]["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
                if self.jobs.get((namespace, job["metadata"]["name"])) is job:
                    job["status"].pop("active", None)
                    job["status"]["succeeded" if code == 0 else "failed"] = 1
                    if code == 0:
                        job["status"]["completionTime"] = now_rfc3339()
                        job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]

        threading.Thread(target=wait, daemon=True).start()

    def delete_job(self, namespace: str, name: str) -> Dict[str, Any]:
        job = self.jobs.pop((namespace, name), None)
        if job is None:
            raise ApiError(404, "NotFound", f'jobs.batch "{name}" not found')
        for key, pod in list(self.pods.items()):
            if key[0] == namespace and (pod["metadata"].get("labels") or {}).get("job-name") == name:
                proc = self.job_processes.pop(key, None)
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, 9)
                self.pods.pop(key, None)
                self.logs.pop(key, None)
        return job

    def stop_jobs(self) -> None:
        for proc in list(self.job_processes.values()):
            if proc.poll() is None:
                os.killpg(proc.pid, 9)

    # ------------------------------------------------------------------ serving
    def start(self) -> "FakeCluster":
        cluster = self

        class Handler(_Handler):
            fake = cluster

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="fake-k8s", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.stop_jobs()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def kubeconfig(self) -> str:
        user = {"token": self.token} if self.token else {}
        return json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                           "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                           "users": [{"name": "fake", "user": user}],
                           "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]})

    # ------------------------------------------------------------------ views for tests (each applies due events)
    def leader_pod(self) -> Optional[str]:
        self.tick()
        with self.lock:
            return self.holder_pod()

    def pod_names(self, app: str) -> List[str]:
        self.tick()
        with self.lock:
            return sorted(n for (_, n), p in self.pods.items() if p["metadata"]["labels"].get("app") == app)

    def pod(self, name: str) -> Dict[str, Any]:
        self.tick()
        with self.lock:
            return copy.deepcopy(self.pods[(self.namespace, name)])


class _Text(str):
    """A plain-text answer (a pod's log)."""


def _list(kind: str, items: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"},
            "items": [{k: v for k, v in copy.deepcopy(i).items() if k != "_fake"} for i in items]}


def _public(obj: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in copy.deepcopy(obj).items() if k != "_fake"}


def _json_pointer_key(path: str) -> Optional[str]:
    if not path.startswith("/metadata/labels/"):
        return None
    return path[len("/metadata/labels/"):].replace("~1", "/").replace("~0", "~")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeCluster
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _send(self, code: int, body: Any) -> None:
        text = isinstance(body, _Text)
        data = body.encode() if text else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        fake.tick()
        url = urlparse(self.path)
        query = parse_qs(url.query)
        body = self._body() if method in ("POST", "PATCH", "PUT", "DELETE") else None
        fake.requests.append({"method": method, "path": url.path, "query": query, "body": body,
                              "content_type": self.headers.get("Content-Type")})
        if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        try:
            with fake.lock:
                code, answer = self._route(method, url.path, query, body)
        except ApiError as e:
            code, answer = e.code, _status(e.code, e.reason, e.message)
        except ValueError as e:
            code, answer = 400, _status(400, "BadRequest", str(e))
        self._send(code, answer)

    def do_GET(self) -> None:  # noqa: N802
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._exec()
            return
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    # ------------------------------------------------------------------ routes
    def _route(self, method: str, path: str, query: Dict[str, List[str]], body: Any) -> Tuple[int, Any]:
        fake = self.fake
        selector = (query.get("labelSelector") or [""])[0]
        parts = [p for p in path.split("/") if p]
        if parts == ["apis", "chaos-mesh.org", "v1alpha1"] and method == "GET":
            if not fake.chaos_mesh:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "chaos-mesh.org/v1alpha1",
                         "resources": [{"name": "networkchaos", "singularName": "networkchaos", "namespaced": True,
                                        "kind": "NetworkChaos", "verbs": ["create", "delete", "get", "list"]},
                                       {"name": "podchaos", "singularName": "podchaos", "namespaced": True,
                                        "kind": "PodChaos", "verbs": ["create", "delete", "get", "list"]}]}
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?", path)
        if m:
            return self._pods(method, m.group(1), m.group(2), selector, query, body)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", path)
        if m and method == "GET":
            if (m.group(1), m.group(2)) not in fake.pods:
                raise ApiError(404, "NotFound", f'pods "{m.group(2)}" not found')
            return 200, _Text(fake.logs.get((m.group(1), m.group(2)), ""))
        m = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?", path)
        if m:
            return self._jobs(method, m.group(1), m.group(2), selector, body)
        m = re.fullmatch(r"/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases/([^/]+)", path)
        if m and method == "GET":
            lease = fake.leases.get((m.group(1), m.group(2)))
            if lease is None:
                raise ApiError(404, "NotFound", f'leases.coordination.k8s.io "{m.group(2)}" not found')
            return 200, copy.deepcopy(lease)
        m = re.fullmatch(r"/apis/chaos-mesh\.org/v1alpha1/namespaces/([^/]+)/networkchaos(?:/([^/]+))?", path)
        if m:
            if not fake.chaos_mesh:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self._objects(method, fake.chaos, "NetworkChaos", "networkchaos.chaos-mesh.org", m.group(1),
                                 m.group(2), selector, body)
        m = re.fullmatch(r"/apis/networking\.k8s\.io/v1/namespaces/([^/]+)/networkpolicies(?:/([^/]+))?", path)
        if m:
            return self._objects(method, fake.policies, "NetworkPolicy", "networkpolicies.networking.k8s.io",
                                 m.group(1), m.group(2), selector, body)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _pods(self, method: str, namespace: str, name: Optional[str], selector: str, query: Dict[str, List[str]],
              body: Any) -> Tuple[int, Any]:
        fake = self.fake
        if name is None and method == "GET":
            items = [p for (ns, _), p in sorted(fake.pods.items()) if ns == namespace
                     and matches(selector, p["metadata"]["labels"])]
            return 200, _list("PodList", items)
        pod = fake.pods.get((namespace, name or ""))
        if method == "GET" and pod is not None:
            return 200, _public(pod)
        if method == "DELETE":
            grace = (query.get("gracePeriodSeconds") or [None])[0]
            if grace is None and isinstance(body, dict):
                grace = body.get("gracePeriodSeconds")
            return 200, _public(fake.delete_pod(namespace, name, None if grace is None else int(grace)))
        if method == "PATCH" and pod is not None:
            content_type = self.headers.get("Content-Type", "")
            labels = pod["metadata"].setdefault("labels", {})
            if "json-patch" in content_type:
                updated = dict(labels)
                for op in body:
                    key = _json_pointer_key(op.get("path", ""))
                    if key is None:
                        raise ApiError(422, "Invalid", f"the fake patches labels only, not {op.get('path')}")
                    if op["op"] == "test" and updated.get(key) != op.get("value"):
                        raise ApiError(422, "Invalid", f"testing value {op['path']} failed")
                    if op["op"] == "remove":
                        if key not in updated:
                            raise ApiError(422, "Invalid", f"remove operation does not apply: {op['path']}")
                        del updated[key]
                    if op["op"] in ("add", "replace"):
                        updated[key] = op["value"]
                labels.clear()
                labels.update(updated)
            else:
                for key, value in ((body or {}).get("metadata", {}).get("labels") or {}).items():
                    if value is None:
                        labels.pop(key, None)
                    else:
                        labels[key] = value
            return 200, _public(pod)
        raise ApiError(404, "NotFound", f'pods "{name}" not found')

    def _jobs(self, method: str, namespace: str, name: Optional[str], selector: str, body: Any) -> Tuple[int, Any]:
        fake = self.fake
        if name is None and method == "GET":
            items = [j for (ns, _), j in sorted(fake.jobs.items()) if ns == namespace
                     and matches(selector, j["metadata"].get("labels") or {})]
            return 200, {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "1"},
                         "items": copy.deepcopy(items)}
        if name is None and method == "POST":
            if not isinstance(body, dict) or body.get("kind") != "Job" or not body.get("metadata", {}).get("name") \
                    or not body.get("spec", {}).get("template", {}).get("spec", {}).get("containers"):
                raise ApiError(422, "Invalid", "the body is not a Job with a name and a container")
            return 201, copy.deepcopy(fake.create_job(namespace, body))
        if method == "GET":
            job = fake.jobs.get((namespace, name or ""))
            if job is None:
                raise ApiError(404, "NotFound", f'jobs.batch "{name}" not found')
            return 200, copy.deepcopy(job)
        if method == "DELETE":
            fake.delete_job(namespace, name or "")
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": "batch", "kind": "jobs"}}
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    def _objects(self, method: str, store: Dict[Tuple[str, str], Dict[str, Any]], kind: str, resource: str,
                 namespace: str, name: Optional[str], selector: str, body: Any) -> Tuple[int, Any]:
        if name is None and method == "GET":
            items = [o for (ns, _), o in sorted(store.items()) if ns == namespace
                     and matches(selector, o["metadata"].get("labels") or {})]
            return 200, _list(f"{kind}List", items)
        if name is None and method == "POST":
            if not isinstance(body, dict) or body.get("kind") != kind or not body.get("metadata", {}).get("name"):
                raise ApiError(400, "BadRequest", f"the body is not a {kind} with a name")
            key = (namespace, body["metadata"]["name"])
            if key in store:
                raise ApiError(409, "AlreadyExists", f'{resource} "{key[1]}" already exists')
            obj = copy.deepcopy(body)
            obj["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(),
                                   resourceVersion="1")
            store[key] = obj
            return 201, copy.deepcopy(obj)
        obj = store.get((namespace, name or ""))
        if obj is None:
            raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
        if method == "GET":
            return 200, copy.deepcopy(obj)
        if method == "DELETE":
            del store[(namespace, name)]
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "kind": resource.split(".")[0]}}
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    # ------------------------------------------------------------------ exec over the websocket
    def _exec(self) -> None:
        fake = self.fake
        fake.tick()
        url = urlparse(self.path)
        query = parse_qs(url.query)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec", url.path)
        fake.requests.append({"method": "GET", "path": url.path, "query": query, "body": None, "upgrade": True})
        if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        with fake.lock:
            pod = fake.pods.get((m.group(1), m.group(2))) if m else None
        if pod is None:
            self._send(404, _status(404, "NotFound", f'pods "{m.group(2) if m else "?"}" not found'))
            return
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = (query.get("container") or [containers[0]])[0]
        if container not in containers:
            self._send(400, _status(400, "BadRequest", f"container {container} is not valid for pod {m.group(2)}"))
            return
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        protocol = "v5.channel.k8s.io" if fake.v5 and "v5.channel.k8s.io" in offered else "v4.channel.k8s.io"
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest())
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        stdin = ""
        if (query.get("stdin") or ["false"])[0] in ("true", "1", "True"):
            while True:  # until the v5 CLOSE of stdin, a close frame or the end of the connection
                frame = _read_frame(self.rfile)
                if frame is None or frame[0] == 8:
                    break
                data = bytes(frame[1])
                if data[:2] == b"\xff\x00":
                    break
                if data[:1] == b"\x00":
                    stdin += data[1:].decode()
        started = time.time()
        with fake.lock:
            code, out, err = fake.exec(m.group(1), m.group(2), container, query.get("command") or [], stdin)
            entry = fake.execs[-1]
        if fake.exec_seconds:
            time.sleep(fake.exec_seconds)  # the container's command running (each exec has its server thread)
        entry.update(started=started, ended=time.time())
        if out:
            _write_frame(self.wfile, 2, b"\x01" + out.encode())
        if err:
            _write_frame(self.wfile, 2, b"\x02" + err.encode())
        status = {"metadata": {}, "status": "Success"} if code == 0 else \
            {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: {code}",
             "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        _write_frame(self.wfile, 2, b"\x03" + json.dumps(status).encode())
        _write_frame(self.wfile, 8, struct.pack(">H", 1000))
        self.wfile.flush()
        self.close_connection = True


def _read_frame(rfile: Any) -> Optional[Tuple[int, bytes]]:
    head = rfile.read(2)
    if len(head) < 2:
        return None
    opcode, masked, length = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
    if length == 126:
        length = struct.unpack(">H", rfile.read(2))[0]
    elif length == 127:
        length = struct.unpack(">Q", rfile.read(8))[0]
    mask = rfile.read(4) if masked else b""
    data = rfile.read(length)
    if masked:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return opcode, data


def _write_frame(wfile: Any, opcode: int, data: bytes) -> None:
    length = len(data)
    if length < 126:
        header = bytes([0x80 | opcode, length])
    elif length < 65536:
        header = bytes([0x80 | opcode, 126]) + struct.pack(">H", length)
    else:
        header = bytes([0x80 | opcode, 127]) + struct.pack(">Q", length)
    wfile.write(header + data)
