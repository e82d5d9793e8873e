"""What every activity needs: its settings, the platform, the ledger, argument checks, and the error boundary
that turns our exceptions into one-line ``ActivityFailed`` messages."""

import contextvars
import functools
import math
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TypeVar

from chaoslib.exceptions import ActivityFailed

from . import config
from .errors import ChaosSchedulerError, ConfigurationError
from .ledger import Ledger
from .platforms import Platform, for_settings

__all__ = ["Context", "boundary", "choice", "number", "names", "F"]

F = TypeVar("F", bound=Callable[..., Any])
MAX_MESSAGE = 500  # characters of an error message, after the activity's name
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# the running activity's Chaos Toolkit secrets (set by ``boundary``): handed to the platform, never stored or logged
_SECRETS: contextvars.ContextVar = contextvars.ContextVar("chaosscheduler_secrets", default=None)


class Context:
    def __init__(self, configuration: Optional[Dict[str, Any]]):
        self.settings = config.load(configuration)
        self.ledger = Ledger(self.settings.home)
        self._platform: Optional[Platform] = None

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            self._platform = for_settings(self.settings, _SECRETS.get())
        return self._platform

    @property
    def run_id(self) -> str:
        return config.current_run()


def boundary(func: F) -> F:
    """Convert library errors into ``ActivityFailed`` with a complete first line (chaoslib keeps only that)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _SECRETS.set(kwargs.get("secrets"))
        try:
            return func(*args, **kwargs)
        except ActivityFailed:
            raise
        except (ChaosSchedulerError, ValueError, TypeError) as e:
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            if len(message) > MAX_MESSAGE:  # a hostile argument echoed back must not flood the journal
                message = message[:MAX_MESSAGE - 25] + f"... ({len(message)} characters)"
            raise ActivityFailed(f"{func.__name__}: {message}") from e
        finally:
            _SECRETS.reset(token)

    return wrapper  # type: ignore[return-value]


def choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigurationError(f"argument '{name}' must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def number(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float)
                                                                         and math.isnan(value)):
        raise ConfigurationError(f"argument '{name}' must be a number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise ConfigurationError(f"argument '{name}' must be in {interval}, got {value!r}")
    return float(value)


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"argument '{name}' must be true or false, got {value!r}")
    return value


def names(name: str, value: Any) -> List[str]:
    """A list of node names from a list or a comma-separated string; each checked against a safe pattern."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigurationError(f"argument '{name}' must be a name, a comma-separated list or a list, got {value!r}")
    bad = [v for v in items if not isinstance(v, str) or not _NAME.fullmatch(v)]
    if bad or not items:
        raise ConfigurationError(f"argument '{name}' holds invalid node name(s) {bad or items!r}: "
                                 f"letters, digits, '.', '_' and '-' only")
    return items


def known(name: str, requested: Iterable[str], valid: Iterable[str]) -> List[str]:
    valid = list(valid)
    requested = list(requested)
    unknown = [r for r in requested if r not in valid]
    if unknown:
        raise ConfigurationError(f"argument '{name}': unknown {', '.join(map(repr, unknown))}; "
                                 f"known: {', '.join(valid)}")
    return requested
