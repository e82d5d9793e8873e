"""The probes' reading of a witness history (chaosscheduler.evidence) on hand-written histories: the stall from
submission to first start, a re-execution after a completion report was cut off, a task that finished as the cut
came, submissions with indeterminate answers. Needs the witness package (chaosscheduler.witness)."""

import types

import pytest

pytest.importorskip("chaosscheduler.witness")

from chaosscheduler import evidence  # noqa: E402
from chaosscheduler.witness.history import History  # noqa: E402

T0 = 1000.0


def history(events=(), runs=(), end=None):
    executions = []
    for task, node, start, stop, attempt in runs:
        executions.append({"task": task, "phase": "start", "node": node, "host": node, "at": start, "pid": 1,
                           "attempt": attempt})
        if stop is not None:
            executions.append({"task": task, "phase": "end", "node": node, "host": node, "at": stop, "pid": 1,
                               "attempt": attempt})
    return History(events=[{"type": t, "task": task, "at": at} for t, task, at in events], executions=executions,
                   meta={"end": end})


@pytest.fixture
def ctx(monkeypatch):
    ledger = types.SimpleNamespace(records=[], all=lambda: ledger.records)
    made = types.SimpleNamespace(ledger=ledger, run_id="run-1", settings=types.SimpleNamespace(poll_interval=0.01))
    monkeypatch.setattr(evidence, "POLL", 0.0)

    def use(h, faults=()):
        ledger.records = [dict(f, run_id="run-1") for f in faults]
        monkeypatch.setattr(evidence, "history", lambda c, collect=True: h)
        return made

    return use


def test_the_stall_runs_from_submission_to_first_start_and_needs_waiting_work(ctx):
    events = [("invoke", "a", T0 + 1), ("ok", "a", T0 + 4), ("invoke", "b", T0 + 2), ("ok", "b", T0 + 4.1),
              ("invoke", "c", T0 + 3), ("ok", "c", T0 + 3.1)]
    runs = [("a", "w1", T0 + 4.5, T0 + 5, "1"), ("b", "w2", T0 + 4.6, T0 + 5, "1"), ("c", "w1", T0 + 3.2, T0 + 4, "1")]
    measured = evidence.stall(ctx(history(events, runs, end=T0 + 10)), T0, timeout=5)
    # a waited from its submission at 1 s (no leader: retried until 4 s) to 4.5 s; c started at 3.2 s in between
    assert measured["value"] == pytest.approx(2.2) and not measured["ongoing"]
    assert evidence.stall(ctx(history(events, runs, end=T0 + 10)), T0 + 6, timeout=5)["decided"] is False


def test_a_stall_still_going_on_at_the_bound_is_ongoing(ctx):
    events = [("invoke", "a", T0 + 1), ("ok", "a", T0 + 1.1)]
    measured = evidence.stall(ctx(history(events, [], end=T0 + 9)), T0, timeout=0)
    assert measured["ongoing"] and measured["value"] == pytest.approx(8.0) and "still stalled" in measured["reason"]


def test_a_task_whose_completion_report_was_cut_off_and_ran_again_is_a_reexecution(ctx):
    cut = {"action": "isolate_worker", "targets": ["w1"], "started_at": T0 + 10, "undone_at": T0 + 20}
    events = [("invoke", t, T0 + 1) for t in "abc"] + [("ok", t, T0 + 1.1) for t in "abc"]
    runs = [("a", "w1", T0 + 2, T0 + 8, "1"), ("a", "w2", T0 + 16, T0 + 22, "2"),   # ended 2 s before the cut
            ("b", "w2", T0 + 2, T0 + 3, "1"), ("b", "w3", T0 + 5, T0 + 6, "1"),     # nothing explains it: twice
            ("c", "w1", T0 + 2, T0 + 12, "1"), ("c", "w3", T0 + 16, T0 + 22, "2")]  # running at the cut
    found = evidence.consistency(ctx(history(events, runs, end=T0 + 100), [cut]), settle=30,
                                 allow_rerun_after_loss=True)
    assert found["duplicated"] == ["b"] and found["run_twice"] == ["b"] and found["anomalies"] == 1
    assert sorted(found["reexecuted_after_loss"]) == ["a", "c"]
    assert found["unreported_then_rerun"][0]["task"] == "a" and found["counts"]["duplicated"] == 1
    strict = evidence.consistency(ctx(history(events, runs, end=T0 + 100), [cut]), settle=30,
                                  allow_rerun_after_loss=False)
    assert strict["anomalies"] == 3


def test_rescheduling_by_identity_leaves_out_a_task_that_finished_as_the_cut_came(ctx):
    events = [("invoke", t, T0) for t in "abc"] + [("ok", t, T0 + 0.1) for t in "abc"]
    runs = [("a", "w1", T0 + 1, None, "1"), ("a", "w2", T0 + 16, T0 + 20, "2"),
            ("b", "w1", T0 + 1, T0 + 10.05, "1"),                        # ended 0.05 s after the cut, never again
            ("c", "w1", T0 + 1, T0 + 30, "1")]                          # ran on, cut off, never again
    found = evidence.rescheduling(ctx(history(events, runs, end=T0 + 80)), ["w1"], T0 + 10, bound=60)
    assert found["finished_at_cut"] == ["b"]
    assert found["per_task"] == {"a": {"moved": 6.0, "completed": 6.0}, "c": {"moved": None, "completed": None}}


def test_submissions_count_an_indeterminate_answer_only_when_its_task_ran(ctx):
    events = [("invoke", "a", T0 + 1), ("ok", "a", T0 + 1.1), ("invoke", "b", T0 + 2), ("info", "b", T0 + 12),
              ("invoke", "c", T0 + 3), ("info", "c", T0 + 13), ("invoke", "d", T0 + 4), ("fail", "d", T0 + 4.2)]
    runs = [("a", "w1", T0 + 2, T0 + 3, "1"), ("b", "w1", T0 + 5, T0 + 6, "1")]
    found = evidence.submissions(ctx(history(events, runs, end=T0 + 60)), T0, T0 + 10)
    assert (found["successes"], found["n"]) == (2, 4) and found["refused"] == ["d"]
    assert found["indeterminate"] == {"executed": ["b"], "unknown": ["c"]}
