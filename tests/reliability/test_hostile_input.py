"""Hostile input: property-based tests (hypothesis) over every activity's arguments and over the configuration —
shell metacharacters, spaces, unicode, very long strings, wrong types, missing and unknown keys — against a real
cluster. Every call ends in a one-line ``ActivityFailed`` (``ConfigurationError`` for ``config.load``) or in a
correct result; whatever a call injected is undone and nothing is left open. And no command is ever built as a
string for a shell: a scan of the package's syntax trees.

``CHAOSSCHEDULER_HYPOTHESIS_EXAMPLES`` sets the examples per test (default 40).
"""

import ast
import inspect
import json
import math
import os
import uuid

import pytest
from chaoslib.exceptions import ActivityFailed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaosscheduler import actions, config, probes, rollbacks
from chaosscheduler.errors import ConfigurationError
from chaosscheduler.faults import undo_open
from chaosscheduler.ledger import OPEN_STATES

from . import harness
from .conftest import REAL, start_env, stop_env

EXAMPLES = int(os.environ.get("CHAOSSCHEDULER_HYPOTHESIS_EXAMPLES", "40"))
MAX_MESSAGE = 600
PACKAGE = os.path.join(harness.ROOT, "chaosscheduler")
CANARY = "/tmp/cs-pwned"  # what the injection strings try to create

SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

METACHARACTERS = list(";|&$`'\"\\<>(){}[]*?!~#%^=,\n\t\r\x00 ")
NASTY = [f"$(touch {CANARY})", f"`touch {CANARY}`", f"worker-1; touch {CANARY}", "worker-1 && id", "worker-1|id",
         "../../etc/passwd", "--help", "-h", "-1", "", " ", "0", "00", "1e309", "nan", "inf", "-inf", "NaN",
         "worker-\uff11", "\uff57orker-1", "worker-1\x00", "leader\n", " all", "all ", "ALL", "Leader",
         "master-1,master-1", "50%%", "50 %", "\u0661\u0660%", "\u221e", "\U0001f4a5", "\u017figkill", "SIGKILL\x00",
         "9", "-9", "SIG", "\u202eworker-1", "worker-1,", ",", "%", "100.5%", "1" * 400]


def hostile_text():
    return st.one_of(st.sampled_from(NASTY),
                     st.text(alphabet=st.sampled_from(METACHARACTERS + list("workmastel-1%")), max_size=40),
                     st.text(max_size=40),
                     st.builds(lambda piece, n: piece * n,
                               st.sampled_from(["a", "\u00e9", "$(id)", "worker-1,", "\U0001f4a5", "9"]),
                               st.integers(200, 20000)))


def wrong_type():
    return st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 80, max_value=2 ** 80),
                     st.just(10 ** 400), st.just(-10 ** 400),
                     st.floats(allow_nan=True, allow_infinity=True),
                     st.lists(st.one_of(st.text(max_size=8), st.integers(), st.none()), max_size=4),
                     st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
                     st.binary(max_size=8), st.tuples(st.integers()))


SHORT = st.floats(min_value=0, max_value=2)  # valid waits stay short, so a valid call never waits long
VALID = {
    "target": st.sampled_from(["leader", "follower", "random", "master-1", "master-3"]),
    "signal": st.sampled_from(["SIGKILL", "SIGTERM", "SIGSTOP", "KILL", 9, 15, 19]),
    "duration": st.floats(min_value=0.5, max_value=30),
    "allow_last": st.booleans(), "dry_run": st.booleans(),
    "workers": st.sampled_from(["all", "1", 1, 2, "50%", "worker-1", ["worker-1", "worker-2"], "worker-1,worker-3"]),
    "peers": st.sampled_from(["masters", "registry", "all", "master-1", "etcd-1,master-2"]),
    "mode": st.sampled_from(["drop", "loss", "latency"]), "loss": st.floats(min_value=0.01, max_value=1),
    "latency_ms": st.floats(min_value=1, max_value=1000), "direction": st.sampled_from(["both", "to", "from"]),
    "worker": st.sampled_from(["busiest", "random", "worker-1", "worker-4"]),
    "timeout": SHORT, "deadline": SHORT, "window": SHORT, "settle": SHORT, "grace": SHORT,
    "quantile": st.floats(min_value=0, max_value=1), "fault_id": st.just(""),
    "scope": st.sampled_from(["run", "all"]),
    "allow_rerun_after_loss": st.booleans(), "failback_timeout": SHORT, "heartbeat_interval": SHORT,
    "heartbeat_timeout": SHORT, "report_grace": SHORT,
}


def argument(name: str):
    return st.one_of(VALID[name], hostile_text(), wrong_type())


def arguments(func):
    """A mix: valid arguments (a correct run), valid ones with one hostile value, anything at all, and an unknown
    keyword argument."""
    names = [p for p in inspect.signature(func).parameters if p not in ("configuration", "secrets")]
    valid = st.fixed_dictionaries({}, optional={name: VALID[name] for name in names})
    anything = st.fixed_dictionaries({}, optional={name: argument(name) for name in names})
    unknown = st.dictionaries(st.sampled_from(["bogus", "Target", "timeout_", "__class__"]), wrong_type(),
                              min_size=1, max_size=1)
    mixes = [valid, anything, st.tuples(valid, unknown).map(lambda pair: {**pair[1], **pair[0]})]
    if names:
        mixes.append(st.tuples(valid, st.sampled_from(names), st.one_of(hostile_text(), wrong_type()))
                     .map(lambda t: {**t[0], t[1]: t[2]}))
    return st.one_of(*mixes)


ACTIVITIES = [getattr(m, n) for m in (actions, probes, rollbacks) for n in m.__all__]
OUTCOMES = {}  # activity -> [results, refusals], printed with -s


@pytest.fixture(scope="module")
def cluster_env():
    """No load generator: probes answer at once (no task to wait for), and a valid call never waits long."""
    env = start_env(load_rate=0, task_duration=1.0)
    yield env
    stop_env(env)
    if OUTCOMES:
        print("\nhostile input, per activity: [correct results, clear refusals]\n" +
              "\n".join(f"  {name}: {counts}" for name, counts in sorted(OUTCOMES.items())))


def call_and_clean(env, func, kwargs, configuration=None):
    """Call ``func``; it must return JSON or raise a one-line ActivityFailed. Undo what it injected; nothing stays
    open."""
    config.set_current_run(f"hostile-{uuid.uuid4().hex[:8]}")  # probes see no earlier example's fault
    known = {r["id"] for r in env.ledger.all()}
    counts = OUTCOMES.setdefault(func.__name__, [0, 0])
    try:
        result = func(**kwargs, configuration=env.cfg() if configuration is None else configuration)
    except ActivityFailed as e:
        counts[1] += 1
        message = str(e)
        assert message.startswith(f"{func.__name__}: "), message[:300]
        assert "\n" not in message and len(message) <= MAX_MESSAGE, message[:300]
        new = [r for r in env.ledger.all() if r["id"] not in known]
        assert all(r["state"] not in OPEN_STATES for r in new), f"a refused call left {new}"
    else:
        counts[0] += 1
        json.dumps(result, allow_nan=False)
        if isinstance(result, float):
            assert math.isfinite(result)
    finally:
        config.set_current_run(None)
        undone = undo_open(env.ledger)
        assert undone["errors"] == [], undone
    assert env.ledger.open_faults() == []
    assert not os.path.exists(CANARY), "a hostile string was run by a shell"


@pytest.mark.parametrize("func", ACTIVITIES, ids=[f.__name__ for f in ACTIVITIES])
def test_every_activity_refuses_hostile_arguments_clearly_and_leaves_nothing(env, func):
    @SETTINGS
    @given(kwargs=arguments(func))
    def check(kwargs):
        call_and_clean(env, func, kwargs)

    check()
    assert env.tables() == {}, "a table of ours is left"


# ---------------------------------------------------------------------------------------------------- configuration
KEYS = {
    "platform": st.sampled_from(["testbed", "hosts", "kubernetes", "TESTBED", ""]),
    "cluster": st.sampled_from(["default", "a", "nosuch1", "UPPER", "a-b", "abcdefghijklm", "1abc"]),
    "home": st.sampled_from(["", "relative/dir", "/nonexistent/x\x00y"]),
    "testbed": st.one_of(st.dictionaries(st.sampled_from(["masters", "workers", "etcd_members", "election_ttl",
                                                          "heartbeat_ttl", "slots", "network", "bogus", "name"]),
                                         st.one_of(st.integers(-5, 10 ** 6), hostile_text(), wrong_type()),
                                         max_size=3), wrong_type()),
    "hosts": st.one_of(st.just({"masters": [{"name": "m1", "host": "127.0.0.1"}]}),
                       st.just({"masters": [{"name": "m1", "host": "127.0.0.1", "process": {"pattern": "(("}}]}),
                       st.fixed_dictionaries({"masters": st.lists(st.fixed_dictionaries(
                           {"name": hostile_text(), "host": st.sampled_from(["127.0.0.1", "::1", 5, None])}),
                           max_size=2)}),
                       wrong_type()),
    "max_worker_share": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 3)),
    "poll_interval": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 100)),
}


def configurations(env):
    def value(key):
        return st.one_of(KEYS[key], hostile_text(), wrong_type())

    optional = {f"chaosscheduler_{k}": value(k) for k in KEYS}
    optional["prometheus_base_url"] = st.one_of(st.sampled_from(["http://127.0.0.1:9", "ftp://x", "http://"]),
                                                hostile_text(), wrong_type())
    optional["chaosscheduler_bogus"] = wrong_type()
    base = st.fixed_dictionaries({}, optional=optional)
    return st.one_of(base, wrong_type(), hostile_text())


def test_configuration_loading_refuses_hostile_values_with_a_configuration_error(env, monkeypatch, tmp_path):
    monkeypatch.setenv("CHAOSSCHEDULER_HOME", env.home)  # a missing key never reaches a real state home
    monkeypatch.delenv("CHAOSSCHEDULER_CLUSTER", raising=False)
    monkeypatch.delenv("CHAOSSCHEDULER_PLATFORM", raising=False)
    monkeypatch.chdir(tmp_path)

    @SETTINGS
    @given(configuration=configurations(env))
    def check(configuration):
        try:
            settings_ = config.load(configuration)
        except ConfigurationError as e:
            assert "\n" not in str(e).strip()
        else:
            assert settings_.platform in config.PLATFORMS

    check()


@pytest.mark.parametrize("func", [actions.kill_master, actions.partition_workers, probes.cluster_health,
                                  rollbacks.undo_all_faults], ids=lambda f: f.__name__)
def test_activities_refuse_a_hostile_configuration_and_touch_nothing(env, func, monkeypatch, tmp_path):
    monkeypatch.setenv("CHAOSSCHEDULER_HOME", env.home)
    monkeypatch.delenv("CHAOSSCHEDULER_CLUSTER", raising=False)
    monkeypatch.delenv("CHAOSSCHEDULER_PLATFORM", raising=False)
    monkeypatch.chdir(tmp_path)
    before = env.ledger.all()

    @SETTINGS
    @given(configuration=configurations(env))
    def check(configuration):
        kwargs = {"dry_run": True} if func in (actions.kill_master, actions.partition_workers) else {}
        call_and_clean(env, func, kwargs, configuration=configuration)

    check()
    assert [r for r in env.ledger.all() if r not in before] == []
    assert env.tables() == {}
    assert os.listdir(tmp_path) == [], "a relative state home was created in the working directory"


# ---------------------------------------------------------------------------------------------------- no shell
SHELL_RUNNERS = {("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "execlp"), ("os", "spawnl"),
                 ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
                 ("asyncio", "create_subprocess_shell")}
SUBPROCESS = {"run", "Popen", "call", "check_call", "check_output"}


def _name(node) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def shell_uses(path: str):
    """Calls in ``path`` that run a shell: os.system/os.popen & co, subprocess with shell=True, subprocess with a
    str (or f-string, or concatenation) as the command, exec_command/run of a string built by interpolation."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        parts = tuple(name.split(".")[-2:])
        where = f"{os.path.relpath(path, harness.ROOT)}:{node.lineno}"
        if parts in SHELL_RUNNERS:
            found.append(f"{where}: {name}()")
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                found.append(f"{where}: {name}(shell=...)")
        if parts[-1] in SUBPROCESS and parts[0] in ("subprocess", "asyncio") and node.args:
            command = node.args[0]
            if isinstance(command, (ast.JoinedStr, ast.BinOp)) or (
                    isinstance(command, ast.Constant) and isinstance(command.value, str)):
                found.append(f"{where}: {name}() with a string command")
            if isinstance(command, ast.Call) and _name(command.func).endswith(".format"):
                found.append(f"{where}: {name}() with a formatted string command")
    return found


def test_no_command_is_ever_built_for_a_shell():
    files = [os.path.join(d, f) for d, _, fs in os.walk(PACKAGE) for f in fs if f.endswith(".py")]
    assert len(files) > 30
    found = [use for path in files for use in shell_uses(path)]
    assert found == [], "\n".join(found)


def test_the_shell_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os, subprocess\n"
                   "os.system('id')\n"
                   "subprocess.run('ls -l', shell=True)\n"
                   "subprocess.Popen(f'nft list table {name}')\n"
                   "subprocess.check_output('id')\n"
                   "subprocess.run(['nft', 'list', 'tables'])\n")
    found = shell_uses(str(bad))
    assert len(found) == 5, found  # the argv list on the last line is fine


def test_remote_commands_quote_every_argument():
    """The one place a command line exists: SSH, where the remote shell parses it. Every element is quoted."""
    from chaosscheduler.hosts import ssh

    line = ssh.command_line(["nft", "delete", "table", "inet", "x; touch /tmp/cs-pwned", "$(id)"], sudo=False) \
        if hasattr(ssh, "command_line") else None
    if line is None:
        pytest.skip("chaosscheduler.hosts.ssh has no command_line() to check")
    import shlex

    assert shlex.split(line) == ["nft", "delete", "table", "inet", "x; touch /tmp/cs-pwned", "$(id)"]


pytestmark = REAL + [pytest.mark.integration]
