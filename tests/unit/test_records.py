"""Figures from the platform's task records: waits, busy intervals, the utilisation peak swept through a window,
moves after a fault, consistency anomalies."""

from chaosscheduler import records


def task(task_id, submitted, history, state="completed", **extra):
    return dict({"id": task_id, "submitted_at": submitted, "state": state, "history": history}, **extra)


def test_waits_split_closed_from_still_open_and_count_refused_submissions():
    tasks = [task("a", 1.0, [{"event": "assigned", "at": 1.5, "worker": "w1"}]),
             task("b", 2.0, [], state="pending"),
             task("c", 3.0, [{"event": "assigned", "at": 3.1, "worker": "w1"},
                             {"event": "rescheduled", "at": 5.0},
                             {"event": "assigned", "at": 7.0, "worker": "w2"}], state="assigned")]
    subs = [{"at": 0.5, "outcome": "accepted", "tasks": ["a"]}, {"at": 4.0, "outcome": "failed", "latency": 5.0}]
    closed, still = records.waits(tasks, subs, now=10.0)
    assert sorted(closed) == [(0.5, 1.5), (3.0, 3.1), (4.0, 9.0), (5.0, 7.0)]
    assert still == [2.0]
    assert records.assignments(tasks) == [1.5, 3.1, 7.0]


def test_peak_utilisation_sweeps_every_assignment_in_the_window_not_one_sample():
    # two survivors of 2 slots each; between 4 and 5 three tasks run at once (75 %), before and after only one
    tasks = [task("a", 0, [{"event": "assigned", "at": 1.0, "worker": "w1"}, {"event": "completed", "at": 9.0}]),
             task("b", 0, [{"event": "assigned", "at": 4.0, "worker": "w2"}, {"event": "completed", "at": 5.0}]),
             task("c", 0, [{"event": "assigned", "at": 4.2, "worker": "w2"}, {"event": "completed", "at": 4.8}]),
             task("d", 0, [{"event": "assigned", "at": 4.0, "worker": "w3"}], state="assigned")]  # the cut worker
    found = records.peak_utilisation(tasks, {"w1": 2, "w2": 2}, start=2.0, end=8.0)
    assert found["value"] == 0.75 and found["peak_tasks"] == 3 and found["at"] == 4.2
    assert found["per_worker"] == {"w1": {"peak": 1, "slots": 2}, "w2": {"peak": 2, "slots": 2}}
    assert records.peak_utilisation(tasks, {"w1": 2, "w2": 2}, start=6.0, end=8.0)["value"] == 0.25


def test_running_at_and_first_move_follow_each_task_by_identity():
    t = task("a", 0, [{"event": "assigned", "at": 1.0, "worker": "w3"}, {"event": "rescheduled", "at": 6.0},
                      {"event": "assigned", "at": 6.5, "worker": "w1"},
                      {"event": "completed", "at": 9.0, "worker": "w1"}])
    assert records.running_at([t], ["w3"], 5.0) == ["a"]
    assert records.running_at([t], ["w3"], 7.0) == []
    assert records.first_move(t, 5.0, ["w3"]) == (6.5, 9.0)
    assert records.first_move(t, 7.0, ["w3"]) is None


def test_consistency_tells_a_task_run_twice_from_one_run_again_after_a_loss():
    ok = task("ok", 0, [], completions=1, completed_attempt=1, completed_by="w1", stale_completions=[])
    lost = task("lost", 0, [], state="assigned")
    twice = task("twice", 0, [], completions=1, completed_attempt=1, completed_by="w1",
                 stale_completions=[{"worker": "w2", "attempt": 1, "reason": "already completed"}])
    again = task("again", 0, [], completions=1, completed_attempt=2, completed_by="w1",
                 stale_completions=[{"worker": "w3", "attempt": 1, "reason": "superseded attempt"}])
    retried_report = task("retry", 0, [], completions=1, completed_attempt=1, completed_by="w1",
                          stale_completions=[{"worker": "w1", "attempt": 1, "reason": "already completed"}])
    recorded_twice = task("double", 0, [], completions=2, completed_attempt=1, completed_by="w1")
    found = records.consistency([ok, lost, twice, again, retried_report, recorded_twice], ["ok", "unknown"])
    assert found == {"lost": ["lost", "unknown"], "duplicated": ["double"], "run_twice": ["twice"],
                     "reexecuted_after_loss": ["again"]}
