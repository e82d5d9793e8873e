"""Latency without netem: on this kernel ``tc netem`` is missing, so ``partition_workers(mode="latency")`` uses the
NFQUEUE userspace delay. Checked from outside the fault: the TCP round trip between a worker and a master grows by
the requested delay (and the fault record says by how much), traffic still flows, an early heal and the deadline
both remove every trace (table, delay process, queue binding)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from chaosscheduler import actions, procs, rollbacks
from chaosscheduler.faults.latency import kernel_netem, nfqueue_available
from chaosscheduler.ledger import Ledger
from chaosscheduler.timing import wait_until
from tests.integration.test_platforms import FIGURES

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
              pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed"),
              pytest.mark.skipif(os.geteuid() == 0 and bool(nfqueue_available()),
                                 reason=f"NFQUEUE fallback unavailable: {nfqueue_available()}")]

CONNECT = """
import socket, statistics, sys, time
samples = []
for _ in range(7):
    started = time.monotonic()
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10).close()
    samples.append((time.monotonic() - started) * 1000)
print(statistics.median(samples))
"""


def connect_ms(netns: str, address: str, port: int = 8080) -> float:
    """Median TCP connect time (ms) from ``netns`` to ``address:port``: an independent look at the delay."""
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CONNECT, address, str(port)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return float(out)


def delayers(fault_id: str):
    needle = f"chaosscheduler-delay-{fault_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if needle in handle.read().split(b"\0") and procs.start_time(int(entry)):
                        found.append(int(entry))
            except OSError:
                pass
    return found


def test_latency_is_added_through_nfqueue_measured_and_removed(make_cluster):
    if not kernel_netem():
        pytest.skip("this kernel has tc netem: the netem path is used, not the fallback")
    tb = make_cluster(workers=2, load_rate=0)
    cfg = {"chaosscheduler_cluster": tb.spec.name}
    worker, master = tb.nodes["worker-1"], tb.nodes["master-1"]
    before = connect_ms(worker.netns, master.address)
    record = actions.partition_workers(workers="worker-1", peers="masters", mode="latency", latency_ms=100,
                                       duration=60, configuration=cfg)
    assert record["method"] == "nfqueue" and record["applied_on"] == ["worker-1"]
    added = record["measured_added_ms"]["worker-1"]
    during = connect_ms(worker.netns, master.address)
    FIGURES.setdefault("nfqueue_added_ms_recorded", []).append(added)
    FIGURES.setdefault("nfqueue_added_ms_seen", []).append(round(during - before, 2))
    print(f"\nNFQUEUE latency 100 ms: the fault measured +{added:.1f} ms, the test sees +{during - before:.1f} ms")
    assert 95 <= added <= 125 and 95 <= during - before <= 125
    assert len(delayers(record["id"])) == 1
    other = connect_ms(tb.nodes["worker-2"].netns, master.address)
    assert other < 50  # only the target is slowed
    rollbacks.heal_partition(configuration=cfg)
    wait_until(lambda: delayers(record["id"]) == [], 10, message="the delay process gone")
    assert connect_ms(worker.netns, master.address) < before + 20
    out = subprocess.run(["ip", "netns", "exec", worker.netns, "nft", "list", "tables"], capture_output=True,
                         text=True).stdout
    assert "chaosscheduler_" not in out


def test_the_delay_stops_at_its_deadline_without_the_reaper(make_cluster):
    if not kernel_netem():
        pytest.skip("this kernel has tc netem: the netem path is used, not the fallback")
    tb = make_cluster(workers=2, load_rate=0)
    cfg = {"chaosscheduler_cluster": tb.spec.name}
    worker, master = tb.nodes["worker-2"], tb.nodes["master-2"]
    record = actions.partition_workers(workers="worker-2", peers="masters", mode="latency", latency_ms=80,
                                       duration=4, configuration=cfg)
    os.kill(record["reaper"]["pid"], signal.SIGKILL)
    assert connect_ms(worker.netns, master.address) > 60
    wait_until(lambda: delayers(record["id"]) == [], record["duration"] + 5, interval=0.05,
               message="the delay process exits at the deadline")
    late = time.time() - record["deadline"]
    assert late < 1.0
    assert connect_ms(worker.netns, master.address) < 30  # the kernel stopped queueing too
    rollbacks.heal_partition(configuration=cfg)  # closes the record (the table, now empty, is removed)
    assert Ledger(os.environ["CHAOSSCHEDULER_HOME"]).open_faults() == []
