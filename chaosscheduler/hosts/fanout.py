"""Fan-out: one step on many hosts at once, with bounded concurrency and a common start.

A fault over many hosts runs in phases (Jepsen's ``real-pmap`` over every node, Ansible's forks, parallel-ssh's
pool): :meth:`FanOut.connect` opens and authenticates every connection first (nothing is applied anywhere if a host
cannot be reached), then :meth:`FanOut.each` sends the step to every host together, at most ``concurrency`` at a
time, and records when each host's command was sent and when it returned. The phase boundary is the barrier: no
host is cut before every host is connected, so a partition starts at one moment instead of rolling over the fleet.

Usage::

    fan = FanOut({node: platform.host(node) for node in targets}, concurrency=64)
    fan.connect()                                    # {node: error} for the hosts that cannot be reached
    done = fan.each(lambda node, host: host.run(["nft", "-f", "-"], input=text))
    times = timing(done)                             # applied_at per host, first, last, spread

One host failing never stops the others: every outcome is returned and the caller decides (a fault undoes what
was applied and names the hosts that failed).
"""

import concurrent.futures
import dataclasses
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

__all__ = ["FanOut", "Outcome", "timing", "failures", "DEFAULT_CONCURRENCY", "MAX_CONCURRENCY", "describe"]

DEFAULT_CONCURRENCY = 32
MAX_CONCURRENCY = 1024


@dataclasses.dataclass
class Outcome:
    """One host's result: ``sent_at`` (the step started), ``done_at`` (it returned), its value or its error."""

    node: str
    sent_at: float
    done_at: float
    value: Any = None
    error: Optional[BaseException] = None

    @property
    def ok(self) -> bool:
        return self.error is None


class FanOut:
    """``hosts``: node name -> host (anything with ``run``; an optional ``connect`` opens its connection)."""

    def __init__(self, hosts: Mapping[str, Any], concurrency: Optional[int] = None):
        self.hosts = dict(hosts)
        self.concurrency = max(1, min(int(concurrency or DEFAULT_CONCURRENCY), MAX_CONCURRENCY))
        self.connect_seconds: Optional[float] = None

    def connect(self, nodes: Optional[List[str]] = None, retries: int = 1) -> Dict[str, str]:
        """Open every host's connection (hosts without ``connect`` need none); ``{node: error}`` for the failures.
        The hosts that failed are tried ``retries`` more times, in a wave of their own: a handshake that timed out
        while hundreds ran at once on a busy machine usually succeeds alone."""
        started = time.monotonic()
        needed = [n for n, h in self.hosts.items() if (nodes is None or n in nodes) and hasattr(h, "connect")]
        missing = failures(self.each(lambda node, host: host.connect(), needed))
        for _ in range(retries):
            if not missing:
                break
            missing = failures(self.each(lambda node, host: host.connect(), list(missing)))
        self.connect_seconds = round(time.monotonic() - started, 6)
        return missing

    def each(self, step: Callable[[str, Any], Any], nodes: Optional[List[str]] = None) -> Dict[str, Outcome]:
        """``step(node, host)`` on every host (or ``nodes``), at most ``concurrency`` at once; every outcome."""
        order = [n for n in (nodes if nodes is not None else list(self.hosts))]
        if not order:
            return {}

        def one(node: str) -> Outcome:
            sent = time.time()
            try:
                value = step(node, self.hosts[node])
            except Exception as e:  # one host's failure is an outcome, not the end of the others
                return Outcome(node, sent, time.time(), error=e)
            return Outcome(node, sent, time.time(), value=value)

        if self.concurrency == 1 or len(order) == 1:
            return {node: one(node) for node in order}
        workers = min(self.concurrency, len(order))
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="chaosscheduler-fanout") as pool:
            futures = {node: pool.submit(one, node) for node in order}
            try:
                return {node: futures[node].result() for node in order}
            except BaseException:  # Ctrl-C, SIGTERM turned into an exception: start nothing more
                for future in futures.values():
                    future.cancel()
                raise


def failures(outcomes: Mapping[str, Outcome]) -> Dict[str, str]:
    """``{node: first line of its error}`` for the hosts whose step failed."""
    return {n: (str(o.error).splitlines() or [type(o.error).__name__])[0] for n, o in outcomes.items() if not o.ok}


def timing(outcomes: Mapping[str, Outcome], field: str = "applied_at") -> Dict[str, Any]:
    """The timing facts of a step over the hosts where it succeeded: ``{field: {node: when it returned}}`` and
    ``{prefix}_sent_at`` (when it was sent), the first and last return, the spread between them, and the
    resolution (the longest step: a host's change happened between the step's start and its return)."""
    ok = {n: o for n, o in outcomes.items() if o.ok}
    if not ok:
        return {field: {}}
    times = {n: round(o.done_at, 6) for n, o in ok.items()}
    first, last = min(times.values()), max(times.values())
    prefix = field[:-len("_at")] if field.endswith("_at") else field
    return {field: times, f"{prefix}_sent_at": {n: round(o.sent_at, 6) for n, o in ok.items()},
            f"first_{field}": first, f"last_{field}": last,
            f"{prefix}_spread": round(last - first, 6),
            f"{prefix}_resolution": round(max(o.done_at - o.sent_at for o in ok.values()), 6)}


def describe(nodes: List[str], errors: Mapping[str, str], limit: int = 5) -> str:
    """``"worker-3: <error>; worker-7: <error> (and 2 more)"`` for an error message that names the hosts."""
    named = [f"{n}: {errors[n]}" for n in nodes[:limit]]
    more = f" (and {len(nodes) - limit} more: {', '.join(nodes[limit:limit + 20])})" if len(nodes) > limit else ""
    return "; ".join(named) + more
