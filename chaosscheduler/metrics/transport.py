"""TCP connections for every remote call (SSH, HTTP leader sources, etcd, ZooKeeper, Prometheus).

Normally a plain ``socket.create_connection``. With ``netns`` the socket is created inside that network namespace
of this machine (``/run/netns/NAME``): a short-lived thread enters the namespace with ``setns(2)``, creates and
connects the socket, and exits; the socket stays in the namespace it was created in, and no other thread (nor the
root namespace) changes. This is how a test or a lab reaches hosts that live in network namespaces (the embedded
cluster) without adding a route, an address or a link to the root namespace. Needs CAP_SYS_ADMIN (root).
"""

import ctypes
import ctypes.util
import os
import socket
import threading
from typing import Any, Dict, Optional, Tuple

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from ..errors import ChaosSchedulerError

__all__ = ["connect", "session", "TransportError"]

CLONE_NEWNET = 0x40000000
_libc = None


class TransportError(ChaosSchedulerError):
    """A connection could not be opened."""


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def connect(host: str, port: int, timeout: float = 10.0, netns: Optional[str] = None) -> socket.socket:
    """A connected TCP socket to ``host:port``, opened inside network namespace ``netns`` when given."""
    if not netns:
        try:
            return socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise TransportError(f"cannot connect to {host}:{port}: {e}") from e
    result: Dict[str, Any] = {}

    def inside() -> None:
        try:
            fd = os.open(os.path.join("/run/netns", netns), os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            result["sock"] = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            result["error"] = e

    thread = threading.Thread(target=inside, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    if "sock" in result:
        return result["sock"]
    error = result.get("error", "timed out")
    raise TransportError(f"cannot connect to {host}:{port} from network namespace {netns}: {error}")


class _NetnsHTTPConnection(HTTPConnection):
    netns: Optional[str] = None

    def _new_conn(self) -> socket.socket:
        sock = connect(self._dns_host, self.port, self.timeout if isinstance(self.timeout, (int, float)) else 10.0,
                       self.netns)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class _NetnsAdapter(HTTPAdapter):
    def __init__(self, netns: str):
        self.netns = netns
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        conn_cls = type("Conn", (_NetnsHTTPConnection,), {"netns": self.netns})
        pool_cls = type("Pool", (HTTPConnectionPool,), {"ConnectionCls": conn_cls})
        self.poolmanager.pool_classes_by_scheme = dict(self.poolmanager.pool_classes_by_scheme, http=pool_cls)
        self.poolmanager.key_fn_by_scheme = dict(self.poolmanager.key_fn_by_scheme)


_sessions: Dict[Tuple[Optional[str], int], requests.Session] = {}
_lock = threading.Lock()


def session(netns: Optional[str] = None) -> requests.Session:
    """A shared ``requests.Session`` (per thread) whose plain-HTTP connections are opened in ``netns`` when given.
    HTTPS through a namespace is not supported (the labs that need a namespace use plain HTTP)."""
    key = (netns, threading.get_ident())
    with _lock:
        existing = _sessions.get(key)
        if existing is not None:
            return existing
        s = requests.Session()
        s.trust_env = False  # never send our requests through a proxy from the environment
        if netns:
            s.mount("http://", _NetnsAdapter(netns))
        _sessions[key] = s
        return s
