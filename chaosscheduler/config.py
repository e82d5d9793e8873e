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
    chaosscheduler_poll_interval      seconds between probe polls, default 0.01
    prometheus_base_url               Prometheus for the metrics forms of the probes (shared with
                                      chaostoolkit-prometheus)
"""

import dataclasses
import ipaddress
import os
import re
import socket
import uuid
from typing import Any, Dict, List, Optional

from .errors import ConfigurationError
from .testbed.spec import ClusterSpec, NAME_RE, default_home

__all__ = ["Settings", "load", "current_run", "set_current_run", "PLATFORMS", "parse_hosts"]

PLATFORMS = ("testbed", "hosts", "kubernetes")
PREFIX = "chaosscheduler_"
KNOWN = {"platform", "cluster", "home", "testbed", "hosts", "kubernetes", "max_worker_share", "poll_interval"}

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
    poll = get("poll_interval", None, 0.01)
    if isinstance(poll, bool) or not isinstance(poll, (int, float)) or not 0.001 <= poll <= 10:
        raise ConfigurationError(f"chaosscheduler_poll_interval must be from 0.001 to 10 seconds, got {poll!r}")
    prometheus = config.get("prometheus_base_url") or ""
    if not isinstance(prometheus, str) or (prometheus and not re.match(r"^https?://[^\s/]+", prometheus)):
        raise ConfigurationError(f"prometheus_base_url must be an http(s) URL, got {prometheus!r}")
    hosts = get("hosts", None, None)
    if platform == "hosts":
        hosts = parse_hosts(hosts)
    elif hosts not in (None, {}):
        hosts = parse_hosts(hosts)  # validated even when unused, so a var file's mistake shows early
    else:
        hosts = None
    from .platforms.kubernetes_config import from_configuration as _kubernetes  # (platforms imports config)

    settings = Settings(platform=platform, cluster=cluster, home=os.path.abspath(home), testbed=dict(testbed),
                        max_worker_share=None if share is None else float(share), poll_interval=float(poll),
                        hosts=hosts, prometheus_base_url=prometheus.rstrip("/"),
                        kubernetes=_kubernetes(platform, get("kubernetes", None, None)))
    settings.cluster_spec()  # validate the testbed settings now, with the key named
    return settings


# ---------------------------------------------------------------------------------------------------- hosts
HOSTS_DOC = "docs/platforms.md"
ROLES = ("masters", "workers", "registry")
PROCESS_MATCH = ("pid_file", "pattern", "systemd_unit", "listen_port")
LEADER_SOURCES = ("http", "etcd", "zookeeper", "promql")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_UNIT = re.compile(r"^[A-Za-z0-9:_.@-]{1,255}$")
SSH_DEFAULTS = {"user": "root", "port": 22, "key_file": None, "key_secret": None, "password_secret": None,
                "known_hosts": None, "strict_host_keys": True, "timeout": 10.0, "sudo": False}
PROCESS_DEFAULTS = {"pid_file": None, "pattern": None, "systemd_unit": None, "listen_port": None,
                    "restart_command": None, "restart_timeout": 30.0}


def _fail(where: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"chaosscheduler_hosts.{where}: {message} (see {HOSTS_DOC})")


def _mapping(where: str, value: Any, allowed: Optional[set] = None) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(where, f"must be an object, got {value!r}")
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise _fail(where, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    return dict(value)


def _number(where: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _fail(where, f"must be a number from {low} to {high}, got {value!r}")
    return float(value)


def _port(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise _fail(where, f"must be a TCP port 1-65535, got {value!r}")
    return value


def _text(where: str, value: Any, allow_none: bool = True) -> Optional[str]:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value or "\0" in value or "\n" in value:
        raise _fail(where, f"must be a non-empty single-line string, got {value!r}")
    return value


def _secret_name(where: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not _SECRET_NAME.match(value):
        raise _fail(where, "must name a secret (the secret's key, not its value)")
    return value


def _argv(where: str, value: Any) -> Optional[List[str]]:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and "\0" not in a for a in value):
        raise _fail(where, f"must be an argv: a non-empty list of strings (never a shell string), got {value!r}")
    return list(value)


def _ssh(where: str, raw: Any, base: Dict[str, Any]) -> Dict[str, Any]:
    data = _mapping(where, raw, set(SSH_DEFAULTS))
    ssh = dict(base)
    for key, value in data.items():
        if key == "user":
            if not isinstance(value, str) or not re.match(r"^[a-z_][a-z0-9_.-]{0,31}$", value):
                raise _fail(f"{where}.user", f"must be a login name, got {value!r}")
        elif key == "port":
            value = _port(f"{where}.port", value)
        elif key in ("key_file", "known_hosts"):
            value = _text(f"{where}.{key}", value)
        elif key in ("key_secret", "password_secret"):
            value = _secret_name(f"{where}.{key}", value)
        elif key in ("strict_host_keys", "sudo"):
            if not isinstance(value, bool):
                raise _fail(f"{where}.{key}", f"must be true or false, got {value!r}")
        elif key == "timeout":
            value = _number(f"{where}.timeout", value, 0.1, 300)
        ssh[key] = value
    return ssh


def _process(where: str, raw: Any, base: Dict[str, Any]) -> Dict[str, Any]:
    data = _mapping(where, raw, set(PROCESS_DEFAULTS))
    process = dict(base)
    if any(k in data for k in PROCESS_MATCH):  # a node's own match replaces the shared one
        for key in PROCESS_MATCH:
            process[key] = None
    for key, value in data.items():
        if key in ("pid_file", "pattern"):
            value = _text(f"{where}.{key}", value)
            if key == "pattern" and value is not None:
                try:
                    re.compile(value)
                except re.error as e:
                    raise _fail(f"{where}.pattern", f"is not a regular expression: {e}") from e
        elif key == "systemd_unit":
            if value is not None and (not isinstance(value, str) or not _UNIT.match(value)):
                raise _fail(f"{where}.systemd_unit", f"must be a unit name, got {value!r}")
        elif key == "listen_port":
            value = None if value is None else _port(f"{where}.listen_port", value)
        elif key == "restart_command":
            value = _argv(f"{where}.restart_command", value)
        elif key == "restart_timeout":
            value = _number(f"{where}.restart_timeout", value, 0.1, 3600)
        process[key] = value
    return process


def _address(where: str, host: str, value: Any) -> str:
    if value is None:
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        try:
            return socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0]
        except OSError as e:
            raise _fail(f"{where}.address", f"{host!r} does not resolve ({e}); give the node's IP as 'address'") from e
    try:
        return str(ipaddress.ip_address(value))
    except (ValueError, TypeError) as e:
        raise _fail(f"{where}.address", f"must be an IP address (firewall rules name addresses), got {value!r}") from e


def _node(where: str, raw: Any, ssh: Dict[str, Any], process: Dict[str, Any], role: str) -> Dict[str, Any]:
    allowed = {"name", "host", "address", "ssh", "process", "slots", "metrics_instance"}
    data = _mapping(where, raw, allowed)
    name = data.get("name")
    if not isinstance(name, str) or not _NODE_NAME.match(name):
        raise _fail(f"{where}.name", f"must be a node name (letters, digits, '.', '_', '-'), got {name!r}")
    host = _text(f"{where}.host", data.get("host"), allow_none=False)
    node = {"name": name, "host": host, "address": _address(where, host, data.get("address")),
            "ssh": _ssh(f"{where}.ssh", data.get("ssh"), ssh),
            "metrics_instance": _text(f"{where}.metrics_instance", data.get("metrics_instance"))}
    if role == "masters":
        node["process"] = _process(f"{where}.process", data.get("process"), process)
        if not any(node["process"][k] for k in PROCESS_MATCH):
            raise _fail(f"{where}.process", f"needs one of {', '.join(PROCESS_MATCH)} to find the master's process")
        if sum(1 for k in PROCESS_MATCH if node["process"][k]) > 1:
            raise _fail(f"{where}.process", f"give exactly one of {', '.join(PROCESS_MATCH)}")
    if role == "workers":
        node["slots"] = int(_number(f"{where}.slots", data.get("slots", 1), 1, 100000)) if "slots" in data else None
    return node


def parse_hosts(raw: Any) -> Dict[str, Any]:
    """Validate the ``chaosscheduler_hosts`` description and return it normalised (every default filled in), as the
    JSON the ledger stores to rebuild the platform. Secret *values* never appear in it: only secret names."""
    allowed = {"masters", "workers", "registry", "ssh", "process", "leader", "metrics", "connect_netns",
               "same_clock", "exempt_tcp_ports", "slots"}
    data = _mapping("", raw, allowed) if raw is not None else {}
    if not data:
        raise ConfigurationError(f"chaosscheduler_platform 'hosts' needs chaosscheduler_hosts: an object listing "
                                 f"masters and workers with their hosts (see {HOSTS_DOC})")
    ssh = _ssh("ssh", data.get("ssh"), SSH_DEFAULTS)
    process = _process("process", data.get("process"), PROCESS_DEFAULTS)
    out: Dict[str, Any] = {"ssh": ssh}
    seen: Dict[str, str] = {}
    for role in ROLES:
        items = data.get(role) or []
        if not isinstance(items, list):
            raise _fail(role, f"must be a list of nodes, got {items!r}")
        nodes = [_node(f"{role}[{i}]", item, ssh, process, role) for i, item in enumerate(items)]
        for node in nodes:
            if node["name"] in seen:
                raise _fail(role, f"node name {node['name']!r} is used twice ({seen[node['name']]} and {role})")
            seen[node["name"]] = role
        out[role] = nodes
    if not out["masters"]:
        raise _fail("masters", "the description needs at least one master")
    netns = data.get("connect_netns")
    if netns is not None and (not isinstance(netns, str) or not re.match(r"^[A-Za-z0-9._-]{1,64}$", netns)):
        raise _fail("connect_netns", f"must name a network namespace of this machine, got {netns!r}")
    out["connect_netns"] = netns
    same_clock = data.get("same_clock", False)
    if not isinstance(same_clock, bool):
        raise _fail("same_clock", f"must be true or false, got {same_clock!r}")
    out["same_clock"] = same_clock
    ports = data.get("exempt_tcp_ports")
    if ports is None:
        ports = sorted({n["ssh"]["port"] for role in ROLES for n in out[role]})
    if not isinstance(ports, list):
        raise _fail("exempt_tcp_ports", f"must be a list of TCP ports, got {ports!r}")
    out["exempt_tcp_ports"] = [_port("exempt_tcp_ports", p) for p in ports]
    out["slots"] = int(_number("slots", data.get("slots", 4), 1, 100000))
    out["leader"] = _leader(data.get("leader"))
    out["metrics"] = _metrics(data.get("metrics"))
    return out


def _leader(raw: Any) -> Dict[str, Any]:
    data = _mapping("leader", raw)
    source = data.get("source")
    if source not in LEADER_SOURCES:
        raise _fail("leader.source", f"must be one of {', '.join(LEADER_SOURCES)}, got {source!r}")
    from .platforms.leader import validate  # each source validates its own options

    try:
        return validate(data)
    except ConfigurationError as e:
        raise _fail("leader", str(e)) from e


def _metrics(raw: Any) -> Dict[str, Any]:
    allowed = {"queries", "scrape_interval", "timeout", "token_secret", "headers", "lookback"}
    data = _mapping("metrics", raw, allowed)
    queries = _mapping("metrics.queries", data.get("queries"))
    for key, value in queries.items():
        _text(f"metrics.queries.{key}", value, allow_none=False)
    from .metrics.forms import DEFAULT_QUERIES

    unknown = sorted(set(queries) - set(DEFAULT_QUERIES))
    if unknown:
        raise _fail("metrics.queries", f"unknown query name(s) {', '.join(unknown)}; known: "
                                       f"{', '.join(sorted(DEFAULT_QUERIES))}")
    headers = _mapping("metrics.headers", data.get("headers"))
    for key, value in headers.items():
        if not re.match(r"^[A-Za-z0-9-]{1,64}$", str(key)) or not isinstance(value, str):
            raise _fail("metrics.headers", "must map header names to strings (put tokens in token_secret)")
    interval = data.get("scrape_interval")
    return {"queries": dict(queries),
            "scrape_interval": None if interval is None else _number("metrics.scrape_interval", interval, 0.1, 3600),
            "timeout": _number("metrics.timeout", data.get("timeout", 5.0), 0.1, 300),
            "token_secret": _secret_name("metrics.token_secret", data.get("token_secret")),
            "headers": headers,
            "lookback": _number("metrics.lookback", data.get("lookback", 3600.0), 60, 31 * 86400)}
