"""Actions: inject the three faults that hurt a scheduling platform most.

Each action validates its arguments, resolves its targets on the platform (leader-aware), writes the fault to the
ledger, injects it, arms its self-expiry, and returns the fault record (``id``, ``targets``, ``started_at``,
``deadline``, ...). With ``dry_run`` it resolves the targets and returns the record it would inject, doing
nothing. Bad arguments raise ``ActivityFailed`` naming the argument, with nothing done.
"""

import logging
import random
import signal as _signal
import time
from typing import Any, Dict, List, Optional, Union

from chaoslib.types import Configuration, Secrets

from . import procs
from .context import Context, boundary, choice, flag, number
from .errors import ConfigurationError
from .faults import inject
from .faults.latency import netem_available
from .faults.rules import DIRECTIONS, EVERYTHING
from .ledger import new_fault_id
from .targets import check_share, peer_nodes, pick_master, pick_worker, pick_workers

__all__ = ["kill_master", "partition_workers", "isolate_worker"]
logger = logging.getLogger("chaostoolkit")

MODES = ("drop", "loss", "latency")
MAX_DURATION = 24 * 3600.0
_rng = random.SystemRandom()


def _base_record(ctx: Context, action: str, kind: str, targets: List[str], duration: float) -> Dict[str, Any]:
    kind = getattr(ctx.platform, "fault_kinds", {}).get(kind, kind)  # a platform may carry out a kind its own way
    return {"id": new_fault_id(), "kind": kind, "action": action, "targets": targets, "duration": duration,
            "platform": ctx.platform.reference(), "run_id": ctx.run_id, "created_at": time.time()}


def _finish(ctx: Context, record: Dict[str, Any], dry_run: bool) -> Dict[str, Any]:
    if dry_run:
        planned = dict(record, state="dry-run", started_at=None, deadline=None)
        logger.info("dry run: %s would target %s", record["action"], ", ".join(record["targets"]))
        return planned
    stored = inject(ctx.ledger, record, ctx.platform)
    logger.info("%s: fault %s on %s until %s", record["action"], stored["id"], ", ".join(stored["targets"]),
                time.strftime("%H:%M:%S", time.localtime(stored["deadline"])) if stored.get("deadline") else "undone")
    return stored


def _cut_workers(ctx: Context) -> List[str]:
    """Workers already under an open network fault (they cannot be targeted again: faults are not stacked)."""
    cut = []
    for fault in ctx.ledger.open_faults(platform=ctx.platform.reference()):
        if fault["kind"] in ("network", "latency", "kubernetes-network"):
            cut += fault["targets"]
    return sorted(set(cut))


def _require_network(ctx: Context) -> None:
    check = getattr(ctx.platform, "network_capable", None)
    reason = check() if check else None
    if reason:
        raise ConfigurationError(reason)


@boundary
def kill_master(target: str = "leader", signal: Union[str, int] = "SIGKILL", duration: float = 60.0,
                allow_last: bool = False,
                dry_run: bool = False, configuration: Configuration = None,
                secrets: Secrets = None) -> Dict[str, Any]:
    """Kill a master: the current leader by default.

    ``target``: "leader" (the master that leads right now), "follower" (a random running non-leader), "random" (any
    running master) or a master's name. ``signal``, by name ("SIGKILL" or "KILL") or number: "SIGKILL" (default, a
    crash), "SIGTERM" or "SIGINT" (a stop the master may handle: the embedded cluster's leader resigns), "SIGQUIT"
    (a crash with a core dump, unless the master handles it) or "SIGSTOP" (a freeze, undone with SIGCONT). The
    action returns once the signal has taken effect: a killed master's process gone, and on the embedded cluster
    and SSH hosts a stopped one in state "T" (it fails, with the master resumed, if that does not show within a
    few seconds). ``duration``: seconds after
    which the fault undoes itself (the master is started again / resumed) even if this run has died;
    restart_master does it sooner. Refuses when no other master would be left running, unless ``allow_last`` is
    true.

    Returns the fault record: ``id``, ``targets`` ([master]), ``signal``, ``was_leader``, ``leader_before``,
    ``pid``, ``started_at``, ``deadline``."""
    ctx = Context(configuration)
    try:
        sig_name = _signal.Signals(procs.signal_number(signal)).name
    except ValueError:
        sig_name = ""
    if sig_name not in ("SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGSTOP"):
        raise ConfigurationError(f"argument 'signal' must be SIGKILL, SIGTERM, SIGINT, SIGQUIT or SIGSTOP, got {signal!r}")
    duration = number("duration", duration, 0, MAX_DURATION, low_open=True)
    flag("allow_last", allow_last)
    flag("dry_run", dry_run)
    platform = ctx.platform
    masters = platform.masters()
    running = [m for m in masters if platform.is_running(m)]
    leader_info = platform.leader()
    leader = leader_info.get("leader")
    victim = pick_master(target, masters, running, leader, _rng)
    if len(running) <= 1 and not allow_last:
        raise ConfigurationError(f"refusing to kill {victim}: it is the last running master "
                                 f"(pass allow_last=true to do it anyway)")
    record = _base_record(ctx, "kill_master", "process", [victim], duration)
    record.update(signal=sig_name, was_leader=victim == leader, leader_before=leader,
                  term_before=leader_info.get("term"), masters_running=running)
    _snapshot(platform, record, names=platform.worker_names())  # a crash can leave workers drained
    return _finish(ctx, record, dry_run)


@boundary
def partition_workers(workers: Union[str, int, List[str]] = "all", peers: Union[str, List[str]] = "masters",
                      mode: str = "drop", loss: float = 0.3, latency_ms: float = 500.0, direction: str = "both",
                      duration: float = 60.0, dry_run: bool = False, configuration: Configuration = None,
                      secrets: Secrets = None) -> Dict[str, Any]:
    """Cut or degrade the traffic between a set of workers and a set of peers.

    ``workers`` (a string, an integer or a list of names): "all", a count ("2" or 2), a percentage ("50%", rounded
    up) or names ("worker-1,worker-2" or a JSON list).
    ``peers`` (a string or a list of names): "masters" (default: the split between masters and workers),
    "registry" (the heartbeat store), "all" (every other node) or node names ("master-1,etcd-1" or a JSON list).
    ``mode``: "drop" (a partition), "loss" (drop ``loss`` of the packets at random, 0 < loss <= 1) or "latency" (add
    ``latency_ms``: tc netem where the kernel has it, else, on this machine's namespaces, an NFQUEUE delay process;
    the record holds the delay actually measured; refused with the reason where neither works). ``direction``: "both", "to" (workers → peers only) or "from" (peers → workers only).
    ``duration``: seconds until the fault undoes itself (kernel timeout + reaper), even if this run has died.

    A drop partition may not cut off every worker unless configuration ``chaosscheduler_max_worker_share`` allows
    it; workers already under a network fault are refused, never stacked. Returns the fault record with
    ``targets``, ``peers``, ``addresses``, ``running_tasks`` (tasks on the targets when cut) and ``deadline``."""
    ctx = Context(configuration)
    choice("mode", mode, MODES)
    choice("direction", direction, DIRECTIONS)
    duration = number("duration", duration, 0, MAX_DURATION, low_open=True)
    flag("dry_run", dry_run)
    # every argument is checked, whether or not the mode uses it: a wrong value is a mistake either way
    loss = number("loss", loss, 0, 1, low_open=True)
    latency_ms = number("latency_ms", latency_ms, 0, 60000, low_open=True)
    drop_share = loss if mode == "loss" else 1.0
    if mode == "latency":
        reason = getattr(ctx.platform, "latency_capable", netem_available)()
        if reason:
            raise ConfigurationError(reason)
    _require_network(ctx)
    platform = ctx.platform
    all_workers = platform.worker_names()
    already = _cut_workers(ctx)
    candidates = [w for w in all_workers if w not in already]
    targets = pick_workers(workers, candidates, all_workers, _rng)
    roles = {"masters": platform.masters(), "registry": platform.registry(), "nodes": platform.nodes()}
    peer_list = peer_nodes(peers, roles, targets)
    if mode == "drop" and set(peer_list) & (set(roles["masters"]) | set(roles["registry"])):
        check_share(targets, already, all_workers, ctx.settings.max_worker_share)
    kind = "latency" if mode == "latency" else "network"
    record = _base_record(ctx, "partition_workers", kind, targets, duration)
    record.update(peers=peer_list, addresses=sorted(platform.address(p) for p in peer_list), mode=mode,
                  loss=drop_share, direction=direction, running_tasks=_running_tasks(platform, targets),
                  cuts_registry=mode == "drop" and bool(set(peer_list) & set(heartbeat_peers(platform, roles))))
    if mode == "latency":
        record.update(latency_ms=float(latency_ms))
    _snapshot(platform, record)
    return _finish(ctx, record, dry_run)


@boundary
def isolate_worker(worker: str = "busiest", duration: float = 60.0, dry_run: bool = False,
                   configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Cut one worker off from everything (all traffic but its loopback, both ways), as if it dropped off the
    network. ``worker``: "busiest" (the live worker running the most tasks), "random" or a worker's name.
    ``duration``: seconds until the fault undoes itself even if this run has died; rejoin_worker does it sooner.

    Refuses to isolate the last reachable worker unless configuration ``chaosscheduler_max_worker_share``
    allows it. Returns the fault record with ``targets`` ([worker]), ``running_tasks`` (the tasks it was running,
    which the platform should run again elsewhere), ``started_at`` and ``deadline``."""
    ctx = Context(configuration)
    duration = number("duration", duration, 0, MAX_DURATION, low_open=True)
    flag("dry_run", dry_run)
    if not isinstance(worker, str):
        raise ConfigurationError(f"argument 'worker' must be 'busiest', 'random' or a worker name, got {worker!r}")
    _require_network(ctx)
    platform = ctx.platform
    states = platform.workers()
    already = _cut_workers(ctx)
    candidates = [w["name"] for w in states if w["alive"] and w["name"] not in already]
    victim = pick_worker(worker, states, candidates, _rng)
    check_share([victim], already, [w["name"] for w in states], ctx.settings.max_worker_share)
    record = _base_record(ctx, "isolate_worker", "network", [victim], duration)
    running = {w["name"]: w.get("running", []) for w in states}
    record.update(peers=["*"], addresses=list(EVERYTHING), mode="drop", loss=1.0, direction="both",
                  running_tasks={victim: running.get(victim, [])})
    _snapshot(platform, record, states)
    return _finish(ctx, record, dry_run)


def _snapshot(platform: Any, record: Dict[str, Any], states: Optional[List[Dict[str, Any]]] = None,
              names: Optional[List[str]] = None) -> None:
    """The workers' health before the fault (its targets, or ``names``), for platforms that bring workers back
    (never resume a worker that was drained before)."""
    snapshot = getattr(platform, "worker_snapshot", None)
    if snapshot is None:
        return
    try:
        states = states if states is not None else platform.worker_states()
    except Exception as e:  # informative only
        logger.warning("could not read the targets' states before the fault: %s", e)
        return
    record["workers_before"] = snapshot(states, names if names is not None else record["targets"])


def heartbeat_peers(platform: Any, roles: Dict[str, List[str]]) -> List[str]:
    """Whom the workers' heartbeats reach: the registry, unless the platform says its masters (Slurm)."""
    peers = getattr(platform, "heartbeat_peers", None)
    return list(peers()) if peers else roles["registry"]


def _running_tasks(platform: Any, targets: List[str]) -> Dict[str, List[str]]:
    try:
        states = {w["name"]: w.get("running", []) for w in platform.workers()}
    except Exception as e:  # informative only: the fault does not depend on it
        logger.warning("could not list the targets' running tasks: %s", e)
        return {}
    return {t: states.get(t, []) for t in targets}
