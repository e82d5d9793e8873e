"""Reports of real runs: each experiment once through the real ``chaos`` CLI (shared by the tests of this module),
plus one run interrupted with SIGINT while its fault is in place. Each report is rendered with ``chaosscheduler
report``, opened in headless Chromium and screenshotted; the tests read back the SVG they generated and the pixels
Chromium drew.

Set ``REPORT_IMAGES_DIR`` to keep the screenshots (that is how docs/images/ is made).
"""

import json
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zlib
from collections import Counter

import pytest

from chaosscheduler import cli
from chaosscheduler.heal import heal
from chaosscheduler.ledger import Ledger
from chaosscheduler.report.png import chromium_binary, screenshot
from chaosscheduler.testbed import ClusterSpec, Testbed, down, state as tb_state
from chaosscheduler.timing import wait_until
from tests.conftest import NEEDS_ETCD, NEEDS_ROOT, unique_name
from tests.e2e.test_experiments import CHAOS, EXPERIMENTS, RUNS, assert_nothing_left, run_chaos

pytestmark = [NEEDS_ROOT, NEEDS_ETCD, pytest.mark.e2e]
NEEDS_CHROMIUM = pytest.mark.skipif(chromium_binary() is None,
                                    reason="headless Chromium is not installed (apt-get install chromium; "
                                           "scripts/setup installs it)")
WINDOW = (1200, 1400)
COLORS = {"alive": "#3fa463", "fault": "#f2a33a", "dead": "#d64545", "running": "#a9c1de"}  # as svg.py draws


class Runs:
    """One run per experiment, made on first use and shared by the tests; everything removed at the end."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="csrep-")
        self.homes = []
        self.runs = {}

    def _home(self):
        home = tempfile.mkdtemp(prefix="cs", dir="/tmp")  # short: Unix socket paths
        self.homes.append(home)
        return home

    def get(self, experiment):
        if experiment not in self.runs and experiment in RUNS:  # a passing run of test_experiments.py, same session
            self.runs[experiment] = RUNS[experiment]
        if experiment not in self.runs:
            workdir = os.path.join(self.root, experiment.replace(".json", ""))
            os.makedirs(workdir)
            home = self._home()
            proc, journal, cluster = run_chaos(pathlib.Path(workdir), home, experiment)
            self.runs[experiment] = dict(proc=proc, journal=journal, cluster=cluster, home=home, dir=workdir,
                                         path=os.path.join(workdir, "journal.json"))
        return self.runs[experiment]

    def interrupted(self):
        if "interrupted" not in self.runs:
            self.runs["interrupted"] = self._interrupted()
        return self.runs["interrupted"]

    def _interrupted(self):
        workdir = os.path.join(self.root, "interrupted")
        os.makedirs(workdir)
        home, cluster = self._home(), unique_name("e")
        path = os.path.join(workdir, "journal.json")
        argv = [CHAOS, "--no-version-check", "--log-file", os.path.join(workdir, "chaos.log"), "run",
                os.path.join(EXPERIMENTS, "worker-disconnect.json"), "--journal-path", path]
        env = dict(os.environ, CHAOSSCHEDULER_HOME=home, CHAOSSCHEDULER_CLUSTER=cluster)
        with open(os.path.join(workdir, "out.txt"), "w") as out:
            proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            fault = wait_until(lambda: next((f for f in Ledger(home).open_faults()
                                             if f.get("action") == "isolate_worker" and f.get("started_at")), None),
                               timeout=120, interval=0.05, message="an open isolate_worker fault in the ledger")
            platform = Testbed(ClusterSpec(name=cluster, home=home).state_dir)
            wait_until(lambda: any(w["name"] in fault["targets"] and w["state"] == "dead" for w in platform.workers()),
                       timeout=60, interval=0.1, message="the isolated worker declared dead")
            proc.send_signal(signal.SIGINT)  # Ctrl-C while the method runs: the worker cut off and declared dead
            proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with open(path) as handle:
            journal = json.load(handle)
        return dict(proc=proc, journal=journal, cluster=cluster, home=home, dir=workdir, path=path, fault=fault)

    def cleanup(self):
        for home in self.homes:
            heal(home)
            clusters = os.path.join(home, "testbed")
            for name in os.listdir(clusters) if os.path.isdir(clusters) else []:
                if tb_state.exists(os.path.join(clusters, name)):
                    down(os.path.join(clusters, name))
            shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def runs():
    made = Runs()
    yield made
    made.cleanup()


# ---------------------------------------------------------------- helpers


def render(paths, workdir, name="report.html"):
    output = os.path.join(workdir, name)
    assert cli.main(["report", *paths, "-o", output]) == 0
    with open(output, encoding="utf-8") as handle:
        return output, handle.read()


def chart(html, index=0):
    return ET.fromstring(re.findall(r"<svg [^>]*class=\"timeline\".*?</svg>", html, re.S)[index])


def marks(svg, cls, **data):
    return [e for e in svg.iter() if e.get("class") == cls
            and all(e.get(f"data-{k}") == v for k, v in data.items())]


def span(mark):
    return float(mark.get("data-start")), float(mark.get("data-end"))


def collapse(values):
    out = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


def png_colors(path):
    """Colour histogram of a PNG (8-bit RGB/RGBA, as Chromium writes them), decoded with the standard library."""
    with open(path, "rb") as handle:
        data = handle.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[pos + 8:pos + 8 + length])
        elif kind == b"IDAT":
            idat.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    width, height, depth, ctype, _, _, interlace = header
    assert depth == 8 and interlace == 0 and ctype in (2, 6), header
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(b"".join(idat)), width * bpp
    prev, colors = bytearray(stride), Counter()
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((x + up) & 255 for x, up in zip(line, prev))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a, b, c = (line[i - bpp], prev[i], prev[i - bpp]) if i >= bpp else (0, prev[i], 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colors.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp))
        prev = line
    return (width, height), colors


def shoot(html_path, name, **extra):
    """Screenshot the report in headless Chromium; check it is drawn; keep it if REPORT_IMAGES_DIR is set.
    Returns how many pixels have each colour of ``COLORS`` (and of ``extra``: name="#rrggbb")."""
    png = os.path.join(os.path.dirname(html_path), f"{name}.png")
    screenshot(html_path, png, *WINDOW)
    size, colors = png_colors(png)
    assert size == WINDOW
    assert len(colors) > 50, "the screenshot is (nearly) blank"
    keep = os.environ.get("REPORT_IMAGES_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(png, os.path.join(keep, f"report-{name}.png"))
    return {key: colors[bytes.fromhex(rgb[1:])] for key, rgb in dict(COLORS, **extra).items()}


# ---------------------------------------------------------------- one report per experiment


@NEEDS_CHROMIUM
def test_master_crash_report_shows_a_leader_change_inside_the_fault_window(runs):
    run = runs.get("master-crash.json")
    assert run["proc"].returncode == 0, run["proc"].stdout[-2000:]
    timeline = run["journal"]["chaosscheduler"]["timeline"]
    assert timeline["samples"] > 10 and timeline["errors"] == 0
    assert timeline["requests_per_second"] <= 3 / timeline["interval"]  # at most one request per master per sample
    html_path, html = render([run["path"]], run["dir"])
    svg = chart(html)
    window = marks(svg, "fault-window", action="kill_master")[0]
    start, end = span(window)
    leaders = [(m.get("data-value"), *span(m)) for m in marks(svg, "seg", lane="leader")]
    killed = leaders[0][0]
    assert [v for v, _, _ in leaders][:3] == [killed, "none", leaders[2][0]] and leaders[2][0] not in (killed, "none")
    # lost and regained inside the window: exactly (the event log, below), and as sampled (one step of slack: the
    # killed master is restarted ~0.3 s after the new leader is elected, the sample may land after that)
    step = run["journal"]["chaosscheduler"]["timeline"]["interval"]
    assert start <= leaders[1][1] <= end and start <= leaders[2][1] <= end + 2 * step
    assert [span(m) for m in marks(svg, "seg", lane=f"master:{killed}", value="down")][0][0] >= start
    acquired = marks(svg, "event", event="leader_acquired")
    assert acquired and start <= float(acquired[0].get("data-t")) <= end
    election = marks(svg, "measure", probe="leader_election_time")[0]
    assert span(election)[0] == pytest.approx(start, abs=0.01) and span(election)[1] <= end
    fills = [m.get("fill") for m in marks(svg, "seg", lane="leader")]
    pixels = shoot(html_path, "master-crash", old=fills[0], new=fills[2])
    assert pixels["fault"] > 500 and pixels["alive"] > 10000 and pixels["dead"] > 100
    # both leaders' stretches are painted (each a share of a run the witness makes ~1.5 min long)
    assert pixels["old"] > 300 and pixels["new"] > 300


@NEEDS_CHROMIUM
def test_worker_disconnect_report_shows_the_lost_worker_declared_dead_and_its_tasks_rescheduled(runs):
    run = runs.get("worker-disconnect.json")
    assert run["proc"].returncode == 0, run["proc"].stdout[-2000:]
    html_path, html = render([run["path"]], run["dir"])
    svg = chart(html)
    start, end = span(marks(svg, "fault-window", action="isolate_worker")[0])
    target = marks(svg, "fault-target")[0].get("data-node")
    dead = {m.get("data-lane"): span(m) for m in marks(svg, "seg", value="dead")}
    assert list(dead) == [f"worker:{target}"]  # only the isolated worker, declared dead during its fault
    assert start < dead[f"worker:{target}"][0] < end
    assert int(marks(svg, "series", series="rescheduled")[0].get("data-max")) >= 1
    detection = marks(svg, "measure", probe="worker_failure_detection_time")[0]
    assert span(detection)[1] == pytest.approx(dead[f"worker:{target}"][0], abs=1.0)  # sampled vs ground truth
    pixels = shoot(html_path, "worker-disconnect")
    assert pixels["fault"] > 500 and pixels["alive"] > 10000 and pixels["dead"] > 100


@NEEDS_CHROMIUM
def test_network_partition_report_shows_both_faults_and_no_worker_wrongly_declared_dead(runs):
    run = runs.get("network-partition.json")
    assert run["proc"].returncode == 0, run["proc"].stdout[-2000:]
    html_path, html = render([run["path"]], run["dir"])
    svg = chart(html)
    windows = marks(svg, "fault-window", action="partition_workers")
    assert len(windows) == 2 and span(windows[0])[1] <= span(windows[1])[0] + 0.1
    assert marks(svg, "seg", value="dead") == []
    # the masters were never cut: the lane changes leader only where the event log says a master won an election
    lane = collapse(m.get("data-value") for m in marks(svg, "seg", lane="leader") if m.get("data-value") != "none")
    elected = [m.get("data-node") for m in marks(svg, "event", event="leader_acquired")]
    assert lane == collapse(lane[:1] + elected), (lane, elected)
    assert int(marks(svg, "series", series="running")[0].get("data-max")) > 0
    leader_fill = marks(svg, "seg", lane="leader")[0].get("fill")
    pixels = shoot(html_path, "network-partition", leader=leader_fill)
    assert pixels["fault"] > 500 and pixels["alive"] > 10000 and pixels["leader"] > 5000


@NEEDS_CHROMIUM
def test_interrupted_run_report_says_so_and_still_draws_the_fault(runs):
    run = runs.interrupted()
    journal = run["journal"]
    assert journal["status"] == "interrupted"
    ours = journal["chaosscheduler"]
    assert [f["state"] for f in ours["faults"]] == ["undone"] and ours["timeline"]["samples"] > 0
    assert_nothing_left(run["home"], run["cluster"])
    html_path, html = render([run["path"]], run["dir"])
    assert re.findall(r'data-verdict="(\w+)"', html) == ["interrupted"]
    assert "after the method is missing because the run was interrupted" in html
    svg = chart(html)
    window = marks(svg, "fault-window", action="isolate_worker")[0]
    start, end = span(window)
    assert start == pytest.approx(run["fault"]["started_at"] - ours["timeline"]["started_at"], abs=0.01)
    assert window.get("data-open") is None  # undone by the control after the interruption, and drawn so
    target = run["fault"]["targets"][0]
    assert marks(svg, "seg", lane=f"worker:{target}", value="dead")  # sampled: may land just after the undo
    declared = marks(svg, "event", event="worker_declared_dead", node=target)  # the event log: exact
    assert declared and start < float(declared[0].get("data-t")) <= end
    interrupted = marks(svg, "interrupted")  # the activity Ctrl-C cut off, if it was cut mid-way
    assert all(m.get("data-t") is None or start < float(m.get("data-t")) for m in interrupted)
    pixels = shoot(html_path, "interrupted")
    assert pixels["fault"] > 500 and pixels["alive"] > 10000 and pixels["dead"] > 100


@NEEDS_CHROMIUM
def test_comparison_report_of_every_run(runs):
    paths = [runs.get(e)["path"] for e in ("master-crash.json", "worker-disconnect.json", "network-partition.json")]
    paths.append(runs.interrupted()["path"])
    html_path, html = render(paths, runs.root, "comparison.html")
    table = re.search(r"<table class=\"comparison\">.*?</table>", html, re.S).group(0)
    assert len(re.findall(r"<tr>", table)) == 5
    assert re.findall(r'data-verdict="(\w+)"', html) == ["passed", "passed", "passed", "interrupted"]
    assert len(re.findall(r"<svg [^>]*class=\"timeline\"", html)) == 4
    assert "leader election time (&lt; 30 s)" in html
    shoot(html_path, "comparison")


def test_chaos_report_still_renders_a_journal_with_a_timeline(runs, tmp_path):
    """Our section (timeline included) does not break chaostoolkit-reporting (it needs pandoc)."""
    pytest.importorskip("chaosreport")
    if shutil.which("pandoc") is None:
        pytest.skip("chaos report needs pandoc (apt-get install pandoc)")
    run = runs.get("master-crash.json")
    assert run["journal"]["chaosscheduler"]["timeline"]["samples"] > 0
    report = tmp_path / "chaos-report.html"
    out = subprocess.run([CHAOS, "--no-version-check", "--no-log-file", "report", "--export-format=html",
                          run["path"], str(report)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "The scheduler survives the crash of its leader master" in report.read_text()
