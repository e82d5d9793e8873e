"""The run record: what a ``chaos run`` with the chaosscheduler control did so far, kept on disk as it goes.

Every run the control starts has a directory ``<home>/runs/<run_id>/`` holding ``run.json``, rewritten atomically
on every phase change and at the start and end of every activity, so that a run killed with SIGKILL (or a host
crash) still leaves evidence: its phase, every activity with its window and status, our fault ids, and the faults
other tools injected (every action of the method, whoever provides it)::

    {"version": 1, "run_id": "run-...", "pid": 4242, "pid_started": 123456 (clock ticks: a reused pid is not
     this run), "home": ..., "host": ..., "experiment": {"title", "path", "description"},
     "started_at", "updated_at" (epoch seconds), "phase": "starting" | "steady-state-before" | "method" |
     "steady-state-after" | "rollbacks" | "ending" | "ended",
     "activities": [{"name", "type", "provider", "module", "func", "phase", "started_at", "ended_at", "status",
                     "ours", "background", "error", "output" (if short), "tolerance_met" (hypothesis probes)}],
     "observed_faults": [{"name", "provider": "python:module.func" | "process:path" | "http:url", "started_at",
                          "ended_at", "status", "ours", "fault_ids"}],
     "signal": {"name", "at", "phase"} (when one was received), "leftovers": {...} (what it found of killed runs),
     "status": null until the end, then the final status, "ended_at",
     "killed": true (set by a later run that found this one dead before it ended), "killed_found_at", "found_by"}

In the ``chaos`` process, :func:`current_phase` and :func:`observed_faults` answer the probes. A directory is pruned
like the ledger's records, ``KEEP_SECONDS`` after its last update, once its run is over.
"""

import contextlib
import os
import re
import shutil
import threading
import time
from typing import Any, Dict, List, Optional

from . import procs
from ._files import read_json, write_json_atomic
from .errors import ChaosSchedulerError
from .ledger import KEEP_SECONDS

__all__ = ["PHASES", "Recorder", "current_phase", "observed_faults", "run_dir", "runs_dir", "load", "read",
           "alive", "all_records", "state_of", "run_states", "unfinished", "mark_killed", "prune", "to_journal",
           "RunRecordError"]

VERSION = 1
PHASES = ("starting", "steady-state-before", "method", "steady-state-after", "rollbacks", "ending", "ended")
RECORD = "run.json"
MAX_ACTIVITIES = 2000      # a continuous hypothesis adds one entry per probe per iteration: keep the file small
MAX_OUTPUT_CHARS = 2000    # longer outputs stay in the journal only
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_BEFORE = ("starting", "steady-state-before")


class RunRecordError(ChaosSchedulerError):
    """A run record is missing, unreadable or not a run record."""


def runs_dir(home: str) -> str:
    return os.path.join(home, "runs")


def run_dir(home: str, run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise RunRecordError(f"{run_id!r} is not a run id (lowercase letters, digits and '-')")
    return os.path.join(runs_dir(home), run_id)


def read(path: str) -> Dict[str, Any]:
    """The record at ``path`` (a run directory or its run.json)."""
    if os.path.isdir(path):
        path = os.path.join(path, RECORD)
    try:
        data = read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise RunRecordError(f"{path} is not readable JSON ({e})") from e
    except OSError as e:
        raise RunRecordError(f"{path} cannot be read: {e}") from e
    if data is None:
        raise RunRecordError(f"no run record at {path}")
    if not isinstance(data, dict) or "run_id" not in data or "phase" not in data:
        raise RunRecordError(f"{path} is not a chaosscheduler run record")
    return data


def load(home: str, run_id: str) -> Dict[str, Any]:
    return read(os.path.join(run_dir(home, run_id), RECORD))


def alive(record: Dict[str, Any]) -> bool:
    """Is the run's process still running (same pid *and* start time)?"""
    return procs.is_running({"pid": record.get("pid"), "start_time": record.get("pid_started")})


def all_records(home: str) -> List[Dict[str, Any]]:
    """Every readable run record under ``home``, oldest first (unreadable ones are skipped)."""
    records = []
    base = runs_dir(home)
    for name in os.listdir(base) if os.path.isdir(base) else []:
        with contextlib.suppress(RunRecordError):
            records.append(read(os.path.join(base, name, RECORD)))
    return sorted(records, key=lambda r: (r.get("started_at") or 0, r.get("run_id")))


def state_of(record: Dict[str, Any]) -> str:
    """"running", "ended", "killed" (found dead by a later run) or "dead" (gone without ending, not yet found)."""
    if record.get("phase") == "ended":
        return "ended"
    if alive(record):
        return "running"
    return "killed" if record.get("killed") else "dead"


def run_states(home: str, run_ids: List[Any]) -> Dict[str, str]:
    """``{run_id: "running" | "ended" | "killed" | "dead" | "no record"}`` for the given ids (faults injected
    without the control belong to a process, ``process-<pid>-...``: "no record")."""
    states = {}
    for run_id in set(r for r in run_ids if isinstance(r, str)):
        try:
            states[run_id] = state_of(load(home, run_id))
        except RunRecordError:
            states[run_id] = "no record"
    return states


def unfinished(home: str) -> List[Dict[str, Any]]:
    """Records of runs whose process is gone without phase "ended" and that no later run has reported yet."""
    return [r for r in all_records(home) if r.get("phase") != "ended" and not r.get("killed") and not alive(r)]


def mark_killed(home: str, run_id: str, found_by: str) -> Dict[str, Any]:
    record = load(home, run_id)
    if not record.get("killed"):
        record.update(killed=True, killed_found_at=time.time(), found_by=found_by, status=record.get("status")
                      or "killed")
        write_json_atomic(os.path.join(run_dir(home, run_id), RECORD), record)
    return record


def prune(home: str, now: Optional[float] = None) -> List[str]:
    """Remove run directories last updated more than ``KEEP_SECONDS`` ago whose run is over; return their ids."""
    cutoff = (time.time() if now is None else now) - KEEP_SECONDS
    removed = []
    base = runs_dir(home)
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        path = os.path.join(base, name)
        if not os.path.isdir(path):
            continue
        try:
            record = read(path)
            old = (record.get("updated_at") or 0) < cutoff and not alive(record)
        except RunRecordError:
            old = os.path.getmtime(path) < cutoff  # a directory whose record never got written, or is corrupt
        if old:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


def to_journal(record: Dict[str, Any]) -> Dict[str, Any]:
    """A journal-shaped dict of a run that never wrote its journal (see :mod:`chaosscheduler.run_journal`)."""
    from .run_journal import to_journal as convert

    return convert(record)


# ------------------------------------------------------------------------------------------------ in the chaos process
_active: Optional["Recorder"] = None


def current_phase() -> Optional[str]:
    """Where the run in this process is: "before-method", "method", "after-method", or None when no chaosscheduler
    control runs in this process (a probe then cannot know)."""
    recorder = _active
    return recorder.coarse_phase() if recorder is not None else None


def observed_faults() -> List[Dict[str, Any]]:
    """Every action of the method so far, whoever provides it, with its window (oldest first); [] without control."""
    recorder = _active
    return recorder.observed() if recorder is not None else []


def output_for_record(output: Any) -> Dict[str, Any]:
    import json

    try:
        text = json.dumps(output, default=str)
    except (TypeError, ValueError):
        return {}
    return {"output": output} if len(text) <= MAX_OUTPUT_CHARS else {"output_chars": len(text)}


class Recorder:
    """The run record of the run in this process, written through on every change (thread-safe: hooks also run in
    the continuous-hypothesis thread and in background activities)."""

    def __init__(self, home: str, run_id: str, experiment: Dict[str, Any], path: Optional[str] = None):
        import platform

        self.home = home
        self.path = os.path.join(run_dir(home, run_id), RECORD)
        self._lock = threading.Lock()
        self.method_ended = False
        now = time.time()
        self.data: Dict[str, Any] = {
            "version": VERSION, "run_id": run_id, "pid": os.getpid(), "pid_started": procs.start_time(os.getpid()),
            "home": home, "host": platform.node(),
            "experiment": {"title": str(experiment.get("title") or ""), "path": path,
                           "description": str(experiment.get("description") or "")},
            "started_at": now, "updated_at": now, "phase": "starting", "activities": [], "observed_faults": [],
            "activities_dropped": 0, "status": None, "ended_at": None, "killed": False}

    @property
    def run_id(self) -> str:
        return self.data["run_id"]

    @property
    def phase(self) -> str:
        return self.data["phase"]

    def activate(self) -> None:
        global _active
        _active = self
        self.write()

    def deactivate(self) -> None:
        global _active
        if _active is self:
            _active = None

    def coarse_phase(self) -> str:
        phase = self.data["phase"]
        if phase in _BEFORE:
            return "before-method"
        if phase == "method" and not self.method_ended:
            return "method"
        return "after-method"

    def observed(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(f) for f in self.data["observed_faults"]]

    def write(self, blocking: bool = True) -> bool:
        """Write the record now; with ``blocking=False`` (a signal handler) give up if a write is under way."""
        if not self._lock.acquire(blocking=blocking):
            return False
        try:
            self._write_locked()
        finally:
            self._lock.release()
        return True

    def _write_locked(self) -> None:
        self.data["updated_at"] = time.time()
        write_json_atomic(self.path, self.data)

    def update(self, **changes: Any) -> None:
        with self._lock:
            self.data.update(changes)
            self._write_locked()

    def set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        self.update(phase=phase)

    def begin(self, entry: Dict[str, Any], fault: Optional[Dict[str, Any]]) -> None:
        """An activity starts: ``entry`` joins the activities and ``fault`` (an action of the method) the observed
        faults; both are the caller's dicts, completed later by :meth:`end`."""
        with self._lock:
            if len(self.data["activities"]) < MAX_ACTIVITIES or entry.get("type") == "action":
                self.data["activities"].append(entry)
            else:
                self.data["activities_dropped"] += 1
            if fault is not None:
                self.data["observed_faults"].append(fault)
            self._write_locked()

    def end(self, entry: Dict[str, Any], fault: Optional[Dict[str, Any]], **facts: Any) -> None:
        with self._lock:
            entry.update(facts)
            if fault is not None:
                fault.update({k: facts[k] for k in ("started_at", "ended_at", "status") if k in facts})
            self._write_locked()

    def change(self, func: Any) -> None:
        """Apply ``func(data)`` under the lock, then write."""
        with self._lock:
            func(self.data)
            self._write_locked()
