"""Leader from an etcd key or election prefix, read through etcd's JSON gateway (``POST /v3/kv/range``: no gRPC
client needed, and it goes through the same connections as every other call).

* ``mode: "key"`` (default): one key names the leader, e.g. the embedded cluster's ``/cs/leader`` holding
  ``{"name": ..., "since": ...}``: ``{"source": "etcd", "key": "/cs/leader", "json_path": "name",
  "since_path": "since"}``.
* ``mode: "election"``: the etcd election recipe (``etcdctl elect``, ``concurrency.Election``): every candidate
  puts a key under the prefix; the one with the lowest create revision leads; its value names it.

``endpoints`` default to the registry nodes on port 2379. Resolution: the poll interval plus one request.
"""

import base64
import json
from typing import Any, Dict, List, Optional

from ...errors import ChaosSchedulerError, ConfigurationError
from ...metrics.transport import session
from . import LeaderSource, json_path, match_master

MODES = ("key", "election")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


class Source(LeaderSource):
    kind = "etcd"
    OPTIONS = {"key": "required", "mode": "key", "endpoints": None, "json_path": "", "since_path": None,
               "names": None, "timeout": 1.0}

    @classmethod
    def check(cls, options: Dict[str, Any]) -> Dict[str, Any]:
        out = super().check(options)
        if not isinstance(out["key"], str) or not out["key"]:
            raise ConfigurationError(f"leader.key must be an etcd key or prefix, got {out['key']!r}")
        if out["mode"] not in MODES:
            raise ConfigurationError(f"leader.mode must be one of {', '.join(MODES)}, got {out['mode']!r}")
        endpoints = out["endpoints"]
        if endpoints is not None and (not isinstance(endpoints, list)
                                      or not all(isinstance(e, str) and e.startswith("http") for e in endpoints)):
            raise ConfigurationError("leader.endpoints must be a list of http(s)://host:port URLs")
        return out

    def _endpoints(self) -> List[str]:
        if self.options["endpoints"]:
            return list(self.options["endpoints"])
        if not self.env.registry:
            raise ChaosSchedulerError("leader source 'etcd' needs 'endpoints' or registry nodes")
        return [f"http://{n['address']}:2379" for n in self.env.registry]

    def _range(self) -> Dict[str, Any]:
        key = self.options["key"]
        body = {"key": _b64(key)}
        if self.options["mode"] == "election":
            prefix = key if key.endswith("/") else key + "/"
            body = {"key": _b64(prefix), "range_end": _prefix_end(prefix), "sort_order": "ASCEND",
                    "sort_target": "CREATE", "limit": 1}
        errors = []
        for endpoint in self._endpoints():
            try:
                response = session(self.env.netns).post(endpoint.rstrip("/") + "/v3/kv/range", json=body,
                                                         timeout=self.options["timeout"])
                if response.status_code == 200:
                    return response.json()
                errors.append(f"{endpoint}: {response.status_code}")
            except Exception as e:
                errors.append(f"{endpoint}: {e}")
        raise ChaosSchedulerError(f"no etcd endpoint answered: {'; '.join(errors)}")

    def read(self) -> Dict[str, Any]:
        kvs = self._range().get("kvs") or []
        if not kvs:
            return {"leader": None, "since": None}
        raw = base64.b64decode(kvs[0].get("value", "")).decode(errors="replace")
        document: Any = raw
        if self.options["json_path"] or self.options["since_path"]:
            try:
                document = json.loads(raw)
            except ValueError:
                raise ChaosSchedulerError(f"the value of {self.options['key']} is not JSON") from None
        value = json_path(document, self.options["json_path"]) if self.options["json_path"] else raw
        since: Optional[Any] = json_path(document, self.options["since_path"]) if self.options["since_path"] else None
        return {"leader": match_master(value, self.env.masters, self.options["names"]),
                "since": since if isinstance(since, (int, float)) else None,
                "term": int(kvs[0].get("create_revision", 0)) or None}
