"""Rollbacks: undo the faults this library injected, driven only by the fault ledger.

Each is idempotent and safe when nothing is recorded. ``scope``: "run" (default: faults injected by this
experiment run) or "all" (every open fault in the ledger of this state home, whoever injected it).
"""

import logging
import time
from typing import Any, Dict, List

from chaoslib.types import Configuration, Secrets

from .context import Context, boundary, choice, number
from .errors import FaultError
from .faults import undo_open
from .measurements import remember
from .timing import wait_until

__all__ = ["restart_master", "heal_partition", "rejoin_worker", "undo_all_faults"]
logger = logging.getLogger("chaostoolkit")

SCOPES = ("run", "all")


def _undo(ctx: Context, actions: List[str], scope: str, fault_id: str) -> Dict[str, Any]:
    choice("scope", scope, SCOPES)
    if not isinstance(fault_id, str):
        raise FaultError(f"argument 'fault_id' must be a fault id string, got {fault_id!r}")

    def wanted(record: Dict[str, Any]) -> bool:
        if fault_id:
            return record["id"] == fault_id
        if actions and record.get("action") not in actions:
            return False
        return scope == "all" or record.get("run_id") == ctx.run_id

    result = undo_open(ctx.ledger, wanted)
    if result["errors"]:
        raise FaultError(f"could not undo {len(result['errors'])} fault(s): {'; '.join(result['errors'])}")
    logger.info("undone: %s", ", ".join(result["undone"]) or "nothing was open")
    return result


@boundary
def restart_master(fault_id: str = "", scope: str = "run", failback_timeout: float = 0.0,
                   configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Start again the masters killed by kill_master (resume them after SIGSTOP). ``scope``: "run" (default: this
    run's faults) or "all" (every open one in the ledger); ``fault_id`` limits it to one fault. Returns
    ``{"undone": [fault ids], "errors": []}``; raises, naming each, when a fault could not be undone (it stays open
    for ``chaosscheduler heal``).

    ``failback_timeout`` > 0: then watch who leads for up to that many seconds after the restart. On platforms
    where the restarted master takes the lead back (Slurm's primary controller: a failback, a second election),
    the result gets ``failback``: ``{"changed": true, "value": seconds from the restart until the new leader was
    seen, "from", "to", "restarted_at", "seen_at", "not_seen_until", "resolution" (the lead moved within that many
    seconds before it was seen), "source_resolution", "source"}`` (``changed`` false when the lead did
    not move), and the same is stored with each undone fault as its ``leader_failback_time`` measurement."""
    ctx = Context(configuration)
    failback_timeout = number("failback_timeout", failback_timeout, 0, 3600)
    before = ctx.platform.leader().get("leader") if failback_timeout else None
    restarted_at = time.time()
    result = _undo(ctx, ["kill_master"], scope, fault_id)
    if failback_timeout and result["undone"]:
        result["failback"] = _watch_failback(ctx, before, restarted_at, failback_timeout)
        for fid in result["undone"]:
            remember(ctx, ctx.ledger.get(fid), "leader_failback_time", result["failback"])
    return result


def _watch_failback(ctx: Context, before: Any, restarted_at: float, timeout: float) -> Dict[str, Any]:
    """Poll the leader until it is someone other than ``before`` (the leader while the master was down). The lead
    moved between the start of the last poll that still named ``before`` (or the restart) and the poll that saw it
    move: that interval is the figure's ``resolution`` (the restart's own wait for the process is inside it)."""
    info: Dict[str, Any] = {}
    unseen_until = restarted_at

    def moved() -> Any:
        nonlocal info, unseen_until
        asked = time.time()
        info = ctx.platform.leader()
        if info.get("leader") and info["leader"] != before:
            return time.time()
        unseen_until = asked
        return None

    try:
        seen = wait_until(moved, max(0.0, restarted_at + timeout - time.time()), interval=ctx.settings.poll_interval,
                          message="a failback")
    except TimeoutError:
        logger.info("restart_master: %s still leads %.0f s after the restart: no failback", before, timeout)
        return {"changed": False, "value": None, "from": before, "to": info.get("leader"),
                "restarted_at": restarted_at}
    value = round(seen - restarted_at, 6)
    resolution = round(seen - unseen_until, 6)
    logger.info("restart_master: failback %s -> %s %.3f s after the restart (within the last %.3f s)", before,
                info["leader"], value, resolution)
    return {"changed": True, "value": value, "from": before, "to": info["leader"], "restarted_at": restarted_at,
            "seen_at": seen, "not_seen_until": unseen_until, "resolution": resolution,
            "source_resolution": info.get("resolution"), "source": info.get("leader_source")}


@boundary
def heal_partition(fault_id: str = "", scope: str = "run", configuration: Configuration = None,
                   secrets: Secrets = None) -> Dict[str, Any]:
    """Remove the partitions, loss and latency injected by partition_workers (exactly our own tables). ``scope``:
    "run" (default: this run's faults) or "all" (every open one in the ledger); ``fault_id`` limits it to one fault.
    Returns ``{"undone": [fault ids], "errors": []}``; raises, naming each, when a fault could not be undone."""
    return _undo(Context(configuration), ["partition_workers"], scope, fault_id)


@boundary
def rejoin_worker(fault_id: str = "", scope: str = "run", timeout: float = 30.0,
                  configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Give isolated workers their network back, then wait up to ``timeout`` seconds for each to register again.
    ``scope``: "run" (default: this run's faults) or "all" (every open one in the ledger); ``fault_id`` limits it to
    one fault. Returns ``{"undone": [...], "errors": [], "rejoined": [workers], "seconds": time to rejoin,
    "timeout"}``; raises if a fault could not be undone or a worker did not come back in time."""
    ctx = Context(configuration)
    timeout = number("timeout", timeout, 0, 3600)
    opened = {f["id"]: f for f in ctx.ledger.open_faults()}
    result = _undo(ctx, ["isolate_worker"], scope, fault_id)
    workers = sorted({w for fid in result["undone"] for w in opened[fid]["targets"]})
    started = time.monotonic()
    if workers:
        def back() -> bool:
            alive = {w["name"] for w in ctx.platform.worker_states() if w["alive"]}
            return set(workers) <= alive

        try:
            wait_until(back, timeout, interval=ctx.settings.poll_interval * 5, message="workers registered again")
        except TimeoutError as e:
            raise FaultError(f"network restored, but {', '.join(workers)} did not register again within "
                             f"{timeout} s") from e
    return dict(result, rejoined=workers, seconds=round(time.monotonic() - started, 3), timeout=timeout)


@boundary
def undo_all_faults(scope: str = "run", configuration: Configuration = None,
                    secrets: Secrets = None) -> Dict[str, Any]:
    """Undo every open fault of this run (``scope="run"``) or of the whole ledger (``scope="all"``), whatever its
    kind. Returns ``{"undone": [fault ids], "errors": []}``.

    On platforms that bring workers back into service (the hosts platform with command sources), it then resumes
    every worker that this run's faults found healthy and that the platform now reports unhealthy, whenever that
    happened (Slurm drains a node on "Duplicate jobid" some time after a controller crash): the result gets
    ``restored``. A worker unhealthy before every fault of the run is left as it is."""
    ctx = Context(configuration)
    result = _undo(ctx, [], scope, "")
    before: Dict[str, Any] = {}
    for record in ctx.ledger.all():
        if scope == "all" or record.get("run_id") == ctx.run_id:
            for name, state in (record.get("workers_before") or {}).items():
                before.setdefault(name, state)  # the earliest fault's view: before this run touched anything
    # the platform is asked only when a fault recorded workers' health (a platform that is not running has none)
    restore = getattr(ctx.platform, "restore_workers", None) if before else None
    if restore is not None:
        result["restored"] = restore(sorted(before), before)
    return result
