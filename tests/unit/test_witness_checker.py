"""The witness checker on hand-written histories (Jepsen style): each anomaly found, with the ids that prove it,
and nothing found where nothing happened."""

import math

import pytest

from chaosscheduler.witness import command
from chaosscheduler.witness.checker import check, executions, quantile, rescheduling, stalls
from chaosscheduler.witness.history import History, Recorder, load


class H:
    """A tiny history builder: ``h.ok("a", 0, 0.1).run("a", "w1", 1, 3)``."""

    def __init__(self):
        self.events, self.execs = [], []

    def invoke(self, task, at):
        self.events.append({"type": "invoke", "task": task, "at": at})
        return self

    def ok(self, task, at, answered=None, job=None):
        self.invoke(task, at)
        self.events.append({"type": "ok", "task": task, "at": answered if answered is not None else at + 0.01,
                            "job_id": job or task, "latency": 0.01})
        return self

    def answer(self, task, kind, at, error="x"):
        self.events.append({"type": kind, "task": task, "at": at, "error": error})
        return self

    def completion(self, task, at):
        self.events.append({"type": "completion", "task": task, "at": at})
        return self

    def run(self, task, node, start, end=None, attempt=None, pid=None):
        pid = pid or f"{node}-{start}"
        self.execs.append({"task": task, "phase": "start", "host": node, "node": node, "at": start,
                           "attempt": attempt, "pid": pid})
        if end is not None:
            self.execs.append({"task": task, "phase": "end", "host": node, "node": node, "at": end,
                               "attempt": attempt, "pid": pid})
        return self

    def history(self, end):
        return History(self.events, self.execs, {"end": end})


def healthy(n=5):
    h = H()
    for i in range(n):
        h.ok(f"t{i}", i, job=f"j{i}").run(f"t{i}", f"w{i % 2}", i + 0.1, i + 1.1).completion(f"t{i}", i + 1.2)
    return h


def test_a_clean_history_is_valid_with_its_n():
    result = check(healthy().history(end=100), settle=10, thresholds={"execution": 0.98})
    assert result["valid"] is True
    assert result["counts"]["invoked"] == 5 and result["counts"]["judged"] == 5
    assert result["lost"] == [] and result["duplicated_ids"] == [] and result["unexpected"] == []
    assert result["execution"]["n"] == 5 and result["execution"]["value"] == 1.0
    assert result["execution"]["decidable"] is False and result["execution"]["n_needed"] == 133
    assert result["submissions"]["successes"] == 5
    assert result["stall"]["seconds"] == pytest.approx(0.1)  # submitted at +0, started at +0.1


def test_lost_needs_the_settle_time_to_pass_and_names_the_task():
    h = healthy().ok("gone", 10).ok("late", 95).ok("quick", 96).run("quick", "w1", 96.1, 97)
    result = check(h.history(end=100), settle=10)
    assert result["lost"] == ["gone"] and result["valid"] is False
    assert result["unsettled"] == ["late"]  # acknowledged 5 s before the end: not judged yet
    assert result["execution"]["n"] == 7 and result["execution"]["successes"] == 6  # a completed task is judged


def test_an_execution_that_never_ended_is_not_a_completion():
    h = H().ok("a", 0).run("a", "w1", 1)  # started, never ended (its host died with it)
    result = check(h.history(end=100), settle=10)
    assert result["lost"] == ["a"]


def test_a_completion_reported_without_any_execution_is_called_out():
    h = H().ok("a", 0).completion("a", 5)
    result = check(h.history(end=100), settle=10)
    assert result["completed_without_evidence"] == ["a"] and result["lost"] == ["a"]


def test_a_completion_recorded_twice_is_a_duplicate():
    h = healthy().completion("t2", 9)
    result = check(h.history(end=100), settle=10)
    assert result["duplicated"]["recorded_twice"] == ["t2"] and result["duplicated_ids"] == ["t2"]
    assert result["valid"] is False


def test_two_hosts_running_one_task_at_once_is_a_duplicate_even_with_a_fault_elsewhere():
    h = healthy().ok("d", 10).run("d", "w1", 10.1, 12.1, attempt="1").run("d", "w2", 10.2, 12.2, attempt="1")
    result = check(h.history(end=100), settle=10, faults=[{"targets": ["w9"], "started_at": 0, "ended_at": 50}])
    [dup] = result["duplicated"]["concurrent"]
    assert dup["task"] == "d" and dup["nodes"] == ["w1", "w2"] and dup["overlap"] == pytest.approx(1.9)
    assert result["reexecuted_after_loss"] == []


def test_the_same_attempt_on_two_hosts_is_a_duplicate_even_when_one_was_cut():
    h = H().ok("d", 0).run("d", "w1", 1, 3, attempt="1").run("d", "w2", 2, 4, attempt="1")
    result = check(h.history(end=100), settle=10, faults=[{"targets": ["w1"], "started_at": 1.5, "ended_at": 9}])
    assert [d["task"] for d in result["duplicated"]["concurrent"]] == ["d"]


def test_a_task_run_again_after_a_complete_execution_is_executed_twice():
    h = H().ok("d", 0).run("d", "w1", 1, 3).run("d", "w2", 5, 7)
    result = check(h.history(end=100), settle=10)
    assert [d["task"] for d in result["duplicated"]["executed_twice"]] == ["d"] and result["valid"] is False


def test_a_rerun_after_its_host_was_cut_is_reported_apart_not_as_a_duplicate():
    # w1 is cut at 2; its copy still finishes at 4 (it does not know); the scheduler re-runs the task on w2 at 8
    h = H().ok("r", 0).run("r", "w1", 1, 4, attempt="1").run("r", "w2", 8, 10, attempt="2")
    result = check(h.history(end=100), settle=10, faults=[{"targets": ["w1"], "started_at": 2, "ended_at": 30}])
    assert result["duplicated_ids"] == [] and result["valid"] is True
    [again] = result["reexecuted_after_loss"]
    assert again == {"task": "r", "from": "w1", "to": "w2", "lost_at": 2, "restarted_at": 8, "attempts": ["1", "2"]}
    # without the fault record, the same evidence is a duplicate: the checker does not guess losses
    assert check(h.history(end=100), settle=10)["duplicated_ids"] == ["r"]


def test_a_rerun_after_an_execution_that_never_ended_is_a_reexecution():
    h = H().ok("r", 0).run("r", "w1", 1).run("r", "w2", 8, 10)
    result = check(h.history(end=100), settle=10)
    assert [r["task"] for r in result["reexecuted_after_loss"]] == ["r"] and result["duplicated_ids"] == []


def test_refused_and_indeterminate_submissions_and_their_resolution():
    h = healthy()
    h.invoke("no", 10).answer("no", "fail", 10.5, "503 no leader")
    h.invoke("maybe-ran", 11).answer("maybe-ran", "info", 16, "timeout").run("maybe-ran", "w1", 12, 14)
    h.invoke("maybe-not", 12).answer("maybe-not", "info", 17, "timeout")
    h.invoke("crashed", 13)  # no answer recorded at all: indeterminate
    result = check(h.history(end=100), settle=10)
    assert result["refused"] == ["no"] and result["refusal_errors"]["no"] == "503 no leader"
    assert result["indeterminate"] == {"executed": ["maybe-ran"], "unknown": ["crashed", "maybe-not"]}
    assert result["submissions"]["n"] == 9 and result["submissions"]["successes"] == 5
    assert result["counts"]["info"] == 2 and result["counts"]["unanswered"] == 1
    assert result["lost"] == [] and result["execution"]["n"] == 6  # the resolved one is judged like an ok


def test_unexpected_tasks_are_named():
    h = healthy().run("stranger", "w1", 3, 4).completion("ghost", 5)
    result = check(h.history(end=100), settle=10)
    assert result["unexpected"] == ["ghost", "stranger"] and result["valid"] is False


def test_the_longest_stall_and_an_ongoing_one():
    h = H().ok("a", 0, 0.1).run("a", "w1", 0.2, 1).ok("b", 1, 1.1).ok("c", 2, 2.1).run("b", "w1", 6.1, 7)
    h.run("c", "w2", 6.2, 7)
    [longest] = [s for s in stalls(h.history(end=20), since="ack")][:1]
    assert longest == {"from": 1.1, "to": 6.1, "seconds": pytest.approx(5.0), "waiting": 2, "ongoing": False}
    # from the submission: b waited from 1.0 (a client retrying through a leaderless window waits too)
    assert stalls(h.history(end=20))[0]["from"] == 1 and stalls(h.history(end=20))[0]["seconds"] == pytest.approx(5.1)
    # a submission refused in the end never waited in the platform
    refused = H().ok("a", 0, 0.1).run("a", "w1", 0.2, 1).invoke("r", 2).answer("r", "fail", 9)
    assert [(s["from"], s["to"]) for s in stalls(refused.history(end=20))] == [(0, 0.2)]
    h.ok("d", 8, 8.5)  # never started: the history ends while it waits
    result = check(h.history(end=20), settle=30)
    assert result["stall"]["from"] == 8 and result["stall"]["ongoing"] is True
    assert result["stall"]["seconds"] == pytest.approx(12)
    assert result["open_stall"] == result["stall"]
    clipped = stalls(h.history(end=20), start=3, end=5)
    assert clipped[0]["from"] == 3 and clipped[0]["to"] == 5


def test_no_stall_when_nothing_waits():
    h = H().ok("a", 0, 0.5).run("a", "w1", 0.2, 1)  # started before its acknowledgement arrived
    assert stalls(h.history(end=10), since="ack") == []


def test_rescheduling_by_identity():
    h = H()
    h.ok("a", 0).run("a", "cut", 1).run("a", "w2", 20, 22)        # moved, 15 s after the cut
    h.ok("b", 0).run("b", "cut", 1, 30).run("b", "w3", 80, 82)    # moved, 75 s after the cut: late
    h.ok("c", 0).run("c", "cut", 2)                               # never moved
    h.ok("d", 0).run("d", "cut", 1, 3)                            # finished before the cut: not a victim
    h.ok("e", 0).run("e", "w2", 1, 9)                             # elsewhere: not a victim
    result = rescheduling(h.history(end=200), ["cut"], at=5, deadline=60, threshold=0.95)
    assert [t["task"] for t in result["tasks"]] == ["a", "b", "c"] and result["n"] == 3
    assert result["successes"] == 1 and result["not_restarted"] == ["c"] and result["late"] == ["b"]
    assert result["tasks"][0]["latency"] == 15 and result["tasks"][0]["restarted_on"] == "w2"
    assert result["tasks"][1]["finished_in_place"] is True
    assert result["latency"]["p50"] == 75 and result["latency"]["p95"] is None  # lands on the unmoved task
    assert result["latency"]["waiting"] == 195
    assert result["decidable"] is False and result["n_needed"] == 52


def test_executions_pair_lines_and_ignore_lines_collected_twice():
    h = H().run("a", "w1", 1, 2, pid="7").run("a", "w1", 1, 2, pid="7").run("a", "w1", 5, 6, pid="7")
    runs = executions(h.execs)["a"]
    assert [(r["start"], r["end"]) for r in runs] == [(1, 2), (5, 6)]


def test_quantile_is_nearest_rank():
    assert quantile([1, 2, 3, 4], 0.5) == 2 and quantile([1, 2, 3, 4], 0.95) == 4
    assert quantile([], 0.5) is None and quantile([1, math.inf], 1.0) is None


def test_the_evidence_lines_round_trip_through_the_task_script(tmp_path):
    import subprocess

    task = command.task_id("Run_42", 7)
    assert task == "w-run-42-7"
    subprocess.run(command.argv(task, 0, "e.log"), check=True, timeout=10,
                   env={"PATH": "/usr/bin:/bin", "CS_WITNESS_DIR": str(tmp_path), "CS_WITNESS_NODE": "n1",
                        "CS_WITNESS_ATTEMPT": "3"})
    records = command.parse_lines((tmp_path / "e.log").read_text(), node="n1")
    assert [r["phase"] for r in records] == ["start", "end"]
    assert records[0]["task"] == task and records[0]["host"] == "n1" and records[0]["attempt"] == "3"
    assert records[0]["at"] <= records[1]["at"] and records[0]["pid"] == records[1]["pid"]
    assert command.parse_line("cs-witness 1 start a b notanumber - 1") is None
    with pytest.raises(ValueError):
        command.argv("Bad id", 1, "e.log")


def test_a_recorded_history_loads_back_in_another_process_shape(tmp_path):
    rec = Recorder(str(tmp_path), {"run_id": "r1"})
    rec.record("invoke", "a", at=1.0)
    rec.record("ok", "a", at=1.1, job_id="j", latency=0.1)
    rec.add_executions([{"task": "a", "phase": "start", "host": "w", "node": "w", "at": 2.0, "attempt": None,
                         "pid": "1"}])
    rec.save_meta(end=50.0)
    rec.close()
    with open(tmp_path / "history.jsonl", "a") as handle:
        handle.write('{"type": "ok", "tas')  # a torn last line (killed run)
    loaded = load(str(tmp_path))
    assert loaded.tasks() == ["a"] and loaded.end == 50.0 and len(loaded.executions) == 1
    assert check(loaded, settle=10)["lost"] == ["a"]


def test_a_task_that_ran_but_the_platform_never_reported_is_forgotten():
    h = healthy().ok("dropped", 10).run("dropped", "w1", 10.1, 11)
    history = h.history(end=100)
    assert check(history, settle=10)["forgotten"] == []  # a platform that reports nothing cannot forget
    history.meta["completions_reported"] = True
    result = check(history, settle=10)
    assert result["forgotten"] == ["dropped"] and result["valid"] is False and result["lost"] == []
    assert check(history, settle=95)["forgotten"] == []  # it may still report it
