"""The HTTP face of a master: job submissions and completion reports (handled by the leader, forwarded by
followers) and the read API any master answers from etcd. A mixin of :class:`~.master.Master`, whose state
(``lock``, ``is_leader``, ``tasks``, fenced ``_write``...) it uses."""

import json
import time
import uuid
from typing import Any, Dict, Optional, Tuple

from .client import ClientError, request
from .keys import LEADER_KEY, MAX_TASKS_PER_JOB, STATUS, TASKS, WORKERS
from .node import health_ok


class NotLeader(Exception):
    """The write was refused: this master no longer holds the leader key."""


class MasterAPI:
    # ------------------------------------------------------------------ requests
    def _forward(self, path: str, body: Any) -> Tuple[int, Any]:
        leader = self.leader_name
        node = self.rt.nodes.get(leader) if leader else None
        if node is None or leader == self.name:
            return 503, {"error": "no leader elected right now; retry or ask another master", "leader": None}
        try:
            return request((node.address, node.port), "POST", path, body, timeout=1.0)
        except ClientError as e:
            return 503, {"error": f"leader {leader} unreachable from {self.name}: {e}", "leader": leader}

    def submit(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        error = _validate_job(body)
        if error:
            self.m.submissions.labels("invalid").inc()
            return 400, {"error": error}
        with self.lock:
            if self.is_leader:
                now = time.time()
                job = body.get("job") or uuid.uuid4().hex[:12]
                count = int(body.get("tasks", 1))
                tasks = {}
                for i in range(count):
                    task_id = f"{job}-{i}"
                    if task_id in self.tasks:
                        self.m.submissions.labels("rejected").inc()
                        return 409, {"error": f"task {task_id} already exists: choose another job id"}
                    tasks[task_id] = {"id": task_id, "job": job, "duration": float(body.get("duration", 1.0)),
                                      "command": body.get("command"), "state": "pending", "attempt": 1,
                                      "worker": None, "submitted_at": now, "accepted_by": self.name,
                                      "history": [], "completions": 0, "stale_completions": []}
                try:
                    self._write({TASKS + t: v for t, v in tasks.items()})
                except NotLeader as e:
                    self.m.submissions.labels("error").inc()
                    return 503, {"error": f"{self.name} is no longer the leader: {e}", "leader": None}
                self.tasks.update(tasks)
                self.pending.extend(tasks)
                self.m.submitted.inc(count)
                self.m.submissions.labels("accepted").inc()
                for task_id in tasks:
                    self.rt.events.emit("task_submitted", task=task_id, job=job)
                return 201, {"job": job, "tasks": list(tasks), "leader": self.name}
        status, answer = self._forward("/api/jobs", body)
        self.m.submissions.labels("forwarded" if status == 201 else "error").inc()
        return status, answer

    def complete(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        if not isinstance(body, dict) or not {"task", "attempt", "worker"} <= set(body):
            return 400, {"error": "completion needs task, attempt and worker"}
        with self.lock:
            if self.is_leader:
                return self._record_completion(body)
        return self._forward("/api/complete", body)

    def _record_completion(self, body: Dict[str, Any]) -> Tuple[int, Any]:
        task = self.tasks.get(body["task"])
        if task is None:
            return 404, {"error": f"unknown task {body['task']}"}
        now = time.time()
        current = (task["state"] == "assigned" and task["attempt"] == body["attempt"]
                   and task["worker"] == body["worker"])
        recorded = 2 if current and self.knob(self.spec.duplicate_completion) else 1  # broken knob: twice
        if current:
            entry = {"event": "completed", "at": now, "worker": body["worker"], "attempt": body["attempt"]}
            updated = dict(task, state="completed", completed_at=now, completed_by=body["worker"],
                           completed_attempt=body["attempt"], completions=task["completions"] + recorded,
                           outcome=body.get("outcome", "ok"), history=task["history"] + [entry] * recorded)
        else:
            reason = "superseded attempt" if task["attempt"] != body["attempt"] else "already completed"
            updated = dict(task, stale_completions=task["stale_completions"] + [
                {"worker": body["worker"], "attempt": body["attempt"], "at": now, "reason": reason}])
        try:
            self._write({TASKS + task["id"]: updated})
        except NotLeader as e:
            return 503, {"error": f"{self.name} is no longer the leader: {e}", "leader": None}
        self.tasks[task["id"]] = updated
        if current:
            self.m.completed.inc()
            self.rt.events.emit("task_completed", task=task["id"], worker=body["worker"], attempt=body["attempt"],
                                recorded=recorded)
            return 200, {"stale": False, "leader": self.name}
        self.m.stale.inc()
        self.rt.events.emit("task_stale_completion", task=task["id"], worker=body["worker"],
                            attempt=body["attempt"], reason=updated["stale_completions"][-1]["reason"])
        return 200, {"stale": True, "leader": self.name}

    def cancel(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        """Cancel tasks that are still pending: ``{"tasks": [ids]}`` -> ``{"cancelled", "not_pending",
        "unknown"}``. A task already assigned runs to its end."""
        ids = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return 400, {"error": "a cancellation is {\"tasks\": [task ids]}"}
        with self.lock:
            if self.is_leader:
                known = [i for i in ids if i in self.tasks]
                pending = [i for i in known if self.tasks[i]["state"] == "pending"]
                now = time.time()
                for start in range(0, len(pending), MAX_TASKS_PER_JOB):
                    batch = pending[start:start + MAX_TASKS_PER_JOB]
                    updated = {i: dict(self.tasks[i], state="cancelled", cancelled_at=now,
                                       history=self.tasks[i]["history"] + [{"event": "cancelled", "at": now}])
                               for i in batch}
                    try:
                        self._write({TASKS + i: v for i, v in updated.items()})
                    except NotLeader as e:
                        return 503, {"error": f"{self.name} is no longer the leader: {e}", "leader": None}
                    self.tasks.update(updated)
                    self.pending = [i for i in self.pending if i not in updated]
                    for i in batch:
                        self.rt.events.emit("task_cancelled", task=i)
                return 200, {"cancelled": pending, "not_pending": sorted(set(known) - set(pending)),
                             "unknown": sorted(set(ids) - set(known)), "leader": self.name}
        return self._forward("/api/cancel", body)

    # ------------------------------------------------------------------ read API (any master, from etcd)
    def health(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        return health_ok({"name": self.name, "role": "master", "leader": self.is_leader,
                          "leader_name": self.leader_name, "term": self.leader_rev or None})

    def api_leader(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        try:
            value, meta = self.etcd.get(LEADER_KEY)
        except Exception as e:
            return 503, {"error": f"registry unreachable from {self.name}: {e}"}
        if not value:
            return 200, {"leader": None, "since": None, "term": None}
        data = json.loads(value)
        return 200, {"leader": data["name"], "since": data["since"], "term": meta.create_revision}

    def api_workers(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        """Every worker's registration and status; ``?running=0`` skips reading every task (the running lists
        stay empty), which makes the answer cheap enough to poll every few milliseconds."""
        try:
            registered = {json.loads(v)["name"]: json.loads(v) for v, _ in self.etcd.get_prefix(WORKERS)}
            statuses = {json.loads(v)["name"]: json.loads(v) for v, _ in self.etcd.get_prefix(STATUS)}
            tasks = [] if query.get("running") == "0" else [json.loads(v) for v, _ in self.etcd.get_prefix(TASKS)]
        except Exception as e:
            return 503, {"error": f"registry unreachable from {self.name}: {e}"}
        names = sorted(set(registered) | set(statuses) | {n.name for n in self.rt.by_role("worker")})
        out = []
        for name in names:
            status = statuses.get(name, {})
            running = sorted(t["id"] for t in tasks if t["state"] == "assigned" and t["worker"] == name)
            out.append({"name": name, "alive": name in registered, "state": status.get("state", "unknown"),
                        "declared_dead_at": status.get("declared_dead_at"), "since": status.get("since"),
                        "dead_declarations": status.get("dead_declarations", []),
                        "slots": registered.get(name, {}).get("slots", self.spec.slots), "running": running,
                        "registered_at": registered.get(name, {}).get("registered_at"),
                        "last_heartbeat": registered.get(name, {}).get("last_heartbeat")})
        return 200, {"workers": out}

    def api_tasks(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        since = float(query.get("since", 0) or 0)
        try:
            tasks = [json.loads(v) for v, _ in self.etcd.get_prefix(TASKS)]
        except Exception as e:
            return 503, {"error": f"registry unreachable from {self.name}: {e}"}
        tasks = sorted((t for t in tasks if t["submitted_at"] >= since), key=lambda t: t["submitted_at"])
        return 200, {"tasks": tasks}

    def api_summary(self, query: Dict[str, str], body: Any) -> Tuple[int, Any]:
        """Counts from this master's memory, no etcd read: cheap enough to poll every 100 ms (the timeline
        recorder does). Only the leader holds the task table; a follower answers who it believes leads."""
        with self.lock:
            if not self.is_leader:
                return 200, {"master": self.name, "is_leader": False, "leader": self.leader_name}
            counts = {"pending": 0, "running": 0, "completed": 0, "cancelled": 0, "rescheduled": 0,
                      "total": len(self.tasks)}
            running: Dict[str, int] = {}
            for task in self.tasks.values():
                counts["running" if task["state"] == "assigned" else task["state"]] += 1
                if task["state"] == "assigned":
                    running[task["worker"]] = running.get(task["worker"], 0) + 1
                if any(h["event"] == "rescheduled" for h in task["history"]):
                    counts["rescheduled"] += 1
            names = set(self.workers) | set(self.dead) | {n.name for n in self.rt.by_role("worker")}
            workers = {name: {"state": "dead" if name in self.dead else "alive" if name in self.workers
                              else "unknown", "running": running.get(name, 0)} for name in sorted(names)}
            return 200, {"master": self.name, "is_leader": True, "leader": self.name, "term": self.leader_rev,
                         "at": time.time(), "tasks": counts, "workers": workers}



def _validate_job(body: Any) -> Optional[str]:
    if not isinstance(body, dict):
        return "a job is a JSON object: {\"tasks\": n, \"duration\": seconds, \"command\": [argv] or null}"
    tasks = body.get("tasks", 1)
    if isinstance(tasks, bool) or not isinstance(tasks, int) or not 1 <= tasks <= MAX_TASKS_PER_JOB:
        return f"'tasks' must be an integer from 1 to {MAX_TASKS_PER_JOB}"
    duration = body.get("duration", 1.0)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 <= duration <= 3600:
        return "'duration' must be a number of seconds from 0 to 3600"
    command = body.get("command")
    if command is not None and (not isinstance(command, list) or not command
                                or not all(isinstance(a, str) for a in command)):
        return "'command' must be a non-empty list of strings (an argv) or null"
    job = body.get("job")
    if job is not None and (not isinstance(job, str) or not job.replace("-", "").isalnum() or len(job) > 64):
        return "'job' must be up to 64 letters, digits or dashes"
    return None
