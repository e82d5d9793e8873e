"""What a killed run left behind, found and healed by the next run before it measures anything.

A run is *killed* when its record (``<home>/runs/<id>/run.json``) names a process that is gone (pid and start time)
while its phase is not "ended": SIGKILL, an OOM kill, a host crash. What it can leave:

- **faults still open** in the ledger (until their reaper undoes them at the deadline): undone now by their ledger
  record, as ``chaosscheduler heal`` would, and marked ``healed_by`` this run. If one cannot be undone, a ``strict``
  run refuses to start (the platform is not in the state the experiment assumes); otherwise it warns and goes on.
- **an embedded cluster** the killed run would have removed (started with ``testbed: auto``) and that no live run
  uses: taken down here, and the control starts a fresh one. A cluster started by hand or with ``testbed: keep`` is
  kept (someone wants it), its dead users are forgotten, and it must pass the usual health check.
- **effects of other tools' actions** (a ``process`` action that killed a master, ...): chaosscheduler cannot undo
  them; they are listed, and the steady-state hypothesis before the method judges the platform as it is.

Each killed run is reported once (its record gets ``killed: true``); the summary goes to the log and to the journal
under ``"chaosscheduler"."leftovers"``.
"""

import contextlib
import logging
import os
from typing import Any, Dict, List, Optional

from . import procs, runs
from ._files import read_json
from .faults import undo_open
from .ledger import Ledger
from .run_journal import PHASE_TEXT, utc_text

__all__ = ["heal_faults", "left_cluster", "release_cluster"]
logger = logging.getLogger("chaostoolkit")


def heal_faults(home: str, run_id: str) -> Dict[str, Any]:
    """Report the runs found dead since the last run, undo the open faults of every dead run.
    Returns ``{"runs": [...], "faults_undone": [ids], "errors": [...], "external": [...]}``."""
    dead = [r for r in runs.all_records(home)
            if r.get("run_id") != run_id and r.get("phase") != "ended" and not runs.alive(r)]
    summary: Dict[str, Any] = {"runs": [], "faults_undone": [], "errors": [], "external": []}
    for record in dead:
        if record.get("killed"):
            continue
        with contextlib.suppress(runs.RunRecordError, OSError):
            runs.mark_killed(home, record["run_id"], found_by=run_id)
        where = PHASE_TEXT.get(record.get("phase"), str(record.get("phase")))
        summary["runs"].append({"run_id": record["run_id"], "phase": record.get("phase"), "pid": record.get("pid"),
                                "experiment": (record.get("experiment") or {}).get("title"),
                                "last_update": record.get("updated_at")})
        logger.warning("chaosscheduler: run %s (%s) was killed during the %s (last recorded %s): healing what it "
                       "left before this run measures anything", record["run_id"],
                       (record.get("experiment") or {}).get("title") or "untitled", where,
                       utc_text(record.get("updated_at")))
        for fault in record.get("observed_faults") or []:
            if not fault.get("ours") and fault.get("status") in ("succeeded", "running", None):
                summary["external"].append({"run_id": record["run_id"], "name": fault.get("name"),
                                            "provider": fault.get("provider"), "started_at": fault.get("started_at")})
                logger.warning("chaosscheduler: run %s ran the action '%s' (%s), which chaosscheduler cannot undo; "
                               "the steady state before the method will tell whether the platform recovered",
                               record["run_id"], fault.get("name"), fault.get("provider"))
    dead_ids = {r["run_id"] for r in dead}
    ledger = Ledger(home)
    if dead_ids and os.path.exists(ledger.path):
        result = undo_open(ledger, lambda f: f.get("run_id") in dead_ids)
        for fault_id in result["undone"]:
            with contextlib.suppress(Exception):
                ledger.update(fault_id, healed_by=run_id)
            logger.warning("chaosscheduler: undid fault %s, left open by a killed run", fault_id)
        summary["faults_undone"] = result["undone"]
        summary["errors"] = result["errors"]
    return summary


def _users(state_dir: str) -> Dict[str, List[str]]:
    directory = os.path.join(state_dir, "users")
    found: Dict[str, List[str]] = {"live": [], "dead": []}
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if not name.endswith(".json"):
            continue
        try:
            record = read_json(os.path.join(directory, name))
        except (ValueError, OSError):
            record = None
        found["live" if procs.is_running(record) else "dead"].append(name[:-len(".json")])
    return found


def left_cluster(state_dir: str) -> Optional[Dict[str, Any]]:
    """The embedded cluster at ``state_dir`` if a killed run left it: runs registered as its users are all dead
    (a run that ends unregisters). None when it does not exist, a live run uses it, or no run ever did (started by
    hand)."""
    from .testbed import state as tb_state, users

    if not tb_state.exists(state_dir):
        return None
    found = _users(state_dir)
    if found["live"] or not found["dead"]:
        return None
    return {"state_dir": state_dir, "dead_users": found["dead"], "auto_started": users.auto_started(state_dir)}


def release_cluster(left: Dict[str, Any], mode: str) -> Dict[str, Any]:
    """Take down a left cluster the killed run would have removed (``testbed: auto``), unless this run may not start
    one (``never``); otherwise forget its dead users and keep it. Returns what was done (for the journal)."""
    from .testbed import down, users

    name = os.path.basename(left["state_dir"].rstrip("/"))
    if left["auto_started"] and mode != "never":
        logger.warning("chaosscheduler: the embedded cluster %r was left by killed run(s) %s, which would have "
                       "removed it: taking it down and starting it fresh", name, ", ".join(left["dead_users"]))
        result = down(left["state_dir"])
        return dict(left, action="replaced", namespaces_removed=len(result.get("namespaces_removed", [])))
    for user in left["dead_users"]:
        users.leave(left["state_dir"], user)
    logger.warning("chaosscheduler: the embedded cluster %r was used by killed run(s) %s; it is kept (%s) and must "
                   "pass the health check", name, ", ".join(left["dead_users"]),
                   "this run may not start one: testbed never" if left["auto_started"] else
                   "it was started by hand or with testbed: keep")
    return dict(left, action="kept")
