"""The witness on the ``hosts`` platform against the embedded cluster driven as remote hosts (a real sshd in every
node's namespace): tasks are submitted by a command (the cluster's own command-line client, as ``sbatch`` would be
on Slurm), their evidence is read back with ``cat`` over SSH and deleted. A task
running on a worker cut off by ``isolate_worker`` is still seen: the SSH port is exempt from our network faults."""

import json
import os
import shutil
import sys
import tempfile
import uuid

import pytest

from chaosscheduler import actions, config, rollbacks, witness
from chaosscheduler.hosts import ssh
from chaosscheduler.platforms import for_settings
from chaosscheduler.testbed import ClusterSpec, down, network, remote, up
from chaosscheduler.testbed.worker import node_dir
from chaosscheduler.timing import wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
              pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (apt etcd-server)"),
              pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="sshd is not installed"),
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed")]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def client(tb, *args: str):
    """The cluster's command-line client run from the operator's seat on the cluster's network (the switch
    namespace), addressing every master. (Submitting over SSH on master-1 works the same way, ``"on": "master-1"``,
    but root's login shell on this machine spends ~3 s in pyenv's init per command, and concurrent sessions
    contend for its lock: the load of the test would measure that, not the witness.)"""
    masters = [a for m in tb.nodes_of("master") for a in ("--master", f"{m.address}:{m.port}")]
    return ["ip", "netns", "exec", network.switch_name(tb.spec.name), "env", f"PYTHONPATH={ROOT}", sys.executable,
            "-m", "chaosscheduler.testbed.submit"] + masters + list(args)


def witness_options(tb, **extra):
    options = {"submitter": {"type": "command", "on": "local",
                             "argv": client(tb, "--job", "{task}", "--duration", "{duration}", "--", "{argv}"),
                             "status_argv": client(tb, "--status", "{job_ids}"),
                             "status_regex": r"^(?P<job>\S+) (?P<state>completed) (?P<at>\S+) (?P<host>\S+)$",
                             "cancel_argv": client(tb, "--cancel", "{job_ids}")},
               "evidence_dir": os.path.join(tb.state_dir, "nodes", "{node}")}
    options.update(extra)
    return options


@pytest.fixture
def lab():
    home = tempfile.mkdtemp(prefix="csw", dir="/tmp")
    mp = pytest.MonkeyPatch()
    mp.setenv("CHAOSSCHEDULER_HOME", home)
    tb = None
    try:
        tb = up(ClusterSpec(name=("w" + uuid.uuid4().hex)[:9], home=home, load_rate=0, slots=30, sshd=True, prometheus=True,
                            heartbeat_ttl=3))
        with open(remote.vars_path(tb.state_dir)) as handle:
            configuration = json.load(handle)["configuration"]
        configuration["chaosscheduler_home"] = home
        platform = for_settings(config.load(configuration))  # isolate_worker reads the workers from Prometheus
        wait_until(lambda: len(platform.prometheus.query("scheduler_worker_registered == 1")) == 4, 30,
                   interval=0.2, message="every worker scraped")
        yield tb, home, configuration
    finally:
        ssh.close_all()
        if tb is not None:
            down(tb.state_dir)
        mp.undo()
        shutil.rmtree(home, ignore_errors=True)


def test_a_task_on_a_cut_off_worker_is_seen_over_the_exempt_ssh_port(lab):
    tb, home, configuration = lab
    configuration = dict(configuration, chaosscheduler_witness=witness_options(tb, rate=4, duration=15, stop_wait=40))
    settings = config.load(configuration)
    platform = for_settings(settings)
    run_dir = os.path.join(home, "runs", "run-hosts")
    workload = witness.start(settings, platform, run_dir, run_id="run-hosts")
    record: dict = {}
    try:  # (always stop the workload: an SSH session killed by the teardown can leave a login shell's lock behind)
        wait_until(lambda: [e for e in tb.events("task_started") if e["node"] == "worker-3"], 60, interval=0.2,
                   message="a witness task running on worker-3")
        record = actions.isolate_worker(worker="worker-3", duration=120, configuration=configuration)
    finally:
        summary = workload.stop()  # collects while worker-3 is still cut off from the masters
        if record:
            rollbacks.rejoin_worker(configuration=configuration)
    at = record["started_at"]
    history = witness.load(home, "run-hosts")
    assert summary["collection_errors"] == [] and summary["counts"]["ok"] >= 1
    on_cut = [x for x in history.executions if x["node"] == "worker-3"]
    truth = {(e["task"], e["attempt"]) for e in tb.events("task_finished") if e["node"] == "worker-3"}
    assert {(f"{x['task']}-0", int(x["attempt"])) for x in on_cut if x["phase"] == "end"} == truth
    finished_after_cut = [x for x in on_cut if x["phase"] == "end" and x["at"] > at]
    assert finished_after_cut, "no task of the cut worker ran past the cut"
    # the witness saw every execution the cluster logged, over SSH, and left nothing behind
    started = {(e["task"], e["node"]) for e in tb.events("task_started")}
    assert {(f"{x['task']}-0", x["node"]) for x in history.executions if x["phase"] == "start"} == started
    for worker in tb.nodes_of("worker"):
        assert not os.path.exists(os.path.join(node_dir(tb.state_dir, worker.name), history.meta["evidence"]))
    # the platform's own completion records came back through the status command
    # (a snapshot taken at the end of stop(): the cluster may record more completions after it)
    reported = {f"{e['task']}-0" for e in history.events if e["type"] == "completion"}
    completed = {e["task"] for e in tb.events("task_completed")}
    acked = {f"{e['task']}-0" for e in history.events if e["type"] == "ok"}  # (an indeterminate one has no job id)
    before = {e["task"] for e in tb.events("task_completed")
              if e["ts"] < history.meta["stop"]["completions_asked_at"]} & acked
    assert before <= reported <= completed and reported, history.meta["stop"].get("completions_error")
    found = witness.check(history, faults=[record], settle=2)
    assert found["unexpected"] == [] and found["refused"] == []


def test_an_indeterminate_submission_is_resolved_from_the_evidence(lab, tmp_path):
    """A submit command that times out after the platform accepted the job: ``info``, then seen executing."""
    tb, home, configuration = lab
    slow = client(tb, "--job", "{task}", "--duration", "{duration}", "--", "{argv}")
    wrapper = ["sh", "-c", '"$@"; sleep 5', "slow-sbatch"] + slow  # accepted at once, answers too late
    options = witness_options(tb, rate=1, duration=1, stop_wait=10)
    options["submitter"].update(argv=wrapper, timeout=2)
    configuration = dict(configuration, chaosscheduler_witness=options)
    settings = config.load(configuration)
    workload = witness.start(settings, for_settings(settings), os.path.join(home, "runs", "run-slow"),
                             run_id="run-slow")
    try:
        wait_until(lambda: [e for e in workload.recorder.history().events if e["type"] == "info"], 60, interval=0.2,
                   message="a submission timed out")
    finally:
        workload.stop()
    found = witness.check(witness.load(home, "run-slow"), settle=2)
    assert found["indeterminate"]["executed"] and found["counts"]["ok"] == 0
    assert found["submissions"]["successes"] == 0 and found["lost"] == []
