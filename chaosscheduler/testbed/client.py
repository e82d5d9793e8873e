"""A small JSON-over-HTTP client for the embedded cluster: TCP between nodes, Unix sockets from outside.

``submit_job`` is the client helper the issue asks for: it tries the last known leader first, then every other
master, until one accepts or the deadline passes.
"""

import http.client
import json
import socket
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["Target", "request", "ClientError", "submit_job"]

Target = Union[str, Tuple[str, int]]  # a Unix socket path, or (address, port)


class ClientError(Exception):
    """The node could not be reached or answered garbage."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(target: Target, method: str, path: str, body: Any = None, timeout: float = 2.0) -> Tuple[int, Any]:
    """Send one request; return ``(status, decoded JSON or text)``. Raises :class:`ClientError` when the node
    cannot be reached within ``timeout``."""
    if isinstance(target, str):
        conn: http.client.HTTPConnection = _UnixConnection(target, timeout)
    else:
        conn = http.client.HTTPConnection(target[0], target[1], timeout=timeout)
    payload = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    try:
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise ClientError(f"{method} {path} to {target}: {e or type(e).__name__}") from e
    finally:
        conn.close()
    ctype = resp.getheader("Content-Type", "")
    if ctype.startswith("application/json"):
        try:
            return resp.status, json.loads(data)
        except ValueError as e:
            raise ClientError(f"{method} {path} to {target}: invalid JSON") from e
    return resp.status, data.decode(errors="replace")


def submit_job(masters: Sequence[Tuple[str, Target]], job: Dict[str, Any], deadline: float = 5.0,
               preferred: Optional[str] = None, attempt_timeout: float = 1.0) -> Dict[str, Any]:
    """Submit ``job`` to the cluster through any master, retrying the others until ``deadline`` seconds passed.

    ``masters`` is a list of ``(name, target)``. Returns ``{"accepted": bool, "response": ..., "tries": n,
    "leader": name or None, "errors": [...]}``; never raises for network errors."""
    started = time.monotonic()
    order: List[Tuple[str, Target]] = sorted(masters, key=lambda m: m[0] != preferred)
    errors: List[str] = []
    tries = 0
    while True:
        for name, target in order:
            if tries and time.monotonic() - started > deadline:
                return {"accepted": False, "tries": tries, "errors": errors[-5:], "leader": None}
            tries += 1
            try:
                status, body = request(target, "POST", "/api/jobs", job, timeout=attempt_timeout)
            except ClientError as e:
                errors.append(str(e))
                continue
            if status == 201:
                return {"accepted": True, "response": body, "tries": tries, "errors": errors[-5:],
                        "leader": body.get("leader")}
            errors.append(f"{name}: {status} {body.get('error') if isinstance(body, dict) else body}")
            if status == 400:  # our request is wrong: retrying elsewhere cannot help
                return {"accepted": False, "tries": tries, "errors": errors[-5:], "leader": None}
        time.sleep(0.05)
