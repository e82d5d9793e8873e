"""The embedded cluster under faults it was not built for, with a 3-member etcd: the etcd leader killed, the leader
master cut off from etcd while it still believes it leads, the leader master frozen (SIGSTOP) beyond its lease with
requests queued at it, a worker frozen beyond its heartbeat lease. In every one: no accepted task is lost or
completed twice, and no two masters schedule at once — checked on the cluster's own records:

* every (task, attempt) is assigned by one master, once, and started on one worker;
* every assignment was decided (its ``at`` in the task's history, taken before the fenced write) before any later
  leader took over: a master that has been replaced never gets a write through;
* a request a stale leader answers is either refused (its fenced write failed: nothing of it is stored) or
  forwarded to the new leader — never accepted by the stale leader.
"""

import json
import signal
import threading
import time
import uuid
from typing import Any, Dict, List

import pytest

from chaosscheduler import actions, probes, rollbacks
from chaosscheduler.testbed.client import ClientError
from chaosscheduler.timing import wait_until

from . import harness
from .conftest import REAL, is_stopped, running, start_env, stop_env

pytestmark = REAL + [pytest.mark.integration]
FIGURES: Dict[str, List[float]] = {}


@pytest.fixture(scope="module")
def cluster_env():
    env = start_env(etcd_members=3, task_duration=1.0)
    yield env
    stop_env(env)
    if FIGURES:
        print("\ncluster faults:\n" + "\n".join(f"  {k}: {v}" for k, v in sorted(FIGURES.items())))


def leadership_violations(tb, since: float) -> List[str]:
    """What contradicts "one scheduler at a time" in the event log and the stored tasks after ``since``."""
    events = tb.events()
    acquired = sorted((e for e in events if e["event"] == "leader_acquired"), key=lambda e: e["term"])
    assigned = [e for e in events if e["event"] == "task_assigned" and e["ts"] >= since]
    started = [e for e in events if e["event"] == "task_started" and e["ts"] >= since]
    history = {}
    for task in tb.tasks():
        for h in task["history"]:
            if h["event"] == "assigned":
                history.setdefault((task["id"], h["attempt"]), []).append(h)
    problems = []
    seen: Dict[Any, str] = {}
    for e in assigned:
        key = (e["task"], e["attempt"])
        if key in seen:
            problems.append(f"{key} assigned twice ({seen[key]} and {e['node']})")
        seen[key] = e["node"]
        mine = [a for a in acquired if a["node"] == e["node"] and a["ts"] <= e["ts"]]
        if not mine:
            problems.append(f"{e['node']} assigned {key} without ever having been leader")
            continue
        decided = [h["at"] for h in history.get(key, []) if h["worker"] == e["worker"]]
        if not decided:
            problems.append(f"{key} assigned by {e['node']} but not stored: a write that did not go through")
            continue
        for later in (a for a in acquired if a["term"] > mine[-1]["term"]):
            if decided[0] >= later["ts"]:
                problems.append(f"{e['node']} (term {mine[-1]['term']}) assigned {key} at {decided[0]:.3f}, after "
                                f"{later['node']} took over (term {later['term']}, {later['ts']:.3f})")
    runs: Dict[Any, set] = {}
    for e in started:
        runs.setdefault((e["task"], e["attempt"]), set()).add(e["node"])
    problems += [f"{key} started on {sorted(w)}" for key, w in runs.items() if len(w) > 1]
    return problems


def assert_no_task_lost_or_doubled(env, since: float) -> Dict[str, Any]:
    env.tb.wait_healthy(30)
    result = probes.data_consistency(settle=30, configuration=env.cfg())
    assert result["ratio"] == 1.0 and result["lost"] == [] and result["duplicated"] == [], result
    assert result["accepted"] > 0
    problems = leadership_violations(env.tb, since)
    assert problems == [], problems
    return result


def overlap(tb, old: str, since: float) -> float:
    """Seconds during which ``old`` still believed it led while another master already did."""
    events = [e for e in tb.events() if e["ts"] >= since]
    new = min((e["ts"] for e in events if e["event"] == "leader_acquired" and e["node"] != old), default=None)
    lost = min((e["ts"] for e in events if e["event"] == "leader_lost" and e["node"] == old), default=None)
    return max(0.0, lost - new) if new and lost else 0.0


def _submitted_since(env, since: float) -> int:
    return sum(1 for s in env.tb.submissions(since) if s["outcome"] == "accepted")


def test_the_etcd_leader_killed_and_restarted_loses_no_task(env):
    since = time.time()
    members = [n for n in env.tb.nodes if n.startswith("etcd-")]
    leader = None
    for member in members:  # ask each member whether it leads (etcdctl, inside its namespace)
        node = env.tb.nodes[member]
        status = harness.sh(["etcdctl", f"--endpoints=http://{node.address}:{node.port}", "endpoint", "status",
                             "-w", "json"], node.netns)
        if json.loads(status.stdout)[0]["Status"]["leader"] == json.loads(status.stdout)[0]["Status"]["header"][
                "member_id"]:
            leader = member
    assert leader, "no etcd member says it leads"
    assert env.tb.signal_node(leader, signal.SIGKILL)
    killed = time.time()
    wait_until(lambda: _submitted_since(env, killed) >= 6, 30, message="jobs accepted with the etcd leader dead")
    env.tb.restart_node(leader)
    result = assert_no_task_lost_or_doubled(env, since)
    FIGURES.setdefault("etcd leader killed: accepted tasks checked", []).append(result["accepted"])


def test_the_leader_master_cut_off_from_etcd_never_schedules_next_to_its_successor(env):
    since = time.time()
    old = wait_until(env.tb.leader, 15, message="a leader")
    netns = env.netns(old)
    etcd = sorted(env.tb.nodes[n].address for n in env.tb.nodes if n.startswith("etcd-"))
    table = "cstest" + uuid.uuid4().hex[:8]  # the test's own table, not the library's
    rules = (f"table inet {table} {{\n set etcd {{ type ipv4_addr; elements = {{ {', '.join(etcd)} }}; }}\n"
             f" chain out {{ type filter hook output priority -150; policy accept; ip daddr @etcd drop; }}\n"
             f" chain in {{ type filter hook input priority -150; policy accept; ip saddr @etcd drop; }}\n}}\n")
    harness.sh(["nft", "-f", "-"], netns, input=rules)
    cut_at = time.time()
    try:
        def successor():
            current = env.tb.leader()
            return current if current and current != old else None

        new = wait_until(successor, 20, message="another master elected")
        FIGURES.setdefault("etcd cut: seconds until a successor leads", []).append(round(time.time() - cut_at, 2))
        wait_until(lambda: [e for e in env.tb.events("leader_lost") if e["node"] == old and e["ts"] >= since],
                   20, message="the cut-off master steps down by itself")
        cut = time.time()
        wait_until(lambda: _submitted_since(env, cut) >= 4, 30, message="jobs accepted by the successor")
    finally:
        harness.sh(["nft", "delete", "table", "inet", table], netns, check=False)
    assert new != old
    FIGURES.setdefault("etcd cut: seconds the old leader still believed it led", []).append(
        round(overlap(env.tb, old, since), 3))
    assert_no_task_lost_or_doubled(env, since)


def test_a_frozen_leader_woken_after_its_lease_gets_no_write_through(env):
    since = time.time()
    frozen = actions.kill_master(target="leader", signal="SIGSTOP", duration=60, configuration=env.cfg())
    old = frozen["targets"][0]
    assert is_stopped(env.tb, old)
    answers: List[Any] = []
    jobs = [f"fence{uuid.uuid4().hex[:10]}" for _ in range(6)]

    def submit(job: str) -> None:  # queued at the frozen master; answered once it runs again
        try:
            answers.append((job,) + tuple(env.tb.call(old, "POST", "/api/jobs", {"tasks": 1, "duration": 0.5,
                                                                                  "job": job}, timeout=60)))
        except ClientError as e:
            answers.append((job, None, str(e)))

    threads = [threading.Thread(target=submit, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    new = wait_until(lambda: (lambda c: c if c and c != old else None)(env.tb.leader()), 20,
                     message="a successor elected while the leader is frozen")
    wait_until(lambda: time.time() > frozen["started_at"] + env.tb.spec.election_ttl + 1, 10, interval=0.05,
               message="the frozen leader's lease long expired")
    rollbacks.restart_master(configuration=env.cfg())  # SIGCONT: it wakes up believing it leads
    for thread in threads:
        thread.join(60)
    assert len(answers) == len(jobs)
    stored = {t["job"]: t for t in env.tb.tasks(since)}
    for job, status, body in answers:
        if status == 201:
            assert body["leader"] != old, f"the stale leader accepted {job}: {body}"
            assert job in stored
        else:
            assert job not in stored, f"{job} was refused ({status}) yet stored: a write got through"
    FIGURES.setdefault("frozen leader: answers (201 forwarded / refused)", []).append(
        f"{sum(1 for a in answers if a[1] == 201)}/{sum(1 for a in answers if a[1] != 201)}")
    reasons = [e.get("reason") for e in env.tb.events("leader_lost") if e["node"] == old and e["ts"] >= since]
    FIGURES.setdefault("frozen leader: how it stepped down", []).append(reasons)
    assert reasons, "the woken leader never stepped down"
    assert new != old
    assert_no_task_lost_or_doubled(env, since)


def test_a_worker_frozen_beyond_its_lease_and_resumed_completes_nothing_twice(env):
    since = time.time()
    wait_until(lambda: [w for w in env.tb.workers() if w["running"]], 15, message="a worker with tasks")
    busiest = max(env.tb.workers(), key=lambda w: len(w["running"]))
    worker, lost = busiest["name"], busiest["running"]
    proc = env.tb.process(worker)
    assert env.tb.signal_node(worker, signal.SIGSTOP)
    try:
        wait_until(lambda: [e for e in env.tb.events("worker_declared_dead") if e["worker"] == worker
                            and e["ts"] >= since], env.tb.spec.heartbeat_ttl + 10, message="declared dead")
        # its tasks: those seen before the freeze, and any the leader gave it between that look and the freeze
        def moved(t):
            return any(h["event"] == "rescheduled" and h["from"] == worker and h["at"] >= since for h in t["history"])

        wait_until(lambda: all(t["state"] == "completed" for t in env.tb.tasks() if t["id"] in lost or moved(t)),
                   30, message="its tasks completed elsewhere")
    finally:
        env.tb.signal_node(worker, signal.SIGCONT)
    assert running(env.tb, worker) and env.tb.process(worker) == proc
    wait_until(lambda: next(w for w in env.tb.workers() if w["name"] == worker)["alive"], 20,
               message="the worker registered again")
    rescheduled = [t for t in env.tb.tasks() if moved(t)]
    assert rescheduled, f"none of {worker}'s tasks {lost} was rescheduled"
    assert all(t["completed_by"] != worker and t["completions"] == 1 for t in rescheduled), rescheduled
    result = assert_no_task_lost_or_doubled(env, since)
    FIGURES.setdefault("frozen worker: stale completions refused", []).append(result["stale_completions"])
