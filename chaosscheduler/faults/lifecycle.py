"""Record → inject → arm self-expiry → (undo | expire), with the ledger as the single record.

``inject`` writes the fault to the ledger *before* touching a host, and arms a detached reaper process that undoes
it at its deadline even if the process that injected it dies at any point after that; network faults also carry
a kernel timeout, so they stop cutting traffic at the deadline even if the reaper is killed too. If injecting
fails half-way, what was applied is undone at once and the record is closed as ``failed``.

A closed fault's reaper files (``<home>/reapers/<id>.json`` and ``.log``) are removed; the log stays when the undo
failed (the fault stays open, so heal can retry) or when the reaper had to retry a failed undo.
"""

import contextlib
import logging
import os
import signal
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from .. import procs
from .._files import write_json_atomic
from ..errors import ChaosSchedulerError, FaultError
from ..ledger import OPEN_STATES, Ledger
from .base import fault_class

__all__ = ["inject", "undo", "undo_open", "spawn_reaper", "start_facts", "remove_reaper_files"]

logger = logging.getLogger("chaostoolkit")


def _platform_for(record: Dict[str, Any]) -> Any:
    from ..platforms import from_reference

    return from_reference(record["platform"])


def copy_path(home: str, fault_id: str) -> str:
    """The reaper's own copy of its fault, written before it starts: it needs no readable ledger, ever."""
    return os.path.join(home, "reapers", f"{fault_id}.json")


def log_path(home: str, fault_id: str) -> str:
    """The reaper's output: what it did at the deadline, or why it could not."""
    return os.path.join(home, "reapers", f"{fault_id}.log")


def remove_reaper_files(home: str, fault_id: str, keep_log: bool = False) -> None:
    """Remove a closed fault's reaper copy and log (the ledger keeps the record). A reaper still running keeps its
    open log; it only writes its last line into a file without a name."""
    paths = [copy_path(home, fault_id)] + ([] if keep_log else [log_path(home, fault_id)])
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def spawn_reaper(ledger: Ledger, fault_id: str, record: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    log = log_path(ledger.home, fault_id)
    if record is not None:
        write_json_atomic(copy_path(ledger.home, fault_id), record)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return procs.spawn([sys.executable, "-m", "chaosscheduler.faults.reaper", "--home", ledger.home,
                        "--fault", fault_id], log, env=env, owner=f"reaper:{ledger.home}")


def start_facts(facts: Dict[str, Any], before: float) -> Dict[str, Any]:
    """``started_at`` of a fault from its inject facts: the moment the **last** host was cut (the true start of a
    partition over many hosts), with ``first_applied_at`` and the spread kept beside it by the fault itself; for a
    fault that reports no per-host time, ``before`` (taken just before injecting)."""
    applied = facts.get("applied_at")
    if isinstance(applied, dict) and applied:
        return {"started_at": max(applied.values())}
    return {"started_at": before}


def inject(ledger: Ledger, record: Dict[str, Any], platform: Any,
           before_inject: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Record, inject and arm ``record``; return the stored record. Raises FaultError with nothing left applied."""
    if not record.get("concurrency") and getattr(platform, "concurrency", None):
        record = dict(record, concurrency=platform.concurrency)  # the reaper and heal undo as wide as we injected
    fault = fault_class(record["kind"])(record)
    if record.get("duration"):
        # a provisional deadline, so that the reaper armed now undoes the fault even if this process dies between
        # recording and injecting, or between injecting and marking it active
        record = dict(record, deadline=time.time() + record["duration"])
    record = ledger.record(record)
    if record.get("deadline") is not None:
        record = ledger.update(record["id"], reaper=dict(spawn_reaper(ledger, record["id"], record)))
    if before_inject:
        before_inject()
    before = time.time()
    try:
        facts = fault.inject(platform)
    except BaseException as e:
        partial = dict(getattr(e, "facts", None) or {})
        try:  # nothing_applied: the fault failed before touching any host (one could not be reached)
            undone = {} if partial.get("nothing_applied") else fault.undo(platform)
            ledger.update(record["id"], state="failed", error=str(e).splitlines()[0] if str(e) else repr(e),
                          undone_at=time.time(), undo_result=undone, **partial)
            remove_reaper_files(ledger.home, record["id"])  # nothing is left in place: the record says why
        except Exception as cleanup_error:  # leave it open (and the reaper's files): heal will retry
            ledger.update(record["id"], error=f"{e}; cleanup failed: {cleanup_error}", **partial)
            if not isinstance(e, Exception):
                raise
            raise FaultError(f"{e}; removing what was applied failed too ({cleanup_error}): run "
                             f"'chaosscheduler heal'") from e
        applied = partial.get("applied_on") or []
        if isinstance(e, ChaosSchedulerError) and applied:
            raise FaultError(f"{e}; removed again from the {len(applied)} host(s) where it was applied") from e
        if isinstance(e, ChaosSchedulerError):
            raise
        if isinstance(e, Exception):
            raise FaultError(f"could not inject fault {record['id']}: {e}") from e
        raise
    facts.update(start_facts(facts, before))
    deadline = facts["started_at"] + record["duration"] if record.get("duration") else None
    return ledger.update(record["id"], state="active", deadline=deadline, **facts)


def undo(ledger: Ledger, fault_id: str, reason: str = "undone", platform: Any = None) -> Dict[str, Any]:
    """Undo one fault if it is still open; idempotent. ``reason`` is "undone" or "expired"."""
    record = ledger.get(fault_id)
    if record.get("state") not in OPEN_STATES:
        return record
    platform = platform or _platform_for(record)
    gone = platform.available()
    if gone:
        facts = {"note": f"nothing to undo: {gone}"}
    else:
        facts = fault_class(record["kind"])(record).undo(platform)
        facts = _restore_workers(platform, record, facts)

    def close(stored: Dict[str, Any]) -> None:
        if stored.get("state") in OPEN_STATES:
            stored.update(state="expired" if reason == "expired" else "undone", undone_at=time.time(),
                          undo_result=facts)
            if facts.get("removed_at"):  # per host, beside applied_at (the fault's end on each host)
                stored.update({k: v for k, v in facts.items() if k.startswith(("removed_", "first_removed",
                                                                                  "last_removed"))
                               and k != "removed_from"})

    record = ledger.update_with(fault_id, close)
    reaper = record.get("reaper")
    if reason != "expired" and reaper and procs.is_running(reaper):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(reaper["pid"], signal.SIGTERM)
    # closed: the reaper's copy is no longer needed; its log only if it never had to retry a failed undo
    remove_reaper_files(ledger.home, fault_id, keep_log=_log_mentions_a_failure(ledger.home, fault_id))
    return record


def _log_mentions_a_failure(home: str, fault_id: str) -> bool:
    try:
        with open(log_path(home, fault_id), errors="replace") as handle:
            text = handle.read()
        return any(word in text for word in ("failed", "unreadable", "no record"))
    except FileNotFoundError:
        return False


def _restore_workers(platform: Any, record: Dict[str, Any], facts: Dict[str, Any]) -> Dict[str, Any]:
    """Workers cut off by this fault back into service (platforms that manage workers: restart a stopped worker
    process, resume a worker left drained), so the rollback, the reaper and heal all bring them back."""
    restore = getattr(platform, "restore_workers", None)
    if restore is None or record.get("action") not in ("isolate_worker", "partition_workers"):
        return facts
    try:
        return dict(facts, restored=restore(record["targets"], record.get("workers_before")))
    except Exception as e:  # the network is back either way; cluster_health shows a worker that is not
        logger.warning("fault %s undone, but restoring its workers failed: %s", record["id"], e)
        return dict(facts, restore_error=str(e))


def undo_open(ledger: Ledger, predicate: Callable[[Dict[str, Any]], bool] = lambda r: True) -> Dict[str, Any]:
    """Undo every open fault that ``predicate`` accepts, newest first. Returns ``{"undone": [ids], "errors": [...]}``;
    one fault failing does not stop the others."""
    undone: List[str] = []
    errors: List[str] = []
    for record in reversed(ledger.open_faults()):
        if not predicate(record):
            continue
        try:
            undo(ledger, record["id"])
            undone.append(record["id"])
        except Exception as e:
            errors.append(f"{record['id']} ({record.get('action', record['kind'])}): {e}")
            logger.error("could not undo fault %s: %s", record["id"], e)
    return {"undone": undone, "errors": errors}
