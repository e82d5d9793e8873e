"""What every node process of the embedded cluster shares: its view of the cluster, the ground-truth event log,
an HTTP server on TCP (for peers) and on a Unix socket (for the operator, outside the cluster's network), and an
etcd client."""

import argparse
import contextlib
import http.server
import json
import logging
import os
import signal
import socket
import socketserver
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import state
from .spec import ClusterSpec, Node

__all__ = ["NodeRuntime", "EventLog", "Response", "main_args"]

logger = logging.getLogger("chaosscheduler.testbed")

Response = Tuple[int, Any]  # (HTTP status, JSON-serialisable body) or (status, bytes, content-type)
Route = Callable[[Dict[str, str], Any], Response]


class EventLog:
    """Append-only JSON lines shared by every node of a cluster: the ground truth probes are judged against.

    Each line is written with one ``write`` on an ``O_APPEND`` descriptor, so lines from different processes never
    interleave. ``ts`` is wall-clock time, ``mono`` is ``CLOCK_MONOTONIC`` (the same clock in every process of
    this machine, whatever its namespace)."""

    def __init__(self, path: str, node: str):
        self.node = node
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, event: str, **fields: Any) -> Dict[str, Any]:
        record = {"ts": time.time(), "mono": time.monotonic(), "node": self.node, "event": event}
        record.update(fields)
        os.write(self._fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        return record

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def read_events(path: str) -> List[Dict[str, Any]]:
    """Every event of a cluster's log, in file order (a torn last line is skipped)."""
    events = []
    try:
        with open(path) as handle:
            for line in handle:
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
    except FileNotFoundError:
        pass
    return events


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes: Dict[Tuple[str, str], Route] = {}

    def address_string(self) -> str:  # Unix sockets have no client address
        return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the stdlib
        pass

    def _dispatch(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        route = self.routes.get((method, parsed.path))
        body: Any = None
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                return self._send(400, {"error": "request body is not JSON"})
        if route is None:
            return self._send(404, {"error": f"no route {method} {parsed.path}"})
        try:
            result = route(query, body)
        except Exception as e:  # a handler bug must not kill the server thread silently
            logger.exception("handler %s %s failed", method, parsed.path)
            result = (500, {"error": f"{type(e).__name__}: {e}"})
        self._send(*result)

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")


class _TCPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the stdlib's 5 refuses connections (EAGAIN on the Unix socket) under a burst


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128


class NodeRuntime:
    """Loads the cluster description, opens the event log, serves HTTP and handles SIGTERM for one node."""

    def __init__(self, state_dir: str, name: str):
        self.state_dir = state_dir
        self.cluster = state.load(state_dir)
        self.spec = ClusterSpec.from_dict(self.cluster["spec"])
        self.nodes = {n["name"]: Node.from_dict(n) for n in self.cluster["nodes"]}
        if name not in self.nodes:
            raise SystemExit(f"unknown node {name!r} in {state_dir}")
        self.node = self.nodes[name]
        self.events = EventLog(state.events_path(state_dir), name)
        self.stopping = threading.Event()
        self._servers: List[socketserver.BaseServer] = []
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")

    def by_role(self, role: str) -> List[Node]:
        return [n for n in self.nodes.values() if n.role == role]

    def etcd_client(self, timeout: float = 1.0, own_connection: bool = False):
        """A client of the cluster's etcd; ``own_connection`` gives it TCP connections no other client shares
        (gRPC pools them per process otherwise)."""
        import pyetcd  # imported here: the CLI and the probes never need grpc

        opts = [("grpc.use_local_subchannel_pool", 1)] if own_connection else None
        endpoints = [pyetcd.Endpoint(n.address, n.port, secure=False, time_retry=1, opts=opts)
                     for n in self.by_role("etcd")]
        return pyetcd.MultiEndpointEtcd3Client(endpoints=endpoints, timeout=timeout, failover=True)

    def serve(self, routes: Dict[Tuple[str, str], Route]) -> None:
        handler = type("Handler", (_Handler,), {"routes": routes})
        tcp = _TCPServer((self.node.address, self.node.port), handler)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.node.socket)
        unix = _UnixServer(self.node.socket, handler)
        for server in (tcp, unix):
            self._servers.append(server)
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: Any) -> None:
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def shutdown(self) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.node.socket)
        self.events.emit("node_stopped", role=self.node.role)
        self.events.close()


def main_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--name", required=True)
    return parser.parse_args()


def wait_port_free(address: str, port: int, timeout: float = 5.0) -> None:
    """Wait until ``address:port`` can be bound (a restarted node may race its predecessor's socket)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.05)


def metrics_response(registry: Any) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return 200, generate_latest(registry), CONTENT_TYPE_LATEST  # type: ignore[return-value]


def health_ok(extra: Optional[Dict[str, Any]] = None) -> Response:
    body = {"ok": True}
    body.update(extra or {})
    return 200, body
