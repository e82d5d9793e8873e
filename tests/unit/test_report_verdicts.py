"""The report on journals whose probes return measurements: a run with no fault says so in its headline,
not-applicable values are never shown as measured, every ratio comes with its n and bound, and every failed check
is listed, most telling first, including the probes Chaos Toolkit skipped (evaluated by the control)."""

import re

from chaosscheduler.measurements import measurement, not_applicable, ratio, undecided
from chaosscheduler.report import render
from chaosscheduler.report.model import run_view
from chaosscheduler.tolerances import fingerprint

T0 = 1_800_000_000.0


def iso(offset):
    import datetime

    return datetime.datetime.fromtimestamp(T0 + offset, datetime.timezone.utc).isoformat()


def tol(func, arg, var):
    return {"type": "probe", "name": f"{func}-{var}", "provider": {"type": "python",
            "module": "chaosscheduler.tolerances", "func": func, "arguments": {arg: "${" + var + "}"}}}


PROBES = [("leader-elected-in-time", "leader_election_time", tol("at_most", "limit", "leader_election_limit")),
          ("job-submissions-accepted", "job_submission_success_rate",
           tol("at_least", "threshold", "submission_threshold")),
          ("accepted-tasks-neither-lost-nor-duplicated", "data_consistency",
           tol("consistent", "min_tasks", "consistency_min_tasks")),
          ("cluster-is-healthy", "cluster_health", {"type": "range", "range": [0, 0], "target": "problem_count"})]


def entry(name, func, tolerance, output, met, start):
    return {"activity": {"type": "probe", "name": name, "tolerance": tolerance,
                         "provider": {"type": "python", "module": "chaosscheduler.probes", "func": func}},
            "output": output, "start": iso(start), "end": iso(start + 0.1), "status": "succeeded",
            "tolerance_met": met}


def journal(after, skipped=(), faults=True, dry=None, judgments=()):
    experiment = {"title": "master crash", "configuration": {"leader_election_limit": 30,
                                                             "submission_threshold": 0.995,
                                                             "consistency_min_tasks": 100},
                  "steady-state-hypothesis": {"title": "h", "probes": [
                      {"type": "probe", "name": n, "tolerance": t,
                       "provider": {"type": "python", "module": "chaosscheduler.probes", "func": f}}
                      for n, f, t in PROBES]}}
    if dry:
        experiment["dry"] = dry
    before = [entry(n, f, t, not_applicable("s", "before the method") if f != "cluster_health" else
                    {"problem_count": 0, "leaders": ["master-1"]}, True, 0.1 * i)
              for i, (n, f, t) in enumerate(PROBES)]
    ours = {"run_id": "run-x", "faults": [], "observed_faults": [], "undo_errors": [], "failure_reasons": [],
            "skipped_probes": list(skipped), "verdicts": {"judgments": list(judgments), "warnings": []}}
    if faults:
        ours["faults"] = [{"id": "f1", "action": "kill_master", "targets": ["master-1"], "started_at": T0 + 2,
                           "undone_at": T0 + 5, "state": "undone"}]
    return {"status": "completed", "deviated": any(e["tolerance_met"] is False for e in after),
            "start": iso(0), "end": iso(20), "experiment": experiment,
            "steady_states": {"before": {"steady_state_met": True, "probes": before},
                              "after": {"steady_state_met": all(e["tolerance_met"] for e in after), "probes": after}},
            "run": [{"activity": {"type": "action", "name": "kill-the-leader-master",
                                  "provider": {"type": "python", "module": "chaosscheduler.actions",
                                               "func": "kill_master"}},
                     "output": None if dry else {"id": "f1"}, "start": iso(2), "end": iso(2.1),
                     "status": "succeeded"}],
            "rollbacks": [], "chaosscheduler": ours}


def test_a_run_with_no_fault_has_a_no_fault_headline_and_its_no_fault_check_comes_first():
    no_fault = undecided("s", "none", "no fault: no kill_master fault and no other action of the method happened",
                         no_fault=True)
    after = [entry(*PROBES[0], no_fault, False, 10)]
    skipped = [{"hypothesis": "after", "after_failure_of": PROBES[0][0], "name": PROBES[3][0],
                "provider": "python:chaosscheduler.probes.cluster_health", "status": "succeeded",
                "output": {"problem_count": 0}, "tolerance_met": True}]
    view = run_view(journal(after, skipped, faults=False, dry="actions"))
    assert view["verdict"] == "nofault"
    assert view["verdict_text"].startswith("No fault ran: the run was dry (--dry actions)")
    assert [c["name"] for c in view["failed_checks"]] == ["leader-elected-in-time"]
    assert "undecided: no fault" in view["failed_checks"][0]["reason"]
    html = render([journal(after, skipped, faults=False, dry="actions")], ["j.json"])
    assert 'data-verdict="nofault"' in html and "No fault ran" in html


def test_not_applicable_values_are_never_shown_as_measured():
    after = [entry(*PROBES[0], measurement(2.1, "s", "the new leader's own election timestamp", 0.001), True, 10)]
    view = run_view(journal(after))
    row = next(r for r in view["hypothesis"] if r["name"] == "leader-elected-in-time")
    assert row["before"]["kind"] == "na" and row["before"]["value"] is None
    figure = next(f for f in view["figures"] if f["func"] == "leader_election_time")
    assert figure["value"] == 2.1 and figure["source"].endswith("the new leader's own election timestamp")
    html = render([journal(after)], ["j.json"])
    cells = re.findall(r"<tr><td>leader-elected-in-time.*?</tr>", html, re.S)[0]
    assert "not applicable" in cells and ">2.1" in cells
    # a figure only measured before the method (not applicable) is listed as not measured, never as a value
    view = run_view(journal([entry(*PROBES[0], not_applicable("s", "x"), True, 10)]))
    figure = next(f for f in view["figures"] if f["func"] == "leader_election_time")
    assert figure["value"] is None and figure["passed"] is None


def test_ratios_show_their_n_and_bound_and_are_judged_on_the_bound():
    small = ratio(100, 100, "witness")
    after = [entry(*PROBES[1], small, False, 10)]
    view = run_view(journal(after))
    figure = next(f for f in view["figures"] if f["func"] == "job_submission_success_rate")
    assert figure["n"] == 100 and figure["passed"] is False  # 100 % of 100 does not show > 99.5 %
    assert "n = 100" in figure["text"] and "lower bound" in figure["text"]
    check = view["failed_checks"][0]
    assert "needs n >= 539" in check["reason"] and "the experiment's default" in check["reason"]
    # the control stored the judgment with the threshold a var file set: the report uses it
    judged = {"func": "at_least", "argument": 0.99, "met": False, "reason": "as judged in the run",
              "output": fingerprint(small)}
    assert run_view(journal(after, judgments=[judged]))["failed_checks"][0]["reason"] == "as judged in the run"


def test_every_failed_check_is_listed_most_telling_first_including_those_chaos_toolkit_skipped():
    late = measurement(41.0, "s", "leader poll", 0.01)
    after = [entry(*PROBES[0], late, False, 10)]
    lost = ratio(590, 600, "witness", anomalies=10, lost=["t-1"], duplicated=[], run_twice=["t-2"])
    skipped = [{"hypothesis": "after", "after_failure_of": PROBES[0][0], "name": PROBES[2][0],
                "provider": "python:chaosscheduler.probes.data_consistency", "status": "succeeded", "output": lost,
                "tolerance": PROBES[2][2], "tolerance_met": False},
               {"hypothesis": "after", "after_failure_of": PROBES[0][0], "name": PROBES[3][0],
                "provider": "python:chaosscheduler.probes.cluster_health", "status": "succeeded",
                "output": {"problem_count": 1, "leaders": ["master-1", "master-2"],
                           "problems": ["split brain: 2 masters claim to lead"]},
                "tolerance": PROBES[3][2], "tolerance_met": False}]
    view = run_view(journal(after, skipped))
    assert view["verdict"] == "deviated"
    names = [c["name"] for c in view["failed_checks"]]
    assert names == ["cluster-is-healthy", "accepted-tasks-neither-lost-nor-duplicated", "leader-elected-in-time"]
    assert [c["skipped_by_chaos_toolkit"] for c in view["failed_checks"]] == [True, True, False]
    assert "split brain" in view["failed_checks"][0]["reason"]
    assert "10 of 600 accepted tasks not run exactly once" in view["failed_checks"][1]["reason"]
    assert "41 s > 30" in view["failed_checks"][2]["reason"]
    html = render([journal(after, skipped)], ["j.json"])
    assert re.findall(r'data-check="([^"]+)"', html) == names
    assert "skipped by Chaos Toolkit, evaluated by the control" in html


def test_the_witness_history_is_drawn_on_the_timeline_with_the_lost_and_the_doubled(tmp_path):
    import pytest

    history = pytest.importorskip("chaosscheduler.witness.history")
    recorder = history.Recorder(str(tmp_path / "witness"))
    for task, at in (("a", 1.0), ("b", 1.5), ("c", 2.0), ("d", 2.2)):
        recorder.record("invoke", task, at=T0 + at)
    for task in "abc":
        recorder.record("ok", task, at=T0 + 2.5)
    recorder.record("fail", "d", at=T0 + 2.4)
    line = lambda task, phase, node, at: {"task": task, "phase": phase, "node": node, "host": node,  # noqa: E731
                                          "at": T0 + at, "pid": 1, "attempt": "1"}
    recorder.add_executions([line("a", "start", "w1", 3.0), line("a", "end", "w1", 4.0),
                             line("b", "start", "w1", 3.1), line("b", "end", "w1", 4.1),
                             line("b", "start", "w2", 3.2), line("b", "end", "w2", 4.2)])  # b twice at once
    recorder.save_meta(end=T0 + 100)
    recorder.close()
    j = journal([entry(*PROBES[0], measurement(2.1, "s", "x"), True, 10)])
    j["chaosscheduler"]["witness"] = {"directory": str(tmp_path / "witness"), "counts": {"invoked": 4}}
    view = run_view(j)
    lane = view["witness_timeline"]
    assert sorted((kind, task) for kind, task, _ in lane["marks"]) == [("doubled", "b"), ("lost", "c"),
                                                                     ("refused", "d")]
    html = render([j], ["j.json"])
    assert 'class="witness-bin"' in html and 'data-kind="doubled"' in html and 'data-kind="lost"' in html
    j["chaosscheduler"]["witness"]["directory"] = str(tmp_path / "gone")
    assert any("not on this machine" in n for n in run_view(j)["notes"])
