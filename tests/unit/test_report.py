"""The report and the timeline recorder on hand-made journals and samples: every status, every missing piece."""

import copy
import json
import re
import xml.etree.ElementTree as ET

import pytest

from chaosscheduler import cli, control_options
from chaosscheduler.errors import ConfigurationError
from chaosscheduler.report import render, write_report
from chaosscheduler.report.model import run_view
from chaosscheduler.timeline import Recorder

T0 = 1_800_000_000.0  # the timeline's origin (epoch seconds)


def iso(offset):
    import datetime

    return datetime.datetime.fromtimestamp(T0 + offset, datetime.timezone.utc).isoformat()


def probe(name, func, tolerance, output, start, met=True, status="succeeded"):
    entry = {"activity": {"type": "probe", "name": name, "tolerance": tolerance,
                          "provider": {"type": "python", "module": "chaosscheduler.probes", "func": func}},
             "output": output, "start": iso(start), "end": iso(start + 0.01), "duration": 0.01, "status": status}
    if met is not None:
        entry["tolerance_met"] = met
    return entry


HYPOTHESIS = [("leader-elected-within-30s", "leader_election_time", {"type": "range", "range": [0, 30]}),
              ("accepted-tasks-neither-lost-nor-duplicated", "data_consistency",
               {"type": "range", "range": [1.0, 1.0], "target": "ratio"})]


def timeline():
    """A master crash as the recorder stores it: master-1 leads, is killed at 4 s, master-3 leads from 6.2 s."""
    t = [round(0.2 * i, 3) for i in range(51)]
    return {"version": 1, "source": "testbed /api/summary", "interval": 0.2, "decimated": 1, "started_at": T0,
            "duration": 10.0, "samples": len(t), "requests": 60, "requests_per_second": 6.0, "request_seconds": 0.1,
            "errors": 0, "last_error": None, "t": t,
            "tasks": {"pending": [0 if x < 4 or x > 6.2 else None for x in t],
                      "running": [8 if x < 4 or x > 6.2 else None for x in t],
                      "completed": [100 + i for i in range(len(t))], "rescheduled": [0] * len(t)},
            "leader": [[0.0, 4.0, "master-1"], [4.0, 6.2, None], [6.2, 10.0, "master-3"]], "unanswered": [],
            "masters": {"master-1": [[0.0, 4.0, "running"], [4.0, 6.2, "down"], [6.2, 10.0, "running"]],
                        "master-2": [[0.0, 10.0, "running"]], "master-3": [[0.0, 10.0, "running"]]},
            "workers": {"worker-1": [[0.0, 4.0, "alive"], [4.0, 6.2, "unknown"], [6.2, 10.0, "alive"]]},
            "faults": [{"id": "f1", "action": "kill_master", "targets": ["master-1"], "mode": None, "start": 3.9,
                        "end": 6.3, "deadline": 63.9, "state": "undone"}],
            "events": [[6.0, "master-3", "leader_acquired", {"term": 105, "since": T0 + 5.9}]]}


def journal(status="completed", deviated=False, before=True, after=True, method=True, ours=True, with_timeline=True):
    j = {"chaoslib-version": "1.44.0", "start": iso(-5), "end": iso(11), "duration": 16.0, "status": status,
         "deviated": deviated,
         "experiment": {"title": "The scheduler survives the crash of its leader master",
                        "steady-state-hypothesis": {"title": "h", "probes": [
                            {"type": "probe", "name": n, "tolerance": tol,
                             "provider": {"type": "python", "module": "chaosscheduler.probes", "func": f}}
                            for n, f, tol in HYPOTHESIS]}},
         "steady_states": {"before": None, "after": None, "during": []}, "run": [], "rollbacks": []}
    if before:
        met = before != "unmet"
        j["steady_states"]["before"] = {"steady_state_met": met, "probes": [
            probe(HYPOTHESIS[0][0], "leader_election_time", HYPOTHESIS[0][2], 0.0 if met else 99.0, 0.5, met=met)]
            + ([probe(HYPOTHESIS[1][0], "data_consistency", HYPOTHESIS[1][2], {"ratio": 1.0, "accepted": 3}, 0.6)]
               if met else [])}
    if method:
        j["run"] = [{"activity": {"type": "action", "name": "kill-the-leader-master",
                                  "provider": {"type": "python", "module": "chaosscheduler.actions",
                                               "func": "kill_master"}},
                     "output": {"id": "f1"}, "start": iso(3.9), "end": iso(3.91), "status": "succeeded"},
                    probe("measure-leader-election-time", "leader_election_time", None, 2.1, 3.92, met=None)]
    if after:
        value = 40.0 if deviated else 2.1
        j["steady_states"]["after"] = {"steady_state_met": not deviated, "probes": [
            probe(HYPOTHESIS[0][0], "leader_election_time", HYPOTHESIS[0][2], value, 7.0, met=not deviated)]
            + ([] if deviated else [probe(HYPOTHESIS[1][0], "data_consistency", HYPOTHESIS[1][2],
                                          {"ratio": 1.0, "accepted": 30, "lost": []}, 7.1)])}
    if ours:
        j["chaosscheduler"] = {"run_id": "run-abc", "undone": [], "undo_errors": [], "failure_reasons": [],
                               "faults": [{"id": "f1", "action": "kill_master", "targets": ["master-1"],
                                           "state": "undone", "started_at": T0 + 3.9, "undone_at": T0 + 6.3,
                                           "was_leader": True,
                                           "measurements": {"leader_election_time": {"value": 2.1}}}]}
        if with_timeline:
            j["chaosscheduler"]["timeline"] = timeline()
    return j


def svg_of(html, index=0):
    charts = re.findall(r"<svg [^>]*class=\"timeline\".*?</svg>", html, re.S)
    return ET.fromstring(charts[index])


def marks(svg, cls):
    return [e for e in svg.iter() if e.get("class") == cls]


def verdict(html):
    return re.findall(r'data-verdict="(\w+)"', html)


# ---------------------------------------------------------------- verdicts


@pytest.mark.parametrize("fields,expected", [
    ({}, "passed"),
    ({"status": "failed", "deviated": True}, "deviated"),
    ({"status": "failed"}, "failed"),
    ({"status": "interrupted", "after": False}, "interrupted"),
    ({"status": "aborted", "after": False}, "interrupted"),
    ({"status": "failed", "before": "unmet", "method": False, "after": False}, "untested"),
    ({"status": "completed", "before": "unmet", "method": False, "after": False}, "untested"),
    ({"status": "weird"}, "unknown"),
])
def test_every_status_gets_its_verdict(fields, expected):
    html = render([journal(**fields)], ["j.json"])
    assert verdict(html) == [expected]


def test_a_passed_run_shows_probes_figures_and_the_leader_change_inside_the_fault_window():
    view = run_view(journal())
    assert view["notes"] == []
    row = view["hypothesis"][0]
    assert (row["tolerance"], row["before"]["value"], row["after"]["value"]) == ("0 – 30", 0.0, 2.1)
    consistency = next(f for f in view["figures"] if f["func"] == "data_consistency")
    assert consistency["value"] == 1.0 and consistency["passed"] is True  # the dict output's "ratio"
    election = next(f for f in view["figures"] if f["func"] == "leader_election_time")
    assert (election["value"], election["passed"], election["source"]) == (2.1, True, "hypothesis after the method")

    svg = svg_of(render([journal()], ["j.json"]))
    window = marks(svg, "fault-window")[0]
    start, end = float(window.get("data-start")), float(window.get("data-end"))
    leaders = [(e.get("data-value"), float(e.get("data-start"))) for e in marks(svg, "seg")
               if e.get("data-lane") == "leader"]
    assert [v for v, _ in leaders] == ["master-1", "none", "master-3"]
    assert start <= leaders[1][1] <= end and start <= leaders[2][1] <= end
    down = [e for e in marks(svg, "seg") if e.get("data-lane") == "master:master-1" and e.get("data-value") == "down"]
    assert len(down) == 1
    assert {e.get("data-series") for e in marks(svg, "series")} == {"running", "pending", "rescheduled"}
    assert [e.get("data-event") for e in marks(svg, "event")] == ["leader_acquired"]
    measure = marks(svg, "measure")[0]
    assert measure.get("data-probe") == "leader_election_time"
    assert float(measure.get("data-end")) - float(measure.get("data-start")) == pytest.approx(2.1, abs=0.01)
    assert [e.get("data-node") for e in marks(svg, "fault-target")] == ["master-1"]


def test_a_deviated_run_marks_the_figure_that_broke_the_threshold():
    view = run_view(journal(status="failed", deviated=True))
    election = next(f for f in view["figures"] if f["func"] == "leader_election_time")
    assert (election["value"], election["passed"]) == (40.0, False)
    assert any("first probe out of tolerance" in n for n in view["notes"])
    assert view["hypothesis"][1]["after"] is None  # not run: shown as such, not as a failure


def test_a_failed_run_lists_the_controls_reasons():
    j = journal(status="failed")
    j["chaosscheduler"]["failure_reasons"] = ["action failed: kill-the-leader-master: no master is running"]
    html = render([j], ["j.json"])
    assert "action failed: kill-the-leader-master: no master is running" in html


def test_an_interrupted_run_says_what_is_missing_and_takes_figures_from_the_method_and_the_ledger():
    j = journal(status="interrupted", after=False)
    del j["run"][1]["status"]  # cut off mid-activity: chaoslib writes no status, no tolerance_met
    j["run"][1]["output"] = None
    view = run_view(j)
    assert view["verdict"] == "interrupted"
    assert any("after the method is missing because the run was interrupted" in n for n in view["notes"])
    assert any("'measure-leader-election-time' was cut off" in n for n in view["notes"])
    election = next(f for f in view["figures"] if f["func"] == "leader_election_time")
    assert election["value"] == 2.1 and election["source"] == "ledger (fault f1)"
    consistency = next(f for f in view["figures"] if f["func"] == "data_consistency")
    assert consistency["value"] is None  # declared but never measured: listed as "not measured"
    html = render([j], ["j.json"])
    assert "not measured" in html
    assert len(marks(svg_of(html), "interrupted")) == 1


def test_a_run_whose_steady_state_failed_before_the_method_says_the_platform_was_not_tested():
    j = journal(status="failed", before="unmet", method=False, after=False)
    j["chaosscheduler"]["faults"] = []
    j["chaosscheduler"]["timeline"]["faults"] = []
    view = run_view(j)
    assert any("the method was skipped" in n for n in view["notes"])
    assert view["hypothesis"][0]["before"]["met"] is False
    assert view["hypothesis"][1]["before"] is None
    html = render([j], ["j.json"])
    assert marks(svg_of(html), "fault-window") == []


def test_an_older_journal_without_our_section_still_gets_a_chart_of_its_activities():
    j = journal(ours=False)
    view = run_view(j)
    assert any("No \"chaosscheduler\" section" in n for n in view["notes"])
    svg = svg_of(render([j], ["old.json"]))
    assert {e.get("data-phase") for e in marks(svg, "activity")} == {"hypothesis before", "method",
                                                                      "hypothesis after"}
    assert marks(svg, "seg") == [] and marks(svg, "fault-window") == []


def test_a_journal_without_a_timeline_draws_fault_windows_from_the_ledger_summary():
    j = journal(with_timeline=False)
    view = run_view(j)
    assert any(n.startswith("No timeline") for n in view["notes"])
    svg = svg_of(render([j], ["j.json"]))
    window = marks(svg, "fault-window")[0]
    assert float(window.get("data-end")) - float(window.get("data-start")) == pytest.approx(2.4, abs=0.01)
    assert marks(svg, "series") == []


@pytest.mark.parametrize("mangle", [
    lambda j: {},
    lambda j: {"status": None, "experiment": [], "steady_states": "x", "run": {"a": 1}, "rollbacks": None},
    lambda j: dict(j, chaosscheduler="not a dict"),
    lambda j: dict(j, chaosscheduler={"faults": [None, 3, {"id": "f9", "started_at": "soon"}], "timeline": []}),
    lambda j: dict(j, chaosscheduler=dict(j["chaosscheduler"], timeline={"t": "bad", "leader": [[1, "x"], None],
                                                                        "masters": {"m": [[0, 1]]}, "tasks": 5,
                                                                        "events": [[None], "x"], "started_at": T0})),
    lambda j: dict(j, chaosscheduler=dict(j["chaosscheduler"], timeline={"version": 1, "error": "boom"})),
    lambda j: dict(j, start="yesterday", end=None, duration="long",
                   run=[{"activity": None, "start": 5, "status": "succeeded"}, "junk"]),
    lambda j: dict(j, steady_states={"before": {"steady_state_met": True, "probes": [{"activity": {}}, 7]}}),
])
def test_malformed_journals_never_crash_the_report(mangle):
    j = mangle(copy.deepcopy(journal()))
    html = render([j], ["bad.json"])
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for chart in re.findall(r"<svg .*?</svg>", html, re.S):
        ET.fromstring(chart)  # every chart stays well-formed


def test_the_page_is_self_contained_and_escapes_what_it_quotes():
    j = journal()
    j["experiment"]["title"] = "<script>alert('x')</script> & co"
    j["chaosscheduler"]["timeline"]["leader"][0][2] = "<m&1>"
    html = render([j], ["j.json"])
    assert "<script" not in html and "&lt;script&gt;" in html
    assert not re.search(r"<link|\ssrc=|url\((?!#)|@import", html)
    assert 'data-value="&lt;m&amp;1&gt;"' in html
    svg_of(html)


def test_several_journals_get_a_comparison_table_and_a_trend_per_figure():
    runs = [journal(), journal(status="failed", deviated=True), journal(status="interrupted", after=False)]
    html = render(runs, ["a.json", "b.json", "c.json"])
    table = re.search(r"<table class=\"comparison\">.*?</table>", html, re.S).group(0)
    assert len(re.findall(r"<tr>", table)) == 4  # header + one row per run
    assert verdict(html) == ["passed", "deviated", "interrupted"]
    trend = next(ET.fromstring(s) for s in re.findall(r"<svg [^>]*class=\"trend\".*?</svg>", html, re.S)
                 if "leader election time" in s)
    bars = [(b.get("data-run"), float(b.get("data-value")), b.get("fill")) for b in trend.iter()
            if b.get("class") == "bar"]
    assert [(r, v) for r, v, _ in bars] == [("#1", 2.1), ("#2", 40.0), ("#3", 2.1)]
    assert bars[1][2] != bars[0][2]  # the one above 30 s is coloured as failing
    assert len(re.findall(r"<svg [^>]*class=\"timeline\"", html)) == 3


# ---------------------------------------------------------------- the command


def test_cli_writes_the_report_and_reports_unreadable_journals(tmp_path, capsys):
    good, bad, missing = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "missing.json"
    good.write_text(json.dumps(journal()))
    bad.write_text("{not json")
    out = tmp_path / "sub" / "report.html"
    assert cli.main(["report", str(good), "-o", str(out)]) == 0
    assert verdict(out.read_text()) == ["passed"]
    assert cli.main(["report", str(good), str(bad), str(missing), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bad.json: not JSON" in err and "missing.json: no such file" in err
    assert "could not be read" in out.read_text()
    assert cli.main(["report", str(bad), "-o", str(tmp_path / "none.html")]) == 2
    assert not (tmp_path / "none.html").exists()
    assert "no journal could be read" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert cli.main(["report", str(good), "-o", str(tmp_path / "a-file" / "report.html")]) == 2
    assert "cannot write the report to" in capsys.readouterr().err


def test_png_export_writes_one_chart_per_run(tmp_path):
    pytest.importorskip("cairosvg", reason="cairosvg renders the charts without a browser")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(journal()))
    result = write_report([str(good), str(good)], str(tmp_path / "r.html"), png=str(tmp_path / "chart.png"))
    assert result["png"]["files"] == [str(tmp_path / "chart.png"), str(tmp_path / "chart-2.png")]
    for path in result["png"]["files"]:
        data = open(path, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(data[16:20], "big") == 1100


# ---------------------------------------------------------------- the recorder and the control's arguments


class ScriptedSource:
    """Plays back a list of samples (a real platform is sampled in tests/integration/test_report_timeline.py)."""

    name = "scripted"

    def __init__(self, samples):
        self.samples = list(samples)
        self.requests = 0

    def sample(self):
        self.requests += 1
        item = self.samples.pop(0) if self.samples else self.last
        self.last = item
        if isinstance(item, Exception):
            raise item
        return item

    def events(self):
        return [{"ts": 0.0, "node": "x", "event": "leader_acquired"}]


def sample(leader, worker="alive", running=1):
    return {"answered": leader is not None, "leader": leader, "masters": {"master-1": leader == "master-1"},
            "workers": {"worker-1": worker}, "tasks": {"pending": 0, "running": running, "completed": 0,
                                                        "rescheduled": 0}}


def test_recorder_compresses_states_into_segments_and_counts_failures():
    rec = Recorder(ScriptedSource([]), interval=0.2)
    rec.started_at = T0
    for t, s in [(0.0, sample("master-1")), (0.2, sample("master-1")), (0.4, None), (0.6, sample(None, "unknown")),
                 (0.8, sample("master-2", "dead"))]:
        rec._apply(t, s)
    assert rec._leader == [[0.0, 0.6, "master-1"], [0.6, 0.8, None], [0.8, 0.8, "master-2"]]
    assert rec._workers["worker-1"] == [[0.0, 0.6, "alive"], [0.6, 0.8, "unknown"], [0.8, 0.8, "dead"]]
    assert rec._t == [0.0, 0.2, 0.6, 0.8]  # the failed sample adds no point, only an unanswered stretch
    assert [s[2] for s in rec._unanswered] == [False, True, False]


def test_a_silent_leader_keeps_its_lane_and_the_workers_last_known_state():
    rec = Recorder(ScriptedSource([]), interval=0.2)
    rec._apply(0.0, sample("master-1", "dead"))
    rec._apply(0.2, {"answered": True, "leader": "master-1", "silent": True, "masters": {"master-1": True},
                     "workers": None, "tasks": None})
    rec._apply(0.4, sample("master-1", "alive"))
    assert rec._leader == [[0.0, 0.4, "master-1"]]
    assert rec._workers["worker-1"] == [[0.0, 0.4, "dead"], [0.4, 0.4, "alive"]]
    assert rec._tasks["running"] == [1, None, 1]
    assert [s[2] for s in rec._silent] == [False, True, False]
    rec.started_at = 0.0
    j = journal()
    j["chaosscheduler"]["timeline"]["leader_silent"] = [[1.0, 2.5]]
    assert any("did not answer the recorder for 1.5 s" in n for n in run_view(j)["notes"])
    assert len(marks(svg_of(render([j], ["j.json"])), "leader-silent")) == 1


def test_recorder_halves_its_series_past_max_samples():
    rec = Recorder(ScriptedSource([]), interval=0.1, max_samples=10)
    for i in range(10):
        rec._apply(i * 0.1, sample("master-1", running=i))
    assert len(rec._t) == 5 and rec._decimated == 2 and rec._tasks["running"] == [0, 2, 4, 6, 8]


def test_recorder_thread_survives_a_failing_source_and_reports_its_cost():
    source = ScriptedSource([sample("master-1"), RuntimeError("socket gone"), sample("master-1")])
    rec = Recorder(source, interval=0.05).start()
    from chaosscheduler.timing import wait_until

    wait_until(lambda: source.requests >= 6, timeout=10, message="six samples")
    timeline = rec.stop()
    assert timeline["errors"] >= 1 and "socket gone" in timeline["last_error"]
    assert timeline["samples"] == source.requests - timeline["errors"]
    assert timeline["leader"][0][2] == "master-1" and timeline["faults"] == []
    assert timeline["events"] == [[round(0.0 - rec.started_at, 3), "x", "leader_acquired", {}]]
    assert not rec._thread.is_alive()


@pytest.mark.parametrize("arguments,message", [
    ({"timeline": "yes"}, "'timeline' must be true or false"),
    ({"timeline_interval": 0.001}, r"'timeline_interval' must be in \[0.05, 60\]"),
    ({"timeline_interval": True}, "'timeline_interval' must be a number"),
])
def test_control_refuses_bad_timeline_arguments(arguments, message):
    with pytest.raises(ConfigurationError, match=message):
        control_options.parse(arguments)


def test_control_timeline_defaults():
    options = control_options.parse({})
    assert options["timeline"] is True and options["timeline_interval"] == 0.2
