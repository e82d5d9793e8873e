"""The hosts platform against the embedded cluster driven as if it were remote hosts: a real sshd in every node's
namespace (faults over SSH), a real Prometheus scraping every node (probes from PromQL), and each leader source
(PromQL, HTTP, etcd) measured against the cluster's ground-truth event log.

The test process reaches the cluster from its switch namespace (``connect_netns``): sockets are opened inside that
namespace, nothing is added to the root namespace. One cluster serves the module; every test leaves it healthy with
no fault open, and the module removes it by its own record.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, List

import pytest

from chaosscheduler import actions, config, probes, rollbacks
from chaosscheduler.hosts import ssh
from chaosscheduler.ledger import Ledger
from chaosscheduler.metrics.transport import TransportError, connect
from chaosscheduler.platforms import for_settings
from chaosscheduler.testbed import ClusterSpec, Testbed, down, remote, up
from chaosscheduler.timing import wait_until

NEEDS = [pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
         pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (apt etcd-server)"),
         pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="sshd is not installed (apt openssh-server)"),
         pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed (apt prometheus)")]
pytestmark = [pytest.mark.integration] + NEEDS

FIGURES: Dict[str, List[float]] = {}
MARGIN = 0.3  # seconds on top of a source's stated resolution: one poll, one request, scheduling on 2 shared cores


@pytest.fixture(scope="module")
def lab():
    """A cluster with sshd and Prometheus, its hosts var file, and a home of its own for the ledger."""
    home = tempfile.mkdtemp(prefix="csp", dir="/tmp")
    mp = pytest.MonkeyPatch()
    mp.setenv("CHAOSSCHEDULER_HOME", home)
    tb = None
    try:
        tb = up(ClusterSpec(name=("p" + uuid.uuid4().hex)[:9], home=home, workers=4, load_rate=2.0, sshd=True,
                            prometheus=True))
        with open(remote.vars_path(tb.state_dir)) as handle:
            configuration = json.load(handle)["configuration"]
        platform = for_settings(config.load(configuration))
        platform.prometheus.wait_for('scheduler_worker_registered{job="workers"} == 1', timeout=30)
        wait_until(lambda: len(platform.prometheus.query("scheduler_worker_registered == 1")) == 4, 30,
                   message="every worker scraped")
        yield {"tb": tb, "home": home, "configuration": configuration}
        assert Ledger(home).open_faults() == []
    finally:
        ssh.close_all()
        if tb is not None:
            down(tb.state_dir)
        mp.undo()
        shutil.rmtree(home, ignore_errors=True)
        if FIGURES:
            print("\nfigures (measured - ground truth, s):", json.dumps(FIGURES))


def hosts_config(lab: Dict[str, Any], **hosts_changes: Any) -> Dict[str, Any]:
    configuration = json.loads(json.dumps(lab["configuration"]))
    configuration["chaosscheduler_hosts"].update(hosts_changes)
    return configuration


def healthy(configuration: Dict[str, Any]) -> None:
    wait_until(lambda: probes.cluster_health(configuration=configuration)["problem_count"] == 0, 30,
               interval=0.2, message="the cluster healthy again")


def timers(fault_id: str) -> List[int]:
    """PIDs of remote expiry timers of ``fault_id`` (the nodes share this machine's PID namespace)."""
    needle = (ssh.EXPIRY_PREFIX + fault_id).encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if needle in handle.read().split(b"\0"):
                        found.append(int(entry))
    return found


def tables(netns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"], capture_output=True, text=True,
                          timeout=10).stdout


# ---------------------------------------------------------------------------------------------------- SSH
def test_commands_run_over_ssh_in_the_node_namespace_with_every_argument_intact(lab):
    platform = for_settings(config.load(lab["configuration"]))
    host = platform.host("worker-2")
    nasty = ["a b", "$(id)", "'q'", "x;y", "*", ""]
    assert host.run(["printf", "[%s]"] + nasty).stdout == "".join(f"[{a}]" for a in nasty)
    assert "198.18.16.2/16" in host.run(["ip", "-brief", "address", "show", "eth0"]).stdout
    started = time.monotonic()
    for _ in range(5):
        host.run(["true"])
    FIGURES.setdefault("ssh_command_s", []).append(round((time.monotonic() - started) / 5, 4))
    result = host.run(["sh", "-c", "exit 3"], check=False)
    assert result.returncode == 3


def test_the_ssh_key_can_come_from_a_secret_and_is_never_stored(lab, caplog):
    configuration = hosts_config(lab)
    key_file = configuration["chaosscheduler_hosts"]["ssh"].pop("key_file")
    configuration["chaosscheduler_hosts"]["ssh"]["key_secret"] = "ssh_key"
    with open(key_file) as handle:
        key_text = handle.read()
    ssh.close_all()
    health = probes.cluster_health(configuration=configuration, secrets={"ssh_key": key_text})
    assert health["masters_running"] == 3
    planned = actions.isolate_worker(dry_run=True, configuration=configuration, secrets={"ssh_key": key_text})
    assert planned["platform"]["hosts"]["ssh"]["key_secret"] == "ssh_key"
    assert "PRIVATE KEY" not in json.dumps(planned) and "PRIVATE KEY" not in caplog.text
    ssh.close_all()
    with pytest.raises(Exception, match="secret 'ssh_key' is not among"):
        probes.cluster_health(configuration=configuration)


# ---------------------------------------------------------------------------------------------------- leader sources
SOURCES = {
    "promql": {"source": "promql", "query": "scheduler_is_leader == 1"},
    "http-name": {"source": "http", "url": "http://{address}:8080/api/leader", "json_path": "leader"},
    "http-self": {"source": "http", "mode": "self", "url": "http://{address}:8080/health", "json_path": "leader"},
    "etcd": {"source": "etcd", "key": "/cs/leader", "json_path": "name"},
}


@pytest.mark.parametrize("source", list(SOURCES))
def test_kill_the_leader_over_ssh_and_time_the_election_through_each_leader_source(lab, source):
    configuration = hosts_config(lab, leader=SOURCES[source])
    tb: Testbed = lab["tb"]
    healthy(configuration)
    before = probes.cluster_health(configuration=configuration)["leader"]
    assert before == tb.leader()  # every source names the same leader as the cluster itself
    record = actions.kill_master(target="leader", duration=60, configuration=configuration)
    assert record["targets"] == [before] and record["was_leader"] and not tb.is_running(before)
    measured = probes.leader_election_time(timeout=30, configuration=configuration)["value"]
    t0 = record["started_at"]
    acquired = [e for e in tb.events("leader_acquired") if e["ts"] >= t0]
    assert acquired, (f"the cluster elected no new leader: measured {measured}, "
                      f"{Ledger(lab['home']).get(record['id']).get('measurements')}, "
                      f"{[(e['node'], e['ts'] - t0) for e in tb.events('leader_acquired')][-4:]}")
    truth = acquired[0]["since"] - t0
    stored = Ledger(lab["home"]).get(record["id"])["measurements"]["leader_election_time"]
    resolution = float(stored["resolution"])
    assert "leader source" in stored["source"]
    FIGURES.setdefault(f"election_{source}", []).append(round(measured - truth, 3))
    assert stored["new_leader"] == acquired[0]["node"] != before
    assert truth - 0.02 <= measured <= truth + resolution + MARGIN, (measured, truth, stored)
    undone = rollbacks.restart_master(configuration=configuration)
    assert undone["undone"] == [record["id"]]
    healthy(configuration)
    assert tb.is_running(before)  # restarted through the cluster's own command, over SSH


# ---------------------------------------------------------------------------------------------------- network faults
def test_an_isolated_host_stays_reachable_over_ssh_and_heals_itself_without_reaper_or_connection(lab):
    configuration = lab["configuration"]
    tb: Testbed = lab["tb"]
    record = actions.isolate_worker(worker="worker-3", duration=3, configuration=configuration)
    netns = tb.nodes["worker-3"].netns
    assert record["remote_expiry_on"] == ["worker-3"] and record["exempt_tcp_ports"] == [22]
    assert timers(record["id"]), "no timer armed on the host"
    os.kill(record["reaper"]["pid"], signal.SIGKILL)  # the local dead-man switch is gone ...
    ssh.close_all()                                   # ... and so is every SSH connection
    with pytest.raises(TransportError):
        connect(tb.nodes["master-1"].address, 8080, 1.0, netns)  # the worker is cut off
    platform = for_settings(config.load(configuration))
    assert platform.host("worker-3").run(["true"]).returncode == 0  # but SSH still reaches it
    ssh.close_all()
    wait_until(lambda: "chaosscheduler_" not in tables(netns), record["duration"] + 5, interval=0.02,
               message="the table removed by the host's own timer")
    late = time.time() - record["deadline"]
    FIGURES.setdefault("remote_expiry_late_s", []).append(round(late, 3))
    assert late <= 1.5
    connect(tb.nodes["master-1"].address, 8080, 2.0, netns).close()
    assert timers(record["id"]) == []
    closed = rollbacks.rejoin_worker(configuration=configuration)
    assert closed["undone"] == [record["id"]]
    assert Ledger(lab["home"]).get(record["id"])["undo_result"]["already_gone"] == ["worker-3"]
    healthy(configuration)


def test_heal_from_another_process_removes_the_rules_over_ssh_and_disarms_the_hosts_timer(lab):
    configuration = lab["configuration"]
    tb: Testbed = lab["tb"]
    record = actions.partition_workers(workers="worker-1,worker-2", peers="masters", mode="drop", duration=60,
                                       configuration=configuration)
    assert sorted(record["remote_expiry_on"]) == ["worker-1", "worker-2"] and len(timers(record["id"])) == 2
    for worker in ("worker-1", "worker-2"):
        with pytest.raises(TransportError):
            connect(tb.nodes["master-2"].address, 8080, 1.0, tb.nodes[worker].netns)
    # another process rebuilds the hosts platform from the ledger's reference (no secrets: the key file)
    healed = subprocess.run([sys.executable, "-m", "chaosscheduler.cli", "heal"], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, CHAOSSCHEDULER_HOME=lab["home"]))
    assert healed.returncode == 0, healed.stderr
    assert Ledger(lab["home"]).get(record["id"])["state"] == "undone"
    for worker in ("worker-1", "worker-2"):
        assert "chaosscheduler_" not in tables(tb.nodes[worker].netns)
        connect(tb.nodes["master-2"].address, 8080, 2.0, tb.nodes[worker].netns).close()
    wait_until(lambda: timers(record["id"]) == [], 5, message="timers disarmed")
    healthy(configuration)


# ---------------------------------------------------------------------------------------------------- Prometheus
def test_worker_loss_measured_from_prometheus_agrees_with_the_ground_truth(lab):
    configuration = lab["configuration"]
    tb: Testbed = lab["tb"]
    healthy(configuration)
    record = actions.isolate_worker(worker="busiest", duration=40, configuration=configuration)
    worker = record["targets"][0]
    lost = len(record["running_tasks"][worker])
    measured = probes.worker_failure_detection_time(timeout=30, configuration=configuration)["value"]
    t0 = record["started_at"]
    declared = [e for e in tb.events("worker_declared_dead") if e["ts"] >= t0 and e["worker"] == worker]
    assert declared
    truth = declared[0]["ts"] - t0
    stored = Ledger(lab["home"]).get(record["id"])["measurements"]["worker_failure_detection_time"]
    FIGURES.setdefault("detection_metrics", []).append(round(measured - truth, 3))
    assert stored["source"] == "metrics" and "scrape interval 1 s" in str(stored["resolution"])
    assert truth - 0.05 <= measured <= truth + 1.0 + 0.25 + MARGIN, (measured, truth)
    rate = probes.rescheduling_success_rate(deadline=30, configuration=configuration)["value"]
    latency = probes.rescheduling_latency(quantile=1.0, timeout=30, configuration=configuration)["value"]
    truth_moves = [e["ts"] - t0 for e in tb.events("task_rescheduled") if e["ts"] >= t0
                   and e["from_worker"] == worker]
    # the action counted the worker's tasks from its last scrape (<= 1 s old): one may have finished or started since
    assert abs(len(truth_moves) - lost) <= 1 and (not truth_moves or rate == 1.0), (truth_moves, lost, rate)
    if lost:
        FIGURES.setdefault("rescheduling_latency_metrics", []).append(round(latency - max(truth_moves), 3))
        assert max(truth_moves) - 0.05 <= latency <= max(truth_moves) + 1.25 + MARGIN
    utilisation = probes.remaining_workers_utilization(configuration=configuration)["value"]
    assert 0 <= utilisation <= 1
    rollbacks.rejoin_worker(configuration=configuration)
    healthy(configuration)


def test_the_metrics_forms_agree_with_the_records(lab):
    hosts = lab["configuration"]
    records = {"chaosscheduler_cluster": lab["tb"].spec.name}
    healthy(hosts)
    consistency = probes.data_consistency(settle=20, configuration=hosts)
    assert consistency["ratio"] == 1.0 and consistency["lost"] == 0 and consistency["accepted"] > 10
    assert probes.data_consistency(settle=20, configuration=records)["ratio"] == 1.0
    from_metrics = probes.job_submission_success_rate(window=30, configuration=hosts)["value"]
    from_records = probes.job_submission_success_rate(window=30, configuration=records)["value"]
    assert from_metrics == from_records == 1.0
    stall_metrics = probes.scheduling_interruption(window=300, configuration=hosts)["value"]
    stall_records = probes.scheduling_interruption(window=300, configuration=records)["value"]
    FIGURES.setdefault("interruption_metrics", []).append(round(stall_metrics - stall_records, 3))
    assert abs(stall_metrics - stall_records) <= 1.0 + MARGIN + 0.5, _stall_evidence(lab, stall_metrics, stall_records)
    assert probes.task_execution_success_rate(window=30, settle=20, configuration=hosts)["value"] == 1.0
    accuracy = probes.heartbeat_detection_accuracy(window=5, heartbeat_interval=1, configuration=hosts)
    assert accuracy["value"] == 1.0 and accuracy["n"] > 0, accuracy


def _stall_evidence(lab: Dict[str, Any], metrics: float, records: float) -> str:
    """What a failed comparison needs to be explained (Debian 13 once showed 4.76 s, not reproduced since): the
    load generator's slow or failed submissions (work the records count as waiting, which no metric shows while
    nothing was accepted), and the leader changes, over the probes' window."""
    tb: Testbed = lab["tb"]
    since = time.time() - 300
    slow = [(round(s["at"] - since, 2), round(s["latency"], 2), s["outcome"], s.get("errors"))
            for s in tb.submissions(since) if s["latency"] > 1.0 or s["outcome"] != "accepted"]
    leaders = [(round(e["ts"] - since, 2), e["node"], e["event"]) for e in tb.events()
               if e["ts"] >= since and e["event"] in ("leader_acquired", "leader_lost", "node_stopped")]
    return (f"stall from metrics {metrics} s, from records {records} s; submissions slower than 1 s or not accepted "
            f"(s into the window, latency, outcome, errors): {slow}; leadership: {leaders}")


# ---------------------------------------------------------------------------------------------------- non-root
SUDO_COMMANDS = ["/usr/sbin/nft", "/usr/bin/kill", "/usr/bin/ss", "/usr/bin/setsid", "/usr/bin/pkill",
                 "/usr/bin/cat"]


@pytest.fixture
def sudo_account():
    """A plain account (``/bin/sh``, no password, no home) allowed exactly our privileged commands through sudo;
    removed after the test by its own name."""
    if shutil.which("sudo") is None or shutil.which("useradd") is None:
        pytest.skip("sudo or useradd is not installed")
    name = "cs" + uuid.uuid4().hex[:8]
    sudoers = f"/etc/sudoers.d/{name}"
    subprocess.run(["useradd", "--system", "--shell", "/bin/sh", "--home-dir", "/nonexistent", "--no-create-home",
                    name], check=True, capture_output=True)
    try:
        subprocess.run(["usermod", "--password", "*", name], check=True, capture_output=True)  # no password, not locked
        with open(sudoers, "w") as handle:
            handle.write(f"{name} ALL=(root) NOPASSWD: {', '.join(SUDO_COMMANDS)}\n")
        os.chmod(sudoers, 0o440)
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sudoers)
        # --force: an SSH session of the account may still be closing
        subprocess.run(["userdel", "--force", name], capture_output=True)
        assert subprocess.run(["id", "-u", name], capture_output=True).returncode != 0, f"account {name} left"


def test_a_non_root_account_injects_and_heals_through_sudo(lab, sudo_account):
    configuration = hosts_config(lab)
    configuration["chaosscheduler_hosts"]["ssh"].update(user=sudo_account, sudo=True)
    tb: Testbed = lab["tb"]
    ssh.close_all()
    platform = for_settings(config.load(configuration))
    host = platform.host("worker-4")
    assert host.run(["id", "-u"], privileged=False).stdout.strip() != "0"
    started = time.monotonic()
    for _ in range(5):
        host.run(["true"], privileged=False)
    FIGURES.setdefault("ssh_command_plain_account_s", []).append(round((time.monotonic() - started) / 5, 4))
    record = actions.isolate_worker(worker="worker-4", duration=60, configuration=configuration)
    assert "chaosscheduler_" in tables(tb.nodes["worker-4"].netns) and timers(record["id"])
    rollbacks.rejoin_worker(configuration=configuration)
    assert "chaosscheduler_" not in tables(tb.nodes["worker-4"].netns)
    wait_until(lambda: timers(record["id"]) == [], 5, message="timer disarmed through sudo")
    assert platform.pid("master-2") is not None  # ss -p through sudo
    ssh.close_all()
