"""Signals to processes take effect before the call returns: a killed process is gone, a stopped one is in state
"T", a resumed one is not. Real processes (``sleep``) for the ordinary case; the process state is scripted where
the point is that the call waits for a state the kernel has not shown yet (that cannot be provoked on demand)."""

import signal
import subprocess
import sys

import pytest

from chaosscheduler import procs
from chaosscheduler.errors import FaultError
from chaosscheduler.faults.process import ProcessFault
from chaosscheduler.hosts import LocalHost
from chaosscheduler.platforms.hosts import HostsPlatform


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_sigstop_returns_with_the_process_stopped_and_sigcont_with_it_running(sleeper):
    record = procs.ProcessRecord.of(sleeper.pid)
    assert procs.terminate(record, signal.SIGSTOP) is True
    assert procs.state(sleeper.pid) == "T" and procs.is_stopped(record)
    assert procs.terminate(record, signal.SIGCONT) is True
    assert procs.state(sleeper.pid) in ("S", "R") and not procs.is_stopped(record)
    assert procs.terminate(record, signal.SIGKILL) is True
    assert not procs.is_running(record)


def test_sigstop_waits_for_the_stopped_state(sleeper, monkeypatch):
    """The kernel may show the stop later than the signal is sent (a process in uninterruptible sleep stops only
    when it leaves it): terminate polls the state until it shows "T"."""
    record = procs.ProcessRecord.of(sleeper.pid)
    seen = []

    def late_state(pid):
        seen.append(pid)
        return "D" if len(seen) < 5 else "T"

    monkeypatch.setattr(procs, "state", late_state)
    monkeypatch.setattr(procs.os, "kill", lambda pid, sig: None)
    assert procs.terminate(record, signal.SIGSTOP, wait=5) is True
    assert len(seen) == 5 and procs.is_stopped(record)


def test_sigstop_gives_up_at_its_deadline(sleeper, monkeypatch):
    record = procs.ProcessRecord.of(sleeper.pid)
    monkeypatch.setattr(procs, "state", lambda pid: "D")
    monkeypatch.setattr(procs.os, "kill", lambda pid, sig: None)
    assert procs.terminate(record, signal.SIGSTOP, wait=0.2) is True
    assert not procs.is_stopped(record)


def test_state_of_a_missing_process_is_empty():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert procs.state(proc.pid) == ""


class _Platform:
    """The smallest platform a process fault needs: one node whose SIGSTOP never shows."""

    def __init__(self):
        self.sent = []

    def signal(self, node, sig):
        self.sent.append(sig)
        return {"delivered": True, "pid": 4242, "stopped": False}


def test_a_stop_that_never_shows_fails_the_injection_clearly():
    platform = _Platform()
    fault = ProcessFault({"targets": ["master-1"], "signal": "SIGSTOP"})
    with pytest.raises(FaultError, match="did not stop within the deadline"):
        fault.inject(platform)


class _LocalSSH(LocalHost):
    """Stands in for an SSH host: the same argv, run on this machine (``privileged`` is an SSH-side option)."""

    def run(self, argv, input=None, timeout=30.0, check=True, privileged=True):
        return super().run(argv, input=input, timeout=timeout, check=check)


def test_hosts_platform_sigstop_returns_with_the_process_stopped_over_the_hosts_channel(sleeper, monkeypatch):
    platform = HostsPlatform.__new__(HostsPlatform)
    monkeypatch.setattr(platform, "pid", lambda node: sleeper.pid, raising=False)
    monkeypatch.setattr(platform, "host", lambda node: _LocalSSH(), raising=False)
    monkeypatch.setattr(platform, "node", lambda node: {"host": "local"}, raising=False)
    stopped = platform.signal("m1", signal.SIGSTOP)
    assert stopped["delivered"] and stopped["stopped"] is True and procs.state(sleeper.pid) == "T"
    resumed = platform.signal("m1", signal.SIGCONT)
    assert resumed["delivered"] and resumed["stopped"] is False and procs.state(sleeper.pid) != "T"


def test_hosts_platform_state_reads_ps():
    assert HostsPlatform._state(_LocalSSH(), 1) in ("S", "R", "D")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert HostsPlatform._state(_LocalSSH(), proc.pid) == ""
    assert HostsPlatform._alive(_LocalSSH(), proc.pid) is False
