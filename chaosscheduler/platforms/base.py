"""The interface every platform implements (the embedded cluster, SSH hosts, Kubernetes)."""

import abc
import signal
from typing import Any, Dict, List, Optional

from ..hosts import LocalHost

__all__ = ["Platform"]


class Platform(abc.ABC):
    """Answers are plain dicts so they can be logged and stored in the ledger as they are.

    ``workers()`` items: ``{"name", "alive", "running": [task ids], "slots", "declared_dead_at",
    "dead_declarations": [timestamps]}``. ``leader()``: ``{"leader": name or None, "since": ts or None}``."""

    kind = "abstract"

    @abc.abstractmethod
    def reference(self) -> Dict[str, Any]:
        """A small JSON dict from which :func:`chaosscheduler.platforms.from_reference` rebuilds this platform."""

    @abc.abstractmethod
    def masters(self) -> List[str]: ...

    @abc.abstractmethod
    def worker_names(self) -> List[str]: ...

    @abc.abstractmethod
    def registry(self) -> List[str]: ...

    @abc.abstractmethod
    def nodes(self) -> List[str]:
        """Every node name (masters, workers, registry, others)."""

    @abc.abstractmethod
    def leader(self) -> Dict[str, Any]: ...

    @abc.abstractmethod
    def workers(self) -> List[Dict[str, Any]]: ...

    def worker_states(self) -> List[Dict[str, Any]]:
        """Like :meth:`workers` without the running tasks, for probes that poll fast; platforms for which that is
        cheaper override it."""
        return self.workers()

    @abc.abstractmethod
    def is_running(self, node: str) -> bool: ...

    @abc.abstractmethod
    def signal(self, node: str, sig: signal.Signals) -> Dict[str, Any]:
        """Send ``sig`` to the node's process; ``{"delivered": bool, "pid": ...}``. Fatal signals wait for the
        process to be gone; SIGSTOP and SIGCONT wait (with a deadline) for it to be stopped / running again and add
        ``"stopped": bool`` where the platform can see the process state."""

    @abc.abstractmethod
    def restart(self, node: str) -> Dict[str, Any]: ...

    @abc.abstractmethod
    def address(self, node: str) -> str: ...

    def host(self, node: str) -> LocalHost:
        """Where commands that change ``node``'s network run."""
        raise NotImplementedError(f"{self.kind} cannot run commands on {node}")

    def tasks(self, since: float = 0.0) -> List[Dict[str, Any]]:
        raise NotImplementedError(f"{self.kind} does not list tasks")

    def submissions(self, since: float = 0.0) -> List[Dict[str, Any]]:
        raise NotImplementedError(f"{self.kind} does not record job submissions")

    def available(self) -> Optional[str]:
        """None when the platform can be reached; otherwise why not (an actionable sentence)."""
        return None
