"""The benchmark scripts in quick mode, so they do not rot: each runs as CI would run it, exits 0, prints its
table(s), and leaves nothing behind (its state home removed, no process carrying its marker).

Benchmarks are never timed asserts: no figure is checked here, only that the script works. The whole module takes
about 140 s on 2 cores (fanout.py: ~40 s).
"""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import NEEDS_ETCD, NEEDS_ROOT

pytestmark = [pytest.mark.integration, NEEDS_ROOT, NEEDS_ETCD,
              pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed (apt nftables)")]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# script -> lines its output must hold (the headings of its tables, and the load average for the new scripts)
EXPECTED = {
    "latency": ["Actions on the embedded cluster", "Rules against peer count", "Rules against target host count",
                "kill_master: call -> leader's process gone", "load average (1 min)"],
    "accuracy": ["Measurement error against the cluster's event log", "leader_election_time",
                 "worker_failure_detection_time", "article: poll every 30 s", "load average (1 min)"],
    "expiry": ["Self-expiry: time after the fault's deadline", "traffic back (kernel)", "load average (1 min)"],
    "overhead": ["Requests our probes send to the platform", "timeline recorder", "load average (1 min)"],
    "experiments": ["Experiments end to end through 'chaos run'", "master-crash.json", "load average (1 min)"],
    "scale": ["Embedded cluster by worker count", "largest size healthy in < 10 s", "load average (1 min)"],
    "testbed": ["time to healthy (up() returns)", "leader failover, event log"],
    "heartbeat_loss": ["worker-seconds under loss", "false deaths", "30 % loss", "load average (1 min)"],
    "fanout": ["Fan-out over 4 SSH hosts", "parallel apply", "serial heal", "floor apply", "hosts' CPU",
               "Polling at the hosts platform's default interval", "leader_election_time", "load average (1 min)"],
}


def marked_processes(parent: str):
    """PIDs whose CHAOSSCHEDULER_OWNER marker (clusters, reapers) names a path under ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(b"CHAOSSCHEDULER_OWNER=") and parent.encode() in v for v in variables):
            found.append(int(entry))
    return found


@pytest.mark.timeout(240)
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_benchmark_quick_mode_runs_and_prints_its_table(script):
    parent = tempfile.mkdtemp(prefix="csq", dir="/tmp")
    try:
        env = dict(os.environ, CHAOSSCHEDULER_BENCH_TMP=parent)
        env.pop("CHAOSSCHEDULER_HOME", None)
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", f"{script}.py"), "--quick"],
                              capture_output=True, text=True, timeout=220, env=env, cwd=parent)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-4000:]
        missing = [line for line in EXPECTED[script] if line not in proc.stdout]
        assert not missing, f"missing {missing} in:\n{output[-4000:]}"
        assert os.listdir(parent) == [], f"left behind: {os.listdir(parent)}"
        assert marked_processes(parent) == []
    finally:
        shutil.rmtree(parent, ignore_errors=True)
