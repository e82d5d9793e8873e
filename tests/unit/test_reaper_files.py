"""A closed fault leaves no reaper file behind under the state home (``<home>/reapers/<id>.json|.log``); the log of a
fault whose undo failed stays, for the operator (and heal) to read.

The reapers are real detached processes (``python -m chaosscheduler.faults.reaper``); the fault kind is a small one
registered here whose host is a file, so no root, namespace or cluster is needed. Each test ends its reapers by
their recorded PID."""

import contextlib
import os
import signal

import pytest

from chaosscheduler import procs
from chaosscheduler.errors import FaultError
from chaosscheduler.faults import lifecycle
from chaosscheduler.faults.base import Fault, register
from chaosscheduler.ledger import Ledger, new_fault_id
from chaosscheduler.timing import wait_until


@register
class MarkerFault(Fault):
    """A fault whose effect is a file: present while injected. ``fail`` in the record: "inject" or "undo"."""

    kind = "test-marker"

    def inject(self, platform):
        open(self.record["marker"], "w").close()
        if self.record.get("fail") == "inject":
            raise FaultError("the host refused half-way")
        return {}

    def undo(self, platform):
        if self.record.get("fail") == "undo":
            raise FaultError("the host did not answer")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.record["marker"])
        return {"removed": True}


class Here:
    def available(self):
        return None


@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger(str(tmp_path))
    yield ledger
    for record in ledger.all():
        reaper = record.get("reaper")
        if reaper and procs.is_running(reaper):
            procs.terminate(reaper, signal.SIGKILL)


def _record(tmp_path, **extra):
    record = {"id": new_fault_id(), "kind": "test-marker", "targets": ["here"], "duration": 60,
              "marker": str(tmp_path / "injected"), "platform": {"platform": "none"}}
    record.update(extra)
    return record


def _reaper_files(home):
    directory = os.path.join(home, "reapers")
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_undoing_a_fault_removes_its_reaper_files(ledger, tmp_path):
    stored = lifecycle.inject(ledger, _record(tmp_path), Here())
    assert _reaper_files(ledger.home) == [f"{stored['id']}.json", f"{stored['id']}.log"]
    closed = lifecycle.undo(ledger, stored["id"], platform=Here())
    assert closed["state"] == "undone" and not os.path.exists(tmp_path / "injected")
    assert _reaper_files(ledger.home) == []
    wait_until(lambda: not procs.is_running(stored["reaper"]), 10, message="the reaper gone")


def test_a_failed_injection_that_was_cleaned_up_leaves_no_reaper_file(ledger, tmp_path):
    with pytest.raises(FaultError, match="refused half-way"):
        lifecycle.inject(ledger, _record(tmp_path, fail="inject"), Here())
    (record,) = ledger.all()
    assert record["state"] == "failed" and _reaper_files(ledger.home) == []


def test_a_fault_whose_undo_failed_keeps_its_files(ledger, tmp_path):
    stored = lifecycle.inject(ledger, _record(tmp_path, fail="undo"), Here())
    with pytest.raises(FaultError, match="did not answer"):
        lifecycle.undo(ledger, stored["id"], platform=Here())
    assert ledger.get(stored["id"])["state"] == "active"
    assert _reaper_files(ledger.home) == [f"{stored['id']}.json", f"{stored['id']}.log"]


def test_the_log_of_a_reaper_that_had_to_retry_is_kept_when_the_fault_closes(ledger, tmp_path):
    stored = lifecycle.inject(ledger, _record(tmp_path), Here())
    procs.terminate(stored["reaper"], signal.SIGKILL)
    with open(lifecycle.log_path(ledger.home, stored["id"]), "a") as handle:
        handle.write("12:00:00 reaper x: undo failed (the host did not answer); retrying\n")
    lifecycle.undo(ledger, stored["id"], platform=Here())
    assert _reaper_files(ledger.home) == [f"{stored['id']}.log"]


def test_remove_reaper_files_is_idempotent(tmp_path):
    lifecycle.remove_reaper_files(str(tmp_path), "nosuchfault")
    lifecycle.remove_reaper_files(str(tmp_path), "nosuchfault", keep_log=True)
