"""The embedded cluster with real components: etcd, master/worker/load processes in network namespaces.

Each test starts its own cluster (unique name, own state home) through the fixtures, which remove it by its own
record afterwards. Waits poll with deadlines (``wait_until``); nothing sleeps to synchronise. Network traffic stays
inside the namespaces the tests create (198.18.0.0/16) or on loopback.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chaosscheduler import procs
from chaosscheduler.errors import TestbedError
from chaosscheduler.testbed import ClusterSpec, down, find, up
from chaosscheduler.testbed import network, state
from chaosscheduler.testbed.spec import SUBNET
from chaosscheduler.timing import wait_until

NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
NEEDS_ETCD = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (apt etcd-server)")
NEEDS_NFT = pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed (apt nftables)")

pytestmark = pytest.mark.integration

FIREWALL_TABLE = "cs_test_isolate"  # the only nft table these tests ever create (in a worker's namespace)


# ---------------------------------------------------------------------------------------------------- helpers
def _cli() -> list:
    script = os.path.join(os.path.dirname(sys.executable), "chaosscheduler")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "chaosscheduler.cli"]


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(_cli() + list(args), capture_output=True, text=True, timeout=timeout)


def _our_namespaces(name: str) -> list:
    return [n for n in network.existing_namespaces() if n.startswith(f"cs-{name}-")]


def _ip_netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def _root_links() -> set:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


def _assert_nothing_left(name: str, state_dir: str, recorded: dict) -> None:
    """No namespace (hence no veth or bridge), no process, no state of cluster ``name``."""
    assert _our_namespaces(name) == []
    assert f"cs-{name}-" not in _ip_netns_list()
    still = [node for node, proc in recorded.items() if procs.is_running(proc)]
    assert still == [], f"recorded processes still running: {still}"
    assert procs.pids_with_marker(state_dir) == []
    assert not os.path.exists(state_dir)


def _metric(tb, node: str, sample: str, **labels) -> float:
    code, text = tb.call(node, "GET", "/metrics")
    assert code == 200
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def _masters_metric(tb, sample: str, **labels) -> float:
    return sum(_metric(tb, m.name, sample, **labels) for m in tb.nodes_of("master") if tb.is_running(m.name))


def _tasks_by_id(tb) -> dict:
    return {t["id"]: t for t in tb.tasks()}


def _wait_completed(tb, task_ids, timeout: float = 20.0) -> dict:
    wanted = set(task_ids)

    def done():
        tasks = _tasks_by_id(tb)
        return tasks if all(tasks.get(t, {}).get("state") == "completed" for t in wanted) else None

    return wait_until(done, timeout, 0.1, f"tasks {sorted(wanted)[:5]}... completed")


def _submit(tb, tasks: int = 1, duration: float = 0.3, deadline: float = 10.0) -> list:
    result = tb.submit(tasks=tasks, duration=duration, deadline=deadline)
    assert result["accepted"], result
    return result["response"]["tasks"]


def _assert_exactly_once(tb, tasks: dict, task_ids) -> None:
    completed_events = {}
    for event in tb.events("task_completed"):
        completed_events.setdefault(event["task"], []).append(event)
    for task_id in task_ids:
        task = tasks[task_id]
        assert task["state"] == "completed", task
        assert task["completions"] == 1, task
        assert len(completed_events.get(task_id, [])) == 1, (task_id, completed_events.get(task_id))
    assert all(len(evs) == 1 for evs in completed_events.values())


def _leaders_by_health(tb) -> list:
    leaders = []
    for m in tb.nodes_of("master"):
        if tb.is_running(m.name):
            code, health = tb.call(m.name, "GET", "/health")
            if code == 200 and health.get("leader"):
                leaders.append(m.name)
    return leaders


def _new_leader(tb, old: str, timeout: float = 15.0) -> str:
    return wait_until(lambda: (lambda leader: leader if leader not in (None, old) else None)(tb.leader()),
                      timeout, 0.02, f"a leader other than {old}")


# ---------------------------------------------------------------------------------------------------- lifecycle
@NEEDS_ROOT
@NEEDS_ETCD
def test_up_is_healthy_and_down_removes_everything(make_cluster):
    links_before = _root_links()
    tb = make_cluster(load_rate=1.0, task_duration=0.2)
    spec, state_dir = tb.spec, tb.state_dir
    assert tb.mode == "netns"
    assert tb.healthy() is None
    leader = tb.leader()
    assert _leaders_by_health(tb) == [leader]
    workers = tb.workers()
    assert sorted(w["name"] for w in workers) == [f"worker-{i}" for i in range(1, 5)]
    assert all(w["alive"] and w["state"] == "alive" for w in workers)
    # every node in its own namespace with its own address; nothing in the root namespace
    record = tb.record
    assert sorted(_our_namespaces(spec.name)) == sorted(record["namespaces"])
    assert len(record["namespaces"]) == 1 + 1 + 3 + 4 + 1  # switch, etcd, masters, workers, load
    new_links = _root_links() - links_before
    assert not [n for n in new_links if n == "br0" or re.fullmatch(r"v\d+|eth0", n)], new_links
    switch = network.switch_name(spec.name)
    bridge = subprocess.run(["ip", "-n", switch, "-o", "link", "show", "type", "bridge"],
                            capture_output=True, text=True, check=True).stdout
    assert "br0" in bridge
    worker = tb.nodes["worker-1"]
    addr = subprocess.run(["ip", "-n", worker.netns, "-o", "addr", "show", "dev", "eth0"],
                          capture_output=True, text=True, check=True).stdout
    assert f"{worker.address}/{SUBNET.prefixlen}" in addr
    processes = dict(record["processes"])
    assert len(processes) == len(tb.nodes) and all(procs.is_running(p) for p in processes.values())
    for name, proc in processes.items():  # each process lives in its node's namespace
        assert proc["pid"] in network.pids_in(tb.nodes[name].netns)
    assert [e for e in tb.events("node_started")]

    result = down(state_dir)
    assert sorted(result["namespaces_removed"]) == sorted(record["namespaces"])
    _assert_nothing_left(spec.name, state_dir, processes)
    # idempotent, and a later lookup says clearly there is nothing
    assert down(state_dir)["namespaces_removed"] == []
    _assert_nothing_left(spec.name, state_dir, processes)
    with pytest.raises(TestbedError, match="no embedded cluster"):
        find(spec.name, home=spec.home)


@NEEDS_ROOT
@NEEDS_ETCD
@pytest.mark.parametrize("kill_when", ["record written", "some processes started", "never"])
def test_down_works_after_the_cli_that_ran_up_is_killed(home, kill_when):
    name = "k" + uuid.uuid4().hex[:9]
    state_dir = ClusterSpec(name=name, home=home).state_dir
    cluster_json = state.cluster_path(state_dir)
    cli = subprocess.Popen(_cli() + ["testbed", "up", "--name", name, "--load-rate", "0.5"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    recorded = {}
    try:
        if kill_when == "never":
            out, err = cli.communicate(timeout=60)
            assert cli.returncode == 0, err
            assert re.search(r"leader: master-\d", out) and "healthy" in out
            assert "198.18." in out and "events:" in out
        else:
            def reached():
                if kill_when == "record written":
                    return os.path.exists(cluster_json)
                data = state.load(state_dir) if os.path.exists(cluster_json) else {}
                return len(data.get("processes", {})) >= 3
            wait_until(reached, 30, 0.001, kill_when)
            cli.send_signal(signal.SIGKILL)
            cli.communicate(timeout=10)
            assert cli.returncode == -signal.SIGKILL
        recorded = dict(state.load(state_dir).get("processes", {})) if os.path.exists(cluster_json) else {}
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
        result = _run_cli("testbed", "down", "--name", name)
    assert result.returncode == 0, result.stderr
    assert f"cluster {name}: removed" in result.stdout
    _assert_nothing_left(name, state_dir, recorded)
    # whatever the kill left half-done (late children included) does not come back
    assert _our_namespaces(name) == [] and procs.pids_with_marker(state_dir) == []
    again = _run_cli("testbed", "down", "--name", name)
    assert again.returncode == 0 and "there was none" in again.stdout


@NEEDS_ROOT
@NEEDS_ETCD
def test_second_up_with_the_same_name_is_refused_and_replace_works(make_cluster, home):
    tb = make_cluster(load_rate=0)
    name = tb.spec.name
    old = dict(tb.record["processes"])
    with pytest.raises(TestbedError) as caught:
        up(ClusterSpec(name=name, home=home, load_rate=0))
    message = str(caught.value)
    assert f"named {name!r} already exists" in message
    assert "testbed down" in message and "--replace" in message
    assert tb.record["processes"] == old and tb.healthy() is None  # the refusal harmed nothing
    # the CLI refuses the same way, with a clean message and exit code
    refused = _run_cli("testbed", "up", "--name", name, "--load-rate", "0")
    assert refused.returncode == 2 and "already exists" in refused.stderr and "Traceback" not in refused.stderr

    replaced = up(ClusterSpec(name=name, home=home, load_rate=0, workers=2), replace=True)
    assert replaced.state_dir == tb.state_dir
    assert replaced.healthy() is None and len(replaced.nodes_of("worker")) == 2
    assert not [n for n, p in old.items() if procs.is_running(p)]
    assert all(procs.is_running(p) for p in replaced.record["processes"].values())
    assert sorted(_our_namespaces(name)) == sorted(replaced.record["namespaces"])
    # the old cluster's events went with its state directory: the new log starts afresh
    assert len(replaced.events("node_started")) == len(replaced.nodes) - 1  # etcd does not log events


def test_missing_etcd_binary_names_the_package(home, monkeypatch, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    spec = ClusterSpec(name="n" + uuid.uuid4().hex[:9], home=home)
    with pytest.raises(TestbedError, match="apt-get install etcd-server"):
        up(spec)
    assert not os.path.exists(spec.state_dir)
    assert _our_namespaces(spec.name) == []


# ---------------------------------------------------------------------------------------------------- leader crash
@NEEDS_ROOT
@NEEDS_ETCD
def test_leader_kill_fails_over_and_every_accepted_task_completes_once(make_cluster):
    tb = make_cluster(load_rate=4.0, task_duration=0.5)
    old = tb.leader()
    before = [t for _ in range(3) for t in _submit(tb, tasks=2, duration=0.5)]

    during = []
    submitting = threading.Thread(target=lambda: during.extend(_submit(tb, tasks=3, duration=0.5, deadline=15)),
                                  daemon=True)
    killed_at = time.time()
    assert tb.signal_node(old, signal.SIGKILL)
    assert not tb.is_running(old)
    submitting.start()  # no leader now: the client helper retries the other masters
    new = _new_leader(tb, old)
    seen_at = time.time()
    submitting.join(20)
    assert not submitting.is_alive() and len(during) == 3
    after = [t for _ in range(3) for t in _submit(tb, tasks=2, duration=0.5)]

    assert new != old and _leaders_by_health(tb) == [new]
    acquired = wait_until(lambda: [e for e in tb.events("leader_acquired") if e["ts"] > killed_at], 5, 0.02,
                          "leader_acquired in the event log")
    assert [e["node"] for e in acquired] == [new]
    assert killed_at < acquired[0]["ts"] <= seen_at + 0.5

    # the load generator kept submitting through the failover; some of its jobs went in while there was no leader
    loads = tb.submissions()
    accepted_load = [t for s in loads if s["outcome"] == "accepted" for t in s["tasks"]]
    assert any(s["outcome"] == "accepted" and killed_at < s["at"] < seen_at for s in loads)
    mine = before + during + after
    tasks = _wait_completed(tb, mine + accepted_load, timeout=30)
    _assert_exactly_once(tb, tasks, mine + accepted_load)
    # nothing the old leader accepted was lost, and the new leader finished tasks the old one had assigned
    assert {tasks[t]["accepted_by"] for t in before} == {old}
    assert all(tasks[t]["completed_by"].startswith("worker-") for t in mine)


@NEEDS_ETCD
def test_loopback_mode_supports_master_kill_and_failover(make_cluster):
    tb = make_cluster(network="loopback", workers=2, load_rate=0)
    assert tb.mode == "loopback"
    assert all(n.netns is None and n.address == "127.0.0.1" for n in tb.nodes.values())
    assert tb.record["namespaces"] == [] and _our_namespaces(tb.spec.name) == []
    old = tb.leader()
    first = _submit(tb, tasks=2)
    assert tb.signal_node(old, signal.SIGKILL)
    new = _new_leader(tb, old)
    assert new != old
    later = _submit(tb, tasks=2)
    tasks = _wait_completed(tb, first + later)
    _assert_exactly_once(tb, tasks, first + later)


# ---------------------------------------------------------------------------------------------------- worker cut off
def _nft(netns: str, *args: str, script: str = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, "nft"] + list(args), input=script,
                          capture_output=True, text=True, timeout=10)


@NEEDS_ROOT
@NEEDS_ETCD
@NEEDS_NFT
def test_isolated_worker_is_declared_dead_its_tasks_rerun_once_and_its_late_completions_are_stale(make_cluster):
    ttl = 2
    tb = make_cluster(load_rate=0, heartbeat_ttl=ttl, slots=4)
    submitted = _submit(tb, tasks=8, duration=2.5)
    # every task is placed before the cut (no assignment can race it); the target is the busiest worker, as an
    # experiment would pick it
    workers = wait_until(lambda: (lambda ws: ws if sum(len(w["running"]) for w in ws) == len(submitted) else None)(
        tb.workers()), 10, 0.05, "every task running")
    victim = max(workers, key=lambda w: len(w["running"]))["name"]
    netns = tb.nodes[victim].netns
    rules = (f"table inet {FIREWALL_TABLE} {{\n"
             f"  chain input {{ type filter hook input priority 0; policy accept; iifname \"eth0\" drop; }}\n"
             f"  chain output {{ type filter hook output priority 0; policy accept; oifname \"eth0\" drop; }}\n"
             f"}}\n")
    cut_at = time.time()
    applied = _nft(netns, "-f", "-", script=rules)
    assert applied.returncode == 0, applied.stderr
    try:
        # what the worker holds once cut off (read over its local socket, which the cut leaves alone)
        victim_tasks = sorted(r.split("#")[0] for r in tb.call(victim, "GET", "/health")[1]["running"])
        assert victim_tasks
        dead = wait_until(lambda: [e for e in tb.events("worker_declared_dead") if e["worker"] == victim],
                          ttl + 10, 0.05, f"{victim} declared dead")
        assert len(dead) == 1
        # declared dead only once its lease ran out: a full TTL after the last heartbeat the leader saw
        assert dead[0]["ts"] > cut_at
        assert dead[0]["ts"] - dead[0]["last_heartbeat"] >= ttl - 0.25
        assert {w["name"]: w for w in tb.workers()}[victim]["alive"] is False
        # its running tasks run again elsewhere and complete once there
        tasks = _wait_completed(tb, submitted, timeout=20)
        for task_id in victim_tasks:
            task = tasks[task_id]
            assert task["completed_by"] != victim and task["attempt"] >= 2, task
            assert any(h["event"] == "rescheduled" and h["from"] == victim for h in task["history"]), task
        # meanwhile the cut-off worker finished its copies and cannot report them
        wait_until(lambda: (lambda h: not h["running"] and h["outbox"] >= len(victim_tasks))(
            tb.call(victim, "GET", "/health")[1]), 10, 0.05, f"{victim} finished its stale copies")
    finally:
        healed = _nft(netns, "delete", "table", "inet", FIREWALL_TABLE)
    assert healed.returncode == 0, healed.stderr
    assert FIREWALL_TABLE not in _nft(netns, "list", "tables").stdout

    # healed: the worker registers again and its late completions are recorded as stale, counted nowhere
    wait_until(lambda: {w["name"]: w for w in tb.workers()}[victim]["alive"], 20, 0.05, f"{victim} re-registered")
    assert any(e["node"] == victim and e["rejoined"] for e in tb.events("worker_registered"))

    def stale_recorded():
        tasks = _tasks_by_id(tb)
        return tasks if all(any(s["worker"] == victim for s in tasks[t]["stale_completions"])
                            for t in victim_tasks) else None

    tasks = wait_until(stale_recorded, 20, 0.05, f"stale completions of {victim} recorded")
    for task_id in victim_tasks:
        stale = [s for s in tasks[task_id]["stale_completions"] if s["worker"] == victim]
        assert len(stale) == 1 and stale[0]["attempt"] == 1 and stale[0]["reason"] == "superseded attempt"
        assert tasks[task_id]["completions"] == 1 and tasks[task_id]["completed_by"] != victim
    _assert_exactly_once(tb, tasks, submitted)
    # the leader takes the rejoined worker on at its next pass (its status record may still say "dead" right now)
    wait_until(lambda: tb.healthy() is None, 10, 0.05, "the cluster healthy again")

    # the event log, the API and the metrics tell the same story
    stale_events = tb.events("task_stale_completion")
    assert sorted(e["task"] for e in stale_events) == sorted(victim_tasks)
    rescheduled = [h for t in tasks.values() for h in t["history"] if h["event"] == "rescheduled"]
    assert len(tb.events("task_rescheduled")) == len(rescheduled) >= len(victim_tasks)
    assert _masters_metric(tb, "scheduler_task_rescheduled_total") == len(rescheduled)
    assert _masters_metric(tb, "scheduler_task_stale_completions_total") == len(stale_events)
    assert _masters_metric(tb, "scheduler_task_completed_total") == len(submitted)
    resched_hist = _masters_metric(tb, "scheduler_rescheduling_duration_seconds_count")
    assert resched_hist == len(rescheduled)
    detection = _metric(tb, tb.leader(), "scheduler_worker_failure_detection_seconds")
    assert detection == pytest.approx(dead[0]["ts"] - dead[0]["last_heartbeat"], abs=0.1)
    assert any(e["node"] == victim and e["stale"] for e in tb.events("completion_reported"))


# ---------------------------------------------------------------------------------------------------- ground truth
@NEEDS_ROOT
@NEEDS_ETCD
def test_event_log_agrees_with_the_api_and_the_metrics(make_cluster):
    tb = make_cluster(load_rate=0)
    leader = tb.leader()
    followers = [m.name for m in tb.nodes_of("master") if m.name != leader]
    jobs = []
    for i, master in enumerate(followers + [leader] + followers):  # through followers (forwarded) and the leader
        code, body = tb.call(master, "POST", "/api/jobs", {"tasks": i + 1, "duration": 0.2})
        assert code == 201, body
        assert body["leader"] == leader
        jobs.append(body)
    task_ids = [t for job in jobs for t in job["tasks"]]
    bad, answer = tb.call(followers[0], "POST", "/api/jobs", {"tasks": 0})
    assert bad == 400 and "'tasks'" in answer["error"]
    tasks = _wait_completed(tb, task_ids)
    assert set(tasks) == set(task_ids)
    _assert_exactly_once(tb, tasks, task_ids)

    submitted = tb.events("task_submitted")
    assert sorted(e["task"] for e in submitted) == sorted(task_ids)
    assert all(e["node"] == leader for e in submitted)
    completed = {e["task"]: e for e in tb.events("task_completed")}
    for task_id, task in tasks.items():
        assert completed[task_id]["worker"] == task["completed_by"]
        assert completed[task_id]["attempt"] == task["completed_attempt"]
    assigned = tb.events("task_assigned")
    assert len(assigned) == sum(1 for t in tasks.values() for h in t["history"] if h["event"] == "assigned")
    assert len(tb.events("task_finished")) == len(task_ids)

    assert _masters_metric(tb, "scheduler_task_submitted_total") == len(task_ids)
    assert _masters_metric(tb, "scheduler_task_completed_total") == len(task_ids)
    assert _masters_metric(tb, "scheduler_job_submissions_total", outcome="accepted") == len(jobs)
    assert _masters_metric(tb, "scheduler_job_submissions_total", outcome="forwarded") == 2 * len(followers)
    assert _masters_metric(tb, "scheduler_job_submissions_total", outcome="invalid") == 1
    assert _masters_metric(tb, "scheduler_is_leader") == 1
    assert _metric(tb, leader, "scheduler_is_leader") == 1
    assert _metric(tb, leader, "scheduler_workers_alive") == 4
    assert _masters_metric(tb, "scheduler_task_rescheduled_total") == 0 == len(tb.events("task_rescheduled"))
    finished = sum(_metric(tb, w.name, "scheduler_worker_tasks_finished_total", outcome="ok")
                   for w in tb.nodes_of("worker"))
    assert finished == len(task_ids)
    # every event carries both clocks and its node
    for event in tb.events():
        assert {"ts", "mono", "node", "event"} <= set(event)


# ---------------------------------------------------------------------------------------------------- restart
@NEEDS_ROOT
@NEEDS_ETCD
def test_a_crashed_node_shows_in_status_and_restart_node_brings_it_back(make_cluster):
    tb = make_cluster(load_rate=0, workers=2)
    name = tb.spec.name
    follower = next(m.name for m in tb.nodes_of("master") if m.name != tb.leader())
    for node in ("worker-2", follower):
        assert tb.signal_node(node, signal.SIGKILL)
    status = tb.status()
    running = {n["name"]: n["running"] for n in status["nodes"]}
    assert running["worker-2"] is False and running[follower] is False
    assert sum(running.values()) == len(running) - 2
    assert "worker-2" in status["problem"] and follower in status["problem"]
    cli_status = _run_cli("testbed", "status", "--name", name)
    assert cli_status.returncode == 3
    assert re.search(r"worker-2\s+worker\s+STOPPED", cli_status.stdout)

    with pytest.raises(TestbedError, match="already running"):
        tb.restart_node("worker-1")
    with pytest.raises(TestbedError, match="no node 'worker-9'"):
        tb.restart_node("worker-9")

    restarted = _run_cli("testbed", "restart-node", "worker-2", "--name", name)
    assert restarted.returncode == 0, restarted.stderr
    assert "worker-2 started again" in restarted.stdout
    proc = tb.restart_node(follower)
    assert procs.is_running(proc) and tb.is_running(follower) and tb.is_running("worker-2")
    wait_until(lambda: tb.healthy() is None, 15, 0.05, "healthy again")
    assert _run_cli("testbed", "status", "--name", name).returncode == 0
    # the restarted worker takes work
    job = _submit(tb, tasks=8, duration=0.2)
    tasks = _wait_completed(tb, job)
    assert "worker-2" in {tasks[t]["completed_by"] for t in job}


# ---------------------------------------------------------------------------------------------------- etcd members
@NEEDS_ROOT
@NEEDS_ETCD
def test_three_etcd_members(make_cluster):
    tb = make_cluster(etcd_members=3, workers=2, load_rate=0)
    members = tb.nodes_of("etcd")
    assert [m.name for m in members] == ["etcd-1", "etcd-2", "etcd-3"]
    assert len({m.address for m in members}) == 3 and all(tb.is_running(m.name) for m in members)
    job = _submit(tb, tasks=4)
    _wait_completed(tb, job)
    # the point of three members: losing one keeps the registry (and so the platform) working
    assert tb.signal_node("etcd-1", signal.SIGKILL)
    later = _submit(tb, tasks=4)
    tasks = _wait_completed(tb, later)
    _assert_exactly_once(tb, tasks, job + later)
    wait_until(lambda: tb.leader() is not None, 10, 0.05, "a leader with two etcd members")
