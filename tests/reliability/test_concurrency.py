"""Two experiments at once on one embedded cluster.

Runs share a cluster through the control (``testbed/users.py``): each run undoes only its own faults, the last run
of a cluster started with ``testbed: auto`` removes it, and a second network fault on a worker that is already
under one is refused (never stacked). The experiments here are small custom ones: each partitions one *named*
worker from the masters and holds the fault until the test releases it (a gate file, polled with a deadline), so
the overlap is decided by the test, not by timing.
"""

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid

import pytest

from chaosscheduler import procs
from chaosscheduler.errors import TestbedError
from chaosscheduler.faults.rules import table_name
from chaosscheduler.ledger import Ledger
from chaosscheduler.testbed import ClusterSpec, Testbed, down, network, up
from chaosscheduler.testbed import state as tb_state
from chaosscheduler.timing import wait_until

from . import harness
from .conftest import REAL

pytestmark = REAL + [pytest.mark.e2e]

GATE = ("import os, sys, time\n"
        "end = time.monotonic() + float(sys.argv[2])\n"
        "while not os.path.exists(sys.argv[1]):\n"
        "    if time.monotonic() > end:\n"
        "        sys.exit('gate never opened')\n"
        "    time.sleep(0.02)\n")


def partition_experiment(title: str, worker: str, gate: str) -> dict:
    python = {"type": "python", "module": "chaosscheduler.actions"}
    return {
        "version": "1.0.0", "title": title, "description": f"partition {worker} from the masters until released",
        "controls": [{"name": "chaosscheduler", "provider": {
            "type": "python", "module": "chaosscheduler.control",
            "arguments": {"testbed": "auto", "warmup": 0, "strict": True}}}],
        "method": [
            {"type": "action", "name": f"partition-{worker}",
             "provider": dict(python, func="partition_workers",
                              arguments={"workers": worker, "peers": "masters", "duration": 60})},
            {"type": "action", "name": "hold-until-released",
             "provider": {"type": "process", "path": sys.executable, "arguments": ["-c", GATE, gate, "120"],
                          "timeout": 130}},
            {"type": "action", "name": "heal-my-partition",
             "provider": {"type": "python", "module": "chaosscheduler.rollbacks", "func": "heal_partition"}}],
        "rollbacks": [{"type": "action", "name": "undo-every-fault-of-this-run",
                       "provider": {"type": "python", "module": "chaosscheduler.rollbacks",
                                    "func": "undo_all_faults"}}],
        "runtime": {"rollbacks": {"strategy": "always"}},
    }


class Runs:
    """Chaos runs of this test, each in its own directory; stopped (by pid) if the test fails midway."""

    def __init__(self, home: str, cluster: str):
        self.home, self.cluster = home, cluster
        self.runs = {}

    def start(self, label: str, worker: str) -> harness.ChaosRun:
        workdir = tempfile.mkdtemp(prefix=f"csc{label}", dir="/tmp")
        gate = os.path.join(workdir, "release")
        path = os.path.join(workdir, "experiment.json")
        with open(path, "w") as handle:
            json.dump(partition_experiment(f"run {label}", worker, gate), handle)
        run = harness.start_chaos(path, workdir, self.home, self.cluster)
        run.gate = gate
        self.runs[label] = run
        return run

    @staticmethod
    def release(run: harness.ChaosRun) -> int:
        open(run.gate, "w").close()
        return run.proc.wait(timeout=90)

    def close(self) -> None:
        for run in self.runs.values():
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
            shutil.rmtree(run.workdir, ignore_errors=True)


def _run_id(run: harness.ChaosRun) -> str:
    return run.journal()["chaosscheduler"]["run_id"]


def test_two_experiments_share_a_cluster_and_each_undoes_only_its_own_fault():
    home = tempfile.mkdtemp(prefix="csc", dir="/tmp")
    cluster = "c" + uuid.uuid4().hex[:9]
    state_dir = os.path.join(home, "testbed", cluster)
    runs = Runs(home, cluster)
    sentinels = harness.Sentinels()
    ledger = Ledger(home)
    try:
        sentinels.install_root()
        a = runs.start("a", "worker-1")  # both at once: they race to start the one cluster
        b = runs.start("b", "worker-2")

        def both_active():
            faults = [f for f in ledger.all() if f.get("state") == "active"]
            for run in (a, b):
                if run.proc.poll() is not None:
                    raise AssertionError(f"a run ended early ({run.proc.returncode}): {run.output()[-1500:]}")
            return faults if len(faults) == 2 else None

        faults = wait_until(both_active, 90, message="both partitions active")
        by_worker = {f["targets"][0]: f for f in faults}
        assert set(by_worker) == {"worker-1", "worker-2"}
        assert by_worker["worker-1"]["run_id"] != by_worker["worker-2"]["run_id"], "the runs share a run id"
        tb = Testbed(state_dir)
        for netns in tb.record["namespaces"]:
            sentinels.install(netns)
        w1, w2 = tb.nodes["worker-1"].netns, tb.nodes["worker-2"].netns
        assert harness.tables(w1) == [table_name(by_worker["worker-1"]["id"])]
        assert harness.tables(w2) == [table_name(by_worker["worker-2"]["id"])]

        # a third run that partitions worker-2 again is refused: never stacked, nothing of it recorded
        c = runs.start("c", "worker-2")
        open(c.gate, "w").close()
        assert c.proc.wait(timeout=90) == 1, c.output()[-2000:]
        journal_c = c.journal()
        assert journal_c["run"][0]["status"] == "failed"
        refusal = journal_c["run"][0]["exception"][-1]
        assert "worker-2" in refusal and "already under a fault" in refusal, refusal
        assert any("action failed" in r for r in journal_c["chaosscheduler"]["failure_reasons"])
        assert [f for f in ledger.all() if f["run_id"] == _run_id(c)] == []
        assert journal_c["chaosscheduler"]["testbed"]["kept"] == state_dir  # a and b still use the cluster
        assert harness.tables(w2) == [table_name(by_worker["worker-2"]["id"])], "the refused run touched worker-2"

        # a ends: its fault is undone, b's stays in place, the cluster stays up for b
        assert runs.release(a) == 0, a.output()[-2000:]
        journal_a = a.journal()
        fault_a, fault_b = by_worker["worker-1"], by_worker["worker-2"]
        assert [f["id"] for f in journal_a["chaosscheduler"]["faults"]] == [fault_a["id"]]
        assert journal_a["chaosscheduler"]["testbed"]["kept"] == state_dir
        assert ledger.get(fault_a["id"])["state"] == "undone"
        assert ledger.get(fault_b["id"])["state"] == "active", "run a undid run b's fault"
        assert harness.tables(w1) == [] and harness.tables(w2) == [table_name(fault_b["id"])]
        assert tb_state.exists(state_dir)
        assert sentinels.differences("after run a ended") == []

        # b ends last: its fault is undone and the cluster (started by whichever run came first) is removed
        assert runs.release(b) == 0, b.output()[-2000:]
        journal_b = b.journal()
        assert [f["id"] for f in journal_b["chaosscheduler"]["faults"]] == [fault_b["id"]]
        assert ledger.get(fault_b["id"])["state"] == "undone"
        assert ledger.open_faults() == []
        assert not tb_state.exists(state_dir)
        assert [n for n in network.existing_namespaces() if n.startswith(f"cs-{cluster}-")] == []
        assert procs.pids_with_marker(state_dir) == []
        wait_until(lambda: not harness.reapers(home), 10, message="reapers gone")
        assert sentinels.differences("after both runs") == []
    finally:
        runs.close()
        down(state_dir)
        for pid in harness.reapers(home):
            os.kill(pid, signal.SIGKILL)
        sentinels.remove_root()
        shutil.rmtree(home, ignore_errors=True)


def _waiters(path: str) -> int:
    """Processes or threads blocked on the flock of ``path`` (``/proc/locks`` lists them with ``->``)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as handle:
        return sum(1 for line in handle if "->" in line and f":{inode} " in line)


def test_two_starts_of_the_same_cluster_at_once_never_destroy_it():
    """Two runs that both find no cluster both call up(); the second must then find the first's cluster and
    refuse, not overwrite its record and tear its namespaces down."""
    home = tempfile.mkdtemp(prefix="csu", dir="/tmp")
    spec = ClusterSpec(name="u" + uuid.uuid4().hex[:9], home=home, load_rate=0, masters=1, workers=1)
    outcomes = {}

    def start(i: int) -> None:
        try:
            up(spec)
            outcomes[i] = "started"
        except TestbedError as e:
            outcomes[i] = str(e)

    try:
        with tb_state.lock(spec.state_dir):  # hold it: both starters pass their checks and queue on the lock
            lock_path = os.path.join(home, "testbed", f".{spec.name}.lock")
            threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            wait_until(lambda: _waiters(lock_path) == 2, 30, message="both starters waiting for the lock")
        for thread in threads:
            thread.join(90)
        assert sorted(outcomes.values())[-1] == "started", outcomes
        refused = [o for o in outcomes.values() if o != "started"]
        assert len(refused) == 1 and "already exists" in refused[0], outcomes
        tb = Testbed(spec.state_dir)
        assert all(tb.is_running(n) for n in tb.nodes), "the second start killed the first one's processes"
        assert tb.healthy() is None
    finally:
        down(spec.state_dir)
        shutil.rmtree(home, ignore_errors=True)
