"""The ``chaosscheduler_kubernetes`` description: validated, normalised (every default filled in), JSON as it is.

Pure: no API call. The ledger stores the normalised description in every fault's platform reference, so it never
holds a secret value (tokens are read from the environment, a kubeconfig or Chaos Toolkit secrets, by key).

Label selectors are written as ``kubectl`` takes them (``"app=scheduler-master,tier in (a,b),!canary"``) or as a
mapping of labels; :func:`parse_selector` turns either into the API's ``matchLabels``/``matchExpressions`` and the
canonical string the list calls take.
"""

import re
from typing import Any, Dict, List, Optional

from ..errors import ConfigurationError
from .schema import Schema

__all__ = ["parse_kubernetes", "parse_selector", "negated_requirements", "KILL_MODES", "NETWORK_MODES",
           "LEADER_SOURCES", "KEY", "DOC"]

KEY = "chaosscheduler_kubernetes"
DOC = "docs/kubernetes.md"
KILL_MODES = ("delete-pod", "exec-kill")
NETWORK_MODES = ("auto", "chaos-mesh", "networkpolicy", "exec-nft")
WORKER_STATUS = ("auto", "metrics", "pods")
LEADER_SOURCES = ("lease", "promql", "http")
ROLES = ("masters", "workers", "registry")
DEFAULT_KILL_COMMAND = ["kill", "-s", "{signal}", "1"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_REQUIREMENT = re.compile(r"^\s*(!?)\s*([^\s=!()]+)\s*(?:(==|=|!=)\s*([^\s=!(),]*)|\s+(in|notin)\s*\(([^()]*)\))?\s*$")


_schema = Schema(KEY, DOC)
_fail, _mapping, _number, _choice = _schema.fail, _schema.mapping, _schema.number, _schema.choice


def _namespace(where: str, value: Any) -> str:
    if not isinstance(value, str) or not _DNS_LABEL.match(value):
        raise _fail(where, f"must name a namespace (a DNS label: lowercase letters, digits, '-'), got {value!r}")
    return value


def _container(where: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not _DNS_LABEL.match(value):
        raise _fail(where, f"must name a container of the pod, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------- selectors
def _label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return bool(_LABEL_NAME.match(name))


def _split_requirements(text: str) -> List[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_selector(raw: Any, where: str = "selector") -> Dict[str, Any]:
    """``{"matchLabels": {...}, "matchExpressions": [...], "text": canonical selector string}`` from a kubectl
    selector string or a mapping of labels. Raises ConfigurationError naming ``where``; an empty selector (which
    would select every pod) is refused."""
    labels: Dict[str, str] = {}
    expressions: List[Dict[str, Any]] = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            if not isinstance(key, str) or not _label_key(key) or not isinstance(value, str) \
                    or not _LABEL_VALUE.match(value):
                raise _fail(where, f"{key!r}: {value!r} is not a label and value")
            labels[key] = value
    elif isinstance(raw, str):
        for part in _split_requirements(raw):
            if not part.strip():
                continue
            found = _REQUIREMENT.match(part)
            if not found:
                raise _fail(where, f"cannot read {part.strip()!r} in {raw!r} (kubectl selector syntax: "
                                   f"'k=v', 'k!=v', 'k in (a,b)', 'k notin (a,b)', 'k', '!k')")
            bang, key, op, value, set_op, values = found.groups()
            if not _label_key(key):
                raise _fail(where, f"{key!r} is not a label key")
            if bang and (op or set_op):
                raise _fail(where, f"'!' only negates a bare key, got {part.strip()!r}")
            if op in ("=", "=="):
                if not _LABEL_VALUE.match(value):
                    raise _fail(where, f"{value!r} is not a label value")
                if key in labels and labels[key] != value:
                    raise _fail(where, f"{key!r} is required to equal two values")
                labels[key] = value
            elif op == "!=":
                if not _LABEL_VALUE.match(value):
                    raise _fail(where, f"{value!r} is not a label value")
                expressions.append({"key": key, "operator": "NotIn", "values": [value]})
            elif set_op:
                items = [v.strip() for v in values.split(",")]
                if not items or any(not _LABEL_VALUE.match(v) for v in items) or (set_op == "in" and items == [""]):
                    raise _fail(where, f"{values!r} is not a list of label values")
                expressions.append({"key": key, "operator": "In" if set_op == "in" else "NotIn",
                                    "values": sorted(set(items))})
            else:
                expressions.append({"key": key, "operator": "DoesNotExist" if bang else "Exists"})
    else:
        raise _fail(where, f"must be a label selector string ('app=scheduler-master') or a mapping of labels, "
                           f"got {raw!r}")
    if not labels and not expressions:
        raise _fail(where, "is empty: it would select every pod of the namespace")
    return {"matchLabels": labels, "matchExpressions": expressions, "text": selector_text(labels, expressions)}


def selector_text(labels: Dict[str, str], expressions: List[Dict[str, Any]]) -> str:
    parts = [f"{k}={v}" for k, v in sorted(labels.items())]
    for e in expressions:
        op = e["operator"]
        if op == "Exists":
            parts.append(e["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{e['key']}")
        elif op == "NotIn" and len(e["values"]) == 1:
            parts.append(f"{e['key']}!={e['values'][0]}")
        else:
            parts.append(f"{e['key']} {'in' if op == 'In' else 'notin'} ({','.join(e['values'])})")
    return ",".join(parts)


def negated_requirements(selector: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One match expression per requirement of ``selector``, each its negation: a pod fails the selector exactly
    when it matches one of them (De Morgan), which is how a NetworkPolicy allows "every pod but these"."""
    out = [{"key": k, "operator": "NotIn", "values": [v]} for k, v in sorted(selector["matchLabels"].items())]
    opposite = {"In": "NotIn", "NotIn": "In", "Exists": "DoesNotExist", "DoesNotExist": "Exists"}
    for e in selector["matchExpressions"]:
        negated = {"key": e["key"], "operator": opposite[e["operator"]]}
        if "values" in e:
            negated["values"] = list(e["values"])
        out.append(negated)
    return out


# ---------------------------------------------------------------------------------------------------- sections
def _role(role: str, raw: Any, namespace: str) -> Optional[Dict[str, Any]]:
    if raw is None:
        if role == "registry":
            return None
        raise _fail(role, f"is required: the label selector of the {role}' pods, e.g. "
                          f"{{\"selector\": \"app=scheduler-{role[:-1]}\"}}")
    if isinstance(raw, (str, dict)) and not (isinstance(raw, dict) and "selector" in raw):
        raw = {"selector": raw}
    data = _mapping(role, raw, {"selector", "namespace", "container", "slots"})
    out = {"selector": parse_selector(data.get("selector"), f"{role}.selector"),
           "namespace": _namespace(f"{role}.namespace", data.get("namespace") or namespace),
           "container": _container(f"{role}.container", data.get("container"))}
    if role == "workers":
        slots = data.get("slots")
        out["slots"] = None if slots is None else int(_number("workers.slots", slots, 1, 100000))
    elif "slots" in data:
        raise _fail(f"{role}.slots", "only workers have task slots")
    return out


def _leader(raw: Any, namespace: str) -> Dict[str, Any]:
    if not isinstance(raw, dict) or "source" not in raw:
        raise _fail("leader", f"is required: an object with 'source' one of {', '.join(LEADER_SOURCES)} "
                              f"(e.g. {{\"source\": \"lease\", \"name\": \"scheduler-master\"}}), got {raw!r}")
    source = _choice("leader.source", raw.get("source"), LEADER_SOURCES)
    if source == "lease":
        data = _mapping("leader", raw, {"source", "name", "namespace", "holder_regex"})
        name = data.get("name")
        if not isinstance(name, str) or not _DNS_SUBDOMAIN.match(name):
            raise _fail("leader.name", f"must name the Lease object (coordination.k8s.io/v1), got {name!r}")
        pattern = data.get("holder_regex")
        if pattern is not None:
            try:
                compiled = re.compile(pattern)
            except (re.error, TypeError) as e:
                raise _fail("leader.holder_regex", f"is not a regular expression: {e}") from e
            if compiled.groups != 1:
                raise _fail("leader.holder_regex", "needs exactly one group: the pod name or IP in holderIdentity")
        return {"source": "lease", "name": name,
                "namespace": _namespace("leader.namespace", data.get("namespace") or namespace),
                "holder_regex": pattern}
    from .leader import validate  # the hosts platform's sources validate their own options

    try:
        return validate(dict(raw))
    except ConfigurationError as e:
        raise _fail("leader", str(e)) from e


def _kill(raw: Any) -> Dict[str, Any]:
    data = _mapping("kill", raw, {"mode", "command", "ready_timeout", "container"})
    command = data.get("command", DEFAULT_KILL_COMMAND)
    if not isinstance(command, list) or not command or not all(isinstance(a, str) and a and "\0" not in a
                                                               for a in command):
        raise _fail("kill.command", f"must be an argv (a list of strings, never a shell string), got {command!r}")
    return {"mode": _choice("kill.mode", data.get("mode", "delete-pod"), KILL_MODES), "command": list(command),
            "ready_timeout": _number("kill.ready_timeout", data.get("ready_timeout", 120), 1, 3600),
            "container": _container("kill.container", data.get("container"))}


def _network(raw: Any) -> Dict[str, Any]:
    data = _mapping("network", raw, {"mode", "container", "device"})
    device = data.get("device")
    if device is not None and (not isinstance(device, str) or not re.match(r"^[A-Za-z0-9_.@-]{1,15}$", device)):
        raise _fail("network.device", f"must name a network interface, got {device!r}")
    return {"mode": _choice("network.mode", data.get("mode", "auto"), NETWORK_MODES),
            "container": _container("network.container", data.get("container")), "device": device}


def _metrics(raw: Any) -> Dict[str, Any]:
    data = _mapping("metrics", raw, {"queries", "scrape_interval", "timeout", "token_secret", "headers", "lookback",
                                     "instance"})
    from ..metrics.forms import DEFAULT_QUERIES

    queries = data.get("queries") or {}
    if not isinstance(queries, dict):
        raise _fail("metrics.queries", f"must map query names to PromQL, got {queries!r}")
    unknown = sorted(set(queries) - set(DEFAULT_QUERIES))
    if unknown:
        raise _fail("metrics.queries", f"unknown query name(s) {', '.join(unknown)}; known: "
                                       f"{', '.join(sorted(DEFAULT_QUERIES))}")
    for key, value in queries.items():
        if not isinstance(value, str) or "\n" in value:
            raise _fail(f"metrics.queries.{key}", f"must be a PromQL expression on one line, got {value!r}")
    headers = data.get("headers") or {}
    if not isinstance(headers, dict) or any(not re.match(r"^[A-Za-z0-9-]{1,64}$", str(k)) or not isinstance(v, str)
                                            for k, v in headers.items()):
        raise _fail("metrics.headers", "must map header names to strings (put tokens in token_secret)")
    token = data.get("token_secret")
    if token is not None and (not isinstance(token, str) or not _SECRET_NAME.match(token)):
        raise _fail("metrics.token_secret", "must name a secret (the secret's key, not its value)")
    instance = data.get("instance", "{address}")
    if not isinstance(instance, str) or not instance or "\n" in instance:
        raise _fail("metrics.instance", f"must be a template of the Prometheus instance label, got {instance!r}")
    interval = data.get("scrape_interval")
    return {"queries": dict(queries),
            "scrape_interval": None if interval is None else _number("metrics.scrape_interval", interval, 0.1, 3600),
            "timeout": _number("metrics.timeout", data.get("timeout", 5.0), 0.1, 300),
            "token_secret": token, "headers": dict(headers), "instance": instance,
            "lookback": _number("metrics.lookback", data.get("lookback", 3600.0), 60, 31 * 86400)}


def parse_kubernetes(raw: Any) -> Dict[str, Any]:
    """Validate ``chaosscheduler_kubernetes`` and return it normalised. Raises ConfigurationError naming the key."""
    allowed = {"namespace", "masters", "workers", "registry", "leader", "kill", "network", "worker_status",
               "metrics", "slots", "same_clock", "request_timeout"}
    if raw in (None, {}):
        raise ConfigurationError(f"chaosscheduler_platform 'kubernetes' needs {KEY}: an object with the namespace, "
                                 f"the masters' and workers' label selectors and a leader source (see {DOC})")
    data = _mapping("", raw, allowed)
    if "namespace" not in data or data.get("namespace") in ("", None):
        raise _fail("namespace", "is required and must not be empty: the namespace the scheduler's pods run in")
    namespace = _namespace("namespace", data["namespace"])
    out: Dict[str, Any] = {"namespace": namespace}
    for role in ROLES:
        out[role] = _role(role, data.get(role), namespace)
    out["leader"] = _leader(data.get("leader"), namespace)
    out["kill"] = _kill(data.get("kill"))
    out["network"] = _network(data.get("network"))
    out["worker_status"] = _choice("worker_status", data.get("worker_status", "auto"), WORKER_STATUS)
    out["metrics"] = _metrics(data.get("metrics"))
    out["slots"] = int(_number("slots", data.get("slots", 4), 1, 100000))
    same_clock = data.get("same_clock", False)
    if not isinstance(same_clock, bool):
        raise _fail("same_clock", f"must be true or false, got {same_clock!r}")
    out["same_clock"] = same_clock
    out["request_timeout"] = _number("request_timeout", data.get("request_timeout", 10.0), 0.5, 300)
    return out


def from_configuration(platform: str, raw: Any) -> Optional[Dict[str, Any]]:
    """``Settings.kubernetes``: parsed when the platform is "kubernetes", and validated whenever it is given (so a
    var file's mistake shows early); None otherwise."""
    if platform == "kubernetes" or raw not in (None, {}):
        return parse_kubernetes(raw)
    return None
