"""The one place that reads an experiment's ``configuration`` into typed settings.

Keys (all optional; environment variables give the defaults so one experiment file serves every target)::

    chaosscheduler_platform           "testbed" (default, env CHAOSSCHEDULER_PLATFORM) or "hosts"
    chaosscheduler_cluster            embedded cluster name, default "default" (env CHAOSSCHEDULER_CLUSTER)
    chaosscheduler_home               state home: ledger, clusters (env CHAOSSCHEDULER_HOME)
    chaosscheduler_testbed            settings of the embedded cluster the control starts (see ClusterSpec)
    chaosscheduler_hosts              the platform description for "hosts" (see HOSTS_DOC and docs/platforms.md)
    chaosscheduler_kubernetes         the platform description for "kubernetes" (see docs/kubernetes.md)
    chaosscheduler_max_worker_share   largest share of workers a drop partition/isolation may cut off;
                                      default: all but one worker must stay reachable
    chaosscheduler_poll_interval      seconds between probe polls; null/absent = the platform's default (0.01 on
                                      the embedded cluster, <= 5 requests/s per probe elsewhere: see pacing.py);
                                      a number or a numeric string (env CHAOSSCHEDULER_POLL_INTERVAL)
    chaosscheduler_concurrency        hosts a fault talks to at once; null/absent = the platform's default
                                      (testbed 32, hosts 128, kubernetes 16; env CHAOSSCHEDULER_CONCURRENCY)
    chaosscheduler_witness            the witness workload: rate, duration, submitter... or false (docs/witness.md)
    prometheus_base_url               Prometheus for the metrics forms of the probes (shared with
                                      chaostoolkit-prometheus)
"""

import dataclasses
import os
import re
import uuid
from typing import Any, Dict, Optional

from . import pacing
from .errors import ConfigurationError
from .testbed.spec import ClusterSpec, NAME_RE, default_home

__all__ = ["Settings", "load", "current_run", "set_current_run", "PLATFORMS"]

PLATFORMS = ("testbed", "hosts", "kubernetes")
PREFIX = "chaosscheduler_"
KNOWN = {"platform", "cluster", "home", "testbed", "hosts", "kubernetes", "max_worker_share", "poll_interval",
         "concurrency", "witness"}

# Faults are attributed to a run. The control sets one per experiment; without the control every process is its own
# run, so probes never mistake an earlier run's fault for this one's.
_PROCESS_RUN = f"process-{os.getpid()}-{uuid.uuid4().hex[:8]}"
_current_run: Optional[str] = None


def current_run() -> str:
    return _current_run or _PROCESS_RUN


def set_current_run(run_id: Optional[str]) -> None:
    global _current_run
    _current_run = run_id


@dataclasses.dataclass(frozen=True)
class Settings:
    platform: str
    cluster: str
    home: str
    testbed: Dict[str, Any]
    max_worker_share: Optional[float]
    poll_interval: float
    hosts: Optional[Dict[str, Any]] = None        # the validated, normalised description (no secret values)
    prometheus_base_url: str = ""
    kubernetes: Optional[Dict[str, Any]] = None   # the validated chaosscheduler_kubernetes (docs/kubernetes.md)
    concurrency: int = 32                         # hosts a fault talks to at once (pacing.py)
    poll_interval_default: bool = False           # poll_interval is the platform's default, not configured
    witness: Optional[Dict[str, Any]] = None      # the validated chaosscheduler_witness (docs/witness.md)

    def cluster_spec(self) -> ClusterSpec:
        """The embedded cluster these settings describe (validated)."""
        fields = dict(self.testbed)
        fields["name"] = self.cluster
        fields["home"] = self.home
        return ClusterSpec.from_dict(fields)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def load(configuration: Optional[Dict[str, Any]] = None) -> Settings:
    """Read and validate the chaosscheduler keys of ``configuration``; raise ConfigurationError naming the key."""
    config = configuration or {}
    if not isinstance(config, dict):
        raise ConfigurationError(f"configuration must be a mapping, got {type(config).__name__}")
    unknown = sorted(k for k in config if isinstance(k, str) and k.startswith(PREFIX) and k[len(PREFIX):] not in KNOWN)
    if unknown:
        raise ConfigurationError(f"unknown configuration key(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(PREFIX + k for k in sorted(KNOWN))}")

    def get(key: str, env: Optional[str], default: Any) -> Any:
        if PREFIX + key in config:
            return config[PREFIX + key]
        if env and os.environ.get(env):
            return os.environ[env]
        return default

    platform = get("platform", "CHAOSSCHEDULER_PLATFORM", "testbed")
    if platform not in PLATFORMS:
        raise ConfigurationError(f"chaosscheduler_platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")
    cluster = get("cluster", "CHAOSSCHEDULER_CLUSTER", "default")
    if not isinstance(cluster, str) or not NAME_RE.match(cluster):
        raise ConfigurationError(f"chaosscheduler_cluster must be 1-12 lowercase letters or digits starting with a "
                                 f"letter, got {cluster!r}")
    home = get("home", None, "") or default_home()
    if not isinstance(home, str) or "\0" in home:
        raise ConfigurationError(f"chaosscheduler_home must be a directory path, got {home!r}")
    testbed = get("testbed", None, {}) or {}
    if not isinstance(testbed, dict):
        raise ConfigurationError(f"chaosscheduler_testbed must be a mapping of cluster settings, got {testbed!r}")
    share = get("max_worker_share", None, None)
    if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1):
        raise ConfigurationError(f"chaosscheduler_max_worker_share must be a number in (0, 1], got {share!r}")
    poll = pacing.parse_interval(get("poll_interval", "CHAOSSCHEDULER_POLL_INTERVAL", None))
    width = pacing.parse_concurrency(get("concurrency", "CHAOSSCHEDULER_CONCURRENCY", None))
    prometheus = config.get("prometheus_base_url") or ""
    if not isinstance(prometheus, str) or (prometheus and not re.match(r"^https?://[^\s/]+", prometheus)):
        raise ConfigurationError(f"prometheus_base_url must be an http(s) URL, got {prometheus!r}")
    from .platforms.hosts_config import parse_hosts  # (platforms imports config)

    hosts = get("hosts", None, None)
    if platform == "hosts":
        hosts = parse_hosts(hosts)
    elif hosts not in (None, {}):
        hosts = parse_hosts(hosts)  # validated even when unused, so a var file's mistake shows early
    else:
        hosts = None
    from .platforms.kubernetes_config import from_configuration as _kubernetes  # (platforms imports config)

    from .witness.options import parse as _witness  # validated now, so a var file's mistake shows at once

    kubernetes = _kubernetes(platform, get("kubernetes", None, None))
    settings = Settings(platform=platform, cluster=cluster, home=os.path.abspath(home), testbed=dict(testbed),
                        max_worker_share=None if share is None else float(share),
                        poll_interval=poll if poll is not None else pacing.default_poll_interval(platform, hosts,
                                                                                                 kubernetes),
                        hosts=hosts, prometheus_base_url=prometheus.rstrip("/"), kubernetes=kubernetes,
                        concurrency=width or pacing.default_concurrency(platform), poll_interval_default=poll is None,
                        witness=_witness(get("witness", None, None), platform))
    settings.cluster_spec()  # validate the testbed settings now, with the key named
    return settings
