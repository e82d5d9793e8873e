"""Pure helpers of the probes: measurement shapes, ratios with their bounds, fault lookup, stalls."""

import types

import pytest

from chaosscheduler import measurements
from chaosscheduler.measurements import (current_stall, cut_from_registry, declared_after, find_fault,
                                         longest_stall, lost_tasks, needed_n, ratio, recall, timed_fault)


def test_longest_stall_counts_only_stretches_with_waiting_work_and_no_assignment():
    assignments = [10.0, 10.5, 11.0, 15.0, 15.5]
    # work waited from 11.2 to 15.0: the gap 11.2 -> 15.0 had no assignment at all
    assert longest_stall([(11.2, 15.0)], assignments, since=0.0) == 15.0 - 11.2
    # work that waited while other tasks were being assigned did not see a stall longer than the gaps between them
    assert longest_stall([(9.9, 15.4)], assignments, since=0.0) == 15.0 - 11.0
    # nothing waited: no stall, however sparse the assignments
    assert longest_stall([], assignments, since=0.0) == 0.0


def test_longest_stall_ignores_waits_before_the_window_and_clips_at_its_start():
    assert longest_stall([(1.0, 4.0)], [], since=5.0) == 0.0
    assert longest_stall([(1.0, 8.0)], [], since=5.0) == 3.0


def test_current_stall_runs_from_the_later_of_the_oldest_wait_and_the_last_assignment():
    assert current_stall([], [1.0], now=10.0) == 0.0  # nothing waits: no stall in progress
    assert current_stall([4.0, 6.0], [1.0, 2.0], now=10.0) == 6.0  # waiting since 4, nothing assigned since
    assert current_stall([4.0], [1.0, 8.5], now=10.0) == 1.5  # something was assigned at 8.5
    assert current_stall([4.0], [12.0], now=10.0) == 6.0  # assignments after now do not count


def test_declared_after_prefers_the_history_and_ignores_earlier_declarations():
    worker = {"dead_declarations": [5.0, 12.0, 13.0], "declared_dead_at": 13.0}
    assert declared_after(worker, 10.0) == 12.0
    assert declared_after(worker, 20.0) is None
    assert declared_after({"declared_dead_at": 11.0}, 10.0) == 11.0


def test_lost_tasks_recall_and_cut_from_registry():
    fault = {"running_tasks": {"w1": ["b", "a"], "w2": ["a", "c"]},
             "measurements": {"p": {"value": 1.23456789}, "q": {"value": 2.0, "unit": "s", "source": "x"}}}
    assert lost_tasks(fault) == ["a", "b", "c"]
    assert lost_tasks({}) == []
    old = recall(fault, "p")  # an older record: a bare value, made a measurement
    assert old["value"] == 1.234568 and old["recalled"] and old["decided"]
    assert recall(fault, "q") == {"value": 2.0, "unit": "s", "source": "x", "recalled": True}
    assert recall(fault, "r") is None
    assert cut_from_registry({"mode": "drop", "peers": ["*"]})
    assert cut_from_registry({"mode": "drop", "peers": ["etcd-1"], "cuts_registry": True})
    assert not cut_from_registry({"mode": "loss", "peers": ["*"]})
    assert not cut_from_registry({"mode": "drop", "peers": ["master-1"], "cuts_registry": False})


def test_ratio_carries_n_and_one_sided_wilson_bounds():
    r = ratio(539, 539, "witness")
    assert r["value"] == 1.0 and r["n"] == 539 and r["upper"] == 1.0 and r["confidence"] == 0.95
    assert 0.995 <= r["lower"] < 0.9951  # 539 is the smallest n that decides 99.5 % with no failure
    assert ratio(538, 538, "w")["lower"] < 0.995
    r = ratio(90, 100, "w")
    assert r["lower"] < 0.9 < r["upper"] and r["successes"] == 90
    empty = ratio(0, 0, "w", reason="no load")
    assert empty["value"] is None and not empty["decided"] and empty["reason"] == "no load" and empty["n"] == 0


def test_needed_n_matches_the_sizing_in_the_plan():
    # PLAN.md "Sizing": one-sided 95 %, no failure, Wilson lower bound n / (n + 2.706)
    assert [needed_n(t) for t in (0.995, 0.98, 0.95, 0.99)] == [539, 133, 52, 268]
    assert needed_n(1.0) == 0  # never decidable


class FakeLedger:
    def __init__(self, records):
        self.records = records

    def all(self):
        return list(self.records)

    def get(self, fault_id):
        return next(r for r in self.records if r["id"] == fault_id)


def ctx_with(records, run_id="run-1"):
    return types.SimpleNamespace(ledger=FakeLedger(records), run_id=run_id, platform=object())


KILL = {"id": "f1", "action": "kill_master", "targets": ["master-2"], "started_at": 100.0, "run_id": "run-1",
        "was_leader": True}
FOLLOWER = dict(KILL, id="f0", targets=["master-3"], was_leader=False, started_at=90.0)
EXTERNAL = {"name": "kill-leader-by-pid", "provider": "process:kill", "started_at": 120.0, "ended_at": 120.2,
            "status": "succeeded", "ours": False, "fault_ids": []}
OURS_REFUSED = {"name": "kill-the-leader-master", "provider": "python:chaosscheduler.actions.kill_master",
                "started_at": 95.0, "ended_at": 95.1, "status": "failed", "ours": True, "fault_ids": []}


def test_find_fault_prefers_our_ledger_record_then_another_providers_action():
    leader = lambda f: f.get("was_leader")  # noqa: E731
    fault, why = find_fault(ctx_with([FOLLOWER, KILL]), ["kill_master"], accept=leader, observed=[EXTERNAL])
    assert fault["id"] == "f1" and fault["origin"] == "ledger" and why == ""
    fault, why = find_fault(ctx_with([FOLLOWER]), ["kill_master"], accept=leader, observed=[EXTERNAL])
    assert fault["origin"] == "observed" and fault["started_at"] == 120.0 and fault["ended_at"] == 120.2
    other_run = dict(KILL, run_id="run-0")
    fault, why = find_fault(ctx_with([other_run]), ["kill_master"], accept=leader, observed=[])
    assert fault is None and "no kill_master fault" in why


def test_find_fault_says_why_there_is_none():
    leader = lambda f: f.get("was_leader")  # noqa: E731
    fault, why = find_fault(ctx_with([FOLLOWER]), ["kill_master"], accept=leader, observed=[])
    assert fault is None and "master-3" in why and "not the leader" in why
    fault, why = find_fault(ctx_with([]), ["kill_master"], accept=leader, observed=[OURS_REFUSED])
    assert fault is None and "failed" in why and "nothing was broken" in why
    # an action of ours (a rollback in the method, a refused kill) is never another provider's fault
    fault, why = find_fault(ctx_with([]), ["kill_master"], observed=[dict(EXTERNAL, ours=True)])
    assert fault is None
    fault, why = find_fault(ctx_with([]), ["kill_master"], observed=[dict(EXTERNAL, status="failed")])
    assert fault is None


@pytest.mark.parametrize("where,expect", [
    ("before-method", "before the method"),
    ("after-method", "no fault"),
    ("method", "during the method, before any fault"),
    (None, "cannot tell"),
])
def test_timed_fault_without_a_fault_depends_on_the_phase(monkeypatch, where, expect):
    monkeypatch.setattr(measurements, "phase", lambda: where)
    monkeypatch.setattr(measurements, "observed_faults", lambda: [])
    fault, early = timed_fault(ctx_with([]), "leader_election_time", "s", ["kill_master"])
    assert fault is None
    if where in ("before-method", "method"):
        assert early["applicable"] is False and early["value"] is None and early["decided"] is True
    else:
        assert early["applicable"] is True and early["decided"] is False and early["no_fault"] is True
    assert expect in early["reason"]


def test_timed_fault_before_the_method_does_not_even_look_at_the_ledger(monkeypatch):
    monkeypatch.setattr(measurements, "phase", lambda: "before-method")
    fault, early = timed_fault(ctx_with([KILL]), "x", "s", ["kill_master"])
    assert fault is None and early["applicable"] is False
    monkeypatch.setattr(measurements, "phase", lambda: None)  # a probe called on its own measures what it finds
    fault, early = timed_fault(ctx_with([KILL]), "x", "s", ["kill_master"])
    assert fault["id"] == "f1" and early is None


def test_an_observed_fault_a_probe_already_measured_keeps_the_figure(monkeypatch):
    restart = dict(EXTERNAL, name="start-the-killed-master", started_at=125.0, ended_at=126.0)
    fault, _ = find_fault(ctx_with([]), ["kill_master"], observed=[EXTERNAL, restart], probe="p")
    assert fault["name"] == "start-the-killed-master"  # nothing measured yet: the latest
    measurements.remember(None, dict(EXTERNAL, origin="observed"), "p", {"value": 1.5})
    fault, _ = find_fault(ctx_with([]), ["kill_master"], observed=[EXTERNAL, restart], probe="p")
    assert fault["name"] == "kill-leader-by-pid"  # the one the method's probe measured right after it
    assert measurements.recall(fault, "p")["value"] == 1.5
