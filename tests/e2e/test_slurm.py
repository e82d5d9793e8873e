"""The three experiments, unchanged, through the real ``chaos`` CLI on a real Slurm 22.05 (tests/labs/slurm.py), with
nothing but experiments/vars/hosts-slurm.json (the lab's addresses and SSH key filled in): no exporter, no load
generator. The witness submits ``sbatch`` jobs over SSH and reads their evidence back from the nodes.

CI runs a representative subset (worker-disconnect on a healthy Slurm, and on one that does not requeue); the full
set, with master-crash, network-partition and the other broken configurations, is marked ``slow``::

    scripts/test -m slow tests/e2e/test_slurm.py

After every run: no fault open, no nft table of ours on any node, no node drained or down, no job held or left in
the queue, and the lab removed by its record.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Tuple

import pytest

from chaosscheduler import procs
from chaosscheduler.ledger import Ledger
from chaosscheduler.testbed import network
from tests.labs import slurm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAOS = os.path.join(os.path.dirname(sys.executable), "chaos")


def _witness_ready() -> bool:
    """The witness (chaosscheduler/witness/) and the experiments that let a var file configure it."""
    try:
        import chaosscheduler.witness  # noqa: F401
    except ImportError:
        return False
    with open(os.path.join(ROOT, "experiments", "worker-disconnect.json")) as handle:
        return "chaosscheduler_witness" in json.load(handle)["configuration"]


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800),
              pytest.mark.skipif(slurm.requirements() is not None, reason=str(slurm.requirements())),
              pytest.mark.skipif(not _witness_ready(), reason="needs the witness and experiments that declare "
                                                               "chaosscheduler_witness")]

EXPERIMENT_LAB = {"cpus": 80}            # room for the witness: the lost node holds > 52 tasks, survivors < 90 %
PARTITION_LAB = {"workers": 16, "cpus": 18}  # enough workers x heartbeat periods to decide "> 99 %" accuracy


def run(experiment: str, lab_options: Dict[str, Any], timeout: float = 1500) -> Tuple[Any, Dict[str, Any], Any]:
    """``chaos run`` of ``experiment`` against a fresh lab; returns (process, journal, lab record), the lab removed
    and checked clean whatever happened."""
    home = tempfile.mkdtemp(prefix="csE", dir="/tmp")
    env = dict(os.environ, CHAOSSCHEDULER_HOME=home)
    try:
        with slurm.running(slurm.LabSpec(home=home, **lab_options)) as lab:
            journal_path = os.path.join(home, "journal.json")
            argv = [CHAOS, "--no-version-check", "--log-file", os.path.join(home, "chaos.log"), "run",
                    os.path.join(ROOT, "experiments", experiment), "--journal-path", journal_path,
                    "--var-file", lab.vars_path]
            proc = subprocess.run(argv, cwd=home, env=env, capture_output=True, text=True, timeout=timeout)
            assert os.path.exists(journal_path), proc.stdout[-3000:] + proc.stderr[-3000:]
            with open(journal_path) as handle:
                journal = json.load(handle)
            left_behind(lab, home)
            record = lab.record
        assert not set(record["netns"]) & set(network.existing_namespaces())
        assert not [n for n, p in record["processes"].items() if procs.is_running(p)]
        return proc, journal, record
    finally:
        shutil.rmtree(home, ignore_errors=True)


def left_behind(lab: slurm.Lab, home: str) -> None:
    """Nothing of the run is left on the cluster: every fault closed, no table of ours, every node idle (not drained,
    not down), no job held or queued (the witness cancels what it left)."""
    assert Ledger(home).open_faults() == []
    for node in lab.nodes:
        assert "chaosscheduler" not in lab.on(node.name, ["nft", "list", "tables"]).stdout, node.name
    states = lab.node_states()
    assert set(states.values()) <= {"idle", "mixed", "allocated", "completing"}, states
    queued = lab.client(["squeue", "--noheader", "--states=PENDING,REQUEUE_HOLD,SPECIAL_EXIT",
                         "--format=%i %T %r"]).stdout.strip()
    assert queued == "", queued


def verdicts(journal: Dict[str, Any]) -> Dict[str, bool]:
    """Probe name -> tolerance met, after the method (Chaos Toolkit's and the probes it skipped)."""
    out = {p["activity"]["name"]: p["tolerance_met"]
           for p in (journal["steady_states"].get("after") or {}).get("probes", [])}
    for skipped in journal.get("chaosscheduler", {}).get("skipped_probes", []):
        if skipped.get("hypothesis") == "after":
            out.setdefault(skipped["name"], skipped.get("tolerance_met"))
    return out


def output(journal: Dict[str, Any], probe: str) -> Dict[str, Any]:
    for p in (journal["steady_states"].get("after") or {}).get("probes", []):
        if p["activity"]["name"] == probe:
            return p.get("output") or {}
    for skipped in journal.get("chaosscheduler", {}).get("skipped_probes", []):
        if skipped.get("hypothesis") == "after" and skipped["name"] == probe:
            return skipped.get("output") or {}
    return {}


def failing(journal: Dict[str, Any]) -> List[str]:
    return sorted(name for name, met in verdicts(journal).items() if not met)


def why(journal: Dict[str, Any]) -> Dict[str, Any]:
    """The failing probes with what they measured (for the assertion message)."""
    keep = ("value", "n", "lower", "reason", "ongoing", "problems", "wrongly_declared", "lost", "duplicated")
    return {name: {k: v for k, v in output(journal, name).items() if k in keep} for name in failing(journal)}


# ---------------------------------------------------------------------------------------------------- CI subset
def test_worker_disconnect_passes_on_a_healthy_slurm():
    proc, journal, _ = run("worker-disconnect.json", EXPERIMENT_LAB)
    assert proc.returncode == 0 and journal["deviated"] is False, why(journal)
    detected = output(journal, "worker-failure-detected-in-time")
    assert detected["source"] == "the platform's declarations" and 15 <= detected["value"] <= 40
    rescheduled = output(journal, "lost-tasks-rescheduled")
    assert rescheduled["n"] >= 52 and rescheduled["lower"] >= 0.95  # decided by identity, not by counts
    assert journal["chaosscheduler"]["witness"]["counts"]["executed"] > 500


def test_worker_disconnect_deviates_on_rescheduling_when_slurm_does_not_requeue():
    """JobRequeue=0 (the witness submits plain sbatch, as a user would): the lost node's jobs end NODE_FAIL."""
    _, journal, _ = run("worker-disconnect.json", dict(EXPERIMENT_LAB, requeue=False))
    assert journal["deviated"] is True
    assert "lost-tasks-rescheduled" in failing(journal)
    assert output(journal, "lost-tasks-rescheduled")["value"] == 0.0
    assert verdicts(journal)["worker-failure-detected-in-time"] is True  # only what is broken fails


# ---------------------------------------------------------------------------------------------------- full set
@pytest.mark.slow
def test_worker_disconnect_deviates_on_detection_when_slurmd_timeout_is_beyond_90_s():
    _, journal, _ = run("worker-disconnect.json", dict(EXPERIMENT_LAB, slurmd_timeout=120))
    assert "worker-failure-detected-in-time" in failing(journal)
    assert output(journal, "worker-failure-detected-in-time")["ongoing"] is True


@pytest.mark.slow
def test_master_crash_on_slurm_elects_the_backup_and_fails_back():
    """kill -9 of the active slurmctld: the backup takes over within the limit and the restarted primary takes
    control back (the failback, measured). What Slurm 22.05 cannot do under kill -9, the run shows by job id:
    sbatch calls in flight at the crash fail, and jobs acknowledged in the last seconds before it (Slurm saves its
    state at most every 5 s) can be unknown to the backup; any deviation is on exactly those two probes."""
    _, journal, _ = run("master-crash.json", EXPERIMENT_LAB)
    met = verdicts(journal)
    assert met["leader-elected-in-time"] and met["scheduling-not-interrupted-long"], failing(journal)
    assert met["cluster-is-healthy"], output(journal, "cluster-is-healthy")["problems"]
    assert set(failing(journal)) <= {"job-submissions-accepted", "accepted-tasks-neither-lost-nor-duplicated"}
    restart = next(a for a in journal["run"] if a["activity"]["provider"]["func"] == "restart_master")
    failback = restart["output"]["failback"]
    assert failback["changed"] and failback["to"] == "ctl1" and failback["value"] < 10


@pytest.mark.slow
def test_master_crash_deviates_on_election_when_the_backup_takes_over_too_late():
    """SlurmctldTimeout=120 (Slurm's default): the backup waits two minutes before it takes over."""
    _, journal, _ = run("master-crash.json", dict(EXPERIMENT_LAB, slurmctld_timeout=120))
    assert "leader-elected-in-time" in failing(journal)
    assert output(journal, "leader-elected-in-time")["ongoing"] is True


@pytest.mark.slow
def test_master_crash_without_a_backup_controller_refuses_and_never_passes():
    """Without a backup the only slurmctld is the last master: kill_master refuses to kill it (a safety rail), and
    the run fails saying that no fault happened."""
    _, journal, _ = run("master-crash.json", dict(EXPERIMENT_LAB, backup=False))
    kill = next(a for a in journal["run"] if a["activity"]["provider"]["func"] == "kill_master")
    assert kill["status"] == "failed" and "last running master" in "".join(kill.get("exception") or [])
    assert "leader-elected-in-time" in failing(journal)
    assert "no fault" in output(journal, "leader-elected-in-time")["reason"]


@pytest.mark.slow
def test_network_partition_on_slurm():
    """Half the nodes split from both controllers for longer than SlurmdTimeout, then 30 % loss everywhere."""
    _, journal, _ = run("network-partition.json", PARTITION_LAB)
    assert journal["deviated"] is False, why(journal)
    accuracy = output(journal, "heartbeats-judged-right")
    assert accuracy["decided"] and accuracy["n"] >= 268
