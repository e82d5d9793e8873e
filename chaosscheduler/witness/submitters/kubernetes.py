"""Submit witness tasks to Kubernetes: a ``batch/v1`` Job per task (by default), or any object from a template.

    {"type": "kubernetes", "namespace": "batch", "image": "busybox:1.36"}
    {"type": "kubernetes", "namespace": "batch", "template": {...a Job, or any object with "plural"...}}

The default Job runs the witness script in one container (``restartPolicy: Never``, ``backoffLimit: 0``: one
execution per Job unless the platform retries), with ``CS_WITNESS_NODE`` set to the pod's node (downward API) and
the evidence written to ``/dev/stdout``: it is read back from the pods' logs (:class:`JobLogCollector`) before the
Jobs are deleted (a Job template does the same: give its container ``["{argv}"]`` as command). In a template,
every string holding ``{task}``, ``{command}``, ``{duration}``... is expanded, and a list that is exactly
``["{argv}"]`` becomes the task's argv; a template of another kind needs ``plural`` (created with the
custom-objects API) and its evidence is read by exec in the workers (``evidence_dir``). Every object
carries the label ``chaosscheduler.io/witness-run``; ``close()`` deletes them all.

The client is configured like chaostoolkit-kubernetes (:class:`chaosscheduler.platforms.kubernetes_api.KubeAPI`).
"""

import copy
import datetime
import math
import re
import shlex
import time
from typing import Any, Dict, List, Optional, Tuple

from ...errors import ConfigurationError
from ..command import parse_lines
from ..collectors import Collector
from .base import Submitter, expand_value, result

__all__ = ["KubernetesSubmitter", "JobLogCollector", "validate", "build", "job_body", "RUN_LABEL"]

RUN_LABEL = "chaosscheduler.io/witness-run"
KEYS = {"type", "namespace", "image", "template", "plural", "labels", "timeout"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def validate(options: Dict[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(options) - KEYS)
    if unknown:
        raise ConfigurationError(f"unknown chaosscheduler_witness.submitter key(s) {', '.join(unknown)} for type "
                                 f"'kubernetes'; known: {', '.join(sorted(KEYS - {'type'}))}")
    namespace = options.get("namespace")
    if not isinstance(namespace, str) or not _NAME.match(namespace):
        raise ConfigurationError(f"chaosscheduler_witness.submitter.namespace must name a namespace, got {namespace!r}")
    image = options.get("image", "busybox:1.36")
    if not isinstance(image, str) or not image.strip():
        raise ConfigurationError(f"chaosscheduler_witness.submitter.image must be an image name, got {image!r}")
    template = options.get("template")
    if template is not None:
        if not isinstance(template, dict) or not template.get("apiVersion") or not template.get("kind"):
            raise ConfigurationError("chaosscheduler_witness.submitter.template must be an object with apiVersion "
                                     "and kind")
        is_job = template["apiVersion"] == "batch/v1" and template["kind"] == "Job"
        if not is_job and not isinstance(options.get("plural"), str):
            raise ConfigurationError(f"chaosscheduler_witness.submitter.plural is needed for a template of kind "
                                     f"{template['kind']} (the resource's plural name, e.g. 'jobs')")
    labels = options.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ConfigurationError(f"chaosscheduler_witness.submitter.labels must map strings to strings, got {labels!r}")
    timeout = options.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.1 <= timeout <= 300:
        raise ConfigurationError(f"chaosscheduler_witness.submitter.timeout must be 0.1-300 seconds, got {timeout!r}")
    return {"type": "kubernetes", "namespace": namespace, "image": image, "template": template,
            "plural": options.get("plural"), "labels": labels, "timeout": float(timeout)}


def run_label(run_id: str) -> str:
    value = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")[:63].strip("-")
    return value or "run"


def job_body(task: str, argv: List[str], namespace: str, image: str, labels: Dict[str, str]) -> Dict[str, Any]:
    """The default Job of one witness task."""
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": task, "namespace": namespace, "labels": dict(labels)},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "witness", "image": image, "command": list(argv),
                    "env": [{"name": "CS_WITNESS_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}}}]}}}}


def _fill(node: Any, values: Dict[str, Any]) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        if node == ["{argv}"]:
            return list(values["argv"])
        return [_fill(v, values) for v in node]
    if isinstance(node, str):
        return expand_value(node, {k: v for k, v in values.items() if k != "argv"})
    return node


def _when(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class KubernetesSubmitter(Submitter):
    kind = "kubernetes"

    def __init__(self, options: Dict[str, Any], api: Any, run_id: str, evidence: str):
        from kubernetes import client

        self.options = options
        self.api = api
        self.batch = client.BatchV1Api(api.api_client)
        self.namespace = options["namespace"]
        self.run_id = run_id
        self.labels = dict(options["labels"], **{RUN_LABEL: run_label(run_id)})
        self.selector = f"{RUN_LABEL}={self.labels[RUN_LABEL]}"
        self.template = options["template"]
        self.is_job = self.template is None or (self.template["apiVersion"] == "batch/v1"
                                                and self.template["kind"] == "Job")
        self.reports_completions = self.is_job
        self.evidence = evidence
        self.evidence_path = "/dev/stdout" if self.is_job else None  # read back from the pods' logs
        self.collector: Optional[Collector] = JobLogCollector(self) if self.is_job else None

    def _body(self, task: str, argv: List[str], duration: float) -> Dict[str, Any]:
        if self.template is None:
            return job_body(task, argv, self.namespace, self.options["image"], self.labels)
        values = {"task": task, "argv": list(argv), "command": shlex.join(argv), "duration": duration,
                  "duration_int": int(math.ceil(duration)), "run": self.run_id, "evidence": self.evidence}
        body = _fill(copy.deepcopy(self.template), values)
        meta = body.setdefault("metadata", {})
        meta.setdefault("name", task)
        meta["namespace"] = self.namespace
        meta["labels"] = dict(meta.get("labels") or {}, **self.labels)
        if self.is_job:  # the pods carry the run's label too: the log collector finds them by it
            pod_meta = body.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {})
            pod_meta["labels"] = dict(pod_meta.get("labels") or {}, **self.labels)
        return body

    def _create(self, body: Dict[str, Any]) -> Any:
        if self.is_job:
            return self.batch.create_namespaced_job
        group, _, version = body["apiVersion"].partition("/")
        plural = self.options["plural"]
        return lambda namespace, body, **kw: self.api.custom.create_namespaced_custom_object(
            group, version, namespace, plural, body, **kw)

    def submit(self, task_id: str, argv: List[str], duration: float) -> Dict[str, Any]:
        from ...platforms.kubernetes_api import KubernetesError

        started = time.monotonic()
        body = self._body(task_id, argv, duration)
        try:
            answer = self.api.call(f"create {body['kind']} {self.namespace}/{body['metadata']['name']}",
                                   self._create(body), self.namespace, body)
        except KubernetesError as e:
            if e.status == 409:
                return result("ok", started, job_id=body["metadata"]["name"], note="accepted by an earlier try")
            refused = e.status is not None and 400 <= e.status < 500 and e.status not in (408, 429)
            return result("fail" if refused else "info", started, error=str(e))
        return result("ok", started, job_id=(answer.get("metadata") or {}).get("name") or task_id,
                      uid=(answer.get("metadata") or {}).get("uid"))

    def jobs(self) -> List[Dict[str, Any]]:
        if not self.is_job:
            return []
        answer = self.api.call(f"list jobs in {self.namespace}", self.batch.list_namespaced_job, self.namespace,
                               label_selector=self.selector)
        return list(answer.get("items") or [])

    def pods(self) -> List[Dict[str, Any]]:
        return self.api.pods(self.namespace, self.selector)

    def completions(self, jobs: Dict[str, str]) -> List[Dict[str, Any]]:
        by_name = {job: task for task, job in jobs.items()}
        nodes = {(p.get("metadata", {}).get("labels") or {}).get("job-name"): (p.get("spec") or {}).get("nodeName")
                 for p in self.pods()}
        out = []
        for job in self.jobs():
            name = job["metadata"]["name"]
            status = job.get("status") or {}
            if name in by_name and int(status.get("succeeded") or 0) >= 1:
                out.append({"task": by_name[name], "job_id": name, "at": _when(status.get("completionTime")),
                            "host": nodes.get(name)})
        return out

    def _delete(self, name: str) -> None:
        from ...platforms.kubernetes_api import NotFound

        try:
            self.api.call(f"delete job {self.namespace}/{name}", self.batch.delete_namespaced_job, name,
                          self.namespace, propagation_policy="Background")
        except NotFound:
            pass

    def cleanup(self, jobs: Dict[str, str]) -> Dict[str, Any]:
        """Delete our Jobs that have not started a pod yet (queued)."""
        cancelled, errors = [], []
        by_name = {job: task for task, job in jobs.items()}
        try:
            for job in self.jobs():
                status = job.get("status") or {}
                if not status.get("startTime") and not status.get("active") and job["metadata"]["name"] in by_name:
                    self._delete(job["metadata"]["name"])
                    cancelled.append(by_name[job["metadata"]["name"]])
        except Exception as e:
            errors.append(str(e))
        return {"cancelled": sorted(cancelled), "errors": errors, "supported": self.is_job}

    def close(self) -> Dict[str, Any]:
        """Delete every Job of this run (their pods and logs go with them)."""
        deleted, errors = 0, []
        try:
            for job in self.jobs():
                self._delete(job["metadata"]["name"])
                deleted += 1
        except Exception as e:
            errors.append(str(e))
        return {"deleted": deleted, "errors": errors}

    def describe(self) -> Dict[str, Any]:
        return {"type": "kubernetes", "namespace": self.namespace, "selector": self.selector,
                "template": self.template is not None}


class JobLogCollector(Collector):
    """The evidence lines of the default Jobs, read from their pods' logs (the node is the pod's ``nodeName``).
    Nothing to delete: the logs go with the Jobs when the submitter closes."""

    kind = "kubernetes-logs"

    def __init__(self, submitter: KubernetesSubmitter):
        self.submitter = submitter

    def _log(self, pod: Dict[str, Any]) -> Tuple[str, Optional[str]]:
        name = pod["metadata"]["name"]
        try:
            response = self.submitter.api.core.read_namespaced_pod_log(
                name, self.submitter.namespace, _preload_content=False,
                _request_timeout=self.submitter.options["timeout"])
            return response.data.decode("utf-8", "replace"), None
        except Exception as e:
            return "", f"{name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"

    def collect(self, evidence: str, delete: bool = True) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        started = time.monotonic()
        records: List[Dict[str, Any]] = []
        errors: List[str] = []
        pods = self.submitter.pods()
        for pod in pods:
            if (pod.get("status") or {}).get("phase") == "Pending":
                continue
            text, error = self._log(pod)
            if error:
                errors.append(error)
                continue
            node = (pod.get("spec") or {}).get("nodeName")
            records += parse_lines(text, node=node, source=f"pod {pod['metadata']['name']}")
        return records, {"collector": self.kind, "pods": len(pods), "seconds": time.monotonic() - started,
                         "errors": errors}


def build(options: Dict[str, Any], platform: Any, context: Dict[str, Any]) -> KubernetesSubmitter:
    from ...platforms.kubernetes_api import KubeAPI

    api = getattr(platform, "api", None) if platform.kind == "kubernetes" else None
    if api is None:
        api = KubeAPI(context.get("secrets"), timeout=options["timeout"])
    evidence = context.get("evidence") or ""
    return KubernetesSubmitter(options, api, context.get("run_id", ""), evidence)
