"""The ``chaosscheduler_hosts`` description of a platform on SSH hosts: validated and normalised (every default
filled in), as the JSON the ledger stores to rebuild the platform. Pure: no connection is made. Secret *values*
never appear in it, only secret names. docs/platforms.md describes every key."""

import ipaddress
import re
import socket
from typing import Any, Dict

from ..errors import ConfigurationError
from .schema import Schema

__all__ = ["parse_hosts", "HOSTS_DOC", "ROLES", "PROCESS_MATCH", "LEADER_SOURCES", "COMMAND_SOURCES"]

HOSTS_DOC = "docs/platforms.md"
ROLES = ("masters", "workers", "registry")
PROCESS_MATCH = ("pid_file", "pattern", "systemd_unit", "listen_port")
LEADER_SOURCES = ("http", "etcd", "zookeeper", "promql", "command")
# command sources of chaosscheduler_hosts.commands -> (extra keys with their defaults, rules among them)
COMMAND_SOURCES = {
    "workers": ({"dead": None, "unhealthy": None}, ("dead", "unhealthy")),
    "tasks": ({"running": None, "unhealthy": None}, ("running", "unhealthy")),
    "declarations": ({}, ()),
}
HEARTBEAT_TO = ("registry", "masters")  # who decides a worker is dead: a registry (etcd, ZooKeeper) or the masters
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_UNIT = re.compile(r"^[A-Za-z0-9:_.@-]{1,255}$")
SSH_DEFAULTS = {"user": "root", "port": 22, "key_file": None, "key_secret": None, "password_secret": None,
                "known_hosts": None, "strict_host_keys": True, "timeout": 10.0, "sudo": False}
PROCESS_DEFAULTS = {"pid_file": None, "pattern": None, "systemd_unit": None, "listen_port": None,
                    "restart_command": None, "restart_timeout": 30.0}
_schema = Schema("chaosscheduler_hosts", HOSTS_DOC)
_fail, _mapping, _number, _port = _schema.fail, _schema.mapping, _schema.number, _schema.port
_text, _secret_name, _argv = _schema.text, _schema.secret_name, _schema.argv


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


def _node(where: str, raw: Any, ssh: Dict[str, Any], process: Dict[str, Any], role: str,
          worker_process: Any = None) -> Dict[str, Any]:
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
        if data.get("process") is not None or worker_process is not None:  # workers are managed like masters
            node["process"] = _process(f"{where}.process", data.get("process"), worker_process or PROCESS_DEFAULTS)
            if not any(node["process"][k] for k in PROCESS_MATCH):
                raise _fail(f"{where}.process", f"needs one of {', '.join(PROCESS_MATCH)} to find the worker's "
                                                f"process")
            if sum(1 for k in PROCESS_MATCH if node["process"][k]) > 1:
                raise _fail(f"{where}.process", f"give exactly one of {', '.join(PROCESS_MATCH)}")
    return node


def parse_hosts(raw: Any) -> Dict[str, Any]:
    """Validate the ``chaosscheduler_hosts`` description and return it normalised (every default filled in), as the
    JSON the ledger stores to rebuild the platform. Secret *values* never appear in it: only secret names."""
    allowed = {"masters", "workers", "registry", "ssh", "process", "worker_process", "leader", "metrics",
               "commands", "connect_netns", "same_clock", "exempt_tcp_ports", "slots", "heartbeat_to"}
    data = _mapping("", raw, allowed) if raw is not None else {}
    if not data:
        raise ConfigurationError(f"chaosscheduler_platform 'hosts' needs chaosscheduler_hosts: an object listing "
                                 f"masters and workers with their hosts (see {HOSTS_DOC})")
    ssh = _ssh("ssh", data.get("ssh"), SSH_DEFAULTS)
    process = _process("process", data.get("process"), PROCESS_DEFAULTS)
    worker_process = (_process("worker_process", data["worker_process"], PROCESS_DEFAULTS)
                      if data.get("worker_process") is not None else None)
    out: Dict[str, Any] = {"ssh": ssh}
    seen: Dict[str, str] = {}
    for role in ROLES:
        items = data.get(role) or []
        if not isinstance(items, list):
            raise _fail(role, f"must be a list of nodes, got {items!r}")
        nodes = [_node(f"{role}[{i}]", item, ssh, process, role, worker_process) for i, item in enumerate(items)]
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
    out["heartbeat_to"] = _schema.choice("heartbeat_to", data.get("heartbeat_to", "registry"), HEARTBEAT_TO)
    out["leader"] = _leader(data.get("leader"))
    out["metrics"] = _metrics(data.get("metrics"))
    out["commands"] = _commands(data.get("commands"), {n["name"] for role in ROLES for n in out[role]})
    return out


def _commands(raw: Any, names: set) -> Dict[str, Any]:
    """``commands``: the command sources (workers, tasks, declarations) and the worker-resume command."""
    from .commands import check_rule, check_source

    data = _mapping("commands", raw, set(COMMAND_SOURCES) | {"resume_worker", "restore_timeout"})
    out: Dict[str, Any] = {}
    for kind, (extra, rules) in COMMAND_SOURCES.items():
        if data.get(kind) is None:
            out[kind] = None
            continue
        spec = check_source(f"commands.{kind}", data[kind], _fail, extra=extra)
        for rule in rules:
            spec[rule] = check_rule(f"commands.{kind}.{rule}", spec[rule], _fail)
        if spec["on"] not in ("masters", "every-master", "every-worker", "local") and spec["on"] not in names:
            raise _fail(f"commands.{kind}.on", f"must be masters, every-master, every-worker, local or a node "
                                               f"name, got {spec['on']!r}")
        out[kind] = spec
    resume = data.get("resume_worker")
    out["resume_worker"] = None if resume is None else check_source("commands.resume_worker", resume, _fail)
    out["restore_timeout"] = _number("commands.restore_timeout", data.get("restore_timeout", 60.0), 0, 3600)
    return out


def _leader(raw: Any) -> Dict[str, Any]:
    data = _mapping("leader", raw)
    source = data.get("source")
    if source not in LEADER_SOURCES:
        raise _fail("leader.source", f"must be one of {', '.join(LEADER_SOURCES)}, got {source!r}")
    from .leader import validate  # each source validates its own options

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
    from ..metrics.forms import DEFAULT_QUERIES

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
