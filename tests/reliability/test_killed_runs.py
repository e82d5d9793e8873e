"""A killed run never looks green and always leaves evidence (issue 11): the real ``chaos run`` on a real embedded
cluster, stopped with SIGTERM or SIGKILL while a fault is in place.

- SIGTERM while a Python probe of the method waits (Chaos Toolkit alone: a failed probe, then "completed", exit 0):
  the run ends "interrupted", exit 1, the fault undone by the run at once, the final log line says so.
- SIGKILL during the method: the run record is left behind; ``chaosscheduler faults`` names the run (dead),
  ``chaosscheduler report <run dir>`` renders it ("killed during the method", the fault still open), and the next run
  on the same cluster reports the leftovers in its log and journal, undoes the fault by its ledger record, replaces
  the cluster the killed run would have removed, and marks the old record ``killed``; the report then says who undid
  the fault and when.
- SIGKILL, then nobody: the fault expires at its deadline (its reaper) and the report says when.

Synchronisation is by the run's own evidence (the ledger, a gate file a probe waits for), never by sleeping.
"""

import json
import os
import shutil
import signal
import tempfile
import uuid

import pytest

from chaosscheduler import runs
from chaosscheduler.ledger import Ledger
from chaosscheduler.testbed import network
from chaosscheduler.timing import wait_until

from . import harness
from .conftest import REAL

pytestmark = REAL + [pytest.mark.e2e]
ROOT = harness.ROOT
CONTROL = {"name": "chaosscheduler", "provider": {"type": "python", "module": "chaosscheduler.control",
                                                  "arguments": {"testbed": "auto", "warmup": 0, "strict": True,
                                                                "timeline": False}}}
HEALTH = {"type": "probe", "name": "cluster-is-healthy",
          "tolerance": {"type": "range", "range": [0, 0], "target": "problem_count"},
          "provider": {"type": "python", "module": "chaosscheduler.probes", "func": "cluster_health",
                       "arguments": {}}}


def experiment(method, hypothesis=(HEALTH,), rollbacks=()):
    return {"title": "a run to kill", "description": "test", "controls": [CONTROL],
            "steady-state-hypothesis": {"title": "healthy", "probes": list(hypothesis)},
            "method": list(method), "rollbacks": list(rollbacks),
            "runtime": {"rollbacks": {"strategy": "always"}}}


def isolate(duration):
    return {"type": "action", "name": "isolate-a-worker",
            "provider": {"type": "python", "module": "chaosscheduler.actions", "func": "isolate_worker",
                         "arguments": {"duration": duration}}}


def wait_probe(gate):
    return {"type": "probe", "name": "wait-for-the-gate",
            "provider": {"type": "python", "module": "tests.control_helpers", "func": "wait_for_file",
                         "arguments": {"path": gate, "timeout": 170}}}


@pytest.fixture
def place(monkeypatch):
    """A state home, a work directory and a cluster name for this test; the cluster and reapers removed after."""
    monkeypatch.setenv("PYTHONPATH", ROOT)  # the experiments use tests.control_helpers
    home = tempfile.mkdtemp(prefix="csk", dir="/tmp")
    workdir = tempfile.mkdtemp(prefix="cskw", dir="/tmp")
    cluster = "k" + uuid.uuid4().hex[:9]
    state = {"home": home, "workdir": workdir, "cluster": cluster, "runs": []}
    yield state
    for run in state["runs"]:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
    left = harness.remove_cluster(home, os.path.join(home, "testbed", cluster), cluster)
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)
    assert left == []


def start(place, exp, name="experiment.json", extra=()):
    workdir = tempfile.mkdtemp(prefix="r", dir=place["workdir"])
    path = os.path.join(workdir, name)
    with open(path, "w") as handle:
        json.dump(exp, handle)
    run = harness.start_chaos(path, workdir, place["home"], place["cluster"], extra=list(extra))
    place["runs"].append(run)
    return run


def active(run):
    try:
        return harness.active_fault(run)
    except harness.HarnessError as e:
        pytest.fail(f"{e}: {run.output()[-3000:]}")


def record_of(place, run_id=None):
    records = runs.all_records(place["home"])
    return records[-1] if run_id is None else next(r for r in records if r["run_id"] == run_id)


def last_line(run):
    lines = [line for line in run.output().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_sigterm_while_a_python_probe_waits_ends_the_run_interrupted_with_the_fault_undone(place):
    gate = os.path.join(place["workdir"], "gate")
    run = start(place, experiment([isolate(60), wait_probe(gate)]))
    fault = active(run)
    wait_until(lambda: os.path.exists(gate + ".waiting"), 120, message="the probe's wait")
    os.kill(run.proc.pid, signal.SIGTERM)
    assert run.proc.wait(timeout=120) == 1, run.output()[-3000:]
    journal = run.journal()
    assert journal["status"] == "interrupted"
    assert journal["interruption"]["name"] == "SIGTERM"
    ours = journal["chaosscheduler"]
    assert ours["undone"] == [fault["id"]] and ours["undo_errors"] == []
    assert ours["failure_reasons"][0].startswith("interrupted by SIGTERM during the method")
    record = Ledger(place["home"]).get(fault["id"])
    assert record["state"] == "undone" and record["undone_at"] < record["deadline"] - 30  # by the run, not expiry
    assert [r["activity"]["name"] for r in journal["run"]] == ["isolate-a-worker", "wait-for-the-gate"]
    assert journal["steady_states"]["after"] is None  # the run stopped: no hypothesis on a platform mid-fault
    line = last_line(run)
    assert "chaosscheduler: final status of run" in line and "INTERRUPTED" in line and "exits 1" in line, line
    kept = record_of(place)
    assert kept["phase"] == "ended" and kept["status"] == "interrupted" and kept["signal"]["phase"] == "method"


def test_a_sigkilled_run_is_reported_from_its_record_and_healed_by_the_next_run(place):
    gate = os.path.join(place["workdir"], "gate")
    run = start(place, experiment([isolate(90), wait_probe(gate)]))
    fault = active(run)
    wait_until(lambda: os.path.exists(gate + ".waiting"), 120, message="the probe's wait")
    os.kill(run.proc.pid, signal.SIGKILL)
    assert run.proc.wait(timeout=30) == -signal.SIGKILL
    killed = record_of(place)
    assert killed["phase"] == "method" and killed["status"] is None and not runs.alive(killed)
    assert [f["fault_ids"] for f in killed["observed_faults"]] == [[fault["id"]]]
    assert killed["activities"][-1]["name"] == "wait-for-the-gate" and killed["activities"][-1]["ended_at"] is None

    listing = harness.cli(place["home"], "faults")
    assert listing.returncode == 0 and f"run {killed['run_id']} (dead)" in listing.stdout, listing.stdout
    page = os.path.join(place["workdir"], "killed.html")
    rendered = harness.cli(place["home"], "report", os.path.dirname(killed_path(place, killed)), "-o", page)
    assert rendered.returncode == 0, rendered.stderr
    text = open(page).read()
    assert "Killed during the method, during the probe &#x27;wait-for-the-gate&#x27;" in text
    assert fault["id"] in text and "still open: it expires at" in text

    # the next run, on the same cluster name: reports, heals, replaces the cluster, then runs
    second = start(place, experiment([]), name="next.json")
    assert second.proc.wait(timeout=240) == 0, second.output()[-3000:]
    journal = second.journal()
    found = journal["chaosscheduler"]["leftovers"]
    assert [r["run_id"] for r in found["runs"]] == [killed["run_id"]] and found["runs"][0]["phase"] == "method"
    assert found["faults_undone"] == [fault["id"]] and found["errors"] == []
    assert found["cluster"]["action"] == "replaced" and found["cluster"]["dead_users"] == [killed["run_id"]]
    assert f"run {killed['run_id']} (a run to kill) was killed during the method" in second.log()
    healed = Ledger(place["home"]).get(fault["id"])
    assert healed["state"] == "undone" and healed["healed_by"] == journal["chaosscheduler"]["run_id"]
    assert harness.reapers(place["home"]) == []
    assert record_of(place, killed["run_id"])["killed"] is True
    assert harness.leftovers(place["home"], os.path.join(place["home"], "testbed", place["cluster"]),
                             [fault["id"]]) == []
    assert not [n for n in network.existing_namespaces() if n.startswith(f"cs-{place['cluster']}-")]

    rendered = harness.cli(place["home"], "report", killed["run_id"], "-o", page)  # by run id this time
    assert rendered.returncode == 0, rendered.stderr
    text = open(page).read()
    assert f"by run {journal['chaosscheduler']['run_id']}, which found it left behind" in text
    # a third run finds nothing new: each killed run is reported once
    third = start(place, experiment([]), name="third.json")
    assert third.proc.wait(timeout=240) == 0, third.output()[-3000:]
    assert third.journal()["chaosscheduler"]["leftovers"]["runs"] == []


def killed_path(place, record):
    return os.path.join(runs.run_dir(place["home"], record["run_id"]), "run.json")


def test_a_sigkilled_run_whose_fault_expired_says_when(place):
    gate = os.path.join(place["workdir"], "gate")
    run = start(place, experiment([isolate(6), wait_probe(gate)]))
    fault = active(run)
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait(timeout=30)
    ledger = Ledger(place["home"])
    wait_until(lambda: ledger.get(fault["id"])["state"] == "expired", 30, message="the fault's expiry")
    killed = record_of(place)
    page = os.path.join(place["workdir"], "expired.html")
    rendered = harness.cli(place["home"], "report", killed_path(place, killed), "-o", page)
    assert rendered.returncode == 0, rendered.stderr
    text = open(page).read()
    assert "Killed during the method" in text and "undone by its reaper" in text and "expired at" in text
    listing = harness.cli(place["home"], "faults", "--all", "--json")
    [entry] = [f for f in json.loads(listing.stdout) if f["id"] == fault["id"]]
    assert entry["run_id"] == killed["run_id"] and entry["run_state"] == "dead"
