"""How hard and how wide we press on a platform: the probes' poll interval and the fan-out's width, per platform.

Polite polling: a probe polls the platform every ``chaosscheduler_poll_interval`` seconds. Against the embedded
cluster (Unix sockets on this machine) the default is 10 ms; against a platform someone runs in production (SSH hosts
and their leader source, a Kubernetes API server) the default keeps every probe at or under :data:`MAX_RATE`
requests per second: ``requests per poll / MAX_RATE`` seconds, at least 0.3 s (so a probe's few fixed requests fit
under the limit too). Accuracy need not suffer: where the platform keeps its own timestamp of what a probe waits
for (a leader source's ``since``, a worker's declaration of death, a scrape's timestamp), the probe reads that
timestamp, and the poll interval only decides how soon it is seen. Where it keeps none, the probe states the poll interval in its resolution.

The fan-out width (``chaosscheduler_concurrency``): how many hosts a fault talks to at once (see
:mod:`chaosscheduler.hosts.fanout`). A partition starts at one moment only when every target fits in one wave.

Both keys accept a number, a numeric string (what a Chaos Toolkit ``env`` configuration entry gives), or null /
absent / "" / "default" for the platform's default.
"""

import math
from typing import Any, Dict, Optional

from .errors import ConfigurationError

__all__ = ["MAX_RATE", "POLL_BOUNDS", "parse_interval", "parse_concurrency", "default_poll_interval",
           "requests_per_poll", "default_concurrency", "CONCURRENCY"]

MAX_RATE = 5.0                 # requests per second a probe may send to a platform we do not own
FLOOR = 0.3                    # the shortest default interval on such a platform (seconds)
FAST = 0.01                    # the embedded cluster: Unix sockets on this machine
POLL_BOUNDS = (0.001, 60.0)
CONCURRENCY = {"testbed": 32, "hosts": 128, "kubernetes": 16}
_DEFAULT_WORDS = ("", "default", "auto", "null", "none")


def _number(key: str, value: Any, kind: type) -> Optional[Any]:
    """None for "the platform's default", else the number ``value`` holds (a string from an env entry too)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _DEFAULT_WORDS):
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{key} must be a number or null (the platform's default), got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigurationError(f"{key} must be a number or null (the platform's default), got "
                                     f"{value!r}") from None
    if not isinstance(value, (int, float)) or value != value:
        raise ConfigurationError(f"{key} must be a number or null (the platform's default), got {value!r}")
    try:
        finite = math.isfinite(float(value))
    except OverflowError:  # an integer beyond any float
        finite = False
    if not finite:
        raise ConfigurationError(f"{key} is out of range: a finite number or null (the platform's default) is needed")
    if kind is int:
        if int(value) != value:
            raise ConfigurationError(f"{key} must be a whole number of hosts, got {value!r}")
        return int(value)
    return float(value)


def parse_interval(value: Any) -> Optional[float]:
    """``chaosscheduler_poll_interval``: seconds from 0.001 to 60, or None for the platform's default."""
    seconds = _number("chaosscheduler_poll_interval", value, float)
    low, high = POLL_BOUNDS
    if seconds is not None and not low <= seconds <= high:
        raise ConfigurationError(f"chaosscheduler_poll_interval must be from {low} to {high:g} seconds (or null for "
                                 f"the platform's default), got {value!r}")
    return seconds


def parse_concurrency(value: Any) -> Optional[int]:
    """``chaosscheduler_concurrency``: hosts at once, 1 to 1024, or None for the platform's default."""
    width = _number("chaosscheduler_concurrency", value, int)
    if width is not None and not 1 <= width <= 1024:
        raise ConfigurationError(f"chaosscheduler_concurrency must be from 1 to 1024 hosts at once (or null for the "
                                 f"platform's default), got {value!r}")
    return width


def requests_per_poll(platform: str, hosts: Optional[Dict[str, Any]] = None,
                      kubernetes: Optional[Dict[str, Any]] = None) -> int:
    """Requests one poll of the costliest probe sends: the leader probe's source (an HTTP ``self`` source asks every
    master; a ZooKeeper election lists the candidates, then reads the first), the worker probes' one query."""
    if platform == "hosts" and hosts:
        leader = hosts.get("leader") or {}
        if leader.get("source") == "http" and leader.get("mode") == "self":
            return max(1, len(hosts.get("masters") or []))
        if leader.get("source") == "zookeeper" and leader.get("mode", "election") == "election":
            return 2
    return 1


def default_poll_interval(platform: str, hosts: Optional[Dict[str, Any]] = None,
                          kubernetes: Optional[Dict[str, Any]] = None) -> float:
    """The platform's default poll interval: 10 ms on the embedded cluster, else at most :data:`MAX_RATE` requests
    per second per probe."""
    if platform == "testbed":
        return FAST
    return round(max(FLOOR, requests_per_poll(platform, hosts, kubernetes) / MAX_RATE), 3)


def default_concurrency(platform: str) -> int:
    return CONCURRENCY.get(platform, 32)
