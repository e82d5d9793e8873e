"""The timeline recorder and the masters' ``GET /api/summary`` on a real embedded cluster."""

import signal

import pytest

from chaosscheduler.ledger import Ledger
from chaosscheduler.timeline import Recorder, TestbedSource
from chaosscheduler.timing import wait_until
from tests.conftest import NEEDS_ETCD, NEEDS_ROOT

pytestmark = [NEEDS_ROOT, NEEDS_ETCD, pytest.mark.integration]


def test_summary_answers_from_the_leaders_memory_and_followers_name_the_leader(cluster):
    leader = cluster.leader()
    wait_until(lambda: any(t["state"] == "completed" for t in cluster.tasks()), timeout=20, message="a completion")
    status, summary = cluster.call(leader, "GET", "/api/summary")
    tasks = cluster.tasks()
    assert status == 200 and summary["is_leader"] is True and summary["leader"] == leader
    counts = summary["tasks"]
    assert counts["pending"] + counts["running"] + counts["completed"] == counts["total"] <= len(tasks)
    assert counts["completed"] >= 1 and counts["rescheduled"] == 0
    assert set(summary["workers"]) == {n.name for n in cluster.nodes_of("worker")}
    assert all(w["state"] == "alive" for w in summary["workers"].values())
    assert sum(w["running"] for w in summary["workers"].values()) == counts["running"]
    follower = next(m.name for m in cluster.nodes_of("master") if m.name != leader)
    status, answer = cluster.call(follower, "GET", "/api/summary")
    assert status == 200 and answer == {"master": follower, "is_leader": False, "leader": leader}


def test_recorder_sees_the_leader_die_and_another_take_over(cluster, home):
    interval = 0.1
    recorder = Recorder(TestbedSource(cluster.state_dir), interval=interval, ledger=Ledger(home)).start()
    wait_until(lambda: len(recorder._t) >= 5, timeout=10, message="five samples")
    old = cluster.leader()
    cluster.signal_node(old, signal.SIGKILL)
    new = wait_until(lambda: (lambda name: name if name and name != old else None)(cluster.leader()),
                     timeout=15, message="a new leader")
    wait_until(lambda: recorder._leader[-1][2] == new, timeout=10, message="the recorder sees the new leader")
    timeline = recorder.stop()

    assert [seg[2] for seg in timeline["leader"]] == [old, None, new]
    gap = timeline["leader"][1]
    assert 0.5 < gap[1] - gap[0] < 5  # election TTL 2 s: a new leader 1.3-2.2 s after the kill, plus sampling
    assert [seg[2] for seg in timeline["masters"][old]] == ["running", "down"]
    acquired = [e for e in timeline["events"] if e[2] == "leader_acquired"]
    assert [e[1] for e in acquired] == [new] and gap[0] <= acquired[0][0] <= gap[1] + 0.05
    assert all(seg[2] == "unknown" for w in timeline["workers"].values() for seg in w if gap[0] <= seg[0] < gap[1])
    assert set(timeline["workers"]) == {n.name for n in cluster.nodes_of("worker")}
    running = [v for v in timeline["tasks"]["running"] if v is not None]
    assert running and max(running) > 0
    # the cost: one request per sample while the leader is stable; never more than one per master and sample
    assert timeline["samples"] <= timeline["requests"] <= 3 * timeline["samples"]
    assert timeline["requests_per_second"] <= 3 / interval
    assert timeline["errors"] == 0 and timeline["faults"] == []


def test_platform_source_samples_any_platform_through_its_interface(cluster, home):
    """The generic source (for platforms without a summary endpoint), on the testbed's Platform implementation."""
    from chaosscheduler.platforms.testbed import TestbedPlatform
    from chaosscheduler.timeline import PlatformSource

    source = PlatformSource(TestbedPlatform(cluster.spec.name, home), process_every=60)
    first, second = source.sample(), source.sample()
    assert first["leader"] == cluster.leader() and first["answered"] is True
    assert first["masters"] == {m.name: True for m in cluster.nodes_of("master")}
    assert first["workers"] == {w.name: "alive" for w in cluster.nodes_of("worker")}
    assert first["tasks"]["pending"] is None and first["tasks"]["running"] >= 0
    assert second["masters"] == first["masters"]  # cached: processes are checked at most every 60 s here
    assert source.requests == 2 + 3 + 2  # leader() + workers() per sample, 3 process checks once
