"""Verdicts that cannot lie, through the real ``chaos`` CLI on the embedded cluster (root, etcd, nft): a run in which
no fault ran fails and says so; a leader killed by a plain Chaos Toolkit ``process`` action is timed by our probes
in agreement with the cluster's event log; a leader that wins fast but schedules nothing fails on the stall; a split
brain is reported with every symptom in one run; a var file sets every threshold and timing of each experiment, and
each passes on a healthy cluster with a witness history big enough to decide its thresholds.

Each run gets its own state home and cluster name; after each, nothing of ours is left.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from chaosscheduler.measurements import needed_n
from chaosscheduler.report import write_report
from tests.conftest import NEEDS_ETCD, NEEDS_ROOT, unique_name
from tests.e2e.test_experiments import CHAOS, EXPERIMENTS, assert_nothing_left

pytestmark = [NEEDS_ROOT, NEEDS_ETCD, pytest.mark.e2e]
# the control's run record (phase, observed faults) and the witness are other parts of this release
pytest.importorskip("chaosscheduler.runs", reason="needs the control's run record (chaosscheduler.runs)")
pytest.importorskip("chaosscheduler.witness", reason="needs the witness (chaosscheduler.witness)")

HERE = os.path.dirname(os.path.abspath(__file__))
VARS = os.path.join(HERE, "vars")


def run(tmp_path, home, experiment, var_files=(), cluster=None, timeout=600):
    cluster = cluster or unique_name("v")
    journal = tmp_path / "journal.json"
    argv = [CHAOS, "--no-version-check", "--log-file", str(tmp_path / "chaos.log"), "run", experiment,
            "--journal-path", str(journal)]
    for var_file in var_files:
        argv += ["--var-file", var_file]
    env = dict(os.environ, CHAOSSCHEDULER_HOME=home, CHAOSSCHEDULER_CLUSTER=cluster)
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert journal.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(journal.read_text()), cluster


def outputs(journal, when="after"):
    """{probe name: (output, tolerance_met)} of a hypothesis, with the probes Chaos Toolkit skipped."""
    found = {p["activity"]["name"]: (p["output"], p["tolerance_met"])
             for p in (journal["steady_states"].get(when) or {}).get("probes", [])}
    for skipped in journal["chaosscheduler"].get("skipped_probes") or []:
        if skipped.get("hypothesis", "after") == when:
            found.setdefault(skipped["name"], (skipped.get("output"), skipped.get("tolerance_met")))
    return found


def judgments(journal, log):
    """Every (tolerance, threshold) judged in the run: from the journal when the control stored them, and from the
    log line each tolerance writes ("tolerance at_most (limit 20): ...")."""
    found = {(j["func"], j["argument"]) for j in journal["chaosscheduler"].get("verdicts", {}).get("judgments", [])}
    for func, value in re.findall(r"tolerance (\w+) \(\w+ ([0-9.]+)\):", log.read_text()):
        found.add((func, float(value)))
    return found


def report_of(tmp_path, journal_path):
    from chaosscheduler.report.model import run_view

    write_report([str(journal_path)], str(tmp_path / "report.html"))
    return run_view(json.loads(journal_path.read_text())), (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("experiment", ["master-crash.json", "worker-disconnect.json", "network-partition.json"])
def test_a_dry_run_fails_and_its_report_says_no_fault_ran(tmp_path, home, experiment):
    cluster = unique_name("d")
    journal_path = tmp_path / "journal.json"
    argv = [CHAOS, "--no-version-check", "--log-file", str(tmp_path / "chaos.log"), "run", "--dry", "actions",
            os.path.join(EXPERIMENTS, experiment), "--journal-path", str(journal_path),
            "--var-file", os.path.join(VARS, "no-witness.json")]
    env = dict(os.environ, CHAOSSCHEDULER_HOME=home, CHAOSSCHEDULER_CLUSTER=cluster)
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stdout[-3000:]
    journal = json.loads(journal_path.read_text())
    assert journal["status"] != "completed" or journal["deviated"]
    assert journal["chaosscheduler"]["faults"] == []
    failing = {name: out for name, (out, met) in outputs(journal).items() if met is False}
    assert any(isinstance(out, dict) and out.get("no_fault") for out in failing.values()), failing
    view, html = report_of(tmp_path, journal_path)
    assert view["verdict"] == "nofault" and view["verdict_text"].startswith("No fault ran")
    assert 'data-verdict="nofault"' in html and "No fault ran" in html
    assert "no fault" in view["failed_checks"][0]["reason"]
    assert_nothing_left(home, cluster)


def test_a_leader_killed_by_a_process_action_is_timed_by_our_probes(tmp_path, home, make_cluster):
    """Another tool's fault: the method kills the leader with a plain ``process`` action (``kill -9`` of the pid in
    the cluster's record); our probes find no fault of ours and time the election from that action's window."""
    with open(os.path.join(EXPERIMENTS, "master-crash.json")) as handle:
        experiment = json.load(handle)
    tb = make_cluster(**experiment["configuration"]["chaosscheduler_testbed"])
    helper = os.path.join(HERE, "kill_leader.py")
    experiment["controls"][0]["provider"]["arguments"]["testbed"] = "never"  # the test owns the cluster
    experiment["method"] = [
        {"type": "action", "name": "kill-9-the-leader", "provider": {"type": "process", "path": sys.executable,
                                                                    "arguments": [helper, "kill"]}},
        experiment["method"][1],  # our measure-leader-election-time probe
        {"type": "action", "name": "start-the-killed-master", "provider": {"type": "process", "path": sys.executable,
                                                                          "arguments": [helper, "restart"]}}]
    path = tmp_path / "process-kill.json"
    path.write_text(json.dumps(experiment))
    proc, journal, _ = run(tmp_path, home, str(path), cluster=tb.spec.name)
    killed = json.loads(journal["run"][0]["output"]["stdout"])
    observed = [f for f in journal["chaosscheduler"]["observed_faults"] if not f["ours"]]
    assert [f["name"] for f in observed] == ["kill-9-the-leader", "start-the-killed-master"]
    assert journal["chaosscheduler"]["faults"] == []  # nothing of ours was injected
    election, met = outputs(journal)["leader-elected-in-time"]
    assert met and election["fault"]["origin"] == "observed" and election["fault"]["name"] == "kill-9-the-leader"
    acquired = [e for e in tb.events("leader_acquired") if e["ts"] >= observed[0]["started_at"]
                and e["node"] != killed["killed"]]
    assert acquired and election["new_leader"] == acquired[0]["node"]
    truth = acquired[0]["since"] - killed["at"]  # from the kill itself (the helper's own clock reading)
    window = observed[0]["ended_at"] - observed[0]["started_at"]
    assert truth - 0.002 <= election["value"] <= truth + window + 0.002, (election, truth, window)
    assert proc.returncode == 0, outputs(journal)


def test_a_leader_that_schedules_nothing_after_winning_fails_master_crash_on_the_stall(tmp_path, home):
    proc, journal, cluster = run(tmp_path, home, os.path.join(EXPERIMENTS, "master-crash.json"),
                                 [os.path.join(EXPERIMENTS, "vars", "broken-stall-after-election.json")])
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert journal["deviated"] is True
    found = outputs(journal)
    election, election_met = found["leader-elected-in-time"]
    stall, stall_met = found["scheduling-not-interrupted-long"]
    assert election_met and election["value"] < 10, election  # the election itself was fast
    assert not stall_met and stall["value"] >= 9.5 and not stall.get("ongoing"), stall
    view, _ = report_of(tmp_path, tmp_path / "journal.json")
    assert "scheduling-not-interrupted-long" in [c["name"] for c in view["failed_checks"]]
    assert_nothing_left(home, cluster)


def test_a_split_brain_is_reported_with_every_symptom_in_one_run(tmp_path, home):
    proc, journal, cluster = run(tmp_path, home, os.path.join(EXPERIMENTS, "master-crash.json"),
                                 [os.path.join(EXPERIMENTS, "vars", "broken-split-brain.json")])
    assert proc.returncode == 1, proc.stdout[-3000:]
    found = outputs(journal)
    consistency, consistency_met = found["accepted-tasks-neither-lost-nor-duplicated"]
    health, health_met = found["cluster-is-healthy"]
    assert not consistency_met and consistency["anomalies"] > 0, consistency
    assert not health_met and len(health["leaders"]) > 1, health
    view, html = report_of(tmp_path, tmp_path / "journal.json")
    names = [c["name"] for c in view["failed_checks"]]
    assert names[0] == "cluster-is-healthy" and "split brain" in view["failed_checks"][0]["reason"]
    assert "accepted-tasks-neither-lost-nor-duplicated" in names
    assert_nothing_left(home, cluster)


def _passes_and_decides(proc, journal):
    failing = [(n, o) for n, (o, met) in outputs(journal).items() if met is False]
    assert proc.returncode == 0 and not failing, (failing, journal["chaosscheduler"].get("failure_reasons"))
    for name, (output, _) in outputs(journal).items():
        if isinstance(output, dict) and output.get("unit") == "ratio" and output.get("lower") is not None:
            assert output["n"] > 0, (name, output)


def test_master_crash_takes_every_threshold_and_timing_from_a_var_file(tmp_path, home):
    proc, journal, cluster = run(tmp_path, home, os.path.join(EXPERIMENTS, "master-crash.json"),
                                 [os.path.join(VARS, "master-crash-every-variable.json")])
    _passes_and_decides(proc, journal)
    assert {("at_most", 20), ("at_most", 4), ("at_least", 0.99), ("consistent", 150)} <= judgments(
        journal, tmp_path / "chaos.log")
    found = outputs(journal)
    assert found["leader-elected-in-time"][0]["bound"] == 25
    assert found["leader-elected-in-time"][0]["poll_interval"] == 0.02
    assert found["scheduling-not-interrupted-long"][0]["bound"] == 20
    submissions = found["job-submissions-accepted"][0]
    assert submissions["window"][1] - submissions["window"][0] == pytest.approx(30, abs=0.01)
    assert submissions["n"] >= needed_n(0.99) and submissions["source"] == "witness"
    fault = journal["chaosscheduler"]["faults"][0]
    assert fault["signal"] == "SIGTERM" and fault["deadline"] - fault["started_at"] == pytest.approx(45, abs=0.5)
    assert_nothing_left(home, cluster)


def test_worker_disconnect_takes_every_threshold_and_timing_from_a_var_file(tmp_path, home):
    proc, journal, cluster = run(tmp_path, home, os.path.join(EXPERIMENTS, "worker-disconnect.json"),
                                 [os.path.join(VARS, "worker-disconnect-every-variable.json")])
    _passes_and_decides(proc, journal)
    assert {("at_most", 60), ("at_least", 0.9), ("at_most", 45), ("at_most", 0.95),
            ("consistent", 150)} <= judgments(journal, tmp_path / "chaos.log")
    found = outputs(journal)
    assert found["worker-failure-detected-in-time"][0]["bound"] == 70
    rescheduled = found["lost-tasks-rescheduled"][0]
    assert rescheduled["deadline"] == 50 and rescheduled["n"] >= needed_n(0.9) and "witness" in rescheduled["source"]
    assert found["rescheduling-latency-short"][0]["quantile"] == 0.9
    rejoin = next(e for e in journal["run"] if e["activity"]["name"] == "let-the-worker-rejoin")
    assert rejoin["output"]["timeout"] == 90
    fault = journal["chaosscheduler"]["faults"][0]
    assert fault["deadline"] - fault["started_at"] == pytest.approx(100, abs=0.5)
    assert_nothing_left(home, cluster)


def test_network_partition_takes_every_threshold_and_timing_from_a_var_file(tmp_path, home):
    proc, journal, cluster = run(tmp_path, home, os.path.join(EXPERIMENTS, "network-partition.json"),
                                 [os.path.join(VARS, "network-partition-every-variable.json")])
    _passes_and_decides(proc, journal)
    assert {("at_least", 0.98), ("at_least", 0.95), ("consistent", 100)} <= judgments(journal,
                                                                                  tmp_path / "chaos.log")
    found = outputs(journal)
    heartbeat = found["heartbeats-judged-right"][0]
    assert heartbeat["heartbeat_interval"] == 0.5 and heartbeat["heartbeat_timeout"] == 5
    assert heartbeat["n"] >= needed_n(0.98) and not heartbeat.get("split_too_short")
    tasks = found["tasks-succeed"][0]
    assert tasks["window"][1] - tasks["window"][0] == pytest.approx(25, abs=0.01) and tasks["source"] == "witness"
    split, loss = journal["chaosscheduler"]["faults"][:2]
    assert split["undone_at"] - split["started_at"] >= 6 and loss["undone_at"] - loss["started_at"] >= 10
    assert split["deadline"] - split["started_at"] == pytest.approx(40, abs=0.5)
    assert loss["mode"] == "loss"
    assert_nothing_left(home, cluster)
