"""Fixtures of the reliability suite: a cluster per module, the operator's sentinel rules, and a reset that puts the
cluster back as it was (every fault undone by the ledger, reapers gone, every node running and resumed, healthy).

Everything is removed by its own record: clusters with ``down(state_dir)``, reapers by the marker in their
environment that names this test's state home, root-namespace sentinels by their unique name.
"""

import contextlib
import dataclasses
import os
import shutil
import signal
import tempfile
import uuid
from typing import Any, Dict, List

import pytest

from chaosscheduler import procs
from chaosscheduler.faults import undo_open
from chaosscheduler.ledger import Ledger
from chaosscheduler.testbed import ClusterSpec, Testbed, down, up
from chaosscheduler.timing import wait_until
from tests.conftest import NEEDS_ETCD, NEEDS_ROOT

from . import harness

NEEDS_TOOLS = pytest.mark.skipif(any(shutil.which(t) is None for t in ("nft", "iptables", "ipset")),
                                 reason="nft, iptables and ipset are needed (scripts/setup installs them)")
REAL = [NEEDS_ROOT, NEEDS_ETCD, NEEDS_TOOLS]


@dataclasses.dataclass
class Env:
    tb: Testbed
    home: str

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.home)

    @property
    def name(self) -> str:
        return self.tb.spec.name

    def cfg(self, **extra: Any) -> Dict[str, Any]:
        configuration = {"chaosscheduler_cluster": self.name, "chaosscheduler_home": self.home}
        configuration.update({f"chaosscheduler_{k}": v for k, v in extra.items()})
        return configuration

    def netns(self, node: str) -> str:
        return self.tb.nodes[node].netns

    def tables(self) -> Dict[str, List[str]]:
        """Our tables in the cluster's namespaces, by namespace (empty ones left out)."""
        found = {}
        for netns in self.tb.record["namespaces"]:
            names = harness.tables(netns)
            if names:
                found[netns] = names
        return found

    def reapers(self) -> List[int]:
        return harness.reapers(self.home)

    def reset(self) -> None:
        """Undo whatever is open, stop our reapers, remove stray tables of ours, restart or resume every node,
        wait until healthy."""
        with contextlib.suppress(Exception):
            undo_open(self.ledger)
        for pid in self.reapers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not self.reapers(), 10, message="reapers gone")
        for netns, names in self.tables().items():
            for table in names:
                harness.sh(["nft", "delete", "table", "inet", table], netns, check=False)
        for name in self.tb.nodes:
            proc = self.tb.process(name)
            if not self.tb.is_running(name):
                self.tb.restart_node(name)
            elif harness._process_state(proc) in ("T", "t"):
                os.kill(proc["pid"], signal.SIGCONT)
        self.tb.wait_healthy(30)


def start_env(**fields: Any) -> Env:
    home = tempfile.mkdtemp(prefix="csq", dir="/tmp")
    try:
        tb = up(ClusterSpec(name=("q" + uuid.uuid4().hex)[:10], home=home, **fields))
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    return Env(tb, home)


def stop_env(env: Env) -> None:
    try:
        with contextlib.suppress(Exception):
            undo_open(env.ledger)
        for pid in env.reapers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        down(env.tb.state_dir)
    finally:
        shutil.rmtree(env.home, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_env():
    """One cluster for the module (3 masters, 4 workers, short tasks); tests leave it as they found it."""
    env = start_env(task_duration=1.0)
    yield env
    stop_env(env)


@pytest.fixture(scope="module")
def module_sentinels(cluster_env):
    """The operator's sentinels in the root namespace and in every namespace of the module's cluster."""
    sentinels = harness.Sentinels()
    try:
        sentinels.install_root()
        for netns in cluster_env.tb.record["namespaces"]:
            sentinels.install(netns)
        yield sentinels
        assert sentinels.differences("at the end of the module") == []
    finally:
        sentinels.remove_root()


@pytest.fixture
def env(cluster_env, module_sentinels):
    """The module's cluster, healthy and without faults; afterwards the sentinels must be untouched and the
    cluster is put back."""
    cluster_env.tb.wait_healthy(30)
    assert cluster_env.ledger.open_faults() == [], "a previous test left a fault open"
    yield cluster_env
    try:
        assert module_sentinels.differences("after the test") == []
    finally:
        cluster_env.reset()


@pytest.fixture
def own_env():
    """``own_env(**spec)``: a cluster for this test only, removed afterwards by its record."""
    started: List[Env] = []

    def factory(**fields: Any) -> Env:
        started.append(start_env(**fields))
        return started[-1]

    yield factory
    for e in started:
        stop_env(e)


def is_stopped(tb: Testbed, node: str) -> bool:
    return harness._process_state(tb.process(node)) in ("T", "t")


def running(tb: Testbed, node: str) -> bool:
    return procs.is_running(tb.process(node))
