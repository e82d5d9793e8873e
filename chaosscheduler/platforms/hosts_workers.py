"""Workers back into service after a network fault on the hosts platform: restart a worker process that stopped,
wait for the scheduler to see the worker again, resume a worker the scheduler left dead or drained (only one that
was alive and healthy before the fault). Called by :meth:`HostsPlatform.restore_workers`, which the fault's undo
calls (rollback, reaper, ``chaosscheduler heal``). docs/platforms.md, "Workers back into service"."""

import logging
import time
from typing import Any, Dict, List, Optional

from ..errors import ChaosSchedulerError
from ..timing import Deadline

__all__ = ["snapshot", "restore"]

logger = logging.getLogger("chaostoolkit")


def snapshot(states: List[Dict[str, Any]], names: List[str]) -> Dict[str, Any]:
    """What a fault record keeps of its targets before the fault: whether each was alive and healthy (so that
    restoring never resumes a worker an operator had drained before)."""
    return {w["name"]: {"alive": w.get("alive"), "unhealthy": w.get("unhealthy", False), "state": w.get("state")}
            for w in states if w["name"] in names}


def restore(platform: Any, names: List[str], before: Optional[Dict[str, Any]] = None,
            timeout: Optional[float] = None) -> Dict[str, Any]:
    """After a network fault on ``names`` is undone: start each one's process if it stopped; wait for the
    platform to see it alive again (it has ``commands.restore_timeout`` s, half of it before we step in); then
    run ``commands.resume_worker`` for each still dead or unhealthy that was alive and healthy ``before`` the
    fault. Returns ``{"restarted", "resumed", "back", "not_back"}``; never raises for a worker that stays out
    (cluster_health reports it), only logs it."""
    sources = platform.description.get("commands") or {}
    timeout = sources.get("restore_timeout", 60.0) if timeout is None else timeout
    facts: Dict[str, Any] = {"restarted": [], "resumed": [], "back": [], "not_back": []}
    for name in names:
        try:
            if "process" in platform.node(name) and not platform.is_running(name):
                platform.restart(name)
                facts["restarted"].append(name)
        except ChaosSchedulerError as e:
            logger.warning("could not restart worker %s: %s", name, e)
    if not platform.commands.has("workers"):
        return facts
    before = before or {}
    deadline = Deadline(timeout)
    pending = set(names)
    while pending:
        try:
            states = {w["name"]: w for w in platform.worker_states()}
        except ChaosSchedulerError:
            states = {}
        for name in sorted(pending):
            state = states.get(name)
            if state is None:
                continue
            was = before.get(name) or {}
            ours = was.get("alive", True) and not was.get("unhealthy")
            if state["alive"] and (not state["unhealthy"] or not ours):  # as healthy as it was before
                pending.discard(name)
                facts["back"].append(name)
                continue
            # a responding but unhealthy worker at once; a dead one once the platform had its chance
            if ours and sources.get("resume_worker") and name not in facts["resumed"] and \
                    (state["alive"] or deadline.elapsed() > timeout / 2):
                _resume(platform, name, sources["resume_worker"])
                facts["resumed"].append(name)
        if pending and deadline.expired():
            break
        if pending:
            time.sleep(max(platform.poll_interval, 0.2))
    facts["not_back"] = sorted(pending)
    if pending:
        logger.warning("workers not back in service %.0f s after the fault was undone: %s", timeout,
                       ", ".join(sorted(pending)))
    return facts


def _resume(platform: Any, name: str, spec: Dict[str, Any]) -> None:
    try:
        result, where = platform.runner.run(spec, node=platform.node(name))
    except ChaosSchedulerError as e:
        logger.warning("could not resume worker %s: %s", name, e)
        return
    if result.returncode != 0:
        logger.warning("resuming worker %s on %s failed (%d): %s", name, where, result.returncode,
                       (result.stderr or result.stdout).strip()[:200])
