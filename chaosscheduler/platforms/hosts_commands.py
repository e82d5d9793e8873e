"""What the hosts platform learns from the scheduler's own CLI (``chaosscheduler_hosts.commands``): worker states,
task records, dead declarations and health, for platforms that export no metric (Slurm: ``sinfo``, ``squeue``,
``slurmctld.log``). docs/platforms.md describes every key.

Fields a source's records may have:

=================  =====================================================================================
source             fields
=================  =====================================================================================
``workers``        ``name`` (the worker; default the node the command ran on), ``state``, ``reason``,
                   ``slots``, ``since`` (when the platform declared it dead, if it is)
``tasks``          ``id``, ``state``, ``worker`` (a host list such as ``node[1-2]`` is expanded), ``reason``,
                   ``submitted_at``, ``started_at``
``declarations``   ``worker`` (a host list), ``at``: every time the platform declared a worker dead
=================  =====================================================================================

Rules (:func:`chaosscheduler.platforms.commands.check_rule`) decide: ``workers.dead`` (declared dead: not alive),
``workers.unhealthy`` (alive but not usable: drained, in maintenance...), ``tasks.running``, ``tasks.unhealthy``
(held, stuck). A command that fails (a scheduler that does not answer during a failover) raises: the platform
does not know, which is different from "no worker".
"""

from typing import Any, Dict, List, Optional

from ..errors import ChaosSchedulerError
from . import commands
from .leader import match_master

__all__ = ["CommandForms"]


class CommandForms:
    """Reads the command sources of one description through ``runner``."""

    def __init__(self, description: Dict[str, Any], runner: commands.Runner):
        self.description = description
        self.sources = description.get("commands") or {}
        self.runner = runner

    def has(self, kind: str) -> bool:
        return bool(self.sources.get(kind))

    def _records(self, kind: str) -> List[Dict[str, Any]]:
        spec = self.sources[kind]
        records = self.runner.records(spec)
        failed = [r for r in records if r.get("error")]
        if records and len(failed) == len(records):
            raise ChaosSchedulerError(f"{kind} command {spec['argv'][0]} failed everywhere: {failed[0]['error']}")
        return records

    def _worker_of(self, value: Any) -> Optional[str]:
        return match_master(value, self.description["workers"])

    # ------------------------------------------------------------------ tasks
    def task_records(self) -> List[Dict[str, Any]]:
        """The platform's task records: ``{"id", "state", "workers": [names], "running": bool, "unhealthy": bool,
        "reason", "submitted_at", "started_at"}`` (the times as seconds since the epoch, or None)."""
        if not self.has("tasks"):
            raise ChaosSchedulerError("chaosscheduler_hosts.commands has no 'tasks' command")
        spec = self.sources["tasks"]
        out = []
        for record in self._records("tasks"):
            if record.get("error") or not record.get("id"):
                continue
            names = commands.expand_hostlist(str(record.get("worker") or ""))
            if not names and spec["on"] == "every-worker":
                names = [record["node"]]
            workers = [w for w in (self._worker_of(n) for n in names) if w]
            out.append({"id": str(record["id"]), "state": record.get("state"), "workers": workers,
                        "running": commands.matches(record, spec["running"]),
                        "unhealthy": commands.matches(record, spec["unhealthy"]), "reason": record.get("reason"),
                        "submitted_at": commands.timestamp(record.get("submitted_at"), spec["time_format"]),
                        "started_at": commands.timestamp(record.get("started_at"), spec["time_format"])})
        return out

    # ------------------------------------------------------------------ workers
    def declarations(self) -> Dict[str, List[float]]:
        """Worker name → every time the platform declared it dead (from the ``declarations`` source)."""
        spec = self.sources["declarations"]
        out: Dict[str, List[float]] = {}
        for record in self._records("declarations"):
            at = commands.timestamp(record.get("at"), spec["time_format"])
            if at is None:
                continue
            for name in commands.expand_hostlist(str(record.get("worker") or "")):
                worker = self._worker_of(name)
                if worker:
                    out.setdefault(worker, []).append(at)
        return {k: sorted(set(v)) for k, v in out.items()}

    def workers(self, with_tasks: bool = True) -> List[Dict[str, Any]]:
        """Every worker of the description: ``{"name", "alive", "state", "reason", "unhealthy", "slots",
        "running": [task ids], "declared_dead_at", "dead_declarations"}``. A worker the command does not list is
        not alive (state ``"absent"``)."""
        spec = self.sources["workers"]
        seen: Dict[str, Dict[str, Any]] = {}
        for record in self._records("workers"):
            if record.get("error"):
                continue
            name = self._worker_of(record.get("name") if "name" in record else record.get("node"))
            if name and name not in seen:
                seen[name] = record
        running: Dict[str, List[str]] = {}
        if with_tasks and self.has("tasks"):
            for task in self.task_records():
                if task["running"]:
                    for worker in task["workers"]:
                        running.setdefault(worker, []).append(task["id"])
        declared = self.declarations() if self.has("declarations") else None
        out = []
        for node in self.description["workers"]:
            record = seen.get(node["name"])
            dead = record is None or commands.matches(record, spec["dead"])
            slots = _integer(record.get("slots")) if record else None
            state = {"name": node["name"], "alive": not dead,
                     "state": record.get("state", "") if record else "absent",
                     "reason": record.get("reason") if record else None,
                     "unhealthy": bool(record) and not dead and commands.matches(record, spec["unhealthy"]),
                     "slots": slots or node.get("slots") or self.description.get("slots"),
                     "running": sorted(running.get(node["name"], []), key=_id_order),
                     "declared_dead_at": (commands.timestamp(record.get("since"), spec["time_format"])
                                          if record and dead else None)}
            if declared is not None:
                state["dead_declarations"] = declared.get(node["name"], [])
            out.append(state)
        return out

    # ------------------------------------------------------------------ health
    def health_problems(self) -> List[str]:
        """The platform's own unhealthy states, as it reports them: workers alive but drained/failing, tasks held."""
        problems = []
        if self.has("workers"):
            for worker in self.workers(with_tasks=False):
                if worker["unhealthy"]:
                    reason = f" ({worker['reason']})" if worker.get("reason") not in (None, "", "none") else ""
                    problems.append(f"worker {worker['name']} is {worker['state']}{reason}")
        if self.has("tasks") and self.sources["tasks"].get("unhealthy"):
            stuck = [t for t in self.task_records() if t["unhealthy"]]
            if stuck:
                shown = ", ".join(f"{t['id']} ({t['state']}: {t['reason']})" for t in stuck[:10])
                problems.append(f"{len(stuck)} task(s) held or stuck: {shown}{' ...' if len(stuck) > 10 else ''}")
        return problems


def _integer(value: Any) -> Optional[int]:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _id_order(task_id: str) -> Any:
    return (0, int(task_id)) if task_id.isdigit() else (1, task_id)
