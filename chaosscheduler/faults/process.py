"""Process faults: a signal to a node's process. Undo restarts a killed node, or resumes a stopped one."""

import signal
from typing import Any, Dict

from ..errors import FaultError
from .base import Fault, register

__all__ = ["ProcessFault"]


@register
class ProcessFault(Fault):
    """Record fields: ``targets`` (one node), ``signal`` (name). SIGSTOP is undone with SIGCONT; any other signal
    by starting the node again if it is not running.

    Injecting returns once the signal has taken effect, as far as the platform can see the process: a killed
    process gone, a stopped one in state "T" (testbed: /proc; hosts: ``ps`` over SSH). A SIGSTOP that does not
    show within the platform's deadline fails the injection (and the process is resumed)."""

    kind = "process"

    def inject(self, platform: Any) -> Dict[str, Any]:
        target = self.record["targets"][0]
        sig = signal.Signals[self.record["signal"]]
        info = platform.signal(target, sig)
        if not info.get("delivered"):
            raise FaultError(f"{target} was not running: nothing was signalled")
        if sig == signal.SIGSTOP and info.get("stopped") is False:
            raise FaultError(f"{target} (pid {info.get('pid')}) got SIGSTOP but did not stop within the deadline "
                             f"(its state never showed 'T'): it was resumed, the fault is not in place")
        return {"pid": info.get("pid")}

    def undo(self, platform: Any) -> Dict[str, Any]:
        target = self.record["targets"][0]
        if self.record["signal"] == "SIGSTOP":
            info = platform.signal(target, signal.SIGCONT)
            return {"resumed": bool(info.get("delivered")) and not info.get("stopped", False)}
        if platform.is_running(target):
            return {"restarted": False, "already_running": True}
        info = platform.restart(target)
        return {"restarted": True, "pid": info.get("pid")}
