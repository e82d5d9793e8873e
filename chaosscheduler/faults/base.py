"""The fault interface and the registry of fault kinds."""

from typing import Any, Dict, List, Optional, Type

from ..errors import FaultError

__all__ = ["Fault", "PartialFault", "fault_class", "register"]

_KINDS: Dict[str, Type["Fault"]] = {}


class Fault:
    """A fault bound to its ledger record. Subclasses implement :meth:`inject` and :meth:`undo`; both return a
    dict of facts to store in the record. ``undo`` must be idempotent and accept "already gone"."""

    kind = ""

    def __init__(self, record: Dict[str, Any]):
        self.record = record

    def inject(self, platform: Any) -> Dict[str, Any]:
        raise NotImplementedError

    def undo(self, platform: Any) -> Dict[str, Any]:
        raise NotImplementedError

    def prepare(self, platform: Any) -> Dict[str, str]:
        """Open the connections undoing will need (the reaper calls it just before the deadline); ``{node:
        error}`` for the hosts that cannot be reached now. Faults that need no connection return {}."""
        return {}

    def fan_out(self, platform: Any, nodes: Optional[List[str]] = None) -> Any:
        """A :class:`~chaosscheduler.hosts.fanout.FanOut` over ``nodes`` (default: the targets), as wide as the record's
        ``concurrency`` (set when injected), else the platform's."""
        from ..hosts.fanout import FanOut

        nodes = list(self.record["targets"]) if nodes is None else nodes
        width = self.record.get("concurrency") or getattr(platform, "concurrency", None)
        return FanOut({n: platform.host(n) for n in nodes}, width)


class PartialFault(FaultError):
    """Injecting failed on some hosts after it was applied on others. ``facts`` holds what was applied where and
    when (``applied_on``, ``applied_at``, ``failed_on``), so the failed record says it; the caller undoes it."""

    def __init__(self, message: str, facts: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.facts = facts or {}


def register(cls: Type[Fault]) -> Type[Fault]:
    _KINDS[cls.kind] = cls
    return cls


def fault_class(kind: str) -> Type[Fault]:
    from . import kubernetes, latency, network, process  # noqa: F401 - they register their kinds

    if kind not in _KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(_KINDS))}")
    return _KINDS[kind]
