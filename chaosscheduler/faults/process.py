"""Process faults: a signal to a node's process. Undo restarts a killed node, or resumes a stopped one."""

import signal
from typing import Any, Dict

from ..errors import FaultError
from .base import Fault, register

__all__ = ["ProcessFault"]


@register
class ProcessFault(Fault):
    """Record fields: ``targets`` (one node), ``signal`` (name). SIGSTOP is undone with SIGCONT; any other signal
    by starting the node again if it is not running."""

    kind = "process"

    def inject(self, platform: Any) -> Dict[str, Any]:
        target = self.record["targets"][0]
        sig = signal.Signals[self.record["signal"]]
        info = platform.signal(target, sig)
        if not info.get("delivered"):
            raise FaultError(f"{target} was not running: nothing was signalled")
        return {"pid": info.get("pid")}

    def undo(self, platform: Any) -> Dict[str, Any]:
        target = self.record["targets"][0]
        if self.record["signal"] == "SIGSTOP":
            info = platform.signal(target, signal.SIGCONT)
            return {"resumed": bool(info.get("delivered"))}
        if platform.is_running(target):
            return {"restarted": False, "already_running": True}
        info = platform.restart(target)
        return {"restarted": True, "pid": info.get("pid")}
