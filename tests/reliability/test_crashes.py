"""A crash in the middle of our own code: the process that injects or undoes a fault is killed with SIGKILL at the
worst moments — while writing the ledger, between recording and injecting, between injecting and marking the
fault active, half-way through an undo, while writing that the fault is undone. ``chaosscheduler heal`` then
completes the job, and if nobody heals, the reaper does at the deadline. A corrupt or unreadable ledger is a
clear error; ``heal --from-hosts`` finds our tables on the hosts, and only ours.

Each crash runs the real action in a child process with one seam patched to ``kill -9`` itself (``inject``'s
``before_inject`` hook, ``Ledger.update``, ``os.replace``, the host's ``run``); everything else is the library.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from chaoslib.exceptions import ActivityFailed

from chaosscheduler import actions, procs
from chaosscheduler.faults.rules import table_name
from chaosscheduler.timing import wait_until

from . import harness
from .conftest import REAL, running

pytestmark = REAL + [pytest.mark.integration]

CRASH = r'''
import functools, json, os, signal, sys

mode, action, duration, configuration = sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])

def die(*args, **kwargs):
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

from chaosscheduler import actions, rollbacks
from chaosscheduler.faults import lifecycle
from chaosscheduler.hosts import local
from chaosscheduler.ledger import Ledger

real_replace, real_update, real_update_with = os.replace, Ledger.update, Ledger.update_with

def die_on_ledger_rename():
    os.replace = lambda src, dst: die() if dst.endswith("ledger.json") else real_replace(src, dst)

def act():
    if action == "partition":
        return actions.partition_workers(workers="worker-1,worker-2", peers="masters", duration=duration,
                                         configuration=configuration)
    return actions.kill_master(target="follower", duration=duration, configuration=configuration)

if mode == "record-write":        # the very first write: the new record, renamed into place
    die_on_ledger_rename()
    act()
elif mode == "before-inject":     # recorded and reaper armed, nothing injected yet
    actions.inject = functools.partial(lifecycle.inject, before_inject=die)
    act()
elif mode == "before-active":     # injected, not yet marked active
    def update(self, fault_id, **changes):
        if changes.get("state") == "active":
            die()
        return real_update(self, fault_id, **changes)
    Ledger.update = update
    act()
elif mode == "active-write":      # injected, killed while writing "active"
    def update(self, fault_id, **changes):
        if changes.get("state") == "active":
            die_on_ledger_rename()
        return real_update(self, fault_id, **changes)
    Ledger.update = update
    act()
else:
    record = act()
    print(json.dumps(record), flush=True)
    if mode == "mid-undo":        # the first target's table deleted, the second's not
        real_run = local.LocalHost.run
        def run(self, argv, *args, **kwargs):
            result = real_run(self, argv, *args, **kwargs)
            if list(argv[:3]) == ["nft", "delete", "table"]:
                die()
            return result
        local.LocalHost.run = run
    elif mode == "undo-write":    # every host cleaned, killed while writing "undone"
        def update_with(self, fault_id, change):
            die_on_ledger_rename()
            return real_update_with(self, fault_id, change)
        Ledger.update_with = update_with
    rollbacks.undo_all_faults(configuration=configuration)
print("survived", flush=True)
'''

# mode -> (action, state the ledger shows after the crash (None: no record), what is on the hosts)
CRASHES = {
    "record-write": ("partition", None, "nothing"),
    "before-inject": ("partition", "recorded", "nothing"),
    "before-inject-kill": ("kill", "recorded", "nothing"),
    "before-active": ("partition", "recorded", "both tables"),
    "before-active-kill": ("kill", "recorded", "master killed"),
    "active-write": ("partition", "recorded", "both tables"),
    "mid-undo": ("partition", "active", "second table"),
    "undo-write": ("partition", "active", "nothing"),
}


def crash(env, mode: str, duration: float) -> dict:
    action = CRASHES[mode][0]
    configuration = env.cfg()
    if mode == "mid-undo":  # one host after another, so the crash after the first delete leaves the second table
        configuration["chaosscheduler_concurrency"] = 1
    proc = subprocess.run([sys.executable, "-c", CRASH, mode.replace("-kill", ""), action, str(duration),
                           json.dumps(configuration)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, f"the process was not killed where planned: {proc.stdout}{proc.stderr[-2000:]}"
    assert "survived" not in proc.stdout
    return json.loads(proc.stdout.splitlines()[0]) if proc.stdout.strip() else {}


def on_hosts(env, record: dict) -> str:
    if record["kind"] == "process":
        return "master killed" if not running(env.tb, record["targets"][0]) else "nothing"
    present = [t for t in record["targets"] if table_name(record["id"]) in harness.tables(env.netns(t))]
    return {0: "nothing", 1: "second table" if present == ["worker-2"] else f"tables on {present}",
            2: "both tables"}[len(present)]


@pytest.mark.parametrize("recovery", ["heal", "reaper"])
@pytest.mark.parametrize("mode", list(CRASHES))
def test_a_crash_inside_our_code_is_completed_by_heal_or_by_the_reaper(env, module_sentinels, mode, recovery):
    _, expected_state, expected_hosts = CRASHES[mode]
    duration = 30.0 if recovery == "heal" else 3.0
    known = {r["id"] for r in env.ledger.all()}
    crash(env, mode, duration)
    records = [r for r in env.ledger.all() if r["id"] not in known]
    if expected_state is None:
        # killed before the record was renamed into place: the ledger is intact, nothing was recorded or done
        assert records == [] and env.tables() == {} and env.reapers() == []
        assert all(running(env.tb, n) for n in env.tb.nodes)
        healed = harness.cli(env.home, "heal")
        assert healed.returncode == 0 and "undone: 0 fault(s)" in healed.stdout, healed.stdout + healed.stderr
        return
    assert len(records) == 1
    record = records[0]
    assert record["state"] == expected_state, record
    assert on_hosts(env, record) == expected_hosts
    assert procs.is_running(record["reaper"]), "the reaper was not armed before the crash"
    assert record.get("deadline"), "no deadline recorded: the reaper cannot act"
    if recovery == "heal":
        healed = harness.cli(env.home, "heal")
        assert healed.returncode == 0, healed.stdout + healed.stderr
        assert f"undone {record['id']}" in healed.stdout
        assert env.ledger.get(record["id"])["state"] == "undone"
        wait_until(lambda: not procs.is_running(record["reaper"]), 5, message="the reaper stopped by heal")
    else:
        gone_at = wait_until(lambda: time.time() if on_hosts(env, record) == "nothing" else None,
                             duration + 5, interval=0.01, message="the fault gone at its deadline")
        closed = wait_until(lambda: (lambda r: r if r["state"] not in ("recorded", "active") else None)(
            env.ledger.get(record["id"])), 5, message="the record closed")
        assert closed["state"] == "expired"
        if expected_hosts != "nothing":
            overshoot = gone_at - closed["deadline"]
            assert -0.05 <= overshoot <= harness.OVERSHOOT_TARGET, overshoot
        assert closed["undone_at"] - closed["deadline"] <= harness.OVERSHOOT_TARGET + 0.5
    assert env.ledger.open_faults() == [] and env.tables() == {}
    assert all(running(env.tb, n) for n in env.tb.nodes)
    assert module_sentinels.differences(f"after {recovery}") == []


# ---------------------------------------------------------------------------------------------------- the ledger
CORRUPTIONS = {
    "truncated JSON": ('{"version": 1, "faults": {"f1": {"id": ', "corrupt"),
    "garbage bytes": ("\x00\xff\xfe garbage", "corrupt"),
    "empty file": ("", "corrupt"),
    "null": ("null", "does not hold a ledger"),
    "a list": ("[1, 2, 3]", "does not hold a ledger"),
    "a directory": (None, "unreadable"),
}


def _corrupt(path: str, content) -> None:
    os.unlink(path)
    if content is None:
        os.mkdir(path)
    else:
        with open(path, "w", encoding="latin-1") as handle:
            handle.write(content)


def _restore(path: str, intact: str) -> None:
    if os.path.isdir(path):
        os.rmdir(path)
    with open(path, "w") as handle:
        handle.write(intact)


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_corrupt_ledger_is_a_clear_error_and_heal_from_hosts_removes_only_our_tables(env, module_sentinels,
                                                                                      kind):
    content, words = CORRUPTIONS[kind]
    cut = actions.partition_workers(workers="worker-1", duration=60, configuration=env.cfg())
    isolated = actions.isolate_worker(worker="worker-3", duration=60, configuration=env.cfg())
    w1, w3 = env.netns("worker-1"), env.netns("worker-3")
    # a look-alike that is not ours: another family and no underscore; heal must leave both
    lookalikes = ["table ip chaosscheduler_operator { chain c { ip saddr 192.0.2.78 drop; }; }\n",
                  "table inet chaosschedulerx { chain c { ip saddr 192.0.2.79 drop; }; }\n"]
    for text in lookalikes:
        harness.sh(["nft", "-f", "-"], w1, input=text)
    lookalike_tables = [["ip", "chaosscheduler_operator"], ["inet", "chaosschedulerx"]]
    lookalikes_before = [harness.sh(["nft", "list", "table"] + t, w1).stdout for t in lookalike_tables]
    with open(env.ledger.path) as handle:
        intact = handle.read()
    _corrupt(env.ledger.path, content)
    try:
        for call in (lambda: actions.kill_master(configuration=env.cfg()),
                     lambda: actions.partition_workers(workers="worker-2", configuration=env.cfg())):
            with pytest.raises(ActivityFailed) as info:
                call()
            message = str(info.value)
            assert words in message and "\n" not in message.strip(), message
        listing = harness.cli(env.home, "faults")
        assert listing.returncode == 2 and words in listing.stderr, listing.stdout + listing.stderr
        plain = harness.cli(env.home, "heal")
        said = plain.stdout + plain.stderr
        assert plain.returncode == 1 and words in said, said
        if words == "corrupt":
            assert "heal --from-hosts" in said
        assert env.tables() == {w1: [table_name(cut["id"])], w3: [table_name(isolated["id"])]}, "heal guessed"
        dry = harness.cli(env.home, "heal", "--from-hosts", "--dry-run")
        assert dry.returncode == 0 and env.tables() != {}, dry.stdout + dry.stderr
        scan = harness.cli(env.home, "heal", "--from-hosts")
        assert scan.returncode == 0, scan.stdout + scan.stderr
        assert f"removing {table_name(cut['id'])}" in scan.stdout
        assert f"removing {table_name(isolated['id'])}" in scan.stdout
        assert env.tables() == {}
        assert [harness.sh(["nft", "list", "table"] + t, w1).stdout for t in lookalike_tables] == lookalikes_before
        wait_until(lambda: not env.reapers(), 10, message="heal --from-hosts stopped our reapers")
    finally:
        _restore(env.ledger.path, intact)
        for family, name in lookalike_tables:
            harness.sh(["nft", "delete", "table", family, name], w1, check=False)
    assert module_sentinels.differences("after heal --from-hosts") == []
    healed = harness.cli(env.home, "heal")  # the ledger is back: its records close as "already gone"
    assert healed.returncode == 0 and env.ledger.open_faults() == []


def test_the_reaper_undoes_from_its_own_copy_when_the_ledger_is_corrupt(env, module_sentinels):
    killed = actions.kill_master(target="follower", duration=3, configuration=env.cfg())
    cut = actions.partition_workers(workers="worker-4", duration=3, configuration=env.cfg())
    with open(env.ledger.path) as handle:
        intact = handle.read()
    _corrupt(env.ledger.path, "{not json")
    try:
        def gone():
            table_gone = table_name(cut["id"]) not in harness.tables(env.netns("worker-4"))
            return time.time() if table_gone and running(env.tb, killed["targets"][0]) else None

        gone_at = wait_until(gone, 10, interval=0.01, message="both faults gone at their deadline")
        assert gone_at - max(killed["deadline"], cut["deadline"]) <= harness.OVERSHOOT_TARGET + 0.5
        wait_until(lambda: not env.reapers(), 10, message="the reapers finished")
        for record in (killed, cut):
            log = open(os.path.join(env.home, "reapers", f"{record['id']}.log")).read()
            assert "undone from my copy" in log, log
        assert module_sentinels.differences("after self-expiry with a corrupt ledger") == []
    finally:
        _restore(env.ledger.path, intact)
    # the ledger could not record the expiry; heal closes both records, finding nothing left to undo
    healed = harness.cli(env.home, "heal")
    assert healed.returncode == 0 and env.ledger.open_faults() == [], healed.stdout + healed.stderr


# ---------------------------------------------------------------------------------------------------- restarts
def _processes_of(env, node: str) -> list:
    """Live processes of ``node`` of this cluster, found by the marker every node process carries (the kernel as
    the record, whatever cluster.json says)."""
    found = []
    for pid in procs.pids_with_marker(env.tb.state_dir):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if b"--name" in argv and argv[argv.index(b"--name") + 1] == node.encode():
            found.append(pid)
    return found


def test_a_restart_interrupted_between_starting_and_recording_the_master_is_adopted_not_doubled(env, monkeypatch):
    """Ctrl-C (or SIGKILL) of the process restarting a killed master, after the master started but before the
    cluster's record names it: the next undo (heal, the control, the reaper) must adopt that master, not start a
    second one that cannot bind the port and dies, leaving the record pointing at a dead process."""
    record = actions.kill_master(target="follower", duration=60, configuration=env.cfg())
    victim = record["targets"][0]
    assert _processes_of(env, victim) == []
    real_spawn = procs.spawn

    def spawn_then_interrupted(*args, **kwargs):
        real_spawn(*args, **kwargs)
        raise KeyboardInterrupt  # as SIGINT would, between starting the process and saving the record

    monkeypatch.setattr(procs, "spawn", spawn_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        env.tb.restart_node(victim)
    monkeypatch.undo()
    orphan = _processes_of(env, victim)
    assert len(orphan) == 1 and not running(env.tb, victim), "the interrupted start left no unrecorded master"
    healed = harness.cli(env.home, "heal")
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert env.ledger.get(record["id"])["state"] == "undone"
    assert _processes_of(env, victim) == orphan, "a second master was started next to the first"
    assert env.tb.process(victim)["pid"] == orphan[0] and running(env.tb, victim)
    env.tb.wait_healthy(30)
