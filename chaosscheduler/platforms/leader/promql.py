"""Leader from a PromQL query: every series it returns is a master that claims to lead.

``since`` is the first evaluation step (a quarter of the scrape interval) of the leader's current, unbroken claim
in the last ``lookback`` seconds (default 120): the first scrape that showed it, however late it is asked.

``{"source": "promql", "query": "scheduler_is_leader == 1", "label": "instance"}``. Other platforms:
``etcd_server_is_leader == 1`` (etcd), ``leader_election_master_status == 1`` (Kubernetes control plane). The
series' ``label`` (default ``instance``) is matched to a master by name, host, address, ``metrics_instance`` or
through ``names``.

Resolution: the scrape interval plus one evaluation step (a leader elected just after a scrape is seen one
interval later). The source asks
Prometheus at most every ``min_interval`` seconds (default: a fifth of the scrape interval).
"""

import time
from typing import Any, Dict

from ...errors import ChaosSchedulerError, ConfigurationError
from . import LeaderSource, match_master


class Source(LeaderSource):
    kind = "promql"
    OPTIONS = {"query": "scheduler_is_leader == 1", "label": "instance", "names": None, "min_interval": None,
               "lookback": 120}

    @classmethod
    def check(cls, options: Dict[str, Any]) -> Dict[str, Any]:
        out = super().check(options)
        if not isinstance(out["query"], str) or not out["query"].strip():
            raise ConfigurationError("leader.query must be a PromQL expression")
        if not isinstance(out["label"], str) or not out["label"]:
            raise ConfigurationError("leader.label must name the label that identifies a master")
        return out

    def __init__(self, options: Dict[str, Any], env: Any):
        super().__init__(options, env)
        self._cached: Any = None
        self._at = 0.0

    def resolution(self) -> float:
        prometheus = self.env.prometheus
        if prometheus is None:
            return 0.0
        interval = prometheus.scrape_interval()
        return interval + max(interval / 4.0, 0.05)

    def read(self) -> Dict[str, Any]:
        prometheus = self.env.prometheus
        if prometheus is None:
            raise ChaosSchedulerError("leader source 'promql' needs prometheus_base_url in the configuration")
        gap = self.options["min_interval"] or prometheus.scrape_interval() / 5.0
        if self._cached is not None and time.monotonic() - self._at < gap:
            return dict(self._cached)
        rows = prometheus.query(f"timestamp({self.options['query']})")
        claims, since = [], {}
        for labels, _, sampled_at in rows:
            name = match_master(labels.get(self.options["label"]), self.env.masters, self.options["names"])
            if name and name not in claims:
                claims.append(name)
                since[name] = sampled_at
        claims.sort()
        leader = claims[0] if len(claims) == 1 else None
        previous = self._cached or {}
        if leader and previous.get("leader") == leader and previous.get("since"):
            first = previous["since"]
        else:
            first = self._claim_began(leader, prometheus) if leader else None
        self._cached = {"leader": leader, "since": first, "claims": claims, "latest_scrape_at": since.get(leader)}
        self._at = time.monotonic()
        return dict(self._cached)

    def _claim_began(self, leader: str, prometheus: Any) -> Any:
        """The first evaluation step of the leader's current, unbroken claim within the last ``lookback`` seconds
        (so a probe that starts polling late still times the election from the scrape that first showed it)."""
        step = max(prometheus.scrape_interval() / 4.0, 0.05)
        lookback = int(self.options["lookback"])
        rows = prometheus.series(f"({self.options['query']})", time.time() - lookback, time.time(), step)
        times = sorted(t for labels, values in rows
                       if match_master(labels.get(self.options["label"]), self.env.masters,
                                       self.options["names"]) == leader for t, _ in values)
        if not times:
            return None
        first = times[-1]
        for earlier in reversed(times[:-1]):
            if first - earlier > step * 1.5:
                break
            first = earlier
        return first
