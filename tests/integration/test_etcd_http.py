"""The embedded cluster's etcd client over etcd's HTTP/JSON gateway, against a real etcd (Debian's etcd-server) on
loopback: keys, prefixes, fenced transactions, leases that expire, failover between endpoints, a silent endpoint,
and a kept-alive connection the server has closed meanwhile. No root needed."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from chaosscheduler.testbed.etcd_http import EtcdError, EtcdHTTPClient
from chaosscheduler.testbed.node import etcd_client_kind
from chaosscheduler.timing import wait_until
from tests.conftest import NEEDS_ETCD

pytestmark = [pytest.mark.integration, NEEDS_ETCD]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Etcd:
    def __init__(self, data: str):
        self.data, self.port, self.peer = data, _free_port(), _free_port()
        self.proc = None

    def start(self) -> None:
        url, peer = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer}"
        self.proc = subprocess.Popen(
            ["etcd", "--name", "t", "--data-dir", self.data, "--listen-client-urls", url, "--advertise-client-urls",
             url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster",
             f"t={peer}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = EtcdHTTPClient([("127.0.0.1", self.port)], timeout=0.5)

        def ready():
            try:
                client.get("ready")
                return True
            except EtcdError:
                return False

        wait_until(ready, 30, 0.05, "etcd answering")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def etcd():
    data = tempfile.mkdtemp(prefix="cse")
    server = Etcd(os.path.join(data, "member"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def client(etcd):
    c = EtcdHTTPClient([("127.0.0.1", etcd.port)], timeout=1.0)
    yield c
    c.delete_prefix("/t/")
    c.close()


def test_keys_and_prefixes_round_trip(client):
    assert client.get("/t/missing") == (None, None)
    client.put("/t/w/a", '{"name": "a"}')
    client.put("/t/w/b", b"\x00\xffbinary")
    client.put("/t/wx", "outside the prefix")
    value, meta = client.get("/t/w/a")
    assert value == b'{"name": "a"}' and meta.create_revision > 0 and meta.lease_id == 0
    assert [v for v, _ in client.get_prefix("/t/w/")] == [b'{"name": "a"}', b"\x00\xffbinary"]
    assert client.delete("/t/w/a") is True and client.delete("/t/w/a") is False


def test_a_fenced_transaction_succeeds_once_and_a_stale_fence_writes_nothing(client):
    tx = client.transactions
    won, _ = client.transaction(compare=[tx.create("/t/leader") == 0], success=[tx.put("/t/leader", "m1")])
    again, _ = client.transaction(compare=[tx.create("/t/leader") == 0], success=[tx.put("/t/leader", "m2")])
    assert (won, again) == (True, False) and client.get("/t/leader")[0] == b"m1"
    term = client.get("/t/leader")[1].create_revision
    ok, _ = client.transaction(compare=[tx.create("/t/leader") == term],
                               success=[tx.put("/t/task/1", "x"), tx.put("/t/task/2", "y")], failure=[])
    stale, _ = client.transaction(compare=[tx.create("/t/leader") == term - 1], success=[tx.put("/t/task/3", "z")])
    assert ok is True and stale is False
    assert sorted(v for v, _ in client.get_prefix("/t/task/")) == [b"x", b"y"]


def test_a_lease_keeps_its_key_while_refreshed_and_ends_with_ttl_zero(client):
    lease = client.lease(1)  # etcd grants at least its minimum TTL (2 s with default timings)
    client.put("/t/hb", "alive", lease=lease.id)
    assert client.get("/t/hb")[1].lease_id == lease.id and lease.ttl >= 1
    assert [r.TTL for r in lease.refresh()] == [lease.ttl]
    wait_until(lambda: client.get("/t/hb") == (None, None), 10, 0.1, "the key gone with its lease")
    assert [r.TTL for r in client.refresh_lease(lease.id)] == [0]  # expired: a keep-alive says so
    with pytest.raises(EtcdError, match="lease not found"):
        lease.revoke()


def test_failover_to_the_endpoint_that_answers(etcd):
    dead = ("127.0.0.1", _free_port())
    client = EtcdHTTPClient([dead, ("127.0.0.1", etcd.port)], timeout=1.0)
    client.put("/t/f", "v")
    assert client.get("/t/f")[0] == b"v"
    nobody = EtcdHTTPClient([dead], timeout=0.5)
    with pytest.raises(EtcdError, match=f"no etcd endpoint answered /v3/kv/range: 127.0.0.1:{dead[1]}"):
        nobody.get("/t/f")
    client.delete("/t/f")


def test_a_silent_endpoint_is_an_error_after_the_timeout_not_a_hang():
    with socket.socket() as listener:  # accepts connections (the kernel does), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client = EtcdHTTPClient([listener.getsockname()], timeout=0.3)
        started = time.monotonic()
        with pytest.raises(EtcdError, match="(?i)timeout"):
            client.get("/t/x")
        assert time.monotonic() - started < 2.0


def test_a_kept_alive_connection_closed_by_a_restarted_etcd_is_replaced(etcd, client):
    client.put("/t/r", "before")  # leaves an idle kept-alive connection in the pool
    etcd.stop()
    etcd.start()  # the same data directory: the key survives, the connection does not
    assert client.get("/t/r")[0] == b"before"


def test_calls_at_the_same_time_from_many_threads(client):
    errors = []

    def work(i):
        try:
            for j in range(20):
                client.put(f"/t/c/{i}-{j}", str(j))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(list(client.get_prefix("/t/c/"))) == 240
    assert len(client._idle[0]) <= client.POOL


def test_the_client_kind_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("CHAOSSCHEDULER_ETCD_CLIENT", raising=False)
    assert etcd_client_kind() == "http"
    monkeypatch.setenv("CHAOSSCHEDULER_ETCD_CLIENT", "grpc")
    assert etcd_client_kind() == "grpc"
    monkeypatch.setenv("CHAOSSCHEDULER_ETCD_CLIENT", "carrier-pigeon")
    with pytest.raises(SystemExit, match="must be one of http, grpc"):
        etcd_client_kind()


class _LateServer:
    """A stand-in for etcd's gateway that answers its first request late (after ``delay`` s) and every later one at
    once, over HTTP/1.1 keep-alive, and records the client port of each request: which connection it came on."""

    def __init__(self, delay: float):
        import http.server

        seen = self.ports = []
        served = [0]

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - stdlib naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append(self.client_address[1])
                served[0] += 1
                if served[0] == 1:
                    time.sleep(delay)
                body = b'{"kvs": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_late_answer_keeps_its_connection_for_the_next_calls():
    """Under packet loss an established connection recovers a lost segment far sooner than a new one gets through
    its handshake: a call whose answer comes too late fails on time, but its connection is kept (the late answer
    is read in the background) and the next call goes out on it."""
    server = _LateServer(delay=1.0)
    try:
        client = EtcdHTTPClient([server.server.server_address], timeout=0.3)
        client.WARM = 0  # only the drained connection may come back: this test follows that one
        with pytest.raises(EtcdError, match="(?i)timeout"):
            client.get("/t/late")
        wait_until(lambda: len(client._idle[0]) == 1, 10, 0.02, "the late connection back in the pool")
        assert client.get("/t/next") == (None, None)
        assert server.ports[0] == server.ports[1]  # the same TCP connection
    finally:
        server.close()


def test_after_a_failure_connections_are_made_ready_in_the_background():
    server = _LateServer(delay=1.0)
    try:
        client = EtcdHTTPClient([server.server.server_address], timeout=0.3)
        with pytest.raises(EtcdError):
            client.get("/t/late")
        # the drained one plus the warm ones, capped: WARM counts those idle or on their way
        wait_until(lambda: len(client._idle[0]) >= client.WARM, 10, 0.02, "warm connections in the pool")
        assert len(client._idle[0]) <= client.WARM + 1
        assert client.get("/t/next") == (None, None) and len(server.ports) == 2
    finally:
        server.close()


def test_a_large_prefix_is_read_in_pages_as_one_snapshot(client, etcd):
    """get_prefix reads PAGE keys per request (a large table in one gateway answer can outlast the timeout), at the
    revision of the first page: keys written meanwhile are not mixed in."""
    writer = EtcdHTTPClient([("127.0.0.1", etcd.port)], timeout=1.0)
    client.PAGE = 7
    for i in range(30):
        client.put(f"/t/p/{i:03d}", str(i))
    pages = []
    real = client.call

    def counting(path, body):
        pages.append(body)
        if len(pages) == 2:
            writer.put("/t/p/000", "changed after the first page")
            writer.put("/t/p/999", "added after the first page")
        return real(path, body)

    client.call = counting
    values = [v for v, _ in client.get_prefix("/t/p/")]
    assert values == [str(i).encode() for i in range(30)]  # the snapshot of the first page, in key order
    assert len(pages) == 5 and all(int(p["limit"]) == 7 for p in pages)
    assert len({p.get("revision") for p in pages[1:]}) == 1
    client.call = real
    assert [v for v, _ in client.get_prefix("/t/p/")][0] == b"changed after the first page"
