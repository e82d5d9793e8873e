"""Figures from the platform's own task records (the embedded cluster's ``/api/tasks``, load-generator submissions):
pure functions, the fall-back of the probes where no witness history exists. Task records look like
``{"id", "submitted_at", "state", "worker", "attempt", "completions", "completed_by", "completed_at",
"history": [{"event": "assigned"|"rescheduled"|"dispatch_failed"|"completed", "at", "worker", "attempt"}],
"stale_completions": [{"worker", "attempt", "at", "reason"}]}``.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["waits", "assignments", "running_at", "busy_intervals", "peak_utilisation", "consistency",
           "first_move"]

Task = Dict[str, Any]


def assignments(tasks: Sequence[Task]) -> List[float]:
    return sorted(h["at"] for t in tasks for h in t.get("history", []) if h.get("event") == "assigned")


def waits(tasks: Sequence[Task], submissions: Sequence[Dict[str, Any]],
          now: float) -> Tuple[List[Tuple[float, float]], List[float]]:
    """(closed waits [(start, end)], starts of waits still open at ``now``). Work waits from the moment a client
    starts submitting it (the submission record: a submission retried while there is no leader is waiting work),
    or a task goes back to pending, until the task is assigned; a refused submission waited for its latency."""
    submitted = {t: s["at"] for s in submissions for t in s.get("tasks", [])}
    closed = [(s["at"], s["at"] + s.get("latency", 0.0)) for s in submissions if s.get("outcome") != "accepted"]
    still: List[float] = []
    for task in tasks:
        history = task.get("history", [])
        ready = [min(task["submitted_at"], submitted.get(task["id"], task["submitted_at"]))]
        ready += [h["at"] for h in history if h.get("event") in ("rescheduled", "dispatch_failed")]
        for start in ready:
            later = [h["at"] for h in history if h.get("event") == "assigned" and h["at"] >= start]
            if later:
                closed.append((start, min(later)))
            elif task.get("state") == "pending":
                still.append(start)
    return closed, still


def busy_intervals(task: Task, now: float) -> List[Tuple[str, float, float]]:
    """(worker, from, to) for every stretch the task was assigned to a worker, by its record."""
    out = []
    current: Optional[Tuple[str, float]] = None
    for event in sorted(task.get("history", []), key=lambda h: h["at"]):
        if current is not None and event.get("event") in ("completed", "rescheduled", "dispatch_failed", "assigned"):
            out.append((current[0], current[1], event["at"]))
            current = None
        if event.get("event") == "assigned":
            current = (event.get("worker"), event["at"])
    if current is not None:
        out.append((current[0], current[1], now))
    return out


def running_at(tasks: Sequence[Task], workers: Sequence[str], at: float) -> List[str]:
    """Tasks assigned to one of ``workers`` at time ``at``, by their records."""
    wanted = set(workers)
    return sorted(t["id"] for t in tasks for worker, start, end in busy_intervals(t, at + 1e6)
                  if worker in wanted and start <= at < end)


def peak_utilisation(tasks: Sequence[Task], slots: Dict[str, int], start: float, end: float) -> Dict[str, Any]:
    """The peak over [start, end] of (tasks running on the workers of ``slots``) / (their slots), swept through every
    assignment and release in the window (not one sample), with when it happened and each worker's own peak."""
    total = sum(slots.values())
    events: List[Tuple[float, int, str]] = []
    for task in tasks:
        for worker, a, b in busy_intervals(task, end):
            if worker in slots and a < end and b > start:
                events.append((max(a, start), +1, worker))
                events.append((min(b, end), -1, worker))
    events.sort(key=lambda e: (e[0], e[1]))  # releases before assignments at the same instant
    running = {w: 0 for w in slots}
    peaks = dict(running)
    peak, at, busy = 0, start, 0
    for when, step, worker in events:
        running[worker] += step
        busy += step
        peaks[worker] = max(peaks[worker], running[worker])
        if busy > peak:
            peak, at = busy, when
    return {"value": (peak / total) if total else None, "peak_tasks": peak, "slots": total, "at": at,
            "per_worker": {w: {"peak": peaks[w], "slots": slots[w]} for w in slots}}


def first_move(task: Task, t0: float, away_from: Sequence[str]) -> Optional[Tuple[float, Optional[float]]]:
    """(first assignment after ``t0`` to a worker not in ``away_from``, its completion there or None)."""
    history = sorted(task.get("history", []), key=lambda h: h["at"])
    for i, event in enumerate(history):
        if event.get("event") == "assigned" and event["at"] >= t0 and event.get("worker") not in away_from:
            done = [h["at"] for h in history[i + 1:] if h.get("event") == "completed"
                    and h.get("worker") == event.get("worker")]
            return event["at"], (done[0] if done else None)
    return None


def consistency(tasks: Sequence[Task], accepted: Sequence[str]) -> Dict[str, List[str]]:
    """Anomalies by task id: ``lost`` (accepted, unknown to the platform or never completed), ``duplicated``
    (completion recorded more than once), ``run_twice`` (the same attempt completed by two workers: it ran twice
    without any loss, e.g. two leaders assigning it), ``reexecuted_after_loss`` (an earlier attempt, superseded
    when its worker was lost, completed too: the scheduler's right, reported apart)."""
    by_id = {t["id"]: t for t in tasks}
    ids = sorted(set(accepted) | set(by_id))
    out: Dict[str, List[str]] = {"lost": [], "duplicated": [], "run_twice": [], "reexecuted_after_loss": []}
    for task_id in ids:
        task = by_id.get(task_id)
        if task is None or task.get("state") != "completed":
            out["lost"].append(task_id)
            continue
        if task.get("completions", 1) > 1:
            out["duplicated"].append(task_id)
        stale = task.get("stale_completions") or []
        same_attempt_elsewhere = [s for s in stale if s.get("attempt") == task.get("completed_attempt")
                                  and s.get("worker") != task.get("completed_by")]
        if same_attempt_elsewhere:
            out["run_twice"].append(task_id)
        elif any(s.get("reason") == "superseded attempt" for s in stale):
            out["reexecuted_after_loss"].append(task_id)
    return out
