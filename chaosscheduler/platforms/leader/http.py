"""Leader from each master's HTTP endpoint.

Modes:

* ``"name"``: any master's answer names the leader: ``{"source": "http", "url": "http://{address}:8080/api/leader",
  "json_path": "leader"}`` (the embedded cluster; ``since_path: "since"`` adds the leader's own election time).
* ``"self"``: each master says whether *it* leads; the one whose ``json_path`` value equals ``value`` (default
  true) leads: ``{"mode": "self", "url": "http://{address}:8080/health", "json_path": "leader"}``. With ``metric``
  instead of ``json_path`` the endpoint is a Prometheus text page and the master whose sample of that metric is 1
  leads, e.g. etcd: ``{"mode": "self", "url": "http://{address}:2379/metrics", "metric": "etcd_server_is_leader"}``.

Resolution: the poll interval plus one round of requests (every master is asked in turn in "self" mode).
"""

import re
from typing import Any, Dict, List, Optional

from ...errors import ChaosSchedulerError, ConfigurationError
from ...metrics.transport import session
from . import LeaderSource, expand, json_path, match_master

MODES = ("name", "self")


class Source(LeaderSource):
    kind = "http"
    OPTIONS = {"url": "required", "mode": "name", "json_path": "", "since_path": None, "value": True,
               "metric": None, "names": None, "timeout": 1.0, "token_secret": None}

    @classmethod
    def check(cls, options: Dict[str, Any]) -> Dict[str, Any]:
        out = super().check(options)
        if not isinstance(out["url"], str) or not re.match(r"^https?://", out["url"]):
            raise ConfigurationError(f"leader.url must be an http(s) URL template, got {out['url']!r}")
        if out["mode"] not in MODES:
            raise ConfigurationError(f"leader.mode must be one of {', '.join(MODES)}, got {out['mode']!r}")
        if out["metric"] is not None and (out["mode"] != "self" or not re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
                                                                                 str(out["metric"]))):
            raise ConfigurationError("leader.metric must be a metric name and needs mode 'self'")
        if isinstance(out["timeout"], bool) or not isinstance(out["timeout"], (int, float)) or out["timeout"] <= 0:
            raise ConfigurationError(f"leader.timeout must be a positive number, got {out['timeout']!r}")
        if out["names"] is not None and not isinstance(out["names"], dict):
            raise ConfigurationError("leader.names must map the source's answers to master names")
        return out

    def _get(self, master: Dict[str, Any]) -> Any:
        o = self.options
        headers = {}
        if o["token_secret"]:
            token = (self.env.secrets or {}).get(o["token_secret"])
            if not token:
                raise ChaosSchedulerError(f"leader source: secret {o['token_secret']!r} is not available")
            headers["Authorization"] = f"Bearer {token}"
        url = expand(o["url"], master)
        try:
            response = session(self.env.netns).get(url, timeout=o["timeout"], headers=headers)
        except Exception as e:  # requests' and the transport's errors alike
            raise ChaosSchedulerError(f"{master['name']}: GET {url} failed: {e}") from None
        if response.status_code != 200:
            raise ChaosSchedulerError(f"{master['name']}: GET {url} answered {response.status_code}")
        if o["metric"]:
            return _metric_value(response.text, o["metric"])
        try:
            return response.json()
        except ValueError:
            raise ChaosSchedulerError(f"{master['name']}: GET {url} did not answer JSON") from None

    def read(self) -> Dict[str, Any]:
        o = self.options
        masters = self.env.masters
        errors: List[str] = []
        if o["mode"] == "name":
            # the master that answered last is asked first: a dead master costs no request per poll (polite polling)
            first = getattr(self, "_answered", 0) % max(1, len(masters))
            for index in list(range(first, len(masters))) + list(range(first)):
                master = masters[index]
                try:
                    document = self._get(master)
                except ChaosSchedulerError as e:
                    errors.append(str(e))
                    continue
                self._answered = index
                leader = match_master(json_path(document, o["json_path"]), masters, o["names"])
                since = json_path(document, o["since_path"]) if o["since_path"] else None
                return {"leader": leader, "since": since if isinstance(since, (int, float)) else None,
                        "answered_by": master["name"]}
            raise ChaosSchedulerError(f"no master answered: {'; '.join(errors)}")
        claims = []
        answered = 0
        for master in masters:
            try:
                value = self._get(master)
            except ChaosSchedulerError as e:
                errors.append(str(e))
                continue
            answered += 1
            if o["metric"]:
                if value == 1:
                    claims.append(master["name"])
            elif json_path(value, o["json_path"]) == o["value"]:
                claims.append(master["name"])
        if not answered:
            raise ChaosSchedulerError(f"no master answered: {'; '.join(errors)}")
        return {"leader": claims[0] if len(claims) == 1 else None, "since": None, "claims": claims}


def _metric_value(text: str, metric: str) -> Optional[float]:
    """The value of the first unlabelled-or-labelled sample of ``metric`` in a Prometheus text page."""
    pattern = re.compile(rf"^{re.escape(metric)}(?:\{{[^}}]*\}})?\s+(\S+)")
    for line in text.splitlines():
        found = pattern.match(line)
        if found:
            try:
                return float(found.group(1))
            except ValueError:
                return None
    return None
