"""Submit witness tasks to the embedded cluster through its masters' HTTP API (their Unix sockets), like a client:
the last known leader first, then every other master, until one accepts or the deadline passes.

A timed-out request may have been accepted: if every try failed and one of them timed out after being sent, the
submission is indeterminate (``info``), not refused. Our job ids are unique, so a retry that finds the job already
there (409) proves an earlier try was accepted: ``ok``. Completions come from the task records (one per
``completed`` entry in a task's history); ``cleanup`` cancels the tasks still pending (``POST /api/cancel``).
"""

import time
from typing import Any, Dict, List

from ...testbed import Testbed
from ...testbed.submit import submit
from .base import Submitter, result

__all__ = ["TestbedSubmitter", "validate", "build"]


def validate(options: Dict[str, Any]) -> Dict[str, Any]:
    from ...errors import ConfigurationError

    unknown = sorted(set(options) - {"type"})
    if unknown:
        raise ConfigurationError(f"the testbed witness submitter takes no option, got {', '.join(unknown)}")
    return {"type": "testbed"}


class TestbedSubmitter(Submitter):
    kind = "testbed"
    reports_completions = True
    __test__ = False

    def __init__(self, tb: Testbed, deadline: float = 10.0, attempt_timeout: float = 1.0):
        self.tb = tb
        self.deadline = deadline
        self.attempt_timeout = attempt_timeout
        self.masters = [m.name for m in tb.nodes_of("master")]
        self.preferred = None
        self.since = time.time()

    def submit(self, task_id: str, argv: List[str], duration: float) -> Dict[str, Any]:
        started = time.monotonic()
        body = {"job": task_id, "tasks": 1, "duration": duration, "command": argv}
        nodes = self.tb.nodes
        answer = submit([(m, nodes[m].socket) for m in self.masters], body, deadline=self.deadline,
                        attempt_timeout=self.attempt_timeout, preferred=self.preferred)
        if answer["outcome"] == "ok":
            self.preferred = answer.get("leader")
            return result("ok", started, job_id=task_id, tries=answer["tries"])
        return result(answer["outcome"], started, error=answer.get("error"), tries=answer["tries"])

    def completions(self, jobs: Dict[str, str]) -> List[Dict[str, Any]]:
        by_job = {job: task for task, job in jobs.items()}
        out = []
        for record in self.tb.tasks(self.since - 60):
            task = by_job.get(record.get("job"))
            if task is None:
                continue
            for entry in record.get("history") or []:
                if entry.get("event") == "completed":
                    out.append({"task": task, "at": entry["at"], "job_id": record["job"],
                                "host": entry.get("worker"), "attempt": str(entry.get("attempt"))})
        return out

    def cleanup(self, jobs: Dict[str, str]) -> Dict[str, Any]:
        platform_ids = {f"{job}-0": task for task, job in jobs.items()}
        errors: List[str] = []
        cancelled: List[str] = []
        ids = sorted(platform_ids)
        for start in range(0, len(ids), 500):
            try:
                answer = self.tb.any_master("POST", "/api/cancel", {"tasks": ids[start:start + 500]}, timeout=10)
            except Exception as e:  # a cluster without a leader now: what stays queued is reported
                errors.append(str(e))
                continue
            cancelled += [platform_ids[i] for i in answer.get("cancelled", [])]
        return {"cancelled": sorted(cancelled), "errors": errors, "supported": True}

    def describe(self) -> Dict[str, Any]:
        return {"type": "testbed", "cluster": self.tb.state_dir, "masters": self.masters}


def build(options: Dict[str, Any], platform: Any, context: Dict[str, Any]) -> TestbedSubmitter:
    from ...errors import ConfigurationError

    tb = getattr(platform, "tb", None)
    if tb is None:
        raise ConfigurationError(f"the testbed witness submitter needs the testbed platform, not {platform.kind}")
    return TestbedSubmitter(tb, deadline=context.get("submit_timeout", 10.0))
