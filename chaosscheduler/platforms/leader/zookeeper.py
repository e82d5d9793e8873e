"""Leader from ZooKeeper (kazoo): an election or lock path, or one znode that names the leader.

* ``mode: "election"`` (default): the candidates' ephemeral sequential children of ``path`` (kazoo's
  ``Election``/``Lock`` recipes, Curator's ``LeaderLatch``/``InterProcessMutex`` as DolphinScheduler uses them);
  the child with the lowest sequence number leads. It names its master by its data (``json_path`` into JSON data,
  or the text itself), or, with ``identity: "name"``, by the child's name before the sequence number.
* ``mode: "node"``: the data of ``path`` names the leader; the znode's ``ctime`` (ZooKeeper's own clock) is ``since``.

``hosts`` defaults to the registry nodes on port 2181. Resolution: the poll interval plus one request; note that
after a ``kill -9`` of the leader ZooKeeper itself only lets the next candidate lead when the dead one's session
expires (the session timeout), which is part of what is measured, as it is on the real platform.

    {"source": "zookeeper", "path": "/dolphinscheduler/lock/masters", "identity": "data"}
"""

import json
import re
import threading
from typing import Any, Dict, List, Optional

from ...errors import ChaosSchedulerError, ConfigurationError
from . import LeaderSource, json_path, match_master

MODES = ("election", "node")
IDENTITIES = ("data", "name")
_SEQUENCE = re.compile(r"^(.*?)(\d{10})$")
_clients: Dict[Any, Any] = {}
_lock = threading.Lock()


class Source(LeaderSource):
    kind = "zookeeper"
    OPTIONS = {"path": "required", "mode": "election", "hosts": None, "identity": "data", "json_path": "",
               "names": None, "timeout": 5.0}

    @classmethod
    def check(cls, options: Dict[str, Any]) -> Dict[str, Any]:
        out = super().check(options)
        if not isinstance(out["path"], str) or not out["path"].startswith("/"):
            raise ConfigurationError(f"leader.path must be an absolute znode path, got {out['path']!r}")
        if out["mode"] not in MODES:
            raise ConfigurationError(f"leader.mode must be one of {', '.join(MODES)}, got {out['mode']!r}")
        if out["identity"] not in IDENTITIES:
            raise ConfigurationError(f"leader.identity must be one of {', '.join(IDENTITIES)}")
        if out["hosts"] is not None and not isinstance(out["hosts"], str):
            raise ConfigurationError("leader.hosts must be a ZooKeeper connection string 'host:port,host:port'")
        return out

    def _hosts(self) -> str:
        if self.options["hosts"]:
            return self.options["hosts"]
        if not self.env.registry:
            raise ChaosSchedulerError("leader source 'zookeeper' needs 'hosts' or registry nodes")
        return ",".join(f"{n['address']}:2181" for n in self.env.registry)

    def client(self) -> Any:
        """One kazoo client per ZooKeeper ensemble and namespace for the life of the process (every probe poll
        reuses its session); :func:`close_all` stops them."""
        key = (self._hosts(), self.env.netns, float(self.options["timeout"]))
        with _lock:
            client = _clients.get(key)
            if client is not None and client.connected:
                return client
            if client is not None:
                client.stop()
                client.close()
            client = _connect(*key)
            _clients[key] = client
            return client

    def _name(self, data: bytes, child: Optional[str]) -> Optional[str]:
        if self.options["identity"] == "name" and child is not None:
            found = _SEQUENCE.match(child)
            value: Any = (found.group(1) if found else child).rstrip("-_")
        else:
            value = data.decode(errors="replace").strip()
            if self.options["json_path"]:
                try:
                    value = json_path(json.loads(value), self.options["json_path"])
                except ValueError:
                    raise ChaosSchedulerError(f"the data under {self.options['path']} is not JSON") from None
        return match_master(value, self.env.masters, self.options["names"])

    def read(self) -> Dict[str, Any]:
        from kazoo.exceptions import KazooException, NoNodeError

        client = self.client()
        path = self.options["path"].rstrip("/") or "/"
        try:
            if self.options["mode"] == "node":
                data, stat = client.get(path)
                # the winner creates the leader znode: its ctime is the server's own timestamp of the election
                leader = self._name(data, None)
                return {"leader": leader, "since": stat.ctime / 1000.0 if leader and stat.ctime else None}
            children = client.get_children(path)
            ordered: List[str] = sorted((c for c in children if _SEQUENCE.match(c)),
                                        key=lambda c: _SEQUENCE.match(c).group(2))
            claims: List[str] = []
            for child in ordered:
                try:
                    data, _ = client.get(f"{path}/{child}")
                except NoNodeError:
                    continue  # gone between the listing and the read
                name = self._name(data, child)
                if name and name not in claims:
                    claims.append(name)
                if claims:
                    break
            return {"leader": claims[0] if claims else None, "candidates": len(ordered)}
        except NoNodeError:
            return {"leader": None}
        except KazooException as e:
            raise ChaosSchedulerError(f"ZooKeeper read of {path} failed: {type(e).__name__}: {e}") from None



def _connect(hosts: str, netns: Optional[str], timeout: float) -> Any:
    try:
        from kazoo.client import KazooClient
    except ImportError:
        raise ConfigurationError("the zookeeper leader source needs kazoo: pip install 'chaosscheduler[zookeeper]'") \
            from None
    from kazoo.handlers.threading import SequentialThreadingHandler

    from ...metrics.transport import connect

    class Handler(SequentialThreadingHandler):
        def create_connection(self, address: Any, timeout: Any = None, **kwargs: Any) -> Any:
            if not netns:
                return super().create_connection(address, timeout=timeout, **kwargs)
            return connect(address[0], address[1], timeout or 10.0, netns)

    client = KazooClient(hosts=hosts, timeout=timeout, handler=Handler(),
                         connection_retry={"max_tries": 3, "delay": 0.1, "max_delay": 1})
    try:
        client.start(timeout=timeout)
    except Exception as e:
        client.close()
        raise ChaosSchedulerError(f"ZooKeeper at {hosts} unreachable: {e}") from None
    return client


def close_all() -> None:
    """Stop every ZooKeeper client of this process."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        try:
            client.stop()
            client.close()
        except Exception:  # already broken: nothing left to release
            pass
