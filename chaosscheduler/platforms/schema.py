"""Checks shared by the platform descriptions (``chaosscheduler_hosts``, ``chaosscheduler_kubernetes``): each error
names the offending key path and the doc page that describes it."""

import re
from typing import Any, Dict, List, Optional, Sequence

from ..errors import ConfigurationError

__all__ = ["Schema"]

_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class Schema:
    def __init__(self, key: str, doc: str):
        self.key = key
        self.doc = doc

    def fail(self, where: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"{self.key}.{where}: {message} (see {self.doc})")

    def mapping(self, where: str, value: Any, allowed: Optional[set] = None) -> Dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, f"must be an object, got {value!r}")
        if allowed is not None:
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise self.fail(where, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
        return dict(value)

    def number(self, where: str, value: Any, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise self.fail(where, f"must be a number from {low} to {high}, got {value!r}")
        return float(value)

    def port(self, where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise self.fail(where, f"must be a TCP port 1-65535, got {value!r}")
        return value

    def text(self, where: str, value: Any, allow_none: bool = True) -> Optional[str]:
        if value is None and allow_none:
            return None
        if not isinstance(value, str) or not value or "\0" in value or "\n" in value:
            raise self.fail(where, f"must be a non-empty single-line string, got {value!r}")
        return value

    def secret_name(self, where: str, value: Any) -> Optional[str]:
        if value is None:
            return None
        if not isinstance(value, str) or not _SECRET_NAME.match(value):
            raise self.fail(where, "must name a secret (the secret's key, not its value)")
        return value

    def argv(self, where: str, value: Any) -> Optional[List[str]]:
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(a, str) and "\0" not in a for a in value):
            raise self.fail(where, f"must be an argv: a non-empty list of strings (never a shell string), "
                                   f"got {value!r}")
        return list(value)

    def choice(self, where: str, value: Any, allowed: Sequence[str]) -> str:
        if value not in allowed:
            raise self.fail(where, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def flag(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"must be true or false, got {value!r}")
        return value
