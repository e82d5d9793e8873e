"""Pure helpers of the fault-timed probes."""

from chaosscheduler.measurements import cut_from_registry, declared_after, longest_stall, lost_tasks, recall


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


def test_declared_after_prefers_the_history_and_ignores_earlier_declarations():
    worker = {"dead_declarations": [5.0, 12.0, 13.0], "declared_dead_at": 13.0}
    assert declared_after(worker, 10.0) == 12.0
    assert declared_after(worker, 20.0) is None
    assert declared_after({"declared_dead_at": 11.0}, 10.0) == 11.0


def test_lost_tasks_and_recall_and_cut_from_registry():
    fault = {"running_tasks": {"w1": ["b", "a"], "w2": ["a", "c"]},
             "measurements": {"p": {"value": 1.23456789}}}
    assert lost_tasks(fault) == ["a", "b", "c"]
    assert lost_tasks({}) == []
    assert recall(fault, "p") == 1.234568
    assert recall(fault, "q") is None
    assert cut_from_registry({"mode": "drop", "peers": ["*"]})
    assert cut_from_registry({"mode": "drop", "peers": ["etcd-1"], "cuts_registry": True})
    assert not cut_from_registry({"mode": "loss", "peers": ["*"]})
    assert not cut_from_registry({"mode": "drop", "peers": ["master-1"], "cuts_registry": False})
