"""The three unchanged experiments, through the real ``chaos`` CLI, against the embedded cluster driven as if it
were remote hosts: a var file (written by the cluster's ``sshd``/``prometheus`` options) switches them to the hosts
platform, so faults go over SSH, probes are computed from Prometheus and the leader comes from PromQL.

Each run gets its own cluster and state home. After every run: no fault open, no table of ours and no remote timer
left on any host, whatever the outcome.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

from chaosscheduler import config
from chaosscheduler.hosts import ssh
from chaosscheduler.ledger import Ledger
from chaosscheduler.platforms import for_settings
from chaosscheduler.testbed import ClusterSpec, down, remote, up
from chaosscheduler.timing import wait_until
from tests.integration.test_platforms import NEEDS, tables, timers

pytestmark = [pytest.mark.integration, pytest.mark.e2e] + NEEDS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAOS = os.path.join(os.path.dirname(sys.executable), "chaos")


@pytest.fixture
def remote_cluster(request):
    """``remote_cluster(**spec)`` -> (testbed, home, var file): a cluster with sshd + Prometheus, warmed up."""
    made = []

    def factory(**fields):
        home = tempfile.mkdtemp(prefix="cse", dir="/tmp")
        tb = up(ClusterSpec(name=("x" + uuid.uuid4().hex)[:9], home=home, sshd=True, prometheus=True, **fields))
        made.append((tb, home))
        var_file = remote.vars_path(tb.state_dir)
        with open(var_file) as handle:
            platform = for_settings(config.load(json.load(handle)["configuration"]))
        # the control's warm-up, for a platform it does not start: every worker scraped, some load recorded
        wait_until(lambda: len(platform.prometheus.query("scheduler_worker_registered == 1")) == tb.spec.workers,
                   30, interval=0.2, message="every worker scraped")
        wait_until(lambda: platform.prometheus.query(
            'sum(scheduler_job_submissions_total{job="load",outcome="accepted"}) >= 8'), 30, interval=0.2,
            message="some load recorded")
        return tb, home, var_file

    yield factory
    ssh.close_all()
    for tb, home in made:
        down(tb.state_dir)
        shutil.rmtree(home, ignore_errors=True)


def run_chaos(tmp_path, home, experiment, var_files, timeout=400):
    journal = tmp_path / "journal.json"
    argv = [CHAOS, "--no-version-check", "--log-file", str(tmp_path / "chaos.log"), "run",
            os.path.join(ROOT, "experiments", experiment), "--journal-path", str(journal)]
    for var_file in var_files:
        argv += ["--var-file", var_file]
    env = dict(os.environ, CHAOSSCHEDULER_HOME=home)
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert journal.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(journal.read_text())


def assert_nothing_left(tb, home, journal):
    assert Ledger(home).open_faults() == []
    for node in tb.nodes.values():
        assert "chaosscheduler_" not in tables(node.netns), node.name
    for fault in journal["chaosscheduler"]["faults"]:
        assert timers(fault["id"]) == [], fault["id"]


WITNESS_SIZING = {"master-crash.json": (15, 1.0), "worker-disconnect.json": (11, 20.0),
                  "network-partition.json": (8, 2.0)}  # (tasks/s, seconds): docs/experiments.md, "Sizing"


def sized(experiment, **changes):
    """The embedded cluster an experiment sizes for its thresholds, its load generator doing the witness's work (no
    witness on the hosts platform here: the verdicts come from Prometheus, as on a scheduler without a submitter),
    with a third more slots: the metrics' running counts include tasks a sampled scrape sees twice."""
    with open(os.path.join(ROOT, "experiments", experiment)) as handle:
        configuration = json.load(handle)["configuration"]
    spec = dict(configuration["chaosscheduler_testbed"])
    witness = configuration.get("chaosscheduler_witness") or {}
    rate, duration = WITNESS_SIZING[experiment]
    spec.update(load_rate=witness.get("rate", rate), task_duration=witness.get("duration", duration),
                slots=int(spec.get("slots", 4) * 4 / 3), **changes)
    return spec


def metrics_only(tmp_path, tb):
    """The platform's heartbeat as the probes cannot read it from Prometheus, and no witness."""
    configuration = {"heartbeat_interval": tb.spec.keepalive_interval, "heartbeat_timeout": tb.spec.heartbeat_ttl}
    if "witness" in config.KNOWN:
        configuration["chaosscheduler_witness"] = False
    path = tmp_path / "metrics-only.json"
    path.write_text(json.dumps({"configuration": configuration}))
    return str(path)


@pytest.mark.parametrize("experiment,action", [
    ("worker-disconnect.json", "isolate_worker"),
    ("master-crash.json", "kill_master"),
    ("network-partition.json", "partition_workers"),
])
def test_an_unchanged_experiment_passes_over_ssh_and_prometheus(tmp_path, remote_cluster, experiment, action):
    tb, home, var_file = remote_cluster(**sized(experiment))
    proc, journal = run_chaos(tmp_path, home, experiment, [var_file, metrics_only(tmp_path, tb)])
    failing = [(when, p["activity"]["name"], p.get("output")) for when in ("before", "after")
               for p in (journal["steady_states"].get(when) or {}).get("probes", []) if not p["tolerance_met"]]
    assert proc.returncode == 0, (failing, journal["chaosscheduler"].get("failure_reasons"))
    assert journal["status"] == "completed" and journal["deviated"] is False
    ours = journal["chaosscheduler"]
    assert ours["failure_reasons"] == [] and ours["undo_errors"] == []
    faults = [f for f in ours["faults"] if f["action"] == action]
    assert faults and all(f["state"] in ("undone", "expired") for f in faults)
    stored = Ledger(home).get(faults[0]["id"])
    assert stored["platform"]["platform"] == "hosts"  # the faults really went through the hosts platform
    if action != "kill_master":
        assert stored["remote_expiry_on"] and stored["exempt_tcp_ports"] == [22]
    assert_nothing_left(tb, home, journal)


def test_a_platform_that_does_not_reschedule_deviates_on_the_metrics_probe(tmp_path, remote_cluster):
    tb, home, var_file = remote_cluster(**sized("worker-disconnect.json", reschedule=False))
    proc, journal = run_chaos(tmp_path, home, "worker-disconnect.json", [var_file, metrics_only(tmp_path, tb)])
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert journal["steady_states"]["before"]["steady_state_met"]
    failing = [p["activity"]["name"] for p in journal["steady_states"]["after"]["probes"] if not p["tolerance_met"]]
    assert "lost-tasks-rescheduled" in failing
    assert_nothing_left(tb, home, journal)
