"""The hosts platform's pure parts: the platform description (validated by name, normalised, no secret values),
argv quoting at the SSH boundary (checked by a real POSIX shell), the remote timer's argv, leader-source options,
answer matching, and counter arithmetic of the metrics forms."""

import json
import subprocess

import pytest

from chaosscheduler import config
from chaosscheduler.errors import ConfigurationError
from chaosscheduler.hosts.ssh import EXPIRY_PREFIX, command_line, timer_argv
from chaosscheduler.metrics.forms import DEFAULT_QUERIES, counter_increase
from chaosscheduler.platforms import for_settings, from_reference
from chaosscheduler.platforms.leader import json_path, match_master, validate
from chaosscheduler.platforms.leader.http import _metric_value


def description(**changes):
    data = {"masters": [{"name": "m1", "host": "10.0.0.1"}, {"name": "m2", "host": "10.0.0.2"}],
            "workers": [{"name": "w1", "host": "10.0.1.1", "slots": 8}],
            "registry": [{"name": "zk1", "host": "10.0.2.1"}],
            "process": {"systemd_unit": "scheduler-master.service"},
            "leader": {"source": "http", "url": "http://{address}:8080/api/leader", "json_path": "leader"}}
    data.update(changes)
    return data


def load(**changes):
    return config.load({"chaosscheduler_platform": "hosts", "chaosscheduler_hosts": description(**changes)})


# ---------------------------------------------------------------------------------------------------- description
def test_a_description_is_normalised_with_every_default():
    hosts = load().hosts
    m1 = hosts["masters"][0]
    assert m1["address"] == "10.0.0.1" and m1["ssh"]["user"] == "root" and m1["ssh"]["port"] == 22
    assert m1["process"]["systemd_unit"] == "scheduler-master.service" and m1["process"]["pid_file"] is None
    assert hosts["workers"][0]["slots"] == 8 and hosts["slots"] == 4
    assert hosts["exempt_tcp_ports"] == [22]
    assert hosts["leader"] == {"source": "http", "url": "http://{address}:8080/api/leader", "mode": "name",
                               "json_path": "leader", "since_path": None, "value": True, "metric": None,
                               "names": None, "timeout": 1.0, "token_secret": None}
    assert hosts["metrics"]["queries"] == {} and hosts["metrics"]["timeout"] == 5.0
    json.dumps(hosts)  # the ledger stores it as it is


def test_node_settings_override_the_shared_ones():
    hosts = load(ssh={"user": "chaos", "sudo": True, "port": 2222},
                 masters=[{"name": "m1", "host": "10.0.0.1", "ssh": {"port": 22},
                           "process": {"pid_file": "/run/{name}.pid"}}]).hosts
    m1 = hosts["masters"][0]
    assert m1["ssh"] == dict(m1["ssh"], user="chaos", sudo=True, port=22)
    assert m1["process"]["pid_file"] == "/run/{name}.pid" and m1["process"]["systemd_unit"] is None
    assert hosts["workers"][0]["ssh"]["port"] == 2222
    assert hosts["exempt_tcp_ports"] == [22, 2222]


@pytest.mark.parametrize("changes,named", [
    ({"masters": []}, "masters"),
    ({"colour": "red"}, "colour"),
    ({"process": {}}, "process"),
    ({"process": {"pid_file": "/a", "listen_port": 80}}, "exactly one"),
    ({"process": {"systemd_unit": "x", "restart_command": "systemctl start x"}}, "argv"),
    ({"process": {"pattern": "("}}, "regular expression"),
    ({"ssh": {"key_secret": "-----BEGIN OPENSSH PRIVATE KEY-----"}}, "name a secret"),
    ({"ssh": {"user": "root; rm -rf /"}}, "login name"),
    ({"ssh": {"port": 0}}, "port"),
    ({"masters": [{"name": "m1", "host": "10.0.0.1"}, {"name": "m1", "host": "10.0.0.2"}]}, "used twice"),
    ({"masters": [{"name": "m1", "host": "10.0.0.1", "address": "not-an-ip"}]}, "IP address"),
    ({"leader": {"source": "carrier-pigeon"}}, "leader.source"),
    ({"leader": {"source": "http"}}, "url"),
    ({"leader": {"source": "http", "url": "ftp://x"}}, "http"),
    ({"leader": {"source": "promql", "querry": "x"}}, "querry"),
    ({"leader": {"source": "etcd", "key": "/l", "mode": "vote"}}, "mode"),
    ({"metrics": {"queries": {"workers_alvie": "x"}}}, "workers_alvie"),
    ({"metrics": {"token_secret": "Bearer abc def"}}, "name a secret"),
    ({"connect_netns": "../../etc"}, "connect_netns"),
])
def test_a_bad_description_is_refused_naming_what_is_wrong(changes, named):
    with pytest.raises(ConfigurationError, match="chaosscheduler_hosts") as caught:
        load(**changes)
    assert named in str(caught.value)


def test_the_hosts_platform_needs_a_description():
    with pytest.raises(ConfigurationError, match="needs chaosscheduler_hosts"):
        config.load({"chaosscheduler_platform": "hosts"})


def test_the_experiments_declare_the_keys_a_var_file_overrides_and_still_load_for_the_testbed():
    for name in ("master-crash", "network-partition", "worker-disconnect"):
        with open(f"experiments/{name}.json") as handle:
            declared = json.load(handle)["configuration"]
        assert declared["chaosscheduler_hosts"] is None and declared["prometheus_base_url"] is None
        settings = config.load({k: v for k, v in declared.items() if not isinstance(v, dict) or "type" not in v})
        assert settings.platform == "testbed" and settings.hosts is None


@pytest.mark.parametrize("name", ["hosts-homegrown.json", "hosts-dolphinscheduler.json", "hosts-nomad.json",
                                  "hosts-slurm.json"])
def test_the_example_var_files_are_valid_descriptions(name):
    with open(f"experiments/vars/{name}") as handle:
        data = json.load(handle)
    settings = config.load(data["configuration"])
    assert settings.platform == "hosts" and settings.hosts["masters"]
    # workers are read from metrics or from the scheduler's own commands
    assert settings.prometheus_base_url or settings.hosts["commands"]["workers"]
    # a var file never run against its platform says so (the Slurm one runs in the test suite)
    assert ("UNTESTED" in data.get("_status", "")) == (name in ("hosts-dolphinscheduler.json", "hosts-nomad.json"))


def test_the_platform_reference_rebuilds_the_same_platform_without_secrets():
    settings = load(ssh={"key_secret": "ssh_key"})
    platform = for_settings(settings, {"ssh_key": "PRIVATE KEY TEXT"})
    reference = platform.reference()
    assert "PRIVATE KEY TEXT" not in json.dumps(reference)
    rebuilt = from_reference(json.loads(json.dumps(reference)))
    assert rebuilt.reference() == reference
    assert rebuilt.masters() == ["m1", "m2"] and rebuilt.worker_names() == ["w1"] and rebuilt.registry() == ["zk1"]
    assert rebuilt.address("w1") == "10.0.1.1" and rebuilt.exempt_tcp_ports() == [22]


# ---------------------------------------------------------------------------------------------------- SSH boundary
NASTY = ["a b", "$(touch /tmp/pwned)", "'quoted'", '"double"', "semi;colon", "back`tick`", "*", "", "new\nline",
         "-n", "\\", "ünï"]


def test_argv_survives_the_remote_shell_element_by_element():
    line = command_line(["printf", "[%s]"] + NASTY)
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True).stdout
    assert out == "".join(f"[{a}]" for a in NASTY)


def test_sudo_is_put_in_front_without_a_shell():
    line = command_line(["nft", "-f", "-"], sudo=True)
    assert line == "sudo -n -- nft -f -"


def test_an_empty_argv_or_nul_bytes_are_refused():
    with pytest.raises(ValueError):
        command_line([])
    with pytest.raises(ValueError):
        command_line(["echo", "a\0b"])


def test_the_remote_timer_runs_its_argv_after_the_delay_detached(tmp_path):
    target = tmp_path / "done"
    argv = timer_argv("fabc123", 0.2, ["touch", str(target)])
    assert argv[:5] == ["setsid", "-f", "sh", "-c", argv[4]] and argv[5] == EXPIRY_PREFIX + "fabc123"
    started = subprocess.run(["sh", "-c", command_line(argv)], capture_output=True, timeout=5)
    assert started.returncode == 0 and not target.exists()  # returned at once, runs later
    from chaosscheduler.timing import wait_until

    wait_until(target.exists, 5, message="the timer's command ran")


def test_a_timer_marker_must_be_safe():
    with pytest.raises(ValueError):
        timer_argv("x; reboot", 1, ["true"])


# ---------------------------------------------------------------------------------------------------- leader sources
def test_answers_are_matched_to_masters_by_name_host_address_or_instance():
    masters = [{"name": "m1", "host": "a.example", "address": "10.0.0.1", "metrics_instance": None},
               {"name": "m2", "host": "b.example", "address": "10.0.0.2", "metrics_instance": "m2:9100"}]
    assert match_master("m1", masters) == "m1"
    assert match_master("10.0.0.2:8080", masters) == "m2"
    assert match_master("http://b.example:5678", masters) == "m2"
    assert match_master("m2:9100", masters) == "m2"
    assert match_master("10.9.9.9:1", masters) is None and match_master(None, masters) is None
    assert match_master("42", masters, names={"42": "m1"}) == "m1"


def test_json_paths_walk_objects_and_lists():
    doc = {"data": {"masters": [{"host": "h1"}, {"host": "h2", "leader": True}]}}
    assert json_path(doc, "data.masters.1.host") == "h2"
    assert json_path(doc, "data.nope.x") is None and json_path(doc, "") is doc


def test_metric_values_are_read_from_a_prometheus_text_page():
    page = "# HELP x\netcd_server_is_leader 1\netcd_server_is_leader_changes 3\nup{job=\"a\"} 0\n"
    assert _metric_value(page, "etcd_server_is_leader") == 1.0
    assert _metric_value(page, "up") == 0.0 and _metric_value(page, "missing") is None


def test_every_source_validates_its_own_options():
    assert validate({"source": "promql"})["query"] == "scheduler_is_leader == 1"
    assert validate({"source": "etcd", "key": "/cs/leader"})["mode"] == "key"
    assert validate({"source": "zookeeper", "path": "/ds/lock/masters"})["mode"] == "election"
    with pytest.raises(ConfigurationError, match="needs option 'key'"):
        validate({"source": "etcd"})


# ---------------------------------------------------------------------------------------------------- metrics forms
def test_counter_increase_counts_across_resets():
    assert counter_increase([(0, 5), (1, 7), (2, 7), (3, 2), (4, 4)]) == 2 + 0 + 2 + 2
    assert counter_increase([(0, 3)]) == 0


def test_the_default_queries_use_the_embedded_cluster_metric_names():
    assert "scheduler_is_leader" in DEFAULT_QUERIES["workers_alive"]
    assert DEFAULT_QUERIES["tasks_rescheduled"] == "scheduler_task_rescheduled_total"
