"""The fault interface and the registry of fault kinds."""

from typing import Any, Dict, Type

__all__ = ["Fault", "fault_class", "register"]

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


def register(cls: Type[Fault]) -> Type[Fault]:
    _KINDS[cls.kind] = cls
    return cls


def fault_class(kind: str) -> Type[Fault]:
    from . import kubernetes, latency, network, process  # noqa: F401 - they register their kinds

    if kind not in _KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(_KINDS))}")
    return _KINDS[kind]
