"""Leader sources: who leads right now, on platforms that are not the embedded cluster.

One small module per source, each behind :class:`LeaderSource`:

=============  ==========================================================================  ===========================
source         reads                                                                       resolution
=============  ==========================================================================  ===========================
``http``       each master's HTTP endpoint + a JSON path (or a metric in its /metrics)       poll interval + one request
``etcd``       an etcd key (``/cs/leader``) or election prefix, through etcd's JSON gateway  poll interval + one request
``zookeeper``  a ZooKeeper election/lock path (lowest sequence leads) or a leader znode      poll interval + one request
``promql``     a PromQL query (``scheduler_is_leader == 1``) on Prometheus                  the scrape interval
``command``    an argv on each master's host (or once), its exit status / output / JSON     poll interval + commands
=============  ==========================================================================  ===========================

Every answer is ``{"leader": master name or None, "since": its own timestamp or None, "claims": [masters that
claim to lead, when the source can tell], "resolution": seconds, "leader_source": kind}``.
"""

import abc
import dataclasses
import importlib
import time
from typing import Any, Dict, List, Optional

from ...errors import ChaosSchedulerError, ConfigurationError

__all__ = ["LeaderSource", "SourceEnv", "validate", "build", "match_master", "json_path", "SOURCES"]

SOURCES = {"http": "http", "etcd": "etcd", "zookeeper": "zookeeper", "promql": "promql", "command": "command"}


@dataclasses.dataclass
class SourceEnv:
    """What a source may use: the masters (normalised node dicts), the local namespace connections are opened from,
    the activity's secrets, a Prometheus client, the probes' poll interval, and a command runner
    (:class:`chaosscheduler.platforms.commands.Runner`, on the hosts platform)."""

    masters: List[Dict[str, Any]]
    registry: List[Dict[str, Any]]
    netns: Optional[str] = None
    secrets: Optional[Dict[str, Any]] = None
    prometheus: Any = None
    poll_interval: float = 0.01
    runner: Any = None


class LeaderSource(abc.ABC):
    kind = ""
    OPTIONS: Dict[str, Any] = {}  # option -> default; "required" marks a mandatory option

    def __init__(self, options: Dict[str, Any], env: SourceEnv):
        self.options = options
        self.env = env
        self.last_latency = 0.0

    @classmethod
    def refuse_unknown(cls, options: Dict[str, Any]) -> None:
        """Raise ConfigurationError naming the options this source does not know."""
        unknown = sorted(set(options) - set(cls.OPTIONS) - {"source"})
        if unknown:
            raise ConfigurationError(f"unknown option(s) {', '.join(unknown)} for leader source {cls.kind!r}; "
                                     f"known: {', '.join(sorted(cls.OPTIONS))}")

    @classmethod
    def check(cls, options: Dict[str, Any]) -> Dict[str, Any]:
        """Validate and normalise the options (defaults filled in); raise ConfigurationError naming the option."""
        cls.refuse_unknown(options)
        out = {"source": cls.kind}
        for key, default in cls.OPTIONS.items():
            if default == "required" and key not in options:
                raise ConfigurationError(f"leader source {cls.kind!r} needs option {key!r}")
            out[key] = options.get(key, None if default == "required" else default)
        return out

    @abc.abstractmethod
    def read(self) -> Dict[str, Any]:
        """``{"leader", "since", "claims"}`` from the source (may raise ChaosSchedulerError)."""

    def resolution(self) -> float:
        return self.env.poll_interval + self.last_latency

    def leader(self) -> Dict[str, Any]:
        started = time.monotonic()
        try:
            answer = self.read()
            error = None
        except ChaosSchedulerError as e:
            answer, error = {"leader": None, "since": None, "claims": []}, str(e)
        self.last_latency = time.monotonic() - started
        answer.setdefault("since", None)
        answer.setdefault("claims", [answer["leader"]] if answer.get("leader") else [])
        answer.update(leader_source=self.kind, resolution=round(self.resolution(), 6))
        if error:
            answer["errors"] = [error]
        return answer

    def close(self) -> None:
        pass


def _class(kind: str) -> type:
    if kind not in SOURCES:
        raise ConfigurationError(f"leader source must be one of {', '.join(SOURCES)}, got {kind!r}")
    module = importlib.import_module(f"{__name__}.{SOURCES[kind]}")
    return module.Source


def validate(options: Dict[str, Any]) -> Dict[str, Any]:
    return _class(options.get("source")).check(options)


def build(options: Dict[str, Any], env: SourceEnv) -> LeaderSource:
    return _class(options["source"])(options, env)


def json_path(document: Any, path: str) -> Any:
    """``"a.b.0.c"`` into nested dicts/lists; "" is the document itself; None when a step is missing."""
    value = document
    for step in [s for s in (path or "").split(".") if s]:
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def match_master(value: Any, masters: List[Dict[str, Any]], names: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The master a source's answer means: through ``names`` (answer -> master name) if given, else the master whose
    name, host, address, ``metrics_instance``, or ``host:port``/``address:port`` matches."""
    if value is None or value == "":
        return None
    text = str(value)
    if names:
        return names.get(text)
    bare = text.split("//", 1)[-1].split("/", 1)[0]
    if bare.startswith("["):  # [IPv6]:port
        host = bare[1:].split("]", 1)[0]
    else:
        host = bare.rsplit(":", 1)[0] if bare.count(":") == 1 else bare
    for master in masters:
        if text in (master["name"], master.get("metrics_instance")) or host in (master["host"], master["address"]):
            return master["name"]
    return None


def expand(template: str, node: Dict[str, Any]) -> str:
    """``{name}``, ``{host}`` and ``{address}`` of ``node`` in ``template`` (nothing else is interpreted)."""
    address = node["address"]
    return (template.replace("{name}", node["name"]).replace("{host}", node["host"])
            .replace("{address}", f"[{address}]" if ":" in address and "{address}" in template and "//" in template
                     else address))
