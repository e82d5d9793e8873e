"""chaosscheduler: Chaos Toolkit activities that prove a master/worker scheduling platform survives the loss of
its leader, a network partition and a lost worker."""

from typing import List

from chaoslib.discovery.discover import discover_actions, discover_probes, initialize_discovery_result
from chaoslib.types import DiscoveredActivities, Discovery

__version__ = "0.1.0"
__all__ = ["__version__", "discover"]

# (module, kind): rollbacks are actions in Chaos Toolkit's catalogue; probes must be discovered as probes
CATALOGUE = (("chaosscheduler.actions", "action"), ("chaosscheduler.probes", "probe"),
             ("chaosscheduler.rollbacks", "action"))


def discover(discover_system: bool = True) -> Discovery:
    """The activity catalogue for ``chaos discover chaosscheduler --no-install``."""
    discovery = initialize_discovery_result("chaosscheduler", __version__, "scheduler")
    discovery["activities"].extend(load_exported_activities())
    return discovery


def load_exported_activities() -> List[DiscoveredActivities]:
    activities: List[DiscoveredActivities] = []
    for module, kind in CATALOGUE:
        activities.extend(discover_probes(module) if kind == "probe" else discover_actions(module))
    return activities
