"""Pure tests of the embedded cluster's building blocks: settings, layout, signal names, atomic state writes and
the HTTP client (against a tiny server on a Unix socket). Nothing here needs root, etcd or a network namespace."""

import http.server
import ipaddress
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading

import pytest

from chaosscheduler import procs
from chaosscheduler._files import read_json, write_json_atomic
from chaosscheduler.errors import ConfigurationError
from chaosscheduler.testbed.client import ClientError, request, submit_job
from chaosscheduler.testbed.spec import ClusterSpec, layout, ports_needed

TEST_NET = ipaddress.ip_network("198.18.0.0/16")


# ---------------------------------------------------------------------------------------------------- ClusterSpec
def test_defaults_are_the_documented_platform():
    spec = ClusterSpec()
    assert (spec.masters, spec.workers, spec.etcd_members) == (3, 4, 1)
    assert spec.reschedule and spec.campaign
    assert spec.keepalive_interval == pytest.approx(spec.heartbeat_ttl / 5)
    assert ClusterSpec(heartbeat_interval=0.5).keepalive_interval == 0.5


@pytest.mark.parametrize("setting, value", [
    ("masters", 0), ("masters", 10), ("masters", 2.5), ("masters", True), ("masters", "3"),
    ("workers", 0), ("workers", 1001), ("workers", None),
    ("etcd_members", 0), ("etcd_members", 6),
    ("election_ttl", 0), ("election_ttl", 1.5),
    ("heartbeat_ttl", 0), ("heartbeat_ttl", 601),
    ("heartbeat_interval", -1), ("heartbeat_interval", float("nan")), ("heartbeat_interval", "fast"),
    ("slots", 0),
    ("task_duration", -0.1), ("task_duration", 3601),
    ("load_rate", -1), ("load_rate", 1001), ("load_rate", False),
    ("reschedule", "yes"), ("reschedule", 1),
    ("campaign", None),
    ("network", "bridge"), ("network", ""),
    ("home", 42),
])
def test_each_bad_setting_is_refused_by_name(setting, value):
    with pytest.raises(ConfigurationError) as caught:
        ClusterSpec(**{setting: value})
    assert f"'{setting}'" in str(caught.value)
    assert "\n" not in str(caught.value)  # chaoslib keeps only the first line


@pytest.mark.parametrize("name", ["", "Default", "1abc", "a-b", "a_b", "abcdefghijklm", "a b", 7])
def test_bad_names_are_refused(name):
    with pytest.raises(ConfigurationError, match="testbed name"):
        ClusterSpec(name=name)


def test_heartbeat_interval_must_stay_below_the_ttl():
    ClusterSpec(heartbeat_ttl=3, heartbeat_interval=2.9)  # a broken knob (no margin under loss), but allowed
    with pytest.raises(ConfigurationError, match="'heartbeat_interval'"):
        ClusterSpec(heartbeat_ttl=3, heartbeat_interval=3)


def test_from_dict_refuses_unknown_keys_by_name_and_round_trips():
    with pytest.raises(ConfigurationError, match="'mastres'"):
        ClusterSpec.from_dict({"mastres": 3})
    spec = ClusterSpec(name="x1", workers=7, reschedule=False, network="loopback")
    assert ClusterSpec.from_dict(spec.to_dict()) == spec
    assert ClusterSpec.from_dict(None) == ClusterSpec()


def test_state_dir_follows_home_and_environment(monkeypatch, tmp_path):
    assert ClusterSpec(name="abc", home=str(tmp_path)).state_dir == str(tmp_path / "testbed" / "abc")
    monkeypatch.setenv("CHAOSSCHEDULER_HOME", str(tmp_path / "h"))
    assert ClusterSpec(name="abc").state_dir == str(tmp_path / "h" / "testbed" / "abc")


# ---------------------------------------------------------------------------------------------------- layout
def test_netns_layout_addresses_are_unique_and_in_the_test_network(tmp_path):
    spec = ClusterSpec(name="lay", masters=5, workers=20, etcd_members=3, home=str(tmp_path))
    nodes = layout(spec, "netns")
    assert len(nodes) == 3 + 5 + 20 + 1  # the load generator comes with load_rate > 0
    addresses = [n.address for n in nodes]
    assert all(ipaddress.ip_address(a) in TEST_NET for a in addresses)
    assert len(set(addresses)) == len(addresses)
    namespaces = [n.netns for n in nodes]
    assert len(set(namespaces)) == len(namespaces)
    assert all(ns.startswith("cs-lay-") for ns in namespaces)
    assert "cs-lay-sw" not in namespaces  # the switch namespace is not a node's
    sockets = [n.socket for n in nodes]
    assert len(set(sockets)) == len(sockets)
    assert all(s.startswith(os.path.join(spec.state_dir, "sock")) for s in sockets)
    assert {n.role for n in nodes} == {"etcd", "master", "worker", "load"}
    etcd = [n for n in nodes if n.role == "etcd"]
    assert all(n.port == 2379 and n.peer_port == 2380 for n in etcd)


def test_worker_addresses_beyond_250_workers_stay_unique_and_valid(tmp_path):
    spec = ClusterSpec(name="big", workers=1000, load_rate=0, home=str(tmp_path))
    workers = [n for n in layout(spec, "netns") if n.role == "worker"]
    addresses = [ipaddress.ip_address(n.address) for n in workers]
    assert len(set(addresses)) == 1000
    assert all(a in TEST_NET for a in addresses)
    # no host part is the network (.0) or broadcast (.255) address of a /24
    assert all(0 < int(a) % 256 < 255 for a in addresses)
    by_name = {n.name: n.address for n in workers}
    assert by_name["worker-250"] == "198.18.16.250"
    assert by_name["worker-251"] == "198.18.17.1"
    assert by_name["worker-1000"] == "198.18.19.250"
    others = {n.address for n in layout(spec, "netns") if n.role != "worker"}
    assert not others & set(by_name.values())


def test_no_load_generator_without_load(tmp_path):
    nodes = layout(ClusterSpec(name="nl", load_rate=0, home=str(tmp_path)), "netns")
    assert "load" not in {n.role for n in nodes}


def test_loopback_layout_uses_the_given_ports_in_order(tmp_path):
    spec = ClusterSpec(name="lo", masters=2, workers=2, etcd_members=2, home=str(tmp_path))
    count = ports_needed(spec)
    assert count == 2 * 2 + 2 + 2 + 1
    ports = list(range(41000, 41000 + count))
    nodes = layout(spec, "loopback", ports)
    assert all(n.netns is None and n.address == "127.0.0.1" for n in nodes)
    used = []
    for node in nodes:
        used.append(node.port)
        if node.role == "etcd":
            used.append(node.peer_port)
    assert used == ports
    assert [n.name for n in nodes] == ["etcd-1", "etcd-2", "master-1", "master-2", "worker-1", "worker-2", "load"]


def test_layout_is_deterministic(tmp_path):
    spec = ClusterSpec(name="det", home=str(tmp_path))
    assert [n.to_dict() for n in layout(spec, "netns")] == [n.to_dict() for n in layout(spec, "netns")]


# ---------------------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize("name", ["SIGKILL", "KILL", "kill", "sigkill", 9])
def test_signal_number_accepts_names_and_numbers(name):
    assert procs.signal_number(name) == signal.SIGKILL


def test_signal_number_other_signals():
    assert procs.signal_number("TERM") == signal.SIGTERM
    assert procs.signal_number("SIGSTOP") == signal.SIGSTOP
    assert procs.signal_number("cont") == signal.SIGCONT


@pytest.mark.parametrize("bad", ["SIGFOO", "", "SIG_DFL", "SIG_IGN", " KILL", 0, -9, 4096, 9.0, True, None])
def test_signal_number_refuses_anything_else(bad):
    with pytest.raises(ValueError, match="unknown signal"):
        procs.signal_number(bad)


# ---------------------------------------------------------------------------------------------------- atomic writes
def test_write_json_atomic_replaces_content(tmp_path):
    path = tmp_path / "state" / "cluster.json"
    write_json_atomic(str(path), {"a": 1})
    write_json_atomic(str(path), {"b": [1, 2]})
    assert read_json(str(path)) == {"b": [1, 2]}
    assert os.listdir(path.parent) == ["cluster.json"]  # no temporary file left behind


def test_write_json_atomic_failure_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "cluster.json"
    write_json_atomic(str(path), {"generation": 1})
    before = path.read_bytes()
    # json.dump streams: the first keys are written to the temporary file before the unserialisable value fails
    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"a": "x" * 100000, "z": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["cluster.json"]


def test_write_json_atomic_crash_before_rename_keeps_the_old_file(tmp_path):
    """A process killed at the worst moment (new content written and fsync'ed, rename not done) leaves the old
    file intact and readable."""
    path = tmp_path / "cluster.json"
    write_json_atomic(str(path), {"generation": 1})
    script = (
        "import os, sys\n"
        "from chaosscheduler import _files\n"
        "_files.os.replace = lambda src, dst: os.kill(os.getpid(), 9)\n"
        "_files.write_json_atomic(sys.argv[1], {'generation': 2, 'pad': 'y' * 100000})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert read_json(str(path)) == {"generation": 1}
    leftovers = [n for n in os.listdir(tmp_path) if n != "cluster.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")  # a crash cannot clean up, but
    assert json.loads((tmp_path / leftovers[0]).read_text())["generation"] == 2  # ...the new copy was complete


def test_read_json_missing_and_corrupt(tmp_path):
    assert read_json(str(tmp_path / "nope.json"), default={"d": 1}) == {"d": 1}
    (tmp_path / "bad.json").write_text('{"torn": ')
    with pytest.raises(ValueError):
        read_json(str(tmp_path / "bad.json"))


# ---------------------------------------------------------------------------------------------------- HTTP client
class _TinyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answers = {}  # (method, path) -> (status, body, content type)
    seen = []

    def log_message(self, *args):
        pass

    def address_string(self):
        return "unix"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, body, self.headers.get("Content-Type")))
        status, payload, ctype = self.answers.get((self.command, self.path), (404, b'{"error": "no route"}',
                                                                             "application/json"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def tiny_server(tmp_path):
    servers = []

    def start(answers):
        path = str(tmp_path / f"s{len(servers)}.sock")
        handler = type("Handler", (_TinyHandler,), {"answers": answers, "seen": []})
        server = _UnixServer(path, handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return path, handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_request_over_unix_socket_round_trips_json(tiny_server):
    path, handler = tiny_server({("POST", "/api/jobs"): (201, b'{"job": "j1", "tasks": ["j1-0"]}',
                                                         "application/json"),
                                 ("GET", "/metrics"): (200, b"scheduler_is_leader 1.0\n",
                                                       "text/plain; version=0.0.4")})
    status, body = request(path, "POST", "/api/jobs", {"tasks": 1, "duration": 0.5})
    assert (status, body) == (201, {"job": "j1", "tasks": ["j1-0"]})
    method, url, sent, ctype = handler.seen[-1]
    assert (method, url, ctype) == ("POST", "/api/jobs", "application/json")
    assert json.loads(sent) == {"tasks": 1, "duration": 0.5}
    assert request(path, "GET", "/metrics") == (200, "scheduler_is_leader 1.0\n")
    assert request(path, "GET", "/elsewhere") == (404, {"error": "no route"})


def test_request_to_a_missing_socket_is_a_client_error(tmp_path):
    with pytest.raises(ClientError, match="/api/leader"):
        request(str(tmp_path / "absent.sock"), "GET", "/api/leader")


def test_request_to_a_silent_server_times_out(tmp_path):
    path = str(tmp_path / "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)  # accepted by the kernel, never answered
    try:
        with pytest.raises(ClientError):
            request(path, "GET", "/health", timeout=0.2)
    finally:
        listener.close()


def test_request_with_invalid_json_is_a_client_error(tiny_server):
    path, _ = tiny_server({("GET", "/bad"): (200, b"{not json", "application/json")})
    with pytest.raises(ClientError, match="invalid JSON"):
        request(path, "GET", "/bad")


def test_submit_job_tries_the_other_masters(tiny_server, tmp_path):
    follower, _ = tiny_server({("POST", "/api/jobs"): (503, b'{"error": "no leader"}', "application/json")})
    leader, seen = tiny_server({("POST", "/api/jobs"): (201, b'{"job": "j", "tasks": ["j-0"], "leader": "m3"}',
                                                        "application/json")})
    masters = [("m1", str(tmp_path / "dead.sock")), ("m2", follower), ("m3", leader)]
    result = submit_job(masters, {"tasks": 1}, deadline=2.0)
    assert result["accepted"] and result["leader"] == "m3" and result["tries"] == 3
    assert any("no leader" in e for e in result["errors"])
    # the preferred (last known) leader is asked first
    again = submit_job(masters, {"tasks": 1}, deadline=2.0, preferred="m3")
    assert again["accepted"] and again["tries"] == 1


def test_submit_job_gives_up_at_the_deadline_and_on_bad_requests(tiny_server, tmp_path):
    follower, _ = tiny_server({("POST", "/api/jobs"): (503, b'{"error": "no leader"}', "application/json")})
    result = submit_job([("m1", follower), ("m2", str(tmp_path / "dead.sock"))], {"tasks": 1}, deadline=0.3)
    assert not result["accepted"] and result["tries"] >= 2
    picky, seen = tiny_server({("POST", "/api/jobs"): (400, b'{"error": "tasks must be"}', "application/json")})
    result = submit_job([("m1", picky), ("m2", follower)], {"tasks": 0}, deadline=5.0)
    assert not result["accepted"] and result["tries"] == 1  # retrying a wrong request elsewhere cannot help


# ---------------------------------------------------------------------------------------------------- submit client
def test_the_command_line_client_tells_refused_from_indeterminate(tiny_server, tmp_path):
    from chaosscheduler.testbed.submit import submit

    follower, _ = tiny_server({("POST", "/api/jobs"): (503, b'{"error": "no leader"}', "application/json")})
    dead = str(tmp_path / "dead.sock")
    refused = submit([("m1", follower), ("m2", dead)], {"job": "j1", "tasks": 1}, deadline=0.3)
    assert refused["outcome"] == "fail" and "no leader" in refused["error"]  # nothing could have been accepted
    # a master that accepts the connection and never answers: the job may have been accepted
    import socket as _socket

    mute = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    mute.bind(str(tmp_path / "mute.sock"))
    mute.listen(8)
    try:
        unknown = submit([("m1", str(tmp_path / "mute.sock"))], {"job": "j2", "tasks": 1}, deadline=0.3,
                         attempt_timeout=0.2)
    finally:
        mute.close()
    assert unknown["outcome"] == "info"
    # a retry that finds the job already there proves an earlier try was accepted
    again, _ = tiny_server({("POST", "/api/jobs"): (409, b'{"error": "task j3-0 already exists: choose another '
                                                         b'job id"}', "application/json")})
    assert submit([("m1", again)], {"job": "j3", "tasks": 1})["outcome"] == "ok"
