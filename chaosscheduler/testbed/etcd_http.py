"""A small etcd v3 client over etcd's HTTP/JSON gateway (grpc-gateway: ``POST /v3/kv/range`` and friends, keys and
values base64-encoded, 64-bit integers as strings), on the standard library's ``http.client``.

It offers the subset of the ``etcd-sdk-python`` (``pyetcd``) client the embedded cluster uses, with the same
shapes, so masters and workers run on either (:meth:`~chaosscheduler.testbed.node.NodeRuntime.etcd_client`):
``get``, ``get_prefix``, ``put``, ``delete``, ``lease`` (``.id``, ``.refresh()``, ``.revoke()``),
``refresh_lease``, ``transaction`` with ``transactions.create(key) == revision`` / ``transactions.put(...)``.

Every call is one HTTP/1.1 request with ``timeout`` seconds for the connection and for each read, and raises
:class:`EtcdError` when no endpoint answers. Calls made at the same time go out on separate keep-alive connections
(a small pool per client), so a stream stalled by packet loss holds back only the call that uses it: a lease keeper
never waits behind a scheduler's large read, as it would on one shared HTTP/2 connection. Established connections
are precious under packet loss (see ``_release``): a late answer is still read in the background and its connection
kept, and connections for the next calls are opened in the background after a failure.

``http.client`` rather than ``requests``: the same requests cost 0.29 ms of CPU each against 1.03 ms through
``requests`` (and 0.37 ms through gRPC), and a master makes ~20 a second (docs/testbed.md, "Which etcd client").
"""

import base64
import http.client
import json
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ["EtcdHTTPClient", "EtcdError", "KVMeta"]


class EtcdError(Exception):
    """No endpoint answered, or etcd refused the request (the first line says which and why)."""


def _b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else str(data).encode()
    return base64.b64encode(raw).decode()


def _prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix`` (etcd's ``GetPrefix``)."""
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[:i + 1])
    return b"\0"


class KVMeta:
    """A key's metadata, as pyetcd's ``KVMetadata``: ``key``, ``create_revision``, ``mod_revision``, ``version``,
    ``lease_id``."""

    def __init__(self, kv: Dict[str, Any]):
        self.key = base64.b64decode(kv.get("key", ""))
        self.create_revision = int(kv.get("create_revision", 0))
        self.mod_revision = int(kv.get("mod_revision", 0))
        self.version = int(kv.get("version", 0))
        self.lease_id = int(kv.get("lease", 0))


class KeepAlive:
    """One keep-alive answer: ``TTL`` (0 when the lease no longer exists) and ``ID``."""

    def __init__(self, result: Dict[str, Any]):
        self.ID = int(result.get("ID", 0))
        self.TTL = int(result.get("TTL", 0))


class Lease:
    def __init__(self, lease_id: int, ttl: int, client: "EtcdHTTPClient"):
        self.id = lease_id
        self.ttl = ttl
        self.client = client

    def refresh(self) -> List[KeepAlive]:
        return list(self.client.refresh_lease(self.id))

    def revoke(self) -> None:
        self.client.revoke_lease(self.id)


class _Compare:
    """``transactions.create(key) == revision`` → a compare of the key's create revision (0: the key is absent)."""

    def __init__(self, key: Any, target: str, field: str):
        self.key, self.target, self.field = key, target, field

    def _build(self, result: str, value: int) -> Dict[str, Any]:
        return {"key": _b64(self.key), "target": self.target, "result": result, self.field: str(int(value))}

    def __eq__(self, value: Any) -> Dict[str, Any]:  # type: ignore[override] - pyetcd's builder idiom
        return self._build("EQUAL", value)

    def __ne__(self, value: Any) -> Dict[str, Any]:  # type: ignore[override]
        return self._build("NOT_EQUAL", value)

    def __lt__(self, value: Any) -> Dict[str, Any]:
        return self._build("LESS", value)

    def __gt__(self, value: Any) -> Dict[str, Any]:
        return self._build("GREATER", value)


class Transactions:
    """Builders for :meth:`EtcdHTTPClient.transaction`, named as pyetcd's ``client.transactions``."""

    @staticmethod
    def create(key: Any) -> _Compare:
        return _Compare(key, "CREATE", "create_revision")

    @staticmethod
    def mod(key: Any) -> _Compare:
        return _Compare(key, "MOD", "mod_revision")

    @staticmethod
    def version(key: Any) -> _Compare:
        return _Compare(key, "VERSION", "version")

    @staticmethod
    def put(key: Any, value: Any, lease: Optional[int] = None) -> Dict[str, Any]:
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(int(getattr(lease, "id", lease)))
        return {"request_put": body}

    @staticmethod
    def delete(key: Any) -> Dict[str, Any]:
        return {"request_delete_range": {"key": _b64(key)}}


class EtcdHTTPClient:
    """``EtcdHTTPClient([("198.18.0.2", 2379)], timeout=1.0)``; endpoints are tried in turn from the last one that
    answered (failover, as pyetcd's ``MultiEndpointEtcd3Client(failover=True)``)."""

    transactions = Transactions()
    POOL = 8     # idle connections kept per endpoint
    PAGE = 500   # keys per request of get_prefix
    WARM = 2     # idle connections made ready in the background after a failure, so the next call finds one
    PATIENCE = 10.0  # seconds a connection whose answer came too late may still take to deliver it

    def __init__(self, endpoints: Sequence[Tuple[str, int]], timeout: float = 1.0):
        if not endpoints:
            raise ValueError("an etcd client needs at least one endpoint")
        self.endpoints = [(str(address), int(port)) for address, port in endpoints]
        self.timeout = timeout
        self._current = 0
        self._lock = threading.Lock()
        self._idle: Dict[int, List[http.client.HTTPConnection]] = {i: [] for i in range(len(self.endpoints))}
        self._pending: Dict[int, int] = {i: 0 for i in range(len(self.endpoints))}  # draining or warming up

    # ------------------------------------------------------------------ connections
    # Under packet loss a TCP connection that is already established recovers a lost segment in ~0.2 s (its
    # retransmission timeout), while a new one waits 1 s for a lost SYN or SYN-ACK: closing a connection because its
    # answer was late, and opening another for the next call, is what makes a client fragile under loss. So a late
    # answer is waited for in the background (the caller has its error on time) and the connection goes back to the
    # pool; and after a failure, connections are opened in the background, with patience, for the calls to come.
    def _release(self, index: int, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle[index]) < self.POOL:
                if conn.sock is not None:
                    conn.sock.settimeout(self.timeout)
                self._idle[index].append(conn)
                return
        conn.close()

    def _background(self, index: int, work: Any) -> None:
        with self._lock:
            self._pending[index] += 1

        def run() -> None:
            try:
                work()
            finally:
                with self._lock:
                    self._pending[index] -= 1

        threading.Thread(target=run, daemon=True, name="etcd-http").start()

    def _drain(self, index: int, conn: http.client.HTTPConnection) -> None:
        """Read the late answer of ``conn`` (a request sent, no byte of its answer read yet), then keep it."""
        def work() -> None:
            try:
                conn.sock.settimeout(self.PATIENCE)
                response = conn.getresponse()
                response.read()
                if response.will_close:
                    raise ConnectionError("closed by the server")
            except Exception:
                conn.close()
                return
            self._release(index, conn)

        self._background(index, work)

    def _warm(self, index: int) -> None:
        """Open connections in the background until ``WARM`` are idle or on their way."""
        with self._lock:
            missing = self.WARM - len(self._idle[index]) - self._pending[index]
        for _ in range(max(0, missing)):
            def work() -> None:
                conn = http.client.HTTPConnection(*self.endpoints[index], timeout=self.PATIENCE)
                try:
                    conn.connect()
                except OSError:
                    conn.close()
                    return
                self._release(index, conn)

            self._background(index, work)

    def _post(self, index: int, path: str, payload: bytes) -> Tuple[int, bytes]:
        """One request on an idle connection of endpoint ``index`` (or a new one). A reused connection that the
        server had closed meanwhile fails before any answer: that one is retried once on a fresh connection."""
        for attempt in range(2):
            with self._lock:
                conn = self._idle[index].pop() if self._idle[index] else None
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection(*self.endpoints[index], timeout=self.timeout)
            sent = False
            try:
                conn.request("POST", path, payload, {"Content-Type": "application/json"})
                sent = True
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if reused and attempt == 0:
                    continue
                self._warm(index)
                raise
            except TimeoutError:
                if sent:
                    self._drain(index, conn)  # the answer is late, not lost: keep the connection if it comes
                else:
                    conn.close()
                self._warm(index)
                raise
            except BaseException:
                conn.close()
                self._warm(index)
                raise
            try:
                body = response.read()
            except BaseException:
                conn.close()  # a half-read answer: the stream cannot be reused
                self._warm(index)
                raise
            if response.will_close:
                conn.close()
            else:
                self._release(index, conn)
            return response.status, body
        raise ConnectionError("unreachable")  # pragma: no cover - the loop returns or raises

    def call(self, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        """POST ``body`` to ``path`` (e.g. "/v3/kv/range") on the first endpoint that answers; its JSON answer."""
        payload = json.dumps(body).encode()
        errors = []
        for step in range(len(self.endpoints)):
            index = (self._current + step) % len(self.endpoints)
            try:
                status, raw = self._post(index, path, payload)
            except (OSError, http.client.HTTPException) as e:  # timeouts, refusals, resets, bad answers
                errors.append(f"{self.endpoints[index][0]}:{self.endpoints[index][1]}: {type(e).__name__}")
                continue
            self._current = index
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = {}
            if status != 200:
                raise EtcdError(f"etcd refused {path}: HTTP {status} "
                                f"{answer.get('message') or answer.get('error') or raw[:200]!r}")
            if isinstance(answer.get("error"), dict):  # a streaming call's error arrives inside a 200
                raise EtcdError(f"etcd refused {path}: {answer['error'].get('message', answer['error'])}")
            return answer
        raise EtcdError(f"no etcd endpoint answered {path}: {'; '.join(errors)}")

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                while idle:
                    idle.pop().close()

    # ------------------------------------------------------------------ keys
    def get(self, key: Any) -> Tuple[Optional[bytes], Optional[KVMeta]]:
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        if not kvs:
            return None, None
        return base64.b64decode(kvs[0].get("value", "")), KVMeta(kvs[0])

    def get_prefix(self, prefix: Any) -> Iterator[Tuple[bytes, KVMeta]]:
        """Every key under ``prefix``, in key order, as one consistent snapshot read in pages of ``PAGE`` keys.

        The gateway writes nothing before its whole JSON answer is ready, ~4x slower than gRPC's (5,000 task
        records: 187 ms against 44 ms at load 34), so one request for a large table can outlast the call's timeout
        on a busy machine, and a new leader that cannot reload its tasks steps down. Pages keep every request short;
        all of them are read at the revision of the first, so together they are one snapshot."""
        raw = prefix if isinstance(prefix, bytes) else str(prefix).encode()
        body: Dict[str, Any] = {"key": _b64(raw), "range_end": _b64(_prefix_end(raw)), "limit": str(self.PAGE)}
        while True:
            answer = self.call("/v3/kv/range", body)
            kvs = answer.get("kvs") or []
            for kv in kvs:
                yield base64.b64decode(kv.get("value", "")), KVMeta(kv)
            if not answer.get("more") or not kvs:
                return
            # the first answer's revision pins every later page (their headers give the store's current revision)
            body.setdefault("revision", str((answer.get("header") or {}).get("revision", 0)))
            body = dict(body, key=_b64(base64.b64decode(kvs[-1]["key"]) + b"\0"))

    def put(self, key: Any, value: Any, lease: Optional[int] = None) -> Dict[str, Any]:
        return self.call("/v3/kv/put", Transactions.put(key, value, lease)["request_put"])

    def delete(self, key: Any) -> bool:
        return int(self.call("/v3/kv/deleterange", {"key": _b64(key)}).get("deleted", 0)) > 0

    def delete_prefix(self, prefix: Any) -> int:
        raw = prefix if isinstance(prefix, bytes) else str(prefix).encode()
        answer = self.call("/v3/kv/deleterange", {"key": _b64(raw), "range_end": _b64(_prefix_end(raw))})
        return int(answer.get("deleted", 0))

    def transaction(self, compare: List[Dict[str, Any]], success: Optional[List[Dict[str, Any]]] = None,
                    failure: Optional[List[Dict[str, Any]]] = None) -> Tuple[bool, List[Dict[str, Any]]]:
        answer = self.call("/v3/kv/txn", {"compare": list(compare), "success": list(success or []),
                                          "failure": list(failure or [])})
        return bool(answer.get("succeeded", False)), answer.get("responses") or []

    # ------------------------------------------------------------------ leases
    def lease(self, ttl: int) -> Lease:
        answer = self.call("/v3/lease/grant", {"TTL": str(int(ttl))})
        if answer.get("error"):
            raise EtcdError(f"etcd granted no lease: {answer['error']}")
        return Lease(int(answer["ID"]), int(answer.get("TTL", ttl)), self)

    def refresh_lease(self, lease_id: int) -> Iterator[KeepAlive]:
        """One keep-alive (a one-message ``LeaseKeepAlive`` stream through the gateway): TTL 0 once it expired."""
        yield KeepAlive(self.call("/v3/lease/keepalive", {"ID": str(int(lease_id))}).get("result") or {})

    def revoke_lease(self, lease_id: int) -> None:
        self.call("/v3/lease/revoke", {"ID": str(int(lease_id))})
