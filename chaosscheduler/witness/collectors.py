"""Read the witness tasks' evidence back over the platform's own channel, then delete it: the witness leaves
nothing behind.

* :class:`TestbedCollector` — the embedded cluster's worker directories on this machine
  (``<state_dir>/nodes/<worker>/``, the tasks' ``$CS_WITNESS_DIR``).
* :class:`HostCollector` — any platform whose ``host(node)`` runs an argv on a worker: SSH for ``hosts`` (the SSH
  port is exempt from our network faults, so a cut-off worker is still read), pod exec for ``kubernetes``. It runs
  ``cat`` (nothing when the file is absent), then ``rm -f`` of that one file.

A task still running on a cut worker appends after the heal: collect after the heal (the control stops the witness
after the rollbacks). Every collector returns ``(records, report)``; the report names each node's line count and
any node it could not read, so a missing host is never silently read as "not executed".
"""

import glob
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .command import parse_lines

__all__ = ["Collector", "TestbedCollector", "HostCollector", "evidence_path"]

_CAT = 'if [ -e "$1" ]; then cat -- "$1"; fi'


def evidence_path(evidence: str, directory: str, node: str) -> str:
    """Where ``evidence`` (a name, or an absolute path) is on ``node``; ``{node}`` in either is the node's name."""
    path = evidence if evidence.startswith("/") else os.path.join(directory, evidence)
    return path.replace("{node}", node)


class Collector:
    kind = "abstract"

    def collect(self, evidence: str, delete: bool = True) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        raise NotImplementedError


class TestbedCollector(Collector):
    """The embedded cluster's workers write under ``<state_dir>/nodes/<worker>/`` on this machine."""

    kind = "testbed"
    __test__ = False

    def __init__(self, state_dir: str):
        self.state_dir = state_dir

    def collect(self, evidence: str, delete: bool = True) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        started = time.monotonic()
        records: List[Dict[str, Any]] = []
        nodes: Dict[str, Any] = {}
        name = os.path.basename(evidence)
        for path in sorted(glob.glob(os.path.join(self.state_dir, "nodes", "*", name))):
            node = os.path.basename(os.path.dirname(path))
            try:
                with open(path) as handle:
                    text = handle.read()
                if delete:
                    os.unlink(path)
            except OSError as e:
                nodes[node] = {"error": str(e)}
                continue
            found = parse_lines(text, node=node, source=path)
            records += found
            nodes[node] = {"lines": len(found)}
        return records, {"collector": self.kind, "nodes": nodes, "seconds": time.monotonic() - started,
                         "errors": [f"{n}: {v['error']}" for n, v in nodes.items() if "error" in v]}


def _run(host: Any, argv: Sequence[str], timeout: float) -> Any:
    from ..hosts.ssh import SSHHost

    if isinstance(host, SSHHost):  # our own files: never through sudo
        return host.run(list(argv), timeout=timeout, check=False, privileged=False)
    return host.run(list(argv), timeout=timeout, check=False)


class HostCollector(Collector):
    """``cat`` then ``rm -f`` of the evidence file on each of ``nodes`` through ``platform.host(node)``."""

    kind = "host"

    def __init__(self, platform: Any, nodes: Sequence[str], directory: str = "/tmp", timeout: float = 60.0,
                 parallel: int = 16):
        self.platform = platform
        self.nodes = list(nodes)
        self.directory = directory
        self.timeout = timeout
        self.parallel = parallel

    def _one(self, node: str, evidence: str, delete: bool) -> Tuple[str, List[Dict[str, Any]], Dict[str, Any]]:
        path = evidence_path(evidence, self.directory, node)
        try:
            host = self.platform.host(node)
            done = _run(host, ["sh", "-c", _CAT, "cs-witness-collect", path], self.timeout)
            if done.returncode != 0:
                return node, [], {"error": f"cat {path} failed ({done.returncode}): {done.stderr.strip()[:200]}"}
            records = parse_lines(done.stdout, node=node, source=f"{node}:{path}")
            if delete and done.stdout:
                removed = _run(host, ["rm", "-f", "--", path], self.timeout)
                if removed.returncode != 0:
                    return node, records, {"lines": len(records), "error": f"rm {path} failed: "
                                                                          f"{removed.stderr.strip()[:200]}"}
        except Exception as e:  # one unreachable node must not hide the others' evidence
            return node, [], {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        return node, records, {"lines": len(records)}

    def collect(self, evidence: str, delete: bool = True) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        started = time.monotonic()
        records: List[Dict[str, Any]] = []
        nodes: Dict[str, Any] = {}
        if self.nodes:
            with ThreadPoolExecutor(max_workers=max(1, min(self.parallel, len(self.nodes)))) as pool:
                for node, found, report in pool.map(lambda n: self._one(n, evidence, delete), self.nodes):
                    records += found
                    nodes[node] = report
        return records, {"collector": self.kind, "nodes": nodes, "seconds": time.monotonic() - started,
                         "errors": [f"{n}: {v['error']}" for n, v in nodes.items() if "error" in v]}


def for_platform(platform: Any, options: Dict[str, Any], submitter: Any = None) -> Optional[Collector]:
    """The collector of ``platform``: a submitter that knows its own (a Kubernetes Job's logs) wins."""
    own = getattr(submitter, "collector", None)
    if own is not None:
        return own
    if platform.kind == "testbed":
        return TestbedCollector(platform.tb.state_dir)
    return HostCollector(platform, platform.worker_names(), options.get("evidence_dir") or "/tmp")
