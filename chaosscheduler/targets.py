"""Pure target selection (Jepsen's named specs, leader-aware): which master to kill, which workers to cut.

Every function takes plain data and a ``random.Random``, so the choices are unit-tested without a platform.
"""

import math
import random
import re
from typing import Any, Dict, List, Optional, Sequence

from .context import known, names
from .errors import ConfigurationError

__all__ = ["pick_master", "pick_workers", "pick_worker", "peer_nodes", "check_share"]

_COUNT = re.compile(r"^\d+$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")


def pick_master(target: Any, masters: Sequence[str], running: Sequence[str], leader: Optional[str],
                rng: random.Random) -> str:
    """``"leader"`` (default), ``"follower"`` (a random running non-leader), ``"random"`` (any running master) or a
    master's name."""
    if not isinstance(target, str):
        raise ConfigurationError(f"argument 'target' must be 'leader', 'follower', 'random' or a master name, "
                                 f"got {target!r}")
    if target == "leader":
        if not leader:
            raise ConfigurationError("target 'leader': the platform has no leader right now")
        return leader
    if target == "follower":
        followers = [m for m in running if m != leader]
        if not followers:
            raise ConfigurationError("target 'follower': no running master other than the leader")
        return rng.choice(sorted(followers))
    if target == "random":
        if not running:
            raise ConfigurationError("target 'random': no master is running")
        return rng.choice(sorted(running))
    name = known("target", names("target", target), masters)
    if len(name) != 1:
        raise ConfigurationError("argument 'target' names one master")
    if name[0] not in running:
        raise ConfigurationError(f"target {name[0]!r} is not running: nothing to kill")
    return name[0]


def pick_workers(spec: Any, candidates: Sequence[str], all_workers: Sequence[str], rng: random.Random) -> List[str]:
    """``"all"``, a count (``2`` or ``"2"``), a percentage (``"50%"``, rounded up, at least one) or names
    (a list or ``"worker-1,worker-2"``). Counts and percentages choose at random among ``candidates``."""
    if isinstance(spec, bool):
        raise ConfigurationError(f"argument 'workers' must be 'all', a count, a percentage or names, got {spec!r}")
    if isinstance(spec, int) or (isinstance(spec, str) and _COUNT.match(spec)):
        count = int(spec)
        if count < 1:
            raise ConfigurationError(f"argument 'workers': a partition of zero workers does nothing (got {spec!r})")
        if count > len(candidates):
            raise ConfigurationError(f"argument 'workers': {count} requested but only {len(candidates)} available")
        return sorted(rng.sample(sorted(candidates), count))
    if isinstance(spec, str) and spec == "all":
        if not candidates:
            raise ConfigurationError("argument 'workers': no worker is available")
        return sorted(candidates)
    if isinstance(spec, str) and _PERCENT.match(spec):
        share = float(_PERCENT.match(spec).group(1))
        if not 0 < share <= 100:
            raise ConfigurationError(f"argument 'workers': a percentage must be in (0, 100], got {spec!r}")
        count = max(1, math.ceil(len(candidates) * share / 100.0))
        if not candidates:
            raise ConfigurationError("argument 'workers': no worker is available")
        return sorted(rng.sample(sorted(candidates), count))
    if isinstance(spec, float):
        raise ConfigurationError(f"argument 'workers': a count must be an integer, got {spec!r} "
                                 f"(use a string like '50%' for a share)")
    chosen = known("workers", names("workers", spec), all_workers)
    unavailable = [w for w in chosen if w not in candidates]
    if unavailable:
        raise ConfigurationError(f"argument 'workers': {', '.join(unavailable)} cannot be targeted now "
                                 f"(not alive or already under a fault)")
    return sorted(set(chosen))


def pick_worker(spec: Any, workers: Sequence[Dict[str, Any]], candidates: Sequence[str],
                rng: random.Random) -> str:
    """``"busiest"`` (most running tasks; ties by name), ``"random"``, or a worker's name."""
    if spec == "busiest":
        pool = [w for w in workers if w["name"] in candidates]
        if not pool:
            raise ConfigurationError("worker 'busiest': no worker is available")
        return sorted(pool, key=lambda w: (-len(w.get("running", [])), w["name"]))[0]["name"]
    if spec == "random":
        if not candidates:
            raise ConfigurationError("worker 'random': no worker is available")
        return rng.choice(sorted(candidates))
    chosen = known("worker", names("worker", spec), [w["name"] for w in workers])
    if len(chosen) != 1:
        raise ConfigurationError("argument 'worker' names one worker; use partition_workers for several")
    if chosen[0] not in candidates:
        raise ConfigurationError(f"worker {chosen[0]!r} cannot be isolated now (not alive or already under a fault)")
    return chosen[0]


def peer_nodes(spec: Any, roles: Dict[str, Sequence[str]], targets: Sequence[str]) -> List[str]:
    """``"masters"``, ``"registry"``, ``"all"`` (every other node) or node names; never the targets themselves."""
    if spec == "masters":
        chosen = list(roles["masters"])
    elif spec == "registry":
        chosen = list(roles["registry"])
    elif spec == "all":
        chosen = list(roles["nodes"])
    else:
        if spec in ("", None):
            raise ConfigurationError("argument 'peers' must be 'masters', 'registry', 'all' or node names")
        chosen = known("peers", names("peers", spec), roles["nodes"])
    peers = sorted(set(chosen) - set(targets))
    if not peers:
        raise ConfigurationError(f"argument 'peers' ({spec!r}) leaves no node to cut the targets from")
    return peers


def check_share(cut: Sequence[str], already_cut: Sequence[str], all_workers: Sequence[str],
                max_share: Optional[float]) -> None:
    """Refuse when cutting ``cut`` (on top of ``already_cut``) leaves more than ``max_share`` of the workers
    unreachable; by default at least one worker must stay reachable."""
    total = len(all_workers)
    after = len(set(cut) | set(already_cut))
    if max_share is None:
        if after >= total:
            raise ConfigurationError(
                f"refusing to cut off {after} of {total} workers: at least one must stay reachable (set "
                f"configuration chaosscheduler_max_worker_share to 1.0 to allow cutting every worker)")
    elif after > max_share * total + 1e-9:
        raise ConfigurationError(
            f"refusing to cut off {after} of {total} workers: more than chaosscheduler_max_worker_share "
            f"= {max_share}")
