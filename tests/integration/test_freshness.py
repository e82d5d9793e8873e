"""Freshness of the metrics behind a figure, against a real Prometheus scraping the embedded cluster: an exporter
that blocks (its process stopped, as a Slurm exporter blocks while the controller fails over) leaves a gap the
forms see, widen the stated resolution by, and refuse to decide on beyond ten scrape intervals."""

import json
import os
import shutil
import signal
import tempfile
import time
import uuid

import pytest

from chaosscheduler import config
from chaosscheduler.measurements import measurement
from chaosscheduler.platforms import for_settings
from chaosscheduler.probe_windows import forms_fresh
from chaosscheduler.testbed import ClusterSpec, down, remote, up
from chaosscheduler.timing import wait_until
from tests.conftest import NEEDS_ETCD, NEEDS_ROOT

pytestmark = [pytest.mark.integration, NEEDS_ROOT, NEEDS_ETCD,
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed")]


@pytest.fixture
def scraped():
    home = tempfile.mkdtemp(prefix="csf", dir="/tmp")
    tb = up(ClusterSpec(name=("f" + uuid.uuid4().hex)[:9], home=home, workers=2, load_rate=2.0, prometheus=True))
    try:
        with open(remote.vars_path(tb.state_dir)) as handle:
            configuration = json.load(handle)["configuration"]
        platform = for_settings(config.load(dict(configuration, chaosscheduler_home=home)))
        platform.prometheus.wait_for('scheduler_job_submissions_total{job="load"}', timeout=30)
        yield tb, platform.metrics
    finally:
        down(tb.state_dir)
        shutil.rmtree(home, ignore_errors=True)


def test_a_blocked_exporter_widens_the_resolution_and_then_refuses(scraped):
    tb, forms = scraped
    interval = forms.interval
    clean_start = time.time()
    wait_until(lambda: time.time() - clean_start > 6 * interval, 30, interval=0.2, message="a clean window")
    clean = forms.freshness(clean_start, time.time())
    assert clean["max_age"] <= 1.5 * interval + forms.step and clean["refuse"] == "", clean
    pid = tb.process("load")["pid"]
    stopped = time.time()
    os.kill(pid, signal.SIGSTOP)  # the load generator's /metrics blocks: its scrapes time out
    try:
        wait_until(lambda: time.time() - stopped > 12 * interval, 60, interval=0.2, message="a long block")
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.time()
    wait_until(lambda: forms.prometheus.query('up{job="load"} == 1', time.time()), 30, interval=0.2,
               message="the exporter scraped again")
    wait_until(lambda: time.time() - resumed > 3 * interval, 30, interval=0.2, message="scrapes after the block")
    found = forms.freshness(stopped - 2 * interval, time.time())
    blocked = resumed - stopped
    assert found["max_age"] >= blocked - 2 * interval, (found, blocked)
    assert found["refuse"] and any("load" in s or "submissions" in s for s in found["stale"]), found
    figure = forms_fresh(forms, measurement(0.5, "s", "metrics", interval), stopped - 2 * interval, time.time())
    assert figure["decided"] is False and "too stale" in figure["reason"]
