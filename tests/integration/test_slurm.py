"""The hosts platform on a real Slurm 22.05 cluster (tests/labs/slurm.py: a primary and a backup slurmctld sharing a
state directory, four slurmd, munge, sshd on every node, each node in namespaces of its own), driven only through
experiments/vars/hosts-slurm.json with the lab's addresses: no Prometheus, no exporter, no load generator.

Measurements are compared with Slurm's own log times (``taking over``, ``Running as primary controller``, ``setting
DOWN``). Every test leaves the cluster healthy (both controllers up, every node idle, nothing held) and no fault
open; the module removes the lab by its record and checks that nothing of it is left.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

import pytest

from chaosscheduler import actions, config, probes, procs, rollbacks
from chaosscheduler.hosts import ssh
from chaosscheduler.ledger import Ledger
from chaosscheduler.platforms import for_settings
from chaosscheduler.testbed import network
from chaosscheduler.timing import wait_until
from tests.labs import slurm

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(slurm.requirements() is not None, reason=str(slurm.requirements()))]

FIGURES: Dict[str, List[float]] = {}
MARGIN = 0.5  # seconds on top of a source's stated resolution: SSH, Slurm's RPC, 2 shared cores


@pytest.fixture(scope="module")
def lab():
    slurm.sweep()  # the labs of earlier test runs that were killed before they could clean up
    home = tempfile.mkdtemp(prefix="csS", dir="/tmp")
    mp = pytest.MonkeyPatch()
    mp.setenv("CHAOSSCHEDULER_HOME", home)
    record = None
    try:
        with slurm.running(slurm.LabSpec(home=home)) as running_lab:
            record = running_lab.record
            yield running_lab
            assert Ledger(home).open_faults() == []
    finally:
        ssh.close_all()
        mp.undo()
        shutil.rmtree(home, ignore_errors=True)
        if FIGURES:
            print("\nfigures (ours - Slurm's log, s):", json.dumps(FIGURES))
    # nothing of the lab is left: its namespaces and its recorded processes are gone
    assert record is not None
    assert not set(record["netns"]) & set(network.existing_namespaces())
    assert not [name for name, proc in record["processes"].items() if procs.is_running(proc)]


@pytest.fixture
def conf(lab):
    configuration = lab.configuration()
    yield configuration
    healthy(configuration)


def platform_of(configuration: Dict[str, Any]) -> Any:
    return for_settings(config.load(configuration))


def healthy(configuration: Dict[str, Any], timeout: float = 60) -> Dict[str, Any]:
    return wait_until(lambda: (lambda h: h if h["problem_count"] == 0 else None)(
        probes.cluster_health(configuration=configuration)), timeout, interval=0.3, message="the cluster healthy")


def jobs_by_node(lab) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for line in lab.client(["squeue", "--noheader", "--states=RUNNING", "--format=%i %N"]).stdout.splitlines():
        job, node = line.split()
        out.setdefault(node, []).append(job)
    return {k: sorted(v, key=int) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------- the lab
def test_each_node_is_a_host_of_its_own_that_looks_like_a_debian_slurm_host(lab, conf):
    platform = platform_of(conf)
    for node in ("ctl1", "ctl2", "node3"):
        result = platform.host(node).run(["sh", "-c", "hostname; ps -eo args; ls /etc/slurm /var/log/slurm"])
        lines = result.stdout.split("\n")
        assert lines[0] == node
        daemons = [line for line in lines if line.startswith(("/usr/sbin/slurmctld", "/usr/sbin/slurmd"))]
        assert len(daemons) == 1, daemons  # one daemon per host: a pattern or a PID file finds exactly it
        assert "slurm.conf" in result.stdout
    assert platform.pid("ctl1") and platform.pid("node3")  # from /run/slurmctld.pid and /run/slurmd.pid
    assert lab.record["timings"]["total_s"] < 90


# ---------------------------------------------------------------------------------------------------- leader
def test_the_command_leader_source_follows_a_failover_and_the_failback(lab, conf):
    """kill -9 of the active slurmctld: the backup takes over (SlurmctldTimeout=10); restart_master: the primary
    takes control back at once. Both are seen by asking each controller alone, within the source's resolution of
    Slurm's own log line; never two claims at once."""
    platform = platform_of(conf)
    assert platform.leader()["leader"] == "ctl1"
    fault = actions.kill_master(target="leader", duration=120, configuration=conf)
    assert fault["targets"] == ["ctl1"] and fault["was_leader"]
    worst = 0.0

    def leader_is(name: str) -> Any:
        nonlocal worst
        info = platform.leader()
        assert len(info["claims"]) <= 1, info
        worst = max(worst, info["resolution"])
        return time.time() if info["leader"] == name else None

    seen = wait_until(lambda: leader_is("ctl2"), 60, interval=0.05, message="ctl2 leads")
    taken = [t for t in lab.log_times("ctl2", "taking over") if t >= fault["started_at"]]
    assert taken, "the backup's log says it took over"
    FIGURES.setdefault("failover_ours_minus_log", []).append(round(seen - taken[0], 3))
    assert -0.05 <= seen - taken[0] <= worst + MARGIN
    FIGURES.setdefault("failover_s", []).append(round(taken[0] - fault["started_at"], 3))

    result = rollbacks.restart_master(failback_timeout=60, configuration=conf)
    assert result["undone"] == [fault["id"]]
    failback = result["failback"]
    assert failback["changed"] and (failback["from"], failback["to"]) == ("ctl2", "ctl1")
    primary = [t for t in lab.log_times("ctl1", "Running as primary controller") if t >= failback["restarted_at"]]
    assert primary, "the restarted primary's log says it took control back"
    FIGURES.setdefault("failback_ours_minus_log", []).append(round(failback["seen_at"] - primary[0], 3))
    assert -0.05 <= failback["seen_at"] - primary[0] <= failback["resolution"] + MARGIN
    # the stated interval holds Slurm's own time of the failback
    assert failback["not_seen_until"] - 0.05 <= primary[0] <= failback["seen_at"] + 0.05, (failback, primary)
    record = Ledger(lab.spec.home).get(fault["id"])
    assert record["state"] == "undone" and record["measurements"]["leader_failback_time"] == failback


# ---------------------------------------------------------------------------------------------------- workers
def test_worker_states_and_running_jobs_are_slurms_own(lab, conf):
    platform = platform_of(conf)
    jobs = [lab.client(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 60"]).stdout.strip()
            for _ in range(5)]
    try:
        truth = wait_until(lambda: (lambda j: j if sum(map(len, j.values())) == 5 else None)(jobs_by_node(lab)), 30,
                           message="5 jobs running")
        workers = {w["name"]: w for w in platform.workers()}
        assert {k: v for k, v in ((n, w["running"]) for n, w in workers.items()) if v} == truth
        assert all(w["alive"] and w["slots"] == lab.spec.cpus and not w["unhealthy"] for w in workers.values())
        busiest = actions.isolate_worker(worker="busiest", dry_run=True, configuration=conf)
        assert len(busiest["running_tasks"][busiest["targets"][0]]) == max(map(len, truth.values()))
    finally:
        lab.client(["scancel"] + jobs)


def test_drained_nodes_and_held_jobs_are_health_problems(lab, conf):
    lab.client(["scontrol", "update", "nodename=node3", "state=drain", "reason=operator test"])
    job = lab.client(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 60"]).stdout.strip()
    try:
        wait_until(lambda: jobs_by_node(lab), 30, message="the job running")
        lab.client(["scontrol", "requeuehold", job])
        health = wait_until(lambda: (lambda h: h if len(h["problems"]) == 2 else None)(
            probes.cluster_health(configuration=conf)), 30, interval=0.3, message="two problems")
        assert health["problems"][0] == "worker node3 is drained (operator test)"
        assert health["problems"][1].startswith(f"1 task(s) held or stuck: {job} (PENDING: job requeued in held")
    finally:
        lab.client(["scancel", job])
        lab.client(["scontrol", "update", "nodename=node3", "state=resume"])


def test_a_lost_worker_is_declared_dead_by_slurm_and_rejoins_with_nothing_left(lab, conf):
    platform = platform_of(conf)
    fault = actions.isolate_worker(worker="node4", duration=120, configuration=conf)
    assert fault["workers_before"] == {"node4": {"alive": True, "unhealthy": False, "state": "idle"}}
    netns = lab.node("node4").netns
    assert "chaosscheduler" in subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"],
                                              capture_output=True, text=True).stdout

    def declared() -> Any:
        node4 = next(w for w in platform.worker_states() if w["name"] == "node4")
        return node4 if not node4["alive"] else None

    seen = wait_until(declared, 60, interval=0.2, message="node4 declared dead")
    log = [t for t in lab.log_times(lab.controllers()[0].name, "node4 not responding, setting DOWN")
           if t >= fault["started_at"]]
    assert log and seen["dead_declarations"][-1] == pytest.approx(log[0], abs=0.002)  # Slurm's own time
    FIGURES.setdefault("detection_s", []).append(round(log[0] - fault["started_at"], 3))
    assert lab.spec.slurmd_timeout - 1 <= log[0] - fault["started_at"] <= lab.spec.slurmd_timeout + 15
    result = rollbacks.rejoin_worker(timeout=60, configuration=conf)
    assert result["rejoined"] == ["node4"]
    record = Ledger(lab.spec.home).get(fault["id"])
    assert record["state"] == "undone" and record["undo_result"]["restored"]["back"] == ["node4"]
    assert "chaosscheduler" not in subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"],
                                                  capture_output=True, text=True).stdout
    assert lab.node_states()["node4"] == "idle"


def test_heal_restarts_a_worker_that_stopped_and_resumes_a_node_left_drained(lab, conf):
    """While node2 is cut off its slurmd dies (as a worker that shuts itself down when cut off would) and Slurm
    leaves it drained; ``chaosscheduler heal``, in another process, brings it back into service. node1, drained by
    an operator before its fault, stays drained: heal resumes only what the fault took out of service."""
    lab.client(["scontrol", "update", "nodename=node1", "state=drain", "reason=operator maintenance"])
    try:
        cut = actions.isolate_worker(worker="node2", duration=300, configuration=conf)
        other = actions.isolate_worker(worker="node1", duration=300, configuration=conf)
        assert other["workers_before"]["node1"]["unhealthy"]
        old_pid = platform_of(conf).pid("node2")
        lab.on("node2", ["kill", "-9", str(old_pid)])
        lab.client(["scontrol", "update", "nodename=node2", "state=drain", "reason=left behind"])
        assert wait_until(lambda: platform_of(conf).pid("node2") is None, 10, message="slurmd gone")
        healed = subprocess.run([sys.executable, "-m", "chaosscheduler.cli", "heal"], capture_output=True,
                                text=True, timeout=180, env=dict(os.environ, CHAOSSCHEDULER_HOME=lab.spec.home))
        assert healed.returncode == 0, healed.stderr
        ledger = Ledger(lab.spec.home)
        restored = ledger.get(cut["id"])["undo_result"]["restored"]
        assert restored["restarted"] == ["node2"] and restored["resumed"] == ["node2"]
        assert restored["back"] == ["node2"]
        assert ledger.get(other["id"])["undo_result"]["restored"]["resumed"] == []
        assert platform_of(conf).pid("node2") not in (None, old_pid)
        states = lab.node_states()
        assert states["node2"] == "idle" and states["node1"].startswith("drain")
    finally:
        lab.client(["scontrol", "update", "nodename=node1", "state=resume"], check=False)


def test_a_lab_whose_test_run_was_killed_is_removed_by_its_record():
    home = tempfile.mkdtemp(prefix="csK", dir="/tmp")
    try:
        script = ("import os, signal, sys; sys.path.insert(0, sys.argv[1]); from tests.labs import slurm; "
                  "lab = slurm.up(slurm.LabSpec(home=sys.argv[2], workers=1, backup=False)); "
                  "print(lab.state_dir, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        out = subprocess.run([sys.executable, "-c", script, root, home], capture_output=True, text=True,
                             timeout=120)
        state_dir = out.stdout.strip()
        record = json.load(open(os.path.join(state_dir, "lab.json")))
        assert set(record["netns"]) <= set(network.existing_namespaces())  # left behind by the killed run
        assert state_dir in slurm.sweep()
        assert not set(record["netns"]) & set(network.existing_namespaces())
        assert not [n for n, p in record["processes"].items() if procs.is_running(p)]
    finally:
        shutil.rmtree(home, ignore_errors=True)
