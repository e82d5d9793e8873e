"""Processes we start, identified by PID *and* start time so a recycled PID is never signalled by mistake."""

import os
import signal
import subprocess
import time
from typing import Dict, List, Optional, Sequence

__all__ = ["ProcessRecord", "start_time", "state", "is_running", "is_stopped", "spawn", "terminate",
           "signal_number", "pids_with_marker", "FATAL", "STOP_WAIT"]

MARKER_ENV = "CHAOSSCHEDULER_OWNER"
FATAL = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
STOP_WAIT = 5.0  # seconds a SIGSTOP (or SIGCONT) may take to show in the process state before we say it did not


def state(pid: int) -> str:
    """The process state letter (field 3 of /proc/PID/stat: "R", "S", "D", "T" stopped, "t" traced, "Z", ...),
    or "" if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return data[data.rfind(")") + 2:].split()[0]


def start_time(pid: int) -> Optional[int]:
    """The process start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None  # a zombie is dead, whoever has still to reap it
    return int(fields[19])


class ProcessRecord(dict):
    """``{"pid": int, "start_time": int}``: a JSON-serialisable identity of one process."""

    @classmethod
    def of(cls, pid: int) -> "ProcessRecord":
        return cls(pid=pid, start_time=start_time(pid))

    def alive(self) -> bool:
        if self.get("pid") is None or self.get("start_time") is None:
            return False
        return start_time(self["pid"]) == self["start_time"]


def is_running(record: Optional[Dict]) -> bool:
    return bool(record) and ProcessRecord(record).alive()


def is_stopped(record: Optional[Dict]) -> bool:
    """Whether the recorded process is (still the same process and) stopped by a signal: state "T" (or "t")."""
    return is_running(record) and state(record["pid"]) in ("T", "t")


def signal_number(name) -> int:
    """``"SIGKILL"``, ``"KILL"`` or ``9`` → 9; anything else raises ``ValueError`` naming the allowed values."""
    if isinstance(name, int) and not isinstance(name, bool):
        valid = {s.value for s in signal.Signals}
        if name in valid:
            return name
    elif isinstance(name, str):
        key = name.upper()
        if not key.startswith("SIG"):
            key = "SIG" + key
        if key in signal.Signals.__members__ and not key.startswith("SIG_"):
            return signal.Signals[key].value
    raise ValueError(f"unknown signal {name!r}: use a name such as 'SIGKILL', 'SIGTERM', 'SIGSTOP' or a number")


def spawn(argv: Sequence[str], log_path: str, env: Optional[Dict[str, str]] = None,
          owner: Optional[str] = None) -> ProcessRecord:
    """Start ``argv`` detached (own session, stdin closed, output to ``log_path``) and return its identity.

    ``owner`` is stored in the child's environment (``CHAOSSCHEDULER_OWNER``) so that :func:`pids_with_marker`
    finds it even if the caller dies before recording the PID.
    """
    child_env = dict(os.environ if env is None else env)
    if owner:
        child_env[MARKER_ENV] = owner
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=child_env, start_new_session=True, close_fds=True)
    # the record is taken at once; start_time cannot be None here unless the child already died
    return ProcessRecord(pid=proc.pid, start_time=start_time(proc.pid))


def pids_with_marker(owner: str) -> List[int]:
    """PIDs of live processes whose environment carries ``CHAOSSCHEDULER_OWNER=owner``."""
    needle = f"{MARKER_ENV}={owner}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0") and start_time(int(entry)) is not None:
                    found.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def terminate(record: Dict, sig: int = signal.SIGKILL, wait: float = 5.0) -> bool:
    """Send ``sig`` to the recorded process if it is still the same process, and wait (polling, at most ``wait``
    seconds) for its effect: gone for a fatal signal, stopped (state "T") for SIGSTOP, running again for SIGCONT.
    Returns True when a signal was delivered; whether the effect came within ``wait`` the caller checks with
    :func:`is_running` / :func:`is_stopped`."""
    if not is_running(record):
        return False
    try:
        os.kill(record["pid"], sig)
    except ProcessLookupError:
        return False
    if sig in FATAL:
        def done() -> bool:
            return not is_running(record)
    elif sig == signal.SIGSTOP:
        def done() -> bool:
            return is_stopped(record) or not is_running(record)
    elif sig == signal.SIGCONT:
        def done() -> bool:
            return not is_stopped(record)
    else:
        return True
    deadline = time.monotonic() + wait
    while not done() and time.monotonic() < deadline:
        time.sleep(0.005)
    return True
