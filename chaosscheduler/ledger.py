"""The fault ledger: a persistent record of every fault, written *before* the fault is injected.

One JSON file per state home (``<home>/ledger.json``), guarded by an ``flock`` and replaced atomically on every
change, so any process (the ``chaos`` run, a self-expiry reaper, ``chaosscheduler heal``) can read what is injected
and undo exactly that, even after the process that injected it died.

A record's ``state`` goes ``recorded`` → ``active`` → ``undone`` | ``expired``; ``failed`` when injecting failed
(what was applied of it has been undone). ``recorded`` and ``active`` records are *open*: heal undoes them.
Closed records are kept (probes time measurements against them) and pruned after ``KEEP_SECONDS``.
"""

import contextlib
import os
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional

from ._files import locked, read_json, write_json_atomic
from .errors import LedgerError

__all__ = ["Ledger", "OPEN_STATES", "new_fault_id"]

OPEN_STATES = ("recorded", "active")
KEEP_SECONDS = 7 * 24 * 3600
VERSION = 1
_ABSENT = object()  # read_json's answer for a missing file; JSON ``null`` is a corrupt ledger, not an empty one


def new_fault_id() -> str:
    """Short, unique, and safe in nft table names and file names: ``[a-z0-9]``."""
    return "f" + uuid.uuid4().hex[:11]


class Ledger:
    def __init__(self, home: str):
        self.home = home
        self.path = os.path.join(home, "ledger.json")
        self.lock_path = os.path.join(home, ".ledger.lock")

    # ------------------------------------------------------------------ raw access
    def _read(self) -> Dict[str, Any]:
        try:
            data = read_json(self.path, default=_ABSENT)
        except (ValueError, UnicodeDecodeError) as e:
            raise LedgerError(f"the fault ledger {self.path} is corrupt ({e}); 'chaosscheduler heal --from-hosts' "
                              f"finds and removes our faults on the hosts without it") from e
        except OSError as e:
            raise LedgerError(f"the fault ledger {self.path} is unreadable: {e}") from e
        if data is _ABSENT:
            return {"version": VERSION, "faults": {}}
        if not isinstance(data, dict) or not isinstance(data.get("faults"), dict):
            raise LedgerError(f"the fault ledger {self.path} does not hold a ledger; 'chaosscheduler heal "
                              f"--from-hosts' finds and removes our faults on the hosts without it")
        return data

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Dict[str, Any]]:
        with locked(self.lock_path):
            data = self._read()
            yield data
            cutoff = time.time() - KEEP_SECONDS
            data["faults"] = {k: v for k, v in data["faults"].items()
                              if v.get("state") in OPEN_STATES or (v.get("created_at") or 0) >= cutoff}
            write_json_atomic(self.path, data)

    # ------------------------------------------------------------------ API
    def record(self, fault: Dict[str, Any]) -> Dict[str, Any]:
        """Store a new fault (state ``recorded``) before anything is done to a host."""
        fault = dict(fault, state="recorded", created_at=fault.get("created_at") or time.time())
        with self._transaction() as data:
            if fault["id"] in data["faults"]:
                raise LedgerError(f"fault id {fault['id']} is already in the ledger")
            data["faults"][fault["id"]] = fault
        return fault

    def update(self, fault_id: str, **changes: Any) -> Dict[str, Any]:
        with self._transaction() as data:
            if fault_id not in data["faults"]:
                raise LedgerError(f"no fault {fault_id!r} in the ledger {self.path}")
            data["faults"][fault_id].update(changes)
            return dict(data["faults"][fault_id])

    def update_with(self, fault_id: str, change: Callable[[Dict[str, Any]], None]) -> Dict[str, Any]:
        """Apply ``change`` to the stored record under the lock (for read-modify-write of nested fields)."""
        with self._transaction() as data:
            if fault_id not in data["faults"]:
                raise LedgerError(f"no fault {fault_id!r} in the ledger {self.path}")
            change(data["faults"][fault_id])
            return dict(data["faults"][fault_id])

    def get(self, fault_id: str) -> Dict[str, Any]:
        with locked(self.lock_path):
            faults = self._read()["faults"]
        if fault_id not in faults:
            raise LedgerError(f"no fault {fault_id!r} in the ledger {self.path}")
        return faults[fault_id]

    def all(self) -> List[Dict[str, Any]]:
        """Every record, oldest first."""
        if not os.path.exists(self.path):
            return []
        with locked(self.lock_path):
            faults = self._read()["faults"]
        return sorted(faults.values(), key=lambda f: (f.get("created_at") or 0, f["id"]))

    def open_faults(self, **match: Any) -> List[Dict[str, Any]]:
        return [f for f in self.all() if f.get("state") in OPEN_STATES and _matches(f, match)]

    def latest(self, kinds: List[str], run_id: Optional[str] = None, **match: Any) -> Optional[Dict[str, Any]]:
        """The most recent fault of one of ``kinds`` (of run ``run_id`` if given) that was injected."""
        candidates = [f for f in self.all() if f.get("kind") in kinds and f.get("started_at")
                      and (run_id is None or f.get("run_id") == run_id) and _matches(f, match)]
        return candidates[-1] if candidates else None


def _matches(fault: Dict[str, Any], match: Dict[str, Any]) -> bool:
    return all(fault.get(k) == v for k, v in match.items())
