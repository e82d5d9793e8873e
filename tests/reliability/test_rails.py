"""Safety rails, against a real cluster: the last live master is never killed, no more than the configured share of
workers is ever cut off (by default at least one stays reachable) unless explicitly allowed, and dry runs — the
activity argument and Chaos Toolkit's ``chaos run --dry=actions`` — inject nothing and record nothing.
"""

import os
import shutil
import tempfile
import uuid

import pytest
from chaoslib.exceptions import ActivityFailed

from chaosscheduler import actions, rollbacks
from chaosscheduler.ledger import Ledger
from chaosscheduler.testbed import down
from chaosscheduler.timing import wait_until

from . import harness
from .conftest import REAL, running

pytestmark = REAL + [pytest.mark.integration]


def refused(call, *words: str) -> str:
    with pytest.raises(ActivityFailed) as info:
        call()
    message = str(info.value)
    assert "\n" not in message.strip(), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def snapshot(env) -> dict:
    return {"ledger": env.ledger.all(), "tables": env.tables(), "reapers": env.reapers(),
            "pids": {n: (env.tb.process(n) or {}).get("pid") for n in env.tb.nodes},
            "running": [n for n in env.tb.nodes if running(env.tb, n)]}


def test_the_last_live_master_is_never_killed(env, module_sentinels):
    leader = wait_until(env.tb.leader, 15, message="a leader")
    first = actions.kill_master(target="follower", duration=60, configuration=env.cfg())
    second = actions.kill_master(target="follower", duration=60, configuration=env.cfg())
    assert leader not in first["targets"] + second["targets"]
    before = snapshot(env)
    for target in ("leader", "random", "follower", leader):
        refused(lambda: actions.kill_master(target=target, configuration=env.cfg()),
                "last running master" if target != "follower" else "target")
    refused(lambda: actions.kill_master(target="leader", signal="SIGSTOP", configuration=env.cfg()),
            "last running master", "allow_last")
    assert snapshot(env) == before, "a refused kill changed something"
    assert running(env.tb, leader)
    assert rollbacks.restart_master(configuration=env.cfg())["undone"] == [second["id"], first["id"]]
    env.tb.wait_healthy(30)
    assert module_sentinels.differences("after restart_master") == []


def test_no_more_than_the_configured_share_of_workers_is_cut_off(env, module_sentinels):
    cfg = env.cfg()
    # default: at least one of the 4 workers stays reachable, counting faults already in place
    three = actions.partition_workers(workers="worker-1,worker-2", duration=60, configuration=cfg)
    isolated = actions.isolate_worker(worker="worker-3", duration=60, configuration=cfg)
    before = snapshot(env)
    refused(lambda: actions.isolate_worker(worker="worker-4", configuration=cfg), "4 of 4", "max_worker_share")
    refused(lambda: actions.partition_workers(workers="worker-4", configuration=cfg), "4 of 4")
    refused(lambda: actions.partition_workers(workers="all", configuration=cfg), "workers")
    assert snapshot(env) == before
    # loss leaves every worker reachable: not counted, allowed
    lossy = actions.partition_workers(workers="worker-4", mode="loss", loss=0.2, duration=60, configuration=cfg)
    rollbacks.undo_all_faults(configuration=cfg)
    assert env.tables() == {} and env.ledger.open_faults() == []
    assert module_sentinels.differences("after undo_all_faults") == []
    # a share of 0.5: two of four, not three
    half = env.cfg(max_worker_share=0.5)
    refused(lambda: actions.partition_workers(workers="3", configuration=half), "3 of 4", "0.5")
    two = actions.partition_workers(workers="2", duration=60, configuration=half)
    refused(lambda: actions.isolate_worker(configuration=half), "3 of 4")
    rollbacks.heal_partition(configuration=half)
    # explicitly allowed: every worker
    everyone = actions.partition_workers(workers="all", duration=60, configuration=env.cfg(max_worker_share=1.0))
    assert everyone["targets"] == ["worker-1", "worker-2", "worker-3", "worker-4"]
    assert len(env.tables()) == 4
    rollbacks.heal_partition(configuration=cfg)
    assert env.tables() == {} and env.ledger.open_faults() == []
    assert {three["id"], isolated["id"], lossy["id"], two["id"], everyone["id"]} <= \
        {r["id"] for r in env.ledger.all() if r["state"] == "undone"}
    assert module_sentinels.differences("after heal_partition") == []


@pytest.mark.parametrize("call", [
    lambda cfg: actions.kill_master(target="leader", dry_run=True, configuration=cfg),
    lambda cfg: actions.kill_master(target="master-2", signal="SIGSTOP", dry_run=True, configuration=cfg),
    lambda cfg: actions.partition_workers(workers="50%", dry_run=True, configuration=cfg),
    lambda cfg: actions.partition_workers(workers="all", mode="loss", loss=0.3, dry_run=True, configuration=cfg),
    lambda cfg: actions.isolate_worker(worker="busiest", dry_run=True, configuration=cfg),
], ids=["kill-leader", "stop-master", "partition-half", "loss-all", "isolate-busiest"])
def test_the_dry_run_argument_resolves_targets_and_changes_nothing(env, call):
    before = snapshot(env)
    plan = call(env.cfg())
    assert plan["state"] == "dry-run" and plan["targets"] and plan["started_at"] is None
    assert set(plan["targets"]) <= set(env.tb.nodes)
    assert snapshot(env) == before


def test_the_dry_run_argument_still_applies_the_rails(env):
    refused(lambda: actions.partition_workers(workers="all", dry_run=True, configuration=env.cfg()), "4 of 4")


def test_chaos_run_dry_actions_injects_nothing_and_records_nothing():
    """``chaos run --dry=actions`` skips every action (ours included: chaoslib never calls them); the probes still
    run, the control still starts and removes the cluster. The journal shows no fault, the ledger stays empty, and
    the strict control fails the run: no fault happened, nothing was tested."""
    home = tempfile.mkdtemp(prefix="csy", dir="/tmp")
    workdir = tempfile.mkdtemp(prefix="csyw", dir="/tmp")
    cluster = "y" + uuid.uuid4().hex[:9]
    state_dir = os.path.join(home, "testbed", cluster)
    try:
        run = harness.start_chaos("worker-disconnect.json", workdir, home, cluster, extra=["--dry=actions"])
        assert run.proc.wait(timeout=180) == 1, run.output()[-3000:]
        journal = run.journal()
        assert journal["status"] == "failed"
        method = {r["activity"]["name"]: r for r in journal["run"]}
        for name in ("isolate-the-busiest-worker", "let-the-worker-rejoin"):
            assert method[name]["status"] == "succeeded" and method[name]["output"] is None, method[name]
        assert all(r["output"] is None for r in journal["rollbacks"])
        measured = method["measure-worker-failure-detection-time"]["output"]
        # no fault, nothing measured: the neutral 0.0 of the old probes, or a measurement without a value
        assert measured == 0.0 or (isinstance(measured, dict) and measured["value"] is None), measured
        ours = journal["chaosscheduler"]
        assert ours["faults"] == [] and ours["undone"] == [] and ours["observed_faults"] == []
        assert ours["failure_reasons"] == ["no fault happened: the method's actions were skipped (--dry); nothing "
                                           "was tested"]
        assert Ledger(home).all() == []
        assert not os.path.exists(os.path.join(home, "ledger.json"))
        assert not os.path.exists(state_dir), "the control did not remove the cluster it started"
        assert harness.reapers(home) == []
    finally:
        down(state_dir)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
