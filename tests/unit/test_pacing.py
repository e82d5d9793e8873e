"""Polite polling and fan-out width: the per-platform defaults and how the configuration sets them (pure)."""

import pytest

from chaosscheduler import config, pacing
from chaosscheduler.errors import ConfigurationError
from chaosscheduler.hosts.fanout import FanOut, describe, failures, timing

HOSTS = {"masters": [{"name": "m1", "host": "198.18.2.1"}, {"name": "m2", "host": "198.18.2.2"},
                     {"name": "m3", "host": "198.18.2.3"}],
         "workers": [{"name": "w1", "host": "198.18.16.1"}], "process": {"listen_port": 8080},
         "leader": {"source": "http", "url": "http://{address}:8080/api/leader", "json_path": "leader"}}
KUBERNETES = {"namespace": "schedule-system", "masters": "app=scheduler-master", "workers": {"app": "scheduler-worker"},
              "leader": {"source": "lease", "name": "scheduler-master"}}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("CHAOSSCHEDULER_PLATFORM", "CHAOSSCHEDULER_CLUSTER", "CHAOSSCHEDULER_HOME",
                 "CHAOSSCHEDULER_POLL_INTERVAL", "CHAOSSCHEDULER_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return monkeypatch


def rate(settings, per_poll=1):
    return per_poll / settings.poll_interval


def test_the_embedded_cluster_is_polled_fast_and_other_platforms_at_most_five_requests_a_second(clean_env):
    testbed = config.load({})
    assert testbed.poll_interval == 0.01 and testbed.poll_interval_default
    hosts = config.load({"chaosscheduler_platform": "hosts", "chaosscheduler_hosts": HOSTS})
    assert hosts.poll_interval_default and rate(hosts) <= pacing.MAX_RATE and hosts.poll_interval <= 0.3
    kubernetes = config.load({"chaosscheduler_platform": "kubernetes", "chaosscheduler_kubernetes": KUBERNETES})
    assert kubernetes.poll_interval_default and rate(kubernetes) <= pacing.MAX_RATE


def test_a_source_that_asks_every_master_polls_more_slowly(clean_env):
    description = dict(HOSTS, leader={"source": "http", "mode": "self", "url": "http://{address}:8080/health",
                                      "json_path": "leader"})
    settings = config.load({"chaosscheduler_platform": "hosts", "chaosscheduler_hosts": description})
    assert pacing.requests_per_poll("hosts", settings.hosts) == 3
    assert rate(settings, 3) <= pacing.MAX_RATE
    assert settings.poll_interval > config.load({"chaosscheduler_platform": "hosts",
                                                 "chaosscheduler_hosts": HOSTS}).poll_interval


@pytest.mark.parametrize("value", [None, "", "default", " null ", "auto"])
def test_null_absent_and_default_words_mean_the_platforms_default(clean_env, value):
    settings = config.load({"chaosscheduler_platform": "hosts", "chaosscheduler_hosts": HOSTS,
                            "chaosscheduler_poll_interval": value, "chaosscheduler_concurrency": value})
    assert settings.poll_interval == pacing.default_poll_interval("hosts", settings.hosts)
    assert settings.poll_interval_default and settings.concurrency == pacing.CONCURRENCY["hosts"]


@pytest.mark.parametrize("value, seconds", [("0.5", 0.5), (" 2 ", 2.0), (1, 1.0), (0.02, 0.02), ("1e-3", 0.001),
                                            (60, 60.0)])
def test_numbers_and_the_strings_an_env_entry_gives_are_accepted(clean_env, value, seconds):
    settings = config.load({"chaosscheduler_poll_interval": value})
    assert settings.poll_interval == seconds and isinstance(settings.poll_interval, float)
    assert not settings.poll_interval_default


def test_the_environment_gives_the_value_when_the_configuration_does_not(clean_env):
    clean_env.setenv("CHAOSSCHEDULER_POLL_INTERVAL", "0.75")
    clean_env.setenv("CHAOSSCHEDULER_CONCURRENCY", "8")
    settings = config.load({})
    assert settings.poll_interval == 0.75 and settings.concurrency == 8
    assert config.load({"chaosscheduler_poll_interval": 0.3}).poll_interval == 0.3  # the configuration wins


@pytest.mark.parametrize("value", ["fast", "0", 0, 61, -1, True, [1], {"s": 1}, float("nan"), "nan"])
def test_bad_intervals_are_refused_naming_the_key(clean_env, value):
    with pytest.raises(ConfigurationError, match="chaosscheduler_poll_interval"):
        config.load({"chaosscheduler_poll_interval": value})


@pytest.mark.parametrize("value", [0, 1025, 2.5, "x", False, [4]])
def test_bad_concurrency_is_refused_naming_the_key(clean_env, value):
    with pytest.raises(ConfigurationError, match="chaosscheduler_concurrency"):
        config.load({"chaosscheduler_concurrency": value})


def test_concurrency_defaults_per_platform_and_is_given_to_the_platform(clean_env):
    assert config.load({}).concurrency == 32
    assert config.load({"chaosscheduler_concurrency": "4"}).concurrency == 4
    from chaosscheduler.platforms import for_settings

    platform = for_settings(config.load({"chaosscheduler_platform": "hosts", "chaosscheduler_hosts": HOSTS,
                                         "chaosscheduler_concurrency": 7}))
    assert platform.concurrency == 7
    assert platform.poll_interval == pacing.default_poll_interval("hosts", platform.description)


# ---------------------------------------------------------------------------------------------------- fan-out
class Slow:
    """A host whose command waits on a barrier of ``parties``: it returns only when that many run at once."""

    def __init__(self, barrier, fail=False):
        self.barrier, self.fail, self.connected = barrier, fail, False

    def connect(self):
        self.connected = True

    def run(self):
        self.barrier.wait(timeout=10)
        if self.fail:
            raise RuntimeError("nft: Operation not permitted\nsecond line")
        return "ok"


def test_the_fan_out_runs_the_step_on_every_host_at_once_and_reports_each_outcome():
    import threading

    barrier = threading.Barrier(6)  # returns only if all six run concurrently (else BrokenBarrierError)
    hosts = {f"w{i}": Slow(barrier, fail=i == 3) for i in range(6)}
    fan = FanOut(hosts, concurrency=6)
    assert fan.connect() == {} and all(h.connected for h in hosts.values())
    done = fan.each(lambda node, host: host.run())
    assert failures(done) == {"w3": "nft: Operation not permitted"}
    assert [n for n, o in done.items() if o.ok] == ["w0", "w1", "w2", "w4", "w5"]
    facts = timing(done)
    assert set(facts["applied_at"]) == {"w0", "w1", "w2", "w4", "w5"}
    assert facts["last_applied_at"] == max(facts["applied_at"].values()) >= facts["first_applied_at"]
    assert facts["applied_spread"] == round(facts["last_applied_at"] - facts["first_applied_at"], 6)
    assert facts["applied_resolution"] >= 0


def test_a_narrow_fan_out_never_runs_more_than_its_width_at_once():
    import threading
    import time

    running, most = [0], [0]
    lock = threading.Lock()

    def step(node, host):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    FanOut({f"h{i}": object() for i in range(12)}, concurrency=3).each(step)
    assert most[0] == 3
    order = []
    FanOut({f"h{i}": object() for i in range(4)}, concurrency=1).each(lambda n, h: order.append(n))
    assert order == ["h0", "h1", "h2", "h3"]  # width 1: one after another, in order


def test_errors_name_the_first_hosts_and_count_the_rest():
    errors = {f"w{i}": "refused" for i in range(8)}
    text = describe(sorted(errors), errors, limit=2)
    assert text.startswith("w0: refused; w1: refused (and 6 more: w2, w3")


@pytest.mark.parametrize("value", [10 ** 400, float("inf"), float("-inf"), "1e999"])
def test_numbers_beyond_any_float_are_refused_as_configuration(value):
    """Hypothesis found 10**200 raising OverflowError on Debian 13 instead of a ConfigurationError."""
    for parse in (pacing.parse_interval, pacing.parse_concurrency):
        with pytest.raises(ConfigurationError, match="out of range"):
            parse(value)
