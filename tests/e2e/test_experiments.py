"""The three experiments through the real ``chaos`` CLI on the embedded cluster (root, etcd, nft).

Each run gets its own state home and cluster name. After every run: nothing of ours is left (namespaces, node
processes, reapers, open faults, nft tables), whatever the run's outcome.
"""

import json
import os
import subprocess
import sys

import pytest

from chaosscheduler import procs
from chaosscheduler.ledger import Ledger
from chaosscheduler.testbed import network
from tests.conftest import NEEDS_ETCD, NEEDS_ROOT, unique_name

pytestmark = [NEEDS_ROOT, NEEDS_ETCD, pytest.mark.e2e]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = os.path.join(ROOT, "experiments")
CHAOS = os.path.join(os.path.dirname(sys.executable), "chaos")
JOURNALS = {}  # experiment -> journal path of a passing run, reused by the report test
RUNS = {}  # experiment -> a passing run (proc, journal, cluster, home, dir, path), reused by tests/e2e/test_report.py


def run_chaos(tmp_path, home, experiment, var_files=(), timeout=300):
    cluster = unique_name("e")
    journal = tmp_path / "journal.json"
    argv = [CHAOS, "--no-version-check", "--log-file", str(tmp_path / "chaos.log"), "run",
            os.path.join(EXPERIMENTS, experiment), "--journal-path", str(journal)]
    for var_file in var_files:
        argv += ["--var-file", os.path.join(EXPERIMENTS, "vars", var_file)]
    env = dict(os.environ, CHAOSSCHEDULER_HOME=home, CHAOSSCHEDULER_CLUSTER=cluster)
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert journal.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(journal.read_text()), cluster


def assert_nothing_left(home, cluster):
    state_dir = os.path.join(home, "testbed", cluster)
    assert [n for n in network.existing_namespaces() if n.startswith(f"cs-{cluster}-")] == []
    assert procs.pids_with_marker(state_dir) == []
    assert procs.pids_with_marker(f"reaper:{home}") == []
    assert Ledger(home).open_faults() == []
    assert not os.path.exists(state_dir)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "chaosscheduler_" not in tables


def failing_probe(journal, when="after"):
    probes = (journal["steady_states"].get(when) or {}).get("probes", [])
    return [p["activity"]["name"] for p in probes if not p["tolerance_met"]]


@pytest.mark.parametrize("experiment,action", [
    ("worker-disconnect.json", "isolate_worker"),
    ("master-crash.json", "kill_master"),
    ("network-partition.json", "partition_workers"),
])
def test_experiment_passes_on_a_healthy_cluster(tmp_path, home, experiment, action):
    proc, journal, cluster = run_chaos(tmp_path, home, experiment)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert journal["status"] == "completed"
    assert journal["deviated"] is False
    assert journal["steady_states"]["before"]["steady_state_met"]
    assert journal["steady_states"]["after"]["steady_state_met"]
    assert [r["status"] for r in journal["rollbacks"]] and all(r["status"] == "succeeded" for r in journal["rollbacks"])
    ours = journal["chaosscheduler"]
    assert ours["failure_reasons"] == [] and ours["undo_errors"] == []
    faults = [f for f in ours["faults"] if f["action"] == action]
    assert faults and all(f["state"] in ("undone", "expired") for f in faults)
    assert_nothing_left(home, cluster)
    JOURNALS[experiment] = tmp_path / "journal.json"
    RUNS[experiment] = dict(proc=proc, journal=journal, cluster=cluster, home=home, dir=str(tmp_path),
                            path=str(tmp_path / "journal.json"))


@pytest.mark.parametrize("experiment,var_file,probe", [
    ("worker-disconnect.json", "broken-no-reschedule.json", "lost-tasks-rescheduled"),
    ("master-crash.json", "broken-slow-election.json", "leader-elected-in-time"),
    ("network-partition.json", "broken-short-heartbeat.json", "heartbeats-judged-right"),
])
def test_experiment_deviates_on_a_broken_cluster(tmp_path, home, experiment, var_file, probe):
    proc, journal, cluster = run_chaos(tmp_path, home, experiment, [var_file])
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert journal["steady_states"]["before"]["steady_state_met"], failing_probe(journal, "before")
    assert journal["deviated"] is True
    assert failing_probe(journal) == [probe]
    assert_nothing_left(home, cluster)


def test_unmet_steady_state_before_the_method_fails_the_run(tmp_path, home):
    """Chaos Toolkit alone exits 0 here (method skipped, status "completed"); the control makes it a failure."""
    exp = json.loads(open(os.path.join(EXPERIMENTS, "worker-disconnect.json")).read())
    exp["steady-state-hypothesis"]["probes"][-1]["tolerance"]["range"] = [100, 200]  # unreachable before the method
    path = tmp_path / "impossible.json"
    path.write_text(json.dumps(exp))
    proc, journal, cluster = run_chaos(tmp_path, home, str(path))
    assert proc.returncode == 1
    assert journal["status"] == "failed"
    assert journal["run"] == []  # the method never ran
    assert "not met before the method" in journal["chaosscheduler"]["failure_reasons"][0]
    assert_nothing_left(home, cluster)


def test_discover_lists_every_activity_with_its_kind_and_types(tmp_path):
    proc = subprocess.run([CHAOS, "--no-version-check", "--no-log-file", "discover", "chaosscheduler",
                           "--no-install", "--discovery-path", str(tmp_path / "discovery.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    discovery = json.loads((tmp_path / "discovery.json").read_text())
    activities = {a["name"]: a for a in discovery["activities"]}
    from chaosscheduler import actions, probes, rollbacks

    assert set(activities) == set(actions.__all__) | set(probes.__all__) | set(rollbacks.__all__)
    for name in probes.__all__:
        assert activities[name]["type"] == "probe", name
    for name in actions.__all__ + rollbacks.__all__:
        assert activities[name]["type"] == "action", name
    for activity in activities.values():
        for arg in activity["arguments"]:
            if arg["name"] not in ("configuration", "secrets"):
                # a union shows each of its types: "string | integer | list"
                assert set(arg["type"].split(" | ")) <= {"string", "number", "integer", "boolean", "list"}, \
                    (activity["name"], arg)
    assert activities["partition_workers"]["arguments"][0] == {"name": "workers", "default": "all",
                                                                "type": "string | integer | list"}
    assert activities["kill_master"]["doc"].startswith("Kill a master")


def test_chaos_report_renders_a_journal(tmp_path, home):
    """chaos report (chaostoolkit-reporting + pandoc) turns our journal into HTML."""
    pytest.importorskip("chaosreport")
    journal = JOURNALS.get("worker-disconnect.json")
    if journal is None:
        run_chaos(tmp_path, home, "worker-disconnect.json")
        journal = tmp_path / "journal.json"
    report = tmp_path / "report.html"
    out = subprocess.run([CHAOS, "--no-version-check", "--no-log-file", "report", "--export-format=html",
                          str(journal), str(report)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    html = report.read_text()
    assert "A worker that drops off the network" in html
    assert "isolate-the-busiest-worker" in html
