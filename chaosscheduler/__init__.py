"""chaosscheduler: Chaos Toolkit activities that prove a master/worker scheduling platform survives the loss of
its leader, a network partition and a lost worker."""

from typing import Any, Dict, List

__version__ = "0.1.0"
__all__ = ["__version__", "discover"]

# (module, kind): rollbacks are actions in Chaos Toolkit's catalogue; probes must be discovered as probes
CATALOGUE = (("chaosscheduler.actions", "action"), ("chaosscheduler.probes", "probe"),
             ("chaosscheduler.rollbacks", "action"))

# chaoslib is imported inside the functions, not here: every process of ours imports this package — each node of the
# embedded cluster, each self-expiry reaper — and chaoslib's import alone costs ~70 ms of CPU (benchmarks/scale.py,
# docs/performance.md)


def discover(discover_system: bool = True) -> Dict[str, Any]:
    """The activity catalogue for ``chaos discover chaosscheduler --no-install``."""
    from chaoslib.discovery.discover import initialize_discovery_result

    discovery = initialize_discovery_result("chaosscheduler", __version__, "scheduler")
    discovery["activities"].extend(load_exported_activities())
    return discovery


def load_exported_activities() -> List[Dict[str, Any]]:
    from chaoslib.discovery.discover import discover_actions, discover_probes

    from ._types import refine_union_types

    activities: List[Dict[str, Any]] = []
    for module, kind in CATALOGUE:
        activities.extend(discover_probes(module) if kind == "probe" else discover_actions(module))
    return refine_union_types(activities)
