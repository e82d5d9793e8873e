"""The embedded reference cluster: etcd + masters + workers + a load generator, each in its own network namespace.

    from chaosscheduler.testbed import ClusterSpec, testbed

    with testbed(ClusterSpec(name="demo", workers=3)) as tb:
        print(tb.leader(), tb.workers())
"""

from .cluster import Testbed, down, find, testbed, up
from .spec import ClusterSpec, default_home

__all__ = ["ClusterSpec", "Testbed", "default_home", "down", "find", "testbed", "up"]
