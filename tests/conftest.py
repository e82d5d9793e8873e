"""Shared fixtures.

Every test that starts an embedded cluster gets its own state home (a short path under /tmp, for Unix sockets) and a
unique cluster name, so its namespaces, sockets and ledger never meet another test's. Clusters are removed by their
own record (``down``), never by pattern; a failing test prints the tail of every node log.
"""

import os
import shutil
import tempfile
import uuid

import pytest

from chaosscheduler.testbed import ClusterSpec, down, up

NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
NEEDS_ETCD = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (apt etcd-server)")


def unique_name(prefix: str = "t") -> str:
    return (prefix + uuid.uuid4().hex)[:10]


@pytest.fixture
def home(monkeypatch):
    """A fresh CHAOSSCHEDULER_HOME for this test (short: Unix socket paths are limited to ~100 bytes)."""
    path = tempfile.mkdtemp(prefix="cs", dir="/tmp")
    monkeypatch.setenv("CHAOSSCHEDULER_HOME", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _dump_logs(state_dir: str) -> None:
    logs = os.path.join(state_dir, "logs")
    if not os.path.isdir(logs):
        return
    for name in sorted(os.listdir(logs)):
        with open(os.path.join(logs, name), errors="replace") as handle:
            tail = handle.readlines()[-15:]
        print(f"----- {name} -----\n{''.join(tail)}")


@pytest.fixture
def make_cluster(home, request):
    """``make_cluster(**spec_fields)`` starts a healthy cluster with a unique name; it is removed after the test."""
    started = []

    def factory(**fields):
        fields.setdefault("name", unique_name())
        spec = ClusterSpec(home=home, **fields)
        tb = up(spec)
        started.append(tb)
        return tb

    yield factory
    failed = getattr(request.node, "rep_call", None)
    for tb in started:
        if failed is not None and failed.failed:
            _dump_logs(tb.state_dir)
        down(tb.state_dir)


@pytest.fixture
def cluster(make_cluster):
    """A default cluster (3 masters, 4 workers, 1 etcd member, load generator)."""
    return make_cluster()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
