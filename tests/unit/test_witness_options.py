"""The witness's options, sizing, template expansion and the command/python submitters (run locally, with real
processes), and the testbed's broken knobs' validation."""


import pytest

from chaosscheduler import config
from chaosscheduler.errors import ConfigurationError
from chaosscheduler.hosts import LocalHost
from chaosscheduler.testbed.spec import ClusterSpec
from chaosscheduler.witness import command
from chaosscheduler.witness.options import parse, size
from chaosscheduler.witness.submitters import expand, validate
from chaosscheduler.witness.submitters.command import CommandSubmitter
from chaosscheduler.witness.submitters.python import PythonSubmitter
from tests.fakes import witness_client


def test_defaults_and_sizing_make_the_rescheduling_threshold_decidable():
    options = parse(None, "testbed")
    assert options["enabled"] and options["rate"] is None and options["submitter"] == {"type": "testbed"}
    sizing = size(options, workers=4, slots=150, background=8)
    assert options["rate"] == 10 and options["duration"] == 24 and sizing["per_worker"] == 60
    assert sizing["warnings"] == [] and sizing["slots_needed"] == 127
    assert options["settle"] == 114 and options["stop_wait"] == 54
    small = size(parse({"rate": 2, "duration": 4}, "testbed"), workers=4, slots=4)  # both given: kept, warned
    assert any("52" in w for w in small["warnings"]) and any(">= " in w for w in small["warnings"])


def test_the_witness_never_floods_a_platform_it_knows_the_slots_of():
    snug = parse({}, "testbed")
    sizing = size(snug, workers=4, slots=100, background=8)
    assert snug["rate"] == 10 and snug["duration"] < 24 and sizing["after_loss"] <= 90.5
    slow = parse({"rate": 5}, "testbed")  # the rate given: the duration shrinks
    size(slow, workers=4, slots=40)
    assert slow["rate"] == 5 and slow["rate"] * slow["duration"] <= 40 * 0.9 * 4 / (5 / 3 * 1.1)
    short = parse({"duration": 2}, "testbed")  # the duration given: the rate shrinks
    size(short, workers=4, slots=10, background=8)
    assert short["duration"] == 2 and 0.5 <= short["rate"] < 10
    # the embedded cluster's default (4 slots, the load generator's 8 tasks): no room at all -> off, and why
    tiny = parse({}, "testbed")
    report = size(tiny, workers=4, slots=4, background=8)
    assert tiny["enabled"] is False and "no room" in tiny["disabled_reason"] and report["enabled"] is False


@pytest.mark.parametrize("raw, message", [
    ({"rate": 0}, "rate"), ({"rate": "10"}, "rate"), ({"duration": -1}, "duration"),
    ({"max_in_flight": 0}, "max_in_flight"), ({"enabled": "yes"}, "enabled"), ({"speed": 1}, "unknown"),
    ({"submitter": {"type": "carrier-pigeon"}}, "submitter.type"), ([], "object"),
    ({"submitter": {"type": "command", "argv": ["sbatch"]}}, "{command} or {argv}"),
    ({"submitter": {"type": "command", "argv": "sbatch {command}"}}, "argv"),
    ({"submitter": {"type": "command", "argv": ["x", "{argv}"], "job_id_regex": "("}}, "regular expression"),
    ({"submitter": {"type": "command", "argv": ["x", "{argv}"], "status_argv": ["st", "{job_ids}"],
                    "status_regex": "(\\d+)"}}, "named group"),
    ({"submitter": {"type": "python", "function": "no.such.module:submit"}}, "cannot import"),
    ({"submitter": {"type": "kubernetes", "namespace": "Bad_NS"}}, "namespace"),
    ({"submitter": {"type": "testbed", "masters": 3}}, "no option")])
def test_bad_options_are_refused_naming_the_key(raw, message):
    with pytest.raises(ConfigurationError, match=message.replace("{", "\\{").replace("(", "\\(")):
        config.load({"chaosscheduler_witness": raw})


def test_other_platforms_need_a_submitter_once_the_witness_is_configured():
    assert parse({}, "hosts")["enabled"] is False and "submitter" in parse({}, "hosts")["disabled_reason"]
    with pytest.raises(ConfigurationError, match="submitter is needed"):
        parse({"rate": 5}, "hosts")
    assert parse(False, "testbed")["enabled"] is False
    again = parse(parse({"rate": 5}, "testbed"), "testbed")  # parsed options parse again (control overrides)
    assert again["rate"] == 5


def test_options_given_later_switch_on_a_witness_the_configuration_left_unset():
    """The control's ``witness`` argument (or a caller of witness.start) names a submitter for a hosts platform
    whose configuration says nothing about the witness: it runs; switched off explicitly, it stays off."""
    from chaosscheduler.witness import options_for

    class Settings:
        platform = "hosts"
        witness = parse(None, "hosts")

    assert Settings.witness["enabled"] is False
    submitter = {"type": "command", "argv": ["sh", "-c", "{command}"]}
    assert options_for(Settings, {"submitter": submitter})["enabled"] is True
    assert options_for(Settings, {"submitter": submitter, "enabled": False})["enabled"] is False
    Settings.witness = parse(False, "hosts")
    assert options_for(Settings, {"submitter": submitter})["enabled"] is False
    with pytest.raises(ConfigurationError, match="submitter is needed"):
        options_for(type("S", (), {"platform": "hosts", "witness": parse(None, "hosts")}), {"rate": 5})


def test_templates_expand_whole_argv_elements_and_quote_the_command():
    argv = command.argv("w-r-1", 2, "e.log")
    values = {"task": "w-r-1", "command": "sh -c 'x' a", "argv": argv, "duration": 2, "job_ids": ["7", "8"]}
    out = expand(["sbatch", "--job-name={task}", "--wrap", "{command}", "--", "{argv}", "{job_ids}", "x={job_ids}",
                  "{literal}"], values)
    assert out[:4] == ["sbatch", "--job-name=w-r-1", "--wrap", "sh -c 'x' a"]
    assert out[5:5 + len(argv)] == argv and out[-4:] == ["7", "8", "x=7,8", "{literal}"]


def test_the_command_submitter_classifies_outcomes_from_real_processes(tmp_path):
    def submitter(script, **extra):
        options = validate(dict({"type": "command", "argv": ["sh", "-c", script, "fake-sbatch", "{task}", "{command}"],
                                 "timeout": 2}, **extra))
        return CommandSubmitter(options, LocalHost(), "run-1", "e.log")

    argv = command.argv("w-run-1-1", 0, str(tmp_path / "e.log"))
    accepted = submitter('echo "4242;cluster"; sh -c "$2"').submit("w-run-1-1", argv, 0)
    assert accepted["outcome"] == "ok" and accepted["job_id"] == "4242" and accepted["latency"] >= 0
    assert "start w-run-1-1" in (tmp_path / "e.log").read_text()  # the {command} line ran as one shell command
    assert submitter('echo "sbatch: error: invalid partition" >&2; exit 1').submit("t", argv, 0)["outcome"] == "fail"
    assert submitter('echo "Socket timed out on send/recv" >&2; exit 1').submit("t", argv, 0)["outcome"] == "info"
    assert submitter("exit 75").submit("t", argv, 0)["outcome"] == "info"
    assert submitter("sleep 5").submit("t", argv, 0)["outcome"] == "info"  # our timeout: it may have been accepted
    assert submitter("echo").submit("t", argv, 0)["outcome"] == "info"  # exit 0, no job id
    gone = CommandSubmitter(validate({"type": "command", "argv": ["/nonexistent/sbatch", "{command}"]}),
                            LocalHost(), "r", "e")
    assert gone.submit("t", argv, 0)["outcome"] == "fail"


def test_the_command_submitter_reads_completions_and_cancels_in_batches(tmp_path):
    calls = tmp_path / "calls"
    options = validate({"type": "command", "argv": ["true", "{command}"], "batch": 2,
                        "status_argv": ["sh", "-c", 'echo "$*" >> ' + str(calls) + '; for j; do echo "$j|COMPLETED|'
                                        '2026-11-30T10:00:00|node-$j"; done', "st", "{job_ids}"],
                        "status_regex": r"^(?P<job>\d+)\|(?P<state>COMPLETED)\|(?P<at>[^|]*)\|(?P<host>.*)$",
                        "cancel_argv": ["sh", "-c", 'echo "cancel $*" >> ' + str(calls), "sc", "{job_ids}"]})
    sub = CommandSubmitter(options, LocalHost(), "r", "e")
    done = sub.completions({"a": "1", "b": "2", "c": "3"})
    assert sorted((d["task"], d["host"]) for d in done) == [("a", "node-1"), ("b", "node-2"), ("c", "node-3")]
    assert all(d["at"] and d["state"] == "COMPLETED" for d in done)
    assert sub.cleanup({"a": "1", "b": "2", "c": "3"})["errors"] == []
    assert calls.read_text().splitlines() == ["1 2", "3", "cancel 1 2", "cancel 3"]


def test_the_python_submitter(monkeypatch):
    def build(**extra):
        return PythonSubmitter(validate(dict({"type": "python", "function": "tests.fakes.witness_client:submit",
                                              "completions": "tests.fakes.witness_client:completions"}, **extra)))

    answer = build().submit("w-1", ["sh", "-c", "x"], 1.5)
    assert answer["outcome"] == "ok" and answer["job_id"].startswith("job-")
    assert witness_client.ACCEPTED[-1] == ("w-1", ["sh", "-c", "x"], "sh -c x", 1.5)
    assert build(options={"mode": "timeout"}).submit("w-2", ["true"], 1)["outcome"] == "info"
    assert build(options={"mode": "refuse"}).submit("w-3", ["true"], 1)["outcome"] == "fail"
    assert build().completions({"w-1": "job-1"}) == [{"task": "w-1", "at": 1.0, "host": "n1"}]
    assert build().reports_completions


@pytest.mark.parametrize("field, value", [("duplicate_completion", 1.5), ("duplicate_completion", True),
                                          ("duplicate_dispatch", -0.1), ("drop_lost", 1), ("reschedule_delay", -1),
                                          ("reschedule_delay", "30")])
def test_the_broken_knobs_are_validated(field, value):
    with pytest.raises(ConfigurationError, match=field):
        ClusterSpec(**{field: value})


def test_the_broken_knobs_default_off_and_come_from_the_configuration():
    spec = ClusterSpec()
    assert (spec.duplicate_completion, spec.duplicate_dispatch, spec.drop_lost, spec.reschedule_delay) == (0, 0,
                                                                                                          False, 0)
    with pytest.raises(ConfigurationError, match="2 workers"):
        ClusterSpec(workers=1, duplicate_dispatch=1.0)
    settings = config.load({"chaosscheduler_testbed": {"drop_lost": True, "reschedule_delay": 30}})
    assert settings.cluster_spec().drop_lost and settings.cluster_spec().reschedule_delay == 30
