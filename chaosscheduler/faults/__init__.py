"""Faults as data: a fault is a small JSON record (kind, targets, parameters, deadline) with ``inject`` and
``undo``. :mod:`.lifecycle` records it in the ledger before injecting and arms its self-expiry."""

from .base import Fault, fault_class
from .lifecycle import inject, undo, undo_open

__all__ = ["Fault", "fault_class", "inject", "undo", "undo_open"]
