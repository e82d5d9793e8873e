"""The witness's history: what the client saw, what the platform reported back, what the tasks left behind.

Plain data, Jepsen style, one JSON object per line in ``<run_dir>/witness/``:

* ``history.jsonl`` — client events, in the order they happened: ``invoke`` (a submission starts), then ``ok``
  (acknowledged, with the platform's ``job_id``), ``fail`` (definitely refused) or ``info`` (indeterminate: a
  timeout, a lost connection: it may or may not have been accepted); ``completion`` (the platform reported the task
  completed, one event per completion it recorded); ``cancel`` (a task still queued at the end, cancelled).
  Every event has ``type``, ``task`` and ``at`` (wall clock, seconds).
* ``executions.jsonl`` — the evidence lines collected from the hosts (:mod:`.command`): ``task``, ``phase``
  (start/end), ``host`` (as the task saw it), ``node`` (where it was collected), ``at``, ``attempt``, ``pid``.
* ``meta.json`` — the run id, the options, the submitter, when the workload started and stopped, when the evidence
  was collected (``end``: the moment the history speaks for) and what could not be collected.

Any process can :func:`load` it (the probes, ``chaosscheduler report``, a later look at a killed run).
"""

import json
import os
import threading
import time
from typing import Any, Dict, Iterable, List, Optional

from .._files import read_json, write_json_atomic

__all__ = ["History", "Recorder", "load", "CLIENT_TYPES"]

CLIENT_TYPES = ("invoke", "ok", "fail", "info", "completion", "cancel")
HISTORY = "history.jsonl"
EXECUTIONS = "executions.jsonl"
META = "meta.json"


def _read_lines(path: str) -> List[Dict[str, Any]]:
    out = []
    try:
        with open(path) as handle:
            for line in handle:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue  # a torn last line of a killed run
    except FileNotFoundError:
        pass
    return out


class History:
    """A loaded (or in-memory) history: ``events``, ``executions`` and ``meta``. Pure data; :mod:`.checker` reads
    it."""

    def __init__(self, events: Iterable[Dict[str, Any]] = (), executions: Iterable[Dict[str, Any]] = (),
                 meta: Optional[Dict[str, Any]] = None):
        self.events = list(events)
        self.executions = list(executions)
        self.meta = dict(meta or {})

    @property
    def end(self) -> Optional[float]:
        """The moment the history speaks for: when the evidence was collected, else its last event."""
        if self.meta.get("end") is not None:
            return float(self.meta["end"])
        times = [e["at"] for e in self.events] + [x["at"] for x in self.executions]
        return max(times) if times else None

    def tasks(self) -> List[str]:
        """Every task id invoked, in order."""
        return [e["task"] for e in self.events if e.get("type") == "invoke"]

    def to_dict(self) -> Dict[str, Any]:
        return {"meta": self.meta, "events": self.events, "executions": self.executions}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "History":
        return cls(data.get("events") or [], data.get("executions") or [], data.get("meta") or {})

    def __repr__(self) -> str:
        return f"History({len(self.tasks())} tasks, {len(self.events)} events, {len(self.executions)} executions)"


class Recorder:
    """Appends events to ``<directory>/history.jsonl`` as they happen (one ``write`` per line on an ``O_APPEND``
    descriptor, so a killed run keeps every whole line) and keeps them in memory."""

    def __init__(self, directory: str, meta: Optional[Dict[str, Any]] = None):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.lock = threading.Lock()
        self.events: List[Dict[str, Any]] = []
        self.executions: List[Dict[str, Any]] = []
        self.meta = dict(meta or {}, version=1)
        self._fd = os.open(os.path.join(directory, HISTORY), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.save_meta()

    def record(self, type_: str, task: str, at: Optional[float] = None, **fields: Any) -> Dict[str, Any]:
        if type_ not in CLIENT_TYPES:
            raise ValueError(f"unknown history event type {type_!r}")
        event = {"type": type_, "task": task, "at": time.time() if at is None else at}
        event.update({k: v for k, v in fields.items() if v is not None})
        line = (json.dumps(event, sort_keys=True) + "\n").encode()
        with self.lock:
            self.events.append(event)
            if self._fd is not None:
                os.write(self._fd, line)
        return event

    def add_executions(self, records: Iterable[Dict[str, Any]]) -> int:
        records = list(records)
        with self.lock:
            self.executions.extend(records)
            with open(os.path.join(self.directory, EXECUTIONS), "a") as handle:
                for record in records:
                    handle.write(json.dumps(record, sort_keys=True) + "\n")
        return len(records)

    def save_meta(self, **updates: Any) -> None:
        with self.lock:
            self.meta.update(updates)
            write_json_atomic(os.path.join(self.directory, META), self.meta)

    def history(self) -> History:
        with self.lock:
            return History(list(self.events), list(self.executions), dict(self.meta))

    def close(self) -> None:
        with self.lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def load(directory: str) -> History:
    """The history stored in ``directory`` (``<run_dir>/witness``); an empty History when there is none."""
    meta = read_json(os.path.join(directory, META), {}) or {}
    return History(_read_lines(os.path.join(directory, HISTORY)), _read_lines(os.path.join(directory, EXECUTIONS)),
                   meta)
