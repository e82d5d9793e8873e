"""The fault ledger (record before inject, atomic, locked, readable by every process) and the configuration loader
(every key validated by name, environment defaults, unknown keys refused)."""

import json
import multiprocessing
import os
import time

import pytest

from chaosscheduler import _files, config
from chaosscheduler.errors import ConfigurationError, LedgerError
from chaosscheduler.ledger import KEEP_SECONDS, OPEN_STATES, Ledger, new_fault_id
from chaosscheduler.testbed.spec import default_home

FORK = multiprocessing.get_context("fork")


@pytest.fixture
def ledger(tmp_path):
    return Ledger(str(tmp_path / "home"))


def fault(**fields):
    record = {"id": new_fault_id(), "kind": "network", "action": "isolate_worker", "targets": ["worker-1"],
              "run_id": "run-a"}
    record.update(fields)
    return record


# ---------------------------------------------------------------------------------------------------- ids
def test_fault_ids_are_unique_and_safe_for_table_and_file_names():
    ids = {new_fault_id() for _ in range(2000)}
    assert len(ids) == 2000
    for fid in ids:
        assert fid[0] == "f" and len(fid) == 12 and fid.isalnum() and fid == fid.lower()


# ---------------------------------------------------------------------------------------------------- basic API
def test_an_absent_ledger_is_empty_and_not_created_by_reading(ledger):
    assert ledger.all() == [] and ledger.open_faults() == []
    assert ledger.latest(["network"]) is None
    assert not os.path.exists(ledger.path)


def test_record_stores_a_recorded_fault_with_its_creation_time(ledger):
    before = time.time()
    stored = ledger.record(fault(id="fa1"))
    assert stored["state"] == "recorded" and before <= stored["created_at"] <= time.time()
    assert ledger.get("fa1") == stored
    with open(ledger.path) as handle:
        assert json.load(handle)["faults"]["fa1"]["state"] == "recorded"


def test_record_keeps_a_given_creation_time(ledger):
    assert ledger.record(fault(id="fa1", created_at=123.0))["created_at"] == 123.0


def test_record_ignores_a_state_given_by_the_caller(ledger):
    assert ledger.record(fault(id="fa1", state="undone"))["state"] == "recorded"
    assert [f["id"] for f in ledger.open_faults()] == ["fa1"]


def test_a_duplicate_id_is_refused_and_the_first_record_kept(ledger):
    ledger.record(fault(id="fa1", targets=["worker-1"]))
    with pytest.raises(LedgerError, match="fa1"):
        ledger.record(fault(id="fa1", targets=["worker-2"]))
    assert ledger.get("fa1")["targets"] == ["worker-1"]


def test_update_changes_fields_and_returns_the_record(ledger):
    ledger.record(fault(id="fa1"))
    updated = ledger.update("fa1", state="active", started_at=10.0, deadline=12.0)
    assert updated["state"] == "active" and updated["deadline"] == 12.0
    assert ledger.get("fa1")["started_at"] == 10.0


def test_update_with_changes_nested_fields_under_the_lock(ledger):
    ledger.record(fault(id="fa1"))
    ledger.update_with("fa1", lambda r: r.setdefault("measurements", {}).update(a={"value": 1}))
    ledger.update_with("fa1", lambda r: r["measurements"].update(b={"value": 2}))
    assert ledger.get("fa1")["measurements"] == {"a": {"value": 1}, "b": {"value": 2}}


@pytest.mark.parametrize("call", [lambda lg: lg.update("fnope", state="active"),
                                  lambda lg: lg.update_with("fnope", lambda r: None),
                                  lambda lg: lg.get("fnope")])
def test_unknown_fault_ids_raise_ledger_error(ledger, call):
    ledger.record(fault(id="fa1"))
    with pytest.raises(LedgerError, match="fnope"):
        call(ledger)


def test_all_is_oldest_first(ledger):
    for i, created in enumerate([30.0, 10.0, 20.0]):
        ledger.record(fault(id=f"fa{i}", created_at=time.time() - created))
    assert [f["id"] for f in ledger.all()] == ["fa0", "fa2", "fa1"]


def test_open_faults_are_recorded_or_active_and_match_fields(ledger):
    for fid, state in [("fa1", None), ("fa2", "active"), ("fa3", "undone"), ("fa4", "expired"),
                       ("fa5", "failed")]:
        ledger.record(fault(id=fid, run_id="run-a" if fid != "fa2" else "run-b"))
        if state:
            ledger.update(fid, state=state)
    assert OPEN_STATES == ("recorded", "active")
    assert [f["id"] for f in ledger.open_faults()] == ["fa1", "fa2"]
    assert [f["id"] for f in ledger.open_faults(run_id="run-b")] == ["fa2"]
    assert ledger.open_faults(run_id="run-c") == []


def test_latest_is_the_newest_injected_fault_of_the_kinds_and_run(ledger):
    now = time.time()
    ledger.record(fault(id="fa1", kind="process", created_at=now - 5))
    ledger.update("fa1", started_at=now - 5, state="undone")
    ledger.record(fault(id="fa2", kind="network", created_at=now - 4))
    ledger.update("fa2", started_at=now - 4, state="active")
    ledger.record(fault(id="fa3", kind="network", run_id="run-b", created_at=now - 3))
    ledger.update("fa3", started_at=now - 3)
    ledger.record(fault(id="fa4", kind="network", created_at=now - 2))  # recorded, never injected
    assert ledger.latest(["network"])["id"] == "fa3"
    assert ledger.latest(["network"], run_id="run-a")["id"] == "fa2"
    assert ledger.latest(["process", "network"], run_id="run-a")["id"] == "fa2"
    assert ledger.latest(["process"])["id"] == "fa1"
    assert ledger.latest(["latency"]) is None
    assert ledger.latest(["network"], run_id="run-a", action="kill_master") is None


def test_old_closed_records_are_pruned_but_old_open_ones_kept(ledger):
    old = time.time() - KEEP_SECONDS - 60
    ledger.record(fault(id="fold1", created_at=old))
    ledger.update("fold1", state="undone")
    ledger.record(fault(id="fold2", created_at=old))
    ledger.update("fold2", state="active")
    ledger.record(fault(id="fnew"))
    assert [f["id"] for f in ledger.all()] == ["fold2", "fnew"]


def test_the_ledger_is_plain_versioned_json(ledger):
    ledger.record(fault(id="fa1"))
    with open(ledger.path) as handle:
        data = json.load(handle)
    assert data["version"] == 1 and set(data["faults"]) == {"fa1"}


# ---------------------------------------------------------------------------------------------------- atomic writes
def _tmp_files(directory: str) -> list:
    return [n for n in os.listdir(directory) if n.startswith(".tmp-")]


def test_every_write_replaces_the_file_and_leaves_no_temporary(ledger):
    ledger.record(fault(id="fa1"))
    with open(ledger.path) as old:  # held open: the old file stays readable (and its inode is not reused)
        before = old.read()
        for i in range(20):
            ledger.update("fa1", step=i)
        old.seek(0)
        assert old.read() == before, "the ledger was rewritten in place, not replaced"
        assert os.fstat(old.fileno()).st_nlink == 0, "the old ledger file was not replaced by a rename"
    assert _tmp_files(ledger.home) == []
    assert ledger.get("fa1")["step"] == 19


def test_a_crash_while_writing_leaves_the_previous_ledger_intact(ledger, monkeypatch):
    ledger.record(fault(id="fa1"))
    with open(ledger.path, "rb") as handle:
        before = handle.read()

    def torn_dump(data, handle, **kwargs):
        handle.write('{"version": 1, "faults": {"fa1": {"id": "fa1", "sta')
        handle.flush()
        raise OSError("disk full")

    monkeypatch.setattr(_files.json, "dump", torn_dump)
    with pytest.raises(OSError, match="disk full"):
        ledger.update("fa1", state="active")
    monkeypatch.undo()
    with open(ledger.path, "rb") as handle:
        assert handle.read() == before
    assert _tmp_files(ledger.home) == []
    assert ledger.get("fa1")["state"] == "recorded"


def _hammer(home: str, fault_id: str, count: int) -> None:
    lg = Ledger(home)
    for i in range(count):
        lg.update(fault_id, step=i, padding="x" * 20000)


def test_readers_without_the_lock_never_see_a_torn_file(ledger):
    ledger.record(fault(id="fa1"))
    writer = FORK.Process(target=_hammer, args=(ledger.home, "fa1", 150))
    writer.start()
    reads = 0
    try:
        while writer.is_alive() or reads == 0:
            with open(ledger.path) as handle:
                json.load(handle)  # a torn file would raise here
            reads += 1
    finally:
        writer.join(60)
    assert writer.exitcode == 0 and reads > 0
    assert ledger.get("fa1")["step"] == 149


# ---------------------------------------------------------------------------------------------------- corruption
@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00garbage", b'{"version": 1, "faults": {"f',
                                     b"[]", b'{"version": 1}', b'{"version": 1, "faults": []}', b'"ledger"',
                                     b"null"])
def test_a_corrupt_ledger_raises_ledger_error_pointing_at_heal_from_hosts(ledger, content):
    os.makedirs(ledger.home)
    with open(ledger.path, "wb") as handle:
        handle.write(content)
    for call in (ledger.all, ledger.open_faults, lambda: ledger.get("fa1"), lambda: ledger.record(fault()),
                 lambda: ledger.update("fa1", state="active")):
        with pytest.raises(LedgerError) as info:
            call()
        message = str(info.value)
        assert "heal --from-hosts" in message and ledger.path in message
        assert "\n" not in message
    with open(ledger.path, "rb") as handle:
        assert handle.read() == content, "a corrupt ledger must be left as it is (evidence), not overwritten"


# ---------------------------------------------------------------------------------------------------- concurrency
def _writer(home: str, tag: str, count: int, counter_id: str) -> None:
    lg = Ledger(home)
    for i in range(count):
        record = lg.record({"id": f"f{tag}{i:04d}", "kind": "network", "action": "isolate_worker",
                            "targets": [f"worker-{tag}"], "run_id": tag})
        lg.update(record["id"], state="active", started_at=time.time())
        lg.update_with(counter_id, lambda r: r.update(count=r.get("count", 0) + 1))


def test_concurrent_writers_in_several_processes_lose_no_record(ledger):
    ledger.record({"id": "fcounter", "kind": "network", "targets": [], "run_id": "x"})
    processes, per_process = 6, 25
    workers = [FORK.Process(target=_writer, args=(ledger.home, str(p), per_process, "fcounter"))
               for p in range(processes)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(120)
    assert [proc.exitcode for proc in workers] == [0] * processes
    records = {f["id"]: f for f in ledger.all()}
    expected = {f"f{p}{i:04d}" for p in range(processes) for i in range(per_process)}
    assert expected <= set(records), f"lost: {sorted(expected - set(records))[:10]}"
    assert all(records[fid]["state"] == "active" for fid in expected), "an update was lost"
    assert records["fcounter"]["count"] == processes * per_process, "a read-modify-write was lost"
    assert _tmp_files(ledger.home) == []


# ---------------------------------------------------------------------------------------------------- config.load
@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("CHAOSSCHEDULER_PLATFORM", "CHAOSSCHEDULER_CLUSTER", "CHAOSSCHEDULER_HOME",
                 "CHAOSSCHEDULER_POLL_INTERVAL", "CHAOSSCHEDULER_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return monkeypatch


def test_defaults(clean_env, tmp_path):
    for configuration in (None, {}, {"prometheus_base_url": "http://x:9090", "other": 1}):
        settings = config.load(configuration)
        assert settings.platform == "testbed" and settings.cluster == "default"
        assert settings.home == str(tmp_path / "xdg" / "chaosscheduler") == default_home()
        assert settings.testbed == {} and settings.max_worker_share is None and settings.poll_interval == 0.01


def test_environment_gives_the_defaults(clean_env, tmp_path):
    clean_env.setenv("CHAOSSCHEDULER_PLATFORM", "testbed")
    clean_env.setenv("CHAOSSCHEDULER_CLUSTER", "envcluster")
    clean_env.setenv("CHAOSSCHEDULER_HOME", str(tmp_path / "envhome"))
    settings = config.load({})
    assert (settings.platform, settings.cluster, settings.home) == ("testbed", "envcluster",
                                                                    str(tmp_path / "envhome"))


def test_configuration_wins_over_the_environment(clean_env, tmp_path):
    clean_env.setenv("CHAOSSCHEDULER_CLUSTER", "envcluster")
    clean_env.setenv("CHAOSSCHEDULER_HOME", str(tmp_path / "envhome"))
    settings = config.load({"chaosscheduler_cluster": "mine", "chaosscheduler_home": str(tmp_path / "h")})
    assert settings.cluster == "mine" and settings.home == str(tmp_path / "h")


def test_empty_environment_variables_are_ignored(clean_env):
    clean_env.setenv("CHAOSSCHEDULER_PLATFORM", "")
    clean_env.setenv("CHAOSSCHEDULER_CLUSTER", "")
    settings = config.load({})
    assert settings.platform == "testbed" and settings.cluster == "default"


@pytest.mark.parametrize("variable, value, key", [("CHAOSSCHEDULER_PLATFORM", "kubernetes", "chaosscheduler_platform"),
                                                  ("CHAOSSCHEDULER_CLUSTER", "Bad_Name", "chaosscheduler_cluster"),
                                                  ("CHAOSSCHEDULER_CLUSTER", "a;reboot", "chaosscheduler_cluster")])
def test_bad_environment_values_are_refused_naming_the_key(clean_env, variable, value, key):
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=key):
        config.load({})


def test_a_relative_home_becomes_absolute(clean_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.load({"chaosscheduler_home": "rel/home"}).home == str(tmp_path / "rel" / "home")


def test_valid_values_are_typed(clean_env):
    settings = config.load({"chaosscheduler_max_worker_share": 1, "chaosscheduler_poll_interval": 1,
                            "chaosscheduler_testbed": {"workers": 2, "task_duration": 1.5}})
    assert settings.max_worker_share == 1.0 and isinstance(settings.max_worker_share, float)
    assert settings.poll_interval == 1.0 and isinstance(settings.poll_interval, float)
    assert config.load({"chaosscheduler_poll_interval": None}).poll_interval == 0.01  # null: the default
    spec = settings.cluster_spec()
    assert spec.workers == 2 and spec.task_duration == 1.5 and spec.name == "default"
    assert spec.home == settings.home
    assert settings.to_dict()["max_worker_share"] == 1.0


BAD = [
    ("chaosscheduler_platform", "kubernetes"), ("chaosscheduler_platform", ""), ("chaosscheduler_platform", 5),
    ("chaosscheduler_platform", None), ("chaosscheduler_platform", ["testbed"]),
    ("chaosscheduler_cluster", "Bad"), ("chaosscheduler_cluster", ""), ("chaosscheduler_cluster", "a" * 13),
    ("chaosscheduler_cluster", "1abc"), ("chaosscheduler_cluster", "a-b"), ("chaosscheduler_cluster", "a;rm -rf"),
    ("chaosscheduler_cluster", "$(id)"), ("chaosscheduler_cluster", 5), ("chaosscheduler_cluster", None),
    ("chaosscheduler_home", 5), ("chaosscheduler_home", "/tmp/a\0b"), ("chaosscheduler_home", ["/tmp"]),
    ("chaosscheduler_testbed", "workers=2"), ("chaosscheduler_testbed", ["workers"]),
    ("chaosscheduler_testbed", 3),
    ("chaosscheduler_max_worker_share", 0), ("chaosscheduler_max_worker_share", -0.5),
    ("chaosscheduler_max_worker_share", 1.01), ("chaosscheduler_max_worker_share", 2),
    ("chaosscheduler_max_worker_share", True), ("chaosscheduler_max_worker_share", "0.5"),
    ("chaosscheduler_max_worker_share", float("nan")), ("chaosscheduler_max_worker_share", [0.5]),
    ("chaosscheduler_poll_interval", 0), ("chaosscheduler_poll_interval", 0.0005),
    ("chaosscheduler_poll_interval", 60.5), ("chaosscheduler_poll_interval", -1),
    ("chaosscheduler_poll_interval", True), ("chaosscheduler_poll_interval", "fast"),
    ("chaosscheduler_poll_interval", [0.1]), ("chaosscheduler_poll_interval", float("nan")),
    ("chaosscheduler_poll_interval", "0"), ("chaosscheduler_concurrency", 0), ("chaosscheduler_concurrency", 1025),
    ("chaosscheduler_concurrency", 2.5), ("chaosscheduler_concurrency", "many"), ("chaosscheduler_concurrency", True),
]


@pytest.mark.parametrize("key, value", BAD, ids=[f"{k[15:]}={v!r}" for k, v in BAD])
def test_every_key_is_validated_and_named(clean_env, key, value):
    with pytest.raises(ConfigurationError) as info:
        config.load({key: value})
    assert key in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("testbed, named", [({"masters": 0}, "masters"), ({"workers": "4"}, "workers"),
                                            ({"heartbeat_ttl": 0}, "heartbeat_ttl"),
                                            ({"reschedule": "no"}, "reschedule"),
                                            ({"network": "wifi"}, "network"), ({"bogus": 1}, "bogus"),
                                            ({"slots": 2.5}, "slots")])
def test_testbed_settings_are_validated_and_named(clean_env, testbed, named):
    with pytest.raises(ConfigurationError, match=named):
        config.load({"chaosscheduler_testbed": testbed})


@pytest.mark.parametrize("keys", [["chaosscheduler_clustr"], ["chaosscheduler_"], ["chaosscheduler_Cluster"],
                                  ["chaosscheduler_max_share", "chaosscheduler_timeout"]])
def test_unknown_chaosscheduler_keys_are_refused(clean_env, keys):
    with pytest.raises(ConfigurationError) as info:
        config.load({k: 1 for k in keys})
    message = str(info.value)
    assert all(k in message for k in keys)
    assert "chaosscheduler_cluster" in message and "chaosscheduler_max_worker_share" in message  # the known ones


@pytest.mark.parametrize("configuration", [["chaosscheduler_cluster"], "chaosscheduler_cluster=x", 5])
def test_a_configuration_that_is_not_a_mapping_is_refused(clean_env, configuration):
    with pytest.raises(ConfigurationError, match="configuration must be a mapping"):
        config.load(configuration)


def test_a_process_has_its_own_run_until_a_run_is_set():
    default = config.current_run()
    assert default.startswith(f"process-{os.getpid()}-")
    config.set_current_run("run-abc")
    try:
        assert config.current_run() == "run-abc"
    finally:
        config.set_current_run(None)
    assert config.current_run() == default


def _child_run(queue) -> None:
    queue.put(config.current_run())


def test_another_process_is_another_run():
    """Faults of an earlier ``chaos`` process are never mistaken for this one's (spawned: a fresh interpreter)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_run, args=(queue,))
    child.start()
    other = queue.get(timeout=60)
    child.join(60)
    assert other.startswith("process-") and other != config.current_run()
