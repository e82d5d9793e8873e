"""The chaosscheduler control's arguments, validated like activity arguments: a wrong type or an unknown name is an
error that names the argument and what it accepts (``"strict": "false"`` is an error, not true).

Checked twice: when Chaos Toolkit validates the experiment (``chaos validate``, and ``chaos run`` before it starts:
values still holding a ``${...}`` placeholder are left for later), and when the run starts, with every value
substituted. Nothing is started before the arguments are known to be good.
"""

from typing import Any, Dict, List, Optional

from .context import choice, flag, number
from .errors import ConfigurationError

__all__ = ["KNOWN", "TESTBED_MODES", "parse", "check_declared", "defaults"]

TESTBED_MODES = ("auto", "keep", "never")
KNOWN = ("testbed", "warmup", "strict", "timeline", "timeline_interval", "witness", "repair_actions")


def defaults() -> Dict[str, Any]:
    return {"testbed": "auto", "warmup": 5.0, "strict": True, "timeline": True, "timeline_interval": 0.2,
            "witness": None, "repair_actions": []}


def _placeholder(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _check(name: str, value: Any) -> Any:
    if name == "testbed":
        return choice(name, value, TESTBED_MODES)
    if name == "warmup":
        return number(name, value, 0, 600)
    if name in ("strict", "timeline"):
        return flag(name, value)
    if name == "timeline_interval":
        return number(name, value, 0.05, 60)
    if name == "witness":
        if value is not None and not isinstance(value, bool) \
                and not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
            raise ConfigurationError(f"argument 'witness' must be a mapping of witness options (like the "
                                     f"configuration key chaosscheduler_witness), false (off) or null, got {value!r}")
        if isinstance(value, dict) and "enabled" in value and not isinstance(value["enabled"], bool):
            raise ConfigurationError(f"argument 'witness': 'enabled' must be true or false, got "
                                     f"{value['enabled']!r}")
        return value
    if name == "repair_actions":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigurationError(f"argument 'repair_actions' must be a list of action names, got {value!r}")
        return list(value)
    raise ConfigurationError(f"unknown argument {name!r}")  # unreachable: names are checked first


def _names(arguments: Dict[str, Any]) -> None:
    unknown = sorted(str(k) for k in arguments if k not in KNOWN)
    if unknown:
        raise ConfigurationError(f"unknown argument(s) {', '.join(map(repr, unknown))}; known: {', '.join(KNOWN)}")


def parse(arguments: Dict[str, Any], method: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Every argument checked (substituted values); with ``method``, ``repair_actions`` must name its actions."""
    _names(arguments)
    options = defaults()
    for name, value in arguments.items():
        options[name] = _check(name, value)
    if method is not None and options["repair_actions"]:
        actions = [a.get("name") for a in method if isinstance(a, dict) and a.get("type") == "action"]
        missing = [n for n in options["repair_actions"] if n not in actions]
        if missing:
            raise ConfigurationError(f"argument 'repair_actions' names no action of the method: "
                                     f"{', '.join(map(repr, missing))}; the method's actions: "
                                     f"{', '.join(map(str, actions)) or 'none'}")
    return options


def check_declared(arguments: Any) -> None:
    """The check at validation time: names, and the values that hold no ``${...}`` placeholder."""
    if arguments is None:
        return
    if not isinstance(arguments, dict):
        raise ConfigurationError(f"the arguments must be a mapping, got {type(arguments).__name__}")
    _names(arguments)
    for name, value in arguments.items():
        if not _placeholder(value):
            _check(name, value)
