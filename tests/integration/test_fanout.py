"""Faults over many hosts at once, on real hosts: the embedded cluster's nodes with a real sshd each, reached over
SSH by a plain ``/bin/sh`` account that may run exactly our privileged commands through sudo (not root), and the
testbed platform's network namespaces for the reaper.

What is checked is ordering, never speed: with a fan-out every host's command is sent before the others' return
(their [sent, applied] intervals overlap); with a width of 1 no two overlap. The record's ``started_at`` is the
last host's ``applied_at``. A host that fails is named, and what was applied on the others is removed again.
Everything created (accounts, sudoers files, faults) is removed by its own name; the cluster by its record.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from typing import Any, Dict, List

import pytest

from chaosscheduler import actions, config, rollbacks
from chaosscheduler.errors import ChaosSchedulerError
from chaosscheduler.hosts import ssh
from chaosscheduler.ledger import Ledger
from chaosscheduler.platforms import for_settings
from chaosscheduler.testbed import ClusterSpec, down, remote, up
from chaosscheduler.timing import wait_until

NEEDS = [pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
         pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (apt etcd-server)"),
         pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="sshd is not installed (apt openssh-server)"),
         pytest.mark.skipif(shutil.which("sudo") is None or shutil.which("useradd") is None,
                            reason="sudo or useradd is not installed")]
pytestmark = [pytest.mark.integration] + NEEDS

WORKERS = 10
SUDO_COMMANDS = ["/usr/sbin/nft", "/usr/bin/kill", "/usr/bin/ss", "/usr/bin/setsid", "/usr/bin/pkill",
                 "/usr/bin/cat"]


def make_account(commands: List[str]) -> str:
    """A plain account (``/bin/sh``, no password, no home) allowed exactly ``commands`` through sudo."""
    name = "cs" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--system", "--shell", "/bin/sh", "--home-dir", "/nonexistent", "--no-create-home",
                    name], check=True, capture_output=True)
    subprocess.run(["usermod", "--password", "*", name], check=True, capture_output=True)
    with open(f"/etc/sudoers.d/{name}", "w") as handle:
        handle.write(f"{name} ALL=(root) NOPASSWD: {', '.join(commands)}\n")
    os.chmod(f"/etc/sudoers.d/{name}", 0o440)
    return name


def remove_account(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"/etc/sudoers.d/{name}")
    subprocess.run(["userdel", "--force", name], capture_output=True)


@pytest.fixture(scope="module")
def lab():
    """A cluster of 1 master and 10 workers with an sshd in every node, a sudo account, a home for the ledger."""
    home = tempfile.mkdtemp(prefix="csf", dir="/tmp")
    mp = pytest.MonkeyPatch()
    mp.setenv("CHAOSSCHEDULER_HOME", home)
    accounts: List[str] = []
    tb = None
    try:
        accounts.append(make_account(SUDO_COMMANDS))
        # a second account that may not run nft: the host whose SSH login it is fails to apply a fault
        accounts.append(make_account(["/usr/bin/cat"]))
        tb = up(ClusterSpec(name=("f" + uuid.uuid4().hex)[:9], home=home, masters=1, workers=WORKERS, load_rate=0,
                            sshd=True))
        with open(remote.vars_path(tb.state_dir)) as handle:
            configuration = json.load(handle)["configuration"]
        configuration["chaosscheduler_hosts"]["ssh"].update(user=accounts[0], sudo=True)
        configuration["chaosscheduler_max_worker_share"] = 1
        yield {"tb": tb, "home": home, "configuration": configuration, "accounts": accounts}
        assert Ledger(home).open_faults() == []
    finally:
        ssh.close_all()
        if tb is not None:
            down(tb.state_dir)
        for name in accounts:
            remove_account(name)
        mp.undo()
        shutil.rmtree(home, ignore_errors=True)


def tables(netns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"], capture_output=True, text=True,
                          timeout=10).stdout


def timers(fault_id: str) -> List[int]:
    """PIDs of the remote expiry timers of ``fault_id`` (the nodes share this machine's PID namespace)."""
    needle = (ssh.EXPIRY_PREFIX + fault_id).encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if needle in handle.read().split(b"\0"):
                        found.append(int(entry))
    return found


def intervals(record: Dict[str, Any], kind: str = "applied") -> Dict[str, tuple]:
    times = record[f"{kind}_at"]
    return {n: (record[f"{kind}_sent_at"][n], times[n]) for n in times}


def overlap_count(spans: Dict[str, tuple]) -> int:
    """How many hosts' [sent, done] intervals overlap at least one other host's."""
    items = list(spans.items())
    return sum(1 for n, (s, e) in items if any(m != n and s < e2 and s2 < e for m, (s2, e2) in items))


def test_a_partition_over_every_worker_is_applied_on_all_at_once_and_starts_with_the_last_host(lab):
    configuration = lab["configuration"]
    tb = lab["tb"]
    ssh.close_all()  # connections are opened by the action itself, all of them before any rule is applied
    record = actions.partition_workers(workers="all", peers="masters", duration=60, configuration=configuration)
    workers = [f"worker-{i}" for i in range(1, WORKERS + 1)]
    try:
        assert sorted(record["applied_on"]) == sorted(workers)
        assert all("chaosscheduler_" in tables(tb.nodes[w].netns) for w in workers)
        spans = intervals(record)
        # every host's command was on its way while others' were: sent together, not one after another
        assert overlap_count(spans) == WORKERS, spans
        assert record["started_at"] == max(record["applied_at"].values()) == record["last_applied_at"]
        assert record["first_applied_at"] == min(record["applied_at"].values()) <= record["started_at"]
        assert record["applied_spread"] == pytest.approx(record["started_at"] - record["first_applied_at"], abs=1e-5)
        assert record["deadline"] == pytest.approx(record["started_at"] + 60)
        assert record["fanout"]["concurrency"] >= WORKERS and record["fanout"]["connect_s"] is not None
        assert sorted(record["remote_expiry_on"]) == sorted(workers)
        # each host's timer said its process group: the undo stops exactly it, without scanning the host's processes
        assert sorted(record["remote_timers"]) == sorted(workers)
        assert sorted(timers(record["id"])) == sorted(t["pid"] for t in record["remote_timers"].values())
    finally:
        closed = rollbacks.heal_partition(configuration=configuration)
    assert closed["undone"] == [record["id"]]
    stored = Ledger(lab["home"]).get(record["id"])
    assert sorted(stored["removed_at"]) == sorted(workers)
    assert overlap_count(intervals(stored, "removed")) == WORKERS  # healed on all at once too
    wait_until(lambda: timers(record["id"]) == [], 5, message="every host's timer stopped")
    assert all("chaosscheduler_" not in tables(tb.nodes[w].netns) for w in workers)


def test_with_a_width_of_one_the_hosts_are_cut_one_after_another(lab):
    configuration = dict(lab["configuration"], chaosscheduler_concurrency=1)
    record = actions.partition_workers(workers="4", peers="masters", duration=60, configuration=configuration)
    try:
        spans = sorted(intervals(record).values())
        assert len(spans) == 4 and overlap_count(intervals(record)) == 0
        assert all(done <= sent for (_, done), (sent, _) in zip(spans, spans[1:]))
        assert record["started_at"] == spans[-1][1]
    finally:
        rollbacks.heal_partition(configuration=configuration)


def test_a_host_that_fails_is_named_and_the_others_are_undone(lab):
    configuration = json.loads(json.dumps(lab["configuration"]))
    tb = lab["tb"]
    hosts = configuration["chaosscheduler_hosts"]
    bad = "worker-7"
    for node in hosts["workers"]:
        if node["name"] == bad:  # this host's login may not run nft through sudo
            node["ssh"] = dict(hosts["ssh"], user=lab["accounts"][1])
    with pytest.raises(Exception) as info:
        actions.partition_workers(workers="all", peers="masters", duration=60, configuration=configuration)
    message = str(info.value)
    assert "1 of 10 targets" in message and bad in message and "removed again" in message, message
    failed = [r for r in Ledger(lab["home"]).all() if r.get("state") == "failed"][-1]
    assert list(failed["failed_on"]) == [bad] and bad not in failed["applied_on"]
    assert len(failed["applied_on"]) == WORKERS - 1 and failed["undo_result"]["removed_from"]
    for worker in (f"worker-{i}" for i in range(1, WORKERS + 1)):
        assert "chaosscheduler_" not in tables(tb.nodes[worker].netns), worker
    assert Ledger(lab["home"]).open_faults() == []


def test_an_unreachable_host_stops_the_fault_before_anything_is_applied(lab):
    configuration = json.loads(json.dumps(lab["configuration"]))
    tb = lab["tb"]
    for node in configuration["chaosscheduler_hosts"]["workers"]:
        if node["name"] == "worker-2":
            node["ssh"] = dict(configuration["chaosscheduler_hosts"]["ssh"], port=2222, timeout=2)
    with pytest.raises(Exception, match=r"cannot reach 1 of 3 targets .*worker-2.*nothing was applied"):
        actions.partition_workers(workers="worker-1,worker-2,worker-3", peers="masters", duration=60,
                                  configuration=configuration)
    assert all("chaosscheduler_" not in tables(tb.nodes[w].netns) for w in ("worker-1", "worker-3"))
    assert Ledger(lab["home"]).open_faults() == []


def test_heal_from_another_process_removes_every_hosts_table_at_once(lab):
    configuration = lab["configuration"]
    tb = lab["tb"]
    record = actions.partition_workers(workers="all", peers="masters", duration=60, configuration=configuration)
    healed = subprocess.run([sys.executable, "-m", "chaosscheduler.cli", "heal"], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, CHAOSSCHEDULER_HOME=lab["home"]))
    assert healed.returncode == 0, healed.stderr
    stored = Ledger(lab["home"]).get(record["id"])
    assert stored["state"] == "undone" and len(stored["removed_at"]) == WORKERS
    assert overlap_count(intervals(stored, "removed")) == WORKERS
    assert all("chaosscheduler_" not in tables(tb.nodes[f"worker-{i}"].netns) for i in range(1, WORKERS + 1))


def test_heal_from_hosts_finds_our_tables_on_the_recorded_ssh_hosts(lab):
    """With the ledger lost, heal --from-hosts still finds the tables: it scans this machine and (from a copy of the
    ledger made before it was lost, like an operator's backup) the SSH hosts of the hosts platform."""
    configuration = lab["configuration"]
    tb = lab["tb"]
    record = actions.partition_workers(workers="3", peers="masters", duration=60, configuration=configuration)
    report_dry = subprocess.run([sys.executable, "-m", "chaosscheduler.cli", "heal", "--from-hosts", "--dry-run"],
                                capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, CHAOSSCHEDULER_HOME=lab["home"]))
    assert report_dry.returncode == 0, report_dry.stderr
    for target in record["targets"]:
        assert f"ssh {lab['accounts'][0]}@{tb.nodes[target].address}:22:chaosscheduler_{record['id']}" in \
            report_dry.stdout or f"chaosscheduler_{record['id']} on ssh" in report_dry.stdout
    healed = subprocess.run([sys.executable, "-m", "chaosscheduler.cli", "heal", "--from-hosts"],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, CHAOSSCHEDULER_HOME=lab["home"]))
    assert healed.returncode == 0, healed.stderr
    assert all("chaosscheduler_" not in tables(tb.nodes[t].netns) for t in record["targets"])


def test_the_reaper_undoes_a_fault_over_many_namespaces_at_once(make_cluster, home):
    """The testbed platform (network namespaces, no SSH): the reaper, a process of its own, removes the table from
    every target at once at the deadline."""
    tb = make_cluster(masters=1, workers=8, load_rate=0)
    configuration = {"chaosscheduler_cluster": tb.spec.name, "chaosscheduler_max_worker_share": 1}
    record = actions.partition_workers(workers="all", peers="masters", duration=2, configuration=configuration)
    assert overlap_count(intervals(record)) == 8
    stored = wait_until(lambda: (lambda r: r if r["state"] == "expired" else None)(Ledger(home).get(record["id"])),
                        30, interval=0.1, message="the reaper expired the fault")
    assert len(stored["removed_at"]) == 8 and overlap_count(intervals(stored, "removed")) == 8
    assert all("chaosscheduler_" not in tables(tb.nodes[f"worker-{i}"].netns) for i in range(1, 9))


def test_bad_concurrency_is_refused_with_nothing_done(lab):
    configuration = dict(lab["configuration"], chaosscheduler_concurrency=0)
    with pytest.raises(Exception, match="chaosscheduler_concurrency"):
        actions.partition_workers(workers="2", peers="masters", duration=60, configuration=configuration)
    assert Ledger(lab["home"]).open_faults() == []
    with pytest.raises(ChaosSchedulerError):
        config.load(dict(lab["configuration"], chaosscheduler_poll_interval="soon"))
    assert for_settings(config.load(lab["configuration"])).concurrency == 128
