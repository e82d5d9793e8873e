"""What the benchmark scripts share: a temporary state home, everything removed by its own record, the load average,
and plain-text tables.

Each script does::

    with Session("a") as bench:           # CHAOSSCHEDULER_HOME = a fresh /tmp/csb* directory
        tb = bench.cluster(workers=4)      # a unique cluster name; removed on exit, also on error or Ctrl-C
        ...
        print(table(headers, rows))

On exit the session undoes every fault its ledger still holds open, stops the reapers it started (found by the
marker in their environment, which names this session's home), ends the child processes it recorded, removes its
clusters (``down``) and the network namespaces it created (by name, as recorded), then deletes the home.
Nothing is found by pattern; nothing outside this session is touched.
"""

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from chaosscheduler import procs  # noqa: E402
from chaosscheduler.faults import undo_open  # noqa: E402
from chaosscheduler.ledger import Ledger  # noqa: E402
from chaosscheduler.testbed import ClusterSpec, Testbed, down, up  # noqa: E402

__all__ = ["Session", "Load", "table", "ms", "secs", "median", "verdict", "requirements", "interrupt_on_sigterm",
           "ROOT"]


def interrupt_on_sigterm() -> None:
    """SIGTERM behaves like Ctrl-C: the ``finally`` blocks (the session's cleanup) run."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def requirements(netns: bool = True) -> Optional[str]:
    """None when this machine can run the benchmarks; otherwise why not."""
    if shutil.which("etcd") is None:
        return "etcd is not installed (apt-get install etcd-server)"
    if netns and os.geteuid() != 0:
        return ("network namespaces need root: run as root, or inside 'chaosscheduler userns -- python "
                "benchmarks/...'")
    if netns and shutil.which("nft") is None:
        return "nft is not installed (apt-get install nftables)"
    return None


class Load:
    """The 1-minute load average, sampled whenever :meth:`sample` is called (once per run), for the record that goes
    with every figure set: this machine has 2 cores and other people's test suites run on it at the same time."""

    def __init__(self) -> None:
        self.samples: List[float] = []
        self.sample()

    def sample(self) -> float:
        value = os.getloadavg()[0]
        self.samples.append(value)
        return value

    def summary(self) -> str:
        self.sample()
        one, five, fifteen = os.getloadavg()
        low, high = min(self.samples), max(self.samples)
        return (f"load average (1 min) during this set: {low:.2f}-{high:.2f}, median {median(self.samples):.2f} "
                f"({len(self.samples)} samples; now 1/5/15 min {one:.2f}/{five:.2f}/{fifteen:.2f}; "
                f"{os.cpu_count()} cores)")

    def figures(self) -> Dict[str, float]:
        return {"load1_min": min(self.samples), "load1_median": median(self.samples), "load1_max": max(self.samples)}


class Session:
    """A temporary state home and everything started under it; see the module docstring."""

    def __init__(self, tag: str):
        if not tag.isalpha() or not tag.islower():
            raise ValueError("tag: lowercase letters")
        # short: Unix socket paths are limited; CHAOSSCHEDULER_BENCH_TMP lets a test find what a script left behind
        self.home = tempfile.mkdtemp(prefix="csb", dir=os.environ.get("CHAOSSCHEDULER_BENCH_TMP") or "/tmp")
        os.environ["CHAOSSCHEDULER_HOME"] = self.home
        self.prefix = tag[:2] + uuid.uuid4().hex[:5]
        self.state_dirs: List[str] = []
        self.namespaces: List[str] = []
        self.children: List[subprocess.Popen] = []
        self._count = 0

    # ------------------------------------------------------------------ what we create
    def name(self) -> str:
        self._count += 1
        return f"{self.prefix}{self._count}"

    def cluster(self, timeout: float = 60.0, **fields: Any) -> Testbed:
        """Start a healthy embedded cluster with a unique name under this session's home."""
        spec = ClusterSpec(name=self.name(), home=self.home, **fields)
        self.state_dirs.append(spec.state_dir)  # before up(): a failed start is removed too
        return up(spec, timeout=timeout)

    def remove_cluster(self, tb: Testbed) -> None:
        down(tb.state_dir)

    def cfg(self, tb: Testbed, **extra: Any) -> Dict[str, Any]:
        """The experiment configuration that targets ``tb``."""
        configuration = {"chaosscheduler_cluster": tb.spec.name, "chaosscheduler_home": self.home}
        configuration.update({f"chaosscheduler_{k}": v for k, v in extra.items()})
        return configuration

    def netns(self) -> str:
        """A fresh, empty network namespace (loopback up) of our own."""
        name = f"csb-{self.prefix}-{self._next()}"
        self.namespaces.append(name)  # recorded before it exists
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=30)
        return name

    def _next(self) -> int:
        self._count += 1
        return self._count

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        proc = subprocess.Popen(list(argv), **kwargs)
        self.children.append(proc)
        return proc

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.home)

    # ------------------------------------------------------------------ cleanup
    def close(self) -> List[str]:
        problems: List[str] = []
        if os.path.exists(self.ledger.path):
            try:
                result = undo_open(self.ledger)
                problems += result["errors"]
            except Exception as e:
                problems.append(f"undo: {e}")
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
        marker = f"reaper:{self.home}"
        for pid in procs.pids_with_marker(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while procs.pids_with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        for state_dir in self.state_dirs:
            try:
                down(state_dir, force=True)
            except Exception as e:
                problems.append(f"down {state_dir}: {e}")
        for name in self.namespaces:
            if os.path.exists(f"/run/netns/{name}"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        shutil.rmtree(self.home, ignore_errors=True)
        for problem in problems:
            print(f"cleanup: {problem}", file=sys.stderr)
        return problems

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------- formatting
def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(value: Optional[float], digits: int = 1) -> str:
    if value is None or value != value:
        return "-"
    return f"{value * 1000:.{digits}f} ms"


def secs(value: Optional[float], digits: int = 2) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f} s"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """A plain-text table; the first ``left`` columns are left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"
