"""A small Prometheus HTTP API client (``requests`` directly: chaostoolkit-prometheus has no timeout and no auth).

``query`` evaluates an instant vector, ``series`` returns the raw samples of an expression over a time range
(``query_range`` at a step of the scrape interval), ``scrape_interval`` is the resolution every answer inherits.
"""

import time
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ChaosSchedulerError, ConfigurationError
from .transport import session

__all__ = ["Prometheus", "PrometheusError", "Series"]

Series = Tuple[Dict[str, str], List[Tuple[float, float]]]  # (labels, [(timestamp, value)])


class PrometheusError(ChaosSchedulerError):
    """Prometheus could not be reached, refused the query, or answered something unexpected."""


class Prometheus:
    def __init__(self, base_url: str, timeout: float = 5.0, headers: Optional[Dict[str, str]] = None,
                 token: Optional[str] = None, netns: Optional[str] = None, scrape_interval: Optional[float] = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.netns = netns
        self._interval = scrape_interval

    def __repr__(self) -> str:  # never shows the headers: they may hold a token
        return f"Prometheus({self.base_url!r})"

    def _get(self, path: str, params: Dict[str, Any]) -> Any:
        url = self.base_url + path
        try:
            response = session(self.netns).get(url, params=params, headers=self.headers, timeout=self.timeout)
        except Exception as e:
            raise PrometheusError(f"Prometheus at {self.base_url} unreachable: {e}") from None
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {self.base_url} answered {response.status_code} without JSON "
                                  f"(wrong prometheus_base_url or missing auth?)") from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused {params.get('query', path)!r}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: Optional[float] = None) -> List[Tuple[Dict[str, str], float, float]]:
        """An instant query: ``[(labels, sample time, value)]`` (scalars come back with empty labels)."""
        params: Dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "vector":
            return [(r["metric"], float(r["value"][0]), float(r["value"][1])) for r in data["result"]]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][0]), float(data["result"][1]))]
        raise PrometheusError(f"{expr!r} is a {data['resultType']}, not an instant vector")

    def series(self, expr: str, start: float, end: float, step: Optional[float] = None) -> List[Series]:
        """``expr`` evaluated every ``step`` seconds (default: the scrape interval) from ``start`` to ``end``."""
        step = step or self.scrape_interval()
        end = max(end, start)
        step = max(step, (end - start) / 10000.0)  # Prometheus refuses more than 11,000 points per series
        data = self._get("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                  "step": f"{step:.3f}"})
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def scrape_interval(self) -> float:
        """The shortest scrape interval among the active targets (the resolution of every metric answer)."""
        if self._interval is None:
            data = self._get("/api/v1/targets", {"state": "active"})
            intervals = [_seconds(t.get("scrapeInterval", "")) for t in data.get("activeTargets", [])]
            intervals = [i for i in intervals if i]
            if not intervals:
                config = self._get("/api/v1/status/config", {}).get("yaml", "")
                intervals = [_seconds(line.split(":", 1)[1].strip()) for line in config.splitlines()
                             if line.strip().startswith("scrape_interval:")]
                intervals = [i for i in intervals if i]
            self._interval = min(intervals) if intervals else 15.0
        return self._interval

    def wait_for(self, expr: str, timeout: float, interval: float = 0.1) -> List[Tuple[Dict[str, str], float, float]]:
        """Poll until ``expr`` returns at least one sample (e.g. the first scrape after start-up)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                result = self.query(expr)
                if result:
                    return result
            except PrometheusError as e:
                last = e
            if time.monotonic() > deadline:
                raise PrometheusError(f"{expr!r} has no sample after {timeout} s" + (f" ({last})" if last else ""))
            time.sleep(interval)


def _seconds(text: str) -> Optional[float]:
    """Prometheus durations: "1s", "500ms", "1m30s"."""
    import re

    total, found = 0.0, False
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text or ""):
        found = True
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return total if found else None


def for_description(base_url: str, metrics: Dict[str, Any], secrets: Dict[str, Any], key: str,
                    netns: Optional[str] = None) -> "Prometheus":
    """The client a platform description's ``metrics`` block asks for; its bearer token comes from the activity's
    secrets by name (``token_secret``), never from the description itself."""
    token = None
    if metrics.get("token_secret"):
        token = secrets.get(metrics["token_secret"])
        if not token:
            raise ConfigurationError(f"{key}.metrics.token_secret: secret {metrics['token_secret']!r} is not "
                                     f"among this activity's secrets")
    return Prometheus(base_url, timeout=metrics["timeout"], headers=metrics["headers"], token=token, netns=netns,
                      scrape_interval=metrics.get("scrape_interval"))
