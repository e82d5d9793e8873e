"""Command sources: what a scheduler's own command-line tools say about it (Slurm's ``sinfo``/``squeue``, Nomad's
``nomad node status``, any CLI), for platforms that export no metric.

A source is an argv, where it runs, and how its output is read, all described in the var file::

    {"argv": ["sinfo", "--noheader", "--Node", "--format=%N|%T|%c|%H"], "on": "masters",
     "format": "fields", "separator": "|", "fields": ["name", "state", "slots", "since"], "time_format": "iso"}

``on``: ``"masters"`` (over SSH on the first master host that answers), ``"every-master"`` / ``"every-worker"``
(on each such node's own host; each record gets the field ``node``), ``"local"`` (this machine, inside
``connect_netns`` when set), or a node name. ``format``: ``"text"`` (one record, field ``output``), ``"fields"``
(one record per non-empty line, split at ``separator`` (default: white space) into the names in ``fields``; ``null``
skips a column), ``"regex"`` (one record per match of ``pattern``, its named groups as fields), ``"json"`` (the
list at ``items`` (a dotted path), each item's ``fields`` as ``{name: dotted path}``). Every record also has
``exit_status``. A command that runs per node and yields no record yields ``{"exit_status", "output"}``.

A **rule** decides something about a record: ``{field: regular expression}`` matches when every field matches
(``re.search`` on its text; a missing field is ""); a list of such objects matches when any does; a bare string is
the rule ``{default field: string}``. This module is pure apart from :class:`Runner`.
"""

import concurrent.futures
import datetime
import json
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ChaosSchedulerError, ConfigurationError
from ..hosts import CommandError, Result

__all__ = ["FORMATS", "PLACES", "SPEC_KEYS", "check_source", "check_rule", "parse", "matches", "timestamp",
           "expand_hostlist", "Runner"]

FORMATS = ("text", "fields", "regex", "json")
PLACES = ("masters", "every-master", "every-worker", "local")
TIME_FORMATS = ("epoch", "iso")
SPEC_KEYS = {"argv", "on", "timeout", "format", "separator", "fields", "pattern", "items", "time_format"}
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_NONE = {"", "n/a", "none", "unknown", "(null)", "null", "0"}


def check_source(where: str, raw: Any, fail: Callable[[str, str], Exception], default_on: str = "masters",
                 extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Validate one command source and return it normalised. ``extra`` maps further allowed keys to their
    defaults (the caller validates their values); ``fail(where, message)`` builds the error to raise."""
    if not isinstance(raw, dict):
        raise fail(where, f"must be an object with at least 'argv', got {raw!r}")
    extra = extra or {}
    unknown = sorted(set(raw) - SPEC_KEYS - set(extra) - {"source"})
    if unknown:
        raise fail(where, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(SPEC_KEYS | set(extra)))}")
    argv = raw.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise fail(f"{where}.argv", f"must be an argv: a non-empty list of strings (never a shell string), "
                                    f"got {argv!r}")
    out: Dict[str, Any] = {"argv": list(argv), "on": raw.get("on", default_on), "timeout": raw.get("timeout", 10.0),
                           "format": raw.get("format", "text"), "separator": raw.get("separator"),
                           "fields": raw.get("fields"), "pattern": raw.get("pattern"), "items": raw.get("items", ""),
                           "time_format": raw.get("time_format", "iso")}
    if not isinstance(out["on"], str) or not out["on"]:
        raise fail(f"{where}.on", f"must be one of {', '.join(PLACES)} or a node name, got {out['on']!r}")
    timeout = out["timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.1 <= timeout <= 3600:
        raise fail(f"{where}.timeout", f"must be a number of seconds from 0.1 to 3600, got {timeout!r}")
    if out["format"] not in FORMATS:
        raise fail(f"{where}.format", f"must be one of {', '.join(FORMATS)}, got {out['format']!r}")
    if out["time_format"] not in TIME_FORMATS:
        raise fail(f"{where}.time_format", f"must be one of {', '.join(TIME_FORMATS)}, got {out['time_format']!r}")
    fmt = out["format"]
    if fmt == "fields":
        fields = out["fields"]
        if not isinstance(fields, list) or not fields or not all(f is None or (isinstance(f, str) and _FIELD.match(f))
                                                                 for f in fields):
            raise fail(f"{where}.fields", "must list the name of each column (null skips one), e.g. "
                                          "[\"name\", \"state\"]")
        if out["separator"] is not None and (not isinstance(out["separator"], str) or not out["separator"]):
            raise fail(f"{where}.separator", f"must be a non-empty string (default: white space), "
                                             f"got {out['separator']!r}")
    elif fmt == "regex":
        if not isinstance(out["pattern"], str) or not out["pattern"]:
            raise fail(f"{where}.pattern", "format 'regex' needs a regular expression with named groups")
        try:
            compiled = re.compile(out["pattern"], re.MULTILINE)
        except re.error as e:
            raise fail(f"{where}.pattern", f"is not a regular expression: {e}") from e
        if not compiled.groupindex:
            raise fail(f"{where}.pattern", "needs named groups, e.g. (?P<name>\\S+): they become the fields")
    elif fmt == "json":
        fields = out["fields"]
        if not isinstance(fields, dict) or not all(isinstance(k, str) and _FIELD.match(k) and isinstance(v, str)
                                                   for k, v in fields.items()):
            raise fail(f"{where}.fields", "format 'json' needs fields as {name: dotted path in each item}")
        if not isinstance(out["items"], str):
            raise fail(f"{where}.items", "must be a dotted path to the list of items (\"\" for the document)")
    for key in ("separator", "fields", "pattern", "items"):
        if key in raw and fmt not in _USES[key]:
            raise fail(f"{where}.{key}", f"is not used by format {fmt!r}")
    for key, default in extra.items():
        out[key] = raw.get(key, default)
    return out


_USES = {"separator": ("fields",), "fields": ("fields", "json"), "pattern": ("regex",), "items": ("json",)}


def check_rule(where: str, raw: Any, fail: Callable[[str, str], Exception],
               default_field: str = "state") -> Optional[List[Dict[str, str]]]:
    """A rule normalised to a list of ``{field: regex}`` objects (any of them matching), or None."""
    if raw is None:
        return None
    items = [{default_field: raw}] if isinstance(raw, str) else raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if not isinstance(item, dict) or not item:
            raise fail(where, f"must be a regular expression, an object {{field: regular expression}} or a list of "
                              f"such objects, got {raw!r}")
        for field, pattern in item.items():
            if not isinstance(field, str) or not _FIELD.match(field) or not isinstance(pattern, str):
                raise fail(where, f"maps field names to regular expressions, got {field!r}: {pattern!r}")
            try:
                re.compile(pattern)
            except re.error as e:
                raise fail(f"{where}.{field}", f"is not a regular expression: {e}") from e
        out.append(dict(item))
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def matches(record: Dict[str, Any], rule: Optional[List[Dict[str, str]]]) -> bool:
    """Whether ``record`` matches ``rule`` (a normalised rule; None never matches)."""
    return bool(rule) and any(all(re.search(pattern, _text(record.get(field))) for field, pattern in item.items())
                              for item in rule)


def _path(document: Any, path: str) -> Any:
    from .leader import json_path

    return json_path(document, path)


def parse(output: str, exit_status: int, spec: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The records a command's output holds according to ``spec`` (a checked source)."""
    fmt = spec["format"]
    records: List[Dict[str, Any]] = []
    if fmt == "text":
        records = [{"output": output.strip()}]
    elif fmt == "fields":
        names = spec["fields"]
        for line in output.splitlines():
            if not line.strip():
                continue
            sep = spec["separator"]
            parts = line.split(sep, len(names) - 1) if sep else line.split(None, len(names) - 1)
            records.append({name: part.strip() for name, part in zip(names, parts) if name})
    elif fmt == "regex":
        records = [{k: v for k, v in m.groupdict().items() if v is not None}
                   for m in re.finditer(spec["pattern"], output, re.MULTILINE)]
    else:
        try:
            document = json.loads(output) if output.strip() else None
        except ValueError:
            document = None
        items = _path(document, spec["items"]) if document is not None else None
        if isinstance(items, dict):
            items = [items]
        for item in items if isinstance(items, list) else []:
            records.append({name: _path(item, path) for name, path in spec["fields"].items()})
    for record in records:
        record["exit_status"] = exit_status
    return records


def timestamp(value: Any, time_format: str = "iso") -> Optional[float]:
    """Seconds since the epoch from a field: a number (``epoch``) or ISO 8601 (``iso``; without an offset it is this
    machine's local time, as Slurm prints it). "Unknown", "N/A", "None", "" and 0 are None."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if value > 0 else None
    text = str(value).strip()
    if time_format == "epoch":
        try:
            number = float(text)
        except ValueError:
            return None
        return number if number > 0 else None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp()  # naive: local time


def expand_hostlist(text: str) -> List[str]:
    """Slurm-style host lists: ``"node[1-3,7],ctl1"`` → node1, node2, node3, node7, ctl1 (zero padding kept)."""
    names: List[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", text or ""):
        match = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", part)
        if not match:
            names.append(part.strip())
            continue
        prefix, ranges, suffix = match.groups()
        for piece in ranges.split(","):
            low, _, high = piece.partition("-")
            if high and low.isdigit() and high.isdigit():
                width = len(low)
                names += [f"{prefix}{str(i).zfill(width)}{suffix}" for i in range(int(low), int(high) + 1)]
            else:
                names.append(f"{prefix}{piece}{suffix}")
    return [n for n in names if n]


class Runner:
    """Runs command sources where they say. ``host_of(node)`` gives a node's host (SSH), ``local`` this machine's
    (inside the connect namespace), ``masters``/``workers`` the node dicts (``others``: more nodes a source may name,
    e.g. the registry), ``expand(template, node)`` fills ``{name}``, ``{host}`` and ``{address}``."""

    def __init__(self, host_of: Callable[[str], Any], local: Any, masters: Sequence[Dict[str, Any]],
                 workers: Sequence[Dict[str, Any]], expand: Callable[[str, Dict[str, Any]], str],
                 others: Sequence[Dict[str, Any]] = ()):
        self.host_of, self.local, self.masters, self.workers, self.expand = host_of, local, masters, workers, expand
        self.others = others

    def _once(self, host: Any, argv: List[str], timeout: float) -> Result:
        return host.run(argv, timeout=timeout, check=False)

    def run(self, spec: Dict[str, Any], node: Optional[Dict[str, Any]] = None) -> Tuple[Result, str]:
        """Run a cluster-wide source once (``on``: masters, local or a node name); returns (result, where)."""
        on, timeout = spec["on"], spec["timeout"]
        if on == "local":
            argv = [self.expand(a, node) for a in spec["argv"]] if node else list(spec["argv"])
            return self._once(self.local, argv, timeout), "local"
        candidates = list(self.masters) if on == "masters" else [
            n for n in [*self.masters, *self.workers, *self.others] if n["name"] == on]
        if not candidates:
            raise ConfigurationError(f"command source 'on': no node named {on!r}")
        errors = []
        for candidate in candidates:
            argv = [self.expand(a, node or candidate) for a in spec["argv"]]
            try:
                return self._once(self.host_of(candidate["name"]), argv, timeout), candidate["name"]
            except CommandError as e:  # the host does not answer: the next master may
                errors.append(str(e))
        raise ChaosSchedulerError(f"{spec['argv'][0]}: no host could run it: {'; '.join(errors)}")

    def records(self, spec: Dict[str, Any]) -> List[Dict[str, Any]]:
        """Every record of a source; per-node places run on each node (errors become records with
        ``error``, so one dead host does not hide the others)."""
        if spec["on"] not in ("every-master", "every-worker"):
            result, where = self.run(spec)
            found = parse(result.stdout, result.returncode, spec)
            if result.returncode != 0 and not found:
                detail = (result.stderr or result.stdout).strip().splitlines()
                raise ChaosSchedulerError(f"{spec['argv'][0]} on {where} failed ({result.returncode}): "
                                          f"{detail[0] if detail else 'no output'}")
            return [dict(r, node=where) for r in found]
        nodes = list(self.masters if spec["on"] == "every-master" else self.workers)

        def ask(node: Dict[str, Any]) -> List[Dict[str, Any]]:
            argv = [self.expand(a, node) for a in spec["argv"]]
            try:
                result = self._once(self.host_of(node["name"]), argv, spec["timeout"])
            except CommandError as e:
                return [{"node": node["name"], "exit_status": None, "error": str(e)}]
            found = parse(result.stdout, result.returncode, spec) or [
                {"exit_status": result.returncode, "output": result.stdout.strip()}]
            return [dict(r, node=node["name"]) for r in found]

        if len(nodes) <= 1:
            return [r for node in nodes for r in ask(node)]
        # every node at once: one round costs the slowest node, not the sum (the source's resolution)
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(nodes), 16)) as pool:
            return [r for answer in pool.map(ask, nodes) for r in answer]
