"""Command sources: validation, parsing, rules, host lists and times (pure), the hosts description's ``commands``
and the ``command`` leader source, the worker/task/health forms over canned Slurm output, and the runner's choice
of host (with fake hosts that record what they were asked: no real host is needed to decide where to run)."""

import json
import os
import time

import pytest

from chaosscheduler.errors import ChaosSchedulerError, ConfigurationError
from chaosscheduler.hosts import CommandError, Result
from chaosscheduler.platforms import commands
from chaosscheduler.platforms.hosts_commands import CommandForms
from chaosscheduler.platforms.hosts_config import parse_hosts
from chaosscheduler.platforms.leader import SourceEnv, build, expand, validate

PROFILE = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "vars", "hosts-slurm.json")


def fail(where, message):
    return ConfigurationError(f"{where}: {message}")


def source(**raw):
    return commands.check_source("src", dict({"argv": ["x"]}, **raw), fail)


# ---------------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("raw, message", [
    ({"argv": "sinfo -N"}, "argv"),
    ({"argv": []}, "argv"),
    ({"argv": ["x"], "format": "yaml"}, "format"),
    ({"argv": ["x"], "format": "fields"}, "fields"),
    ({"argv": ["x"], "format": "fields", "fields": ["a b"]}, "fields"),
    ({"argv": ["x"], "format": "regex", "pattern": "(unclosed"}, "not a regular expression"),
    ({"argv": ["x"], "format": "regex", "pattern": "\\S+"}, "named groups"),
    ({"argv": ["x"], "format": "json", "fields": ["a"]}, "fields"),
    ({"argv": ["x"], "timeout": 0}, "timeout"),
    ({"argv": ["x"], "time_format": "rfc"}, "time_format"),
    ({"argv": ["x"], "pattern": "(?P<a>.)"}, "not used by format 'text'"),
    ({"argv": ["x"], "colour": "red"}, "unknown key"),
])
def test_a_bad_source_is_refused_naming_the_key(raw, message):
    with pytest.raises(ConfigurationError, match=message):
        commands.check_source("src", raw, fail)


def test_rules_normalise_and_refuse_bad_regexes():
    assert commands.check_rule("r", "^down", fail) == [{"state": "^down"}]
    assert commands.check_rule("r", {"a": "x", "b": "y"}, fail) == [{"a": "x", "b": "y"}]
    assert commands.check_rule("r", None, fail) is None
    with pytest.raises(ConfigurationError, match="not a regular expression"):
        commands.check_rule("r", {"state": "(["}, fail)
    with pytest.raises(ConfigurationError, match="field names"):
        commands.check_rule("r", [{"state": 3}], fail)


# ---------------------------------------------------------------------------------------------------- parsing
def test_fields_split_each_line_and_keep_the_rest_in_the_last_column():
    spec = source(format="fields", separator="|", fields=["name", None, "reason"])
    records = commands.parse("node1|idle|none\n\nnode2|drained|Kill task failed|x\n", 0, spec)
    assert records == [{"name": "node1", "reason": "none", "exit_status": 0},
                       {"name": "node2", "reason": "Kill task failed|x", "exit_status": 0}]
    spaced = source(format="fields", fields=["id", "state"])
    assert commands.parse("  7   RUNNING \n", 0, spaced) == [{"id": "7", "state": "RUNNING", "exit_status": 0}]


def test_regex_json_and_text_formats():
    log = "[2026-11-30T03:21:56.082] error: Nodes node[1-2] not responding, setting DOWN\n[x] other\n"
    spec = source(format="regex", pattern=r"^\[(?P<at>[^\]]+)\] .*Nodes? (?P<worker>\S+) not responding")
    assert commands.parse(log, 0, spec) == [{"at": "2026-11-30T03:21:56.082", "worker": "node[1-2]",
                                             "exit_status": 0}]
    doc = json.dumps({"nodes": [{"name": "n1", "state": ["IDLE"], "cpus": 4}, {"name": "n2", "state": ["DOWN"]}]})
    spec = source(format="json", items="nodes", fields={"name": "name", "state": "state.0", "slots": "cpus"})
    assert commands.parse(doc, 0, spec) == [{"name": "n1", "state": "IDLE", "slots": 4, "exit_status": 0},
                                            {"name": "n2", "state": "DOWN", "slots": None, "exit_status": 0}]
    assert commands.parse("not json", 1, spec) == []
    assert commands.parse(" ctl1\n", 0, source()) == [{"output": "ctl1", "exit_status": 0}]


def test_rules_match_every_field_of_one_object_or_any_object():
    rule = commands.check_rule("r", [{"state": "^PENDING$", "reason": "held"}, {"state": "^REQUEUE_HOLD$"}], fail)
    assert commands.matches({"state": "PENDING", "reason": "launch failed requeued held"}, rule)
    assert not commands.matches({"state": "PENDING", "reason": "Priority"}, rule)
    assert commands.matches({"state": "REQUEUE_HOLD"}, rule)
    assert not commands.matches({}, rule)
    assert not commands.matches({"state": "x"}, None)
    assert commands.matches({"exit_status": 0}, [{"exit_status": "^0$"}])
    assert commands.matches({"leader": True}, [{"leader": "^true$"}])


def test_host_lists_expand_like_slurm():
    assert commands.expand_hostlist("node[1-3,7],ctl1") == ["node1", "node2", "node3", "node7", "ctl1"]
    assert commands.expand_hostlist("n[08-10]") == ["n08", "n09", "n10"]
    assert commands.expand_hostlist("") == []
    assert commands.expand_hostlist("solo") == ["solo"]


def test_times_parse_iso_local_epoch_and_unknowns():
    local = time.mktime(time.strptime("2026-11-30 03:21:56", "%Y-%m-%d %H:%M:%S"))
    assert commands.timestamp("2026-11-30T03:21:56", "iso") == pytest.approx(local)
    assert commands.timestamp("2026-11-30T03:21:56.500", "iso") == pytest.approx(local + 0.5)
    assert commands.timestamp("2026-11-30T03:21:56+00:00", "iso") == pytest.approx(1796008916.0)
    assert commands.timestamp("1796008916.25", "epoch") == 1796008916.25
    for nothing in ("Unknown", "N/A", "None", "", None, "0", "garbage"):
        assert commands.timestamp(nothing, "iso") is None


# ---------------------------------------------------------------------------------------------------- runner
class FakeHost:
    def __init__(self, name, answers, calls):
        self.name, self.answers, self.calls = name, answers, calls

    def run(self, argv, timeout=30.0, check=True, input=None):
        self.calls.append((self.name, list(argv)))
        answer = self.answers.get(self.name)
        if isinstance(answer, Exception):
            raise answer
        return answer if answer is not None else Result(0, "", "")


def runner(answers, calls):
    masters = [{"name": "ctl1", "host": "h1", "address": "10.0.0.1"}, {"name": "ctl2", "host": "h2",
                                                                        "address": "10.0.0.2"}]
    workers = [{"name": "node1", "host": "h3", "address": "10.0.1.1"}]
    return commands.Runner(lambda name: FakeHost(name, answers, calls), FakeHost("local", answers, calls), masters,
                           workers, expand)


def test_masters_means_the_first_master_host_that_answers():
    calls = []
    r = runner({"ctl1": CommandError(["x"], "connection refused"), "ctl2": Result(0, "ok\n", "")}, calls)
    result, where = r.run(source(on="masters"))
    assert (result.stdout, where) == ("ok\n", "ctl2")
    assert [c[0] for c in calls] == ["ctl1", "ctl2"]
    r = runner({"ctl1": CommandError(["x"], "down"), "ctl2": CommandError(["x"], "down too")}, [])
    with pytest.raises(ChaosSchedulerError, match="no host could run it"):
        r.run(source(on="masters"))


def test_a_failed_cluster_command_raises_instead_of_meaning_no_worker():
    r = runner({"ctl1": Result(1, "", "sinfo: error: Unable to contact slurm controller\n")}, [])
    spec = source(on="masters", format="fields", fields=["name", "state"])
    with pytest.raises(ChaosSchedulerError, match="Unable to contact slurm controller"):
        r.records(spec)


def test_per_node_sources_run_on_every_node_with_its_placeholders_and_keep_failures_apart():
    calls = []
    r = runner({"ctl1": Result(0, "", ""), "ctl2": CommandError(["x"], "no route")}, calls)
    records = r.records(source(on="every-master", argv=["check", "{name}", "{address}"]))
    assert sorted(calls) == [("ctl1", ["check", "ctl1", "10.0.0.1"]), ("ctl2", ["check", "ctl2", "10.0.0.2"])]
    by_node = {rec["node"]: rec for rec in records}
    assert by_node["ctl1"] == {"node": "ctl1", "exit_status": 0, "output": ""}
    assert "no route" in by_node["ctl2"]["error"]
    calls.clear()
    r.run(source(on="local", argv=["scontrol", "update", "nodename={name}"]), node={"name": "node1", "host": "h3",
                                                                                  "address": "10.0.1.1"})
    assert calls == [("local", ["scontrol", "update", "nodename=node1"])]


# ---------------------------------------------------------------------------------------------------- description
def description(**changes):
    with open(PROFILE) as handle:
        hosts = json.load(handle)["configuration"]["chaosscheduler_hosts"]
    hosts.update(changes)
    return parse_hosts(hosts)


def test_the_slurm_profile_is_valid_and_manages_workers_like_masters():
    d = description()
    assert d["leader"]["source"] == "command" and d["leader"]["on"] == "every-master"
    assert all(w["process"]["pid_file"] == "/run/slurmd.pid" for w in d["workers"])
    assert d["commands"]["workers"]["dead"] == [{"state": "^down"}]
    assert d["commands"]["resume_worker"]["argv"][-1] == "state=resume"


def test_heartbeats_go_to_the_registry_unless_the_masters_take_them():
    from chaosscheduler.platforms.hosts import HostsPlatform

    assert HostsPlatform(description()).heartbeat_peers() == ["ctl1", "ctl2"]  # the Slurm profile
    assert HostsPlatform(description(heartbeat_to="registry")).heartbeat_peers() == []
    with pytest.raises(ConfigurationError, match="heartbeat_to"):
        description(heartbeat_to="workers")


@pytest.mark.parametrize("changes, message", [
    ({"commands": {"workers": {"argv": ["sinfo"], "dead": "(["}}}, "commands.workers.dead"),
    ({"commands": {"workers": {"argv": ["sinfo"], "on": "nowhere"}}}, "commands.workers.on"),
    ({"commands": {"jobs": {"argv": ["squeue"]}}}, "unknown key"),
    ({"commands": {"resume_worker": {"argv": "scontrol update"}}}, "resume_worker.argv"),
    ({"worker_process": {"pid_file": "/a", "pattern": "b"}}, "exactly one"),
    ({"leader": {"source": "command", "argv": ["x"], "on": "every-worker"}}, "asked on the masters"),
    ({"leader": {"source": "command", "argv": ["x"], "leads": {"output": "("}}}, "leads"),
    ({"leader": {"source": "command"}}, "argv"),
])
def test_bad_command_settings_are_refused_by_name(changes, message):
    with pytest.raises(ConfigurationError, match=message):
        description(**changes)


# ---------------------------------------------------------------------------------------------------- forms
SINFO = ("node1|mixed|16|Unknown|none\nnode2|down*|16|2026-11-30T03:30:00|Not responding\n"
         "node3|drained|16|2026-11-30T03:31:00|Duplicate jobid\n")
SQUEUE = ("11|RUNNING|node1|None|2026-11-30T03:20:00|2026-11-30T03:20:01\n"
          "12|RUNNING|node[1,3]|None|2026-11-30T03:20:00|2026-11-30T03:20:01\n"
          "13|PENDING||launch failed requeued held|2026-11-30T03:20:00|N/A\n"
          "14|PENDING||Priority|2026-11-30T03:20:00|N/A\n")
DECLARED = "[2026-11-30T03:30:00.250] error: Nodes node2 not responding, setting DOWN\n"


class Canned:
    """A runner that answers with canned Slurm output by command name."""

    def __init__(self, outputs):
        self.outputs = outputs

    def records(self, spec):
        name = spec["argv"][0] if spec["argv"][0] != "sh" else "log"
        return [dict(r, node="ctl1") for r in commands.parse(self.outputs[name], 0, spec)]


def test_workers_tasks_declarations_and_health_from_slurm_output():
    d = description(workers=[{"name": f"node{i}", "host": f"10.50.1.{i}"} for i in (1, 2, 3, 4)])
    forms = CommandForms(d, Canned({"sinfo": SINFO, "squeue": SQUEUE, "log": DECLARED}))
    workers = {w["name"]: w for w in forms.workers()}
    assert workers["node1"]["alive"] and workers["node1"]["running"] == ["11", "12"]
    assert workers["node3"]["running"] == ["12"] and workers["node3"]["unhealthy"]
    assert not workers["node2"]["alive"] and workers["node2"]["declared_dead_at"] == pytest.approx(
        commands.timestamp("2026-11-30T03:30:00"))
    assert workers["node2"]["dead_declarations"] == [pytest.approx(commands.timestamp("2026-11-30T03:30:00.250"))]
    assert workers["node4"] == dict(workers["node4"], alive=False, state="absent")
    assert workers["node1"]["slots"] == 16
    problems = forms.health_problems()
    assert problems[0] == "worker node3 is drained (Duplicate jobid)"
    assert problems[1].startswith("1 task(s) held or stuck: 13 (PENDING: launch failed requeued held)")
    assert len(problems) == 2  # the dead node2 is cluster_health's "not alive", not repeated here


def test_the_command_leader_source_counts_claims_and_reads_the_leaders_own_time():
    options = validate({"source": "command", "argv": ["probe", "{name}"], "format": "regex",
                        "pattern": r"^(?P<since>\S+) (?P<role>\w+)$", "leads": {"role": "^primary$"}})
    masters = [{"name": "ctl1", "host": "h1", "address": "10.0.0.1"}, {"name": "ctl2", "host": "h2",
                                                                        "address": "10.0.0.2"}]

    def source_with(answers):
        calls = []
        r = commands.Runner(lambda name: FakeHost(name, answers, calls), None, masters, [], expand)
        return build(options, SourceEnv(masters=masters, registry=[], runner=r))

    one = source_with({"ctl1": Result(0, "2026-11-30T03:21:56.082 standby\n", ""),
                       "ctl2": Result(0, "2026-11-30T03:22:14.546 primary\n", "")}).leader()
    assert one["leader"] == "ctl2" and one["claims"] == ["ctl2"] and one["leader_source"] == "command"
    assert one["since"] == pytest.approx(commands.timestamp("2026-11-30T03:22:14.546"))
    two = source_with({"ctl1": Result(0, "1 primary\n", ""), "ctl2": Result(0, "2 primary\n", "")}).leader()
    assert two["leader"] is None and two["claims"] == ["ctl1", "ctl2"]
    down = source_with({"ctl1": CommandError(["x"], "no route"), "ctl2": Result(1, "", "")}).leader()
    assert down["leader"] is None and down["claims"] == []
    gone = source_with({"ctl1": CommandError(["x"], "no route"), "ctl2": CommandError(["x"], "no route")}).leader()
    assert gone["leader"] is None and "no master answered" in gone["errors"][0]
