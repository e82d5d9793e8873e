"""The timeline recorder: what the platform looked like every ``interval`` seconds of a run.

    recorder = Recorder(TestbedSource(state_dir), interval=0.2, ledger=ledger, run_id=run_id)
    recorder.start()
    ...                              # the experiment runs
    timeline = recorder.stop()       # a JSON dict; the control stores it in the journal

A background thread samples the platform: who leads, whether each master's process runs, each worker's state as the
leader sees it (alive / dead / unknown) and the task counts (pending, running, completed, rescheduled). On the
embedded cluster a sample is one request to the leader's ``GET /api/summary`` over its Unix socket, answered from
the leader's memory without reading etcd (more requests only while the leader changes). At ``stop`` the recorder
adds the run's fault windows from the ledger and, on the embedded cluster, the ground-truth events of the run
(elections, workers declared dead or seen again, reschedulings) from the event log.

The format (version 1) keeps every time in seconds since ``started_at`` (wall clock); states are stored as
segments ``[start, end, value]`` (a value holds from the sample that saw it until the sample that saw another)::

    {"version": 1, "source": str, "interval": s, "started_at": epoch, "duration": s,
     "samples": n, "requests": n, "requests_per_second": r, "request_seconds": s, "errors": n, "last_error": str,
     "t": [s, ...], "tasks": {"pending": [...], "running": [...], "completed": [...], "rescheduled": [...]},
     "leader": [[start, end, name or null]], "unanswered": [[start, end]], "leader_silent": [[start, end]],
     "masters": {name: [[start, end, "running" | "down"]]}, "workers": {name: [[start, end, state]]},
     "faults": [{"id", "action", "targets", "mode", "start", "end", "deadline", "state"}],
     "events": [[t, node, event, {fields}]]}

Counts are null where no leader answered. ``unanswered``: no master answered at all. ``leader_silent``: the leader
held the election key and its process ran, but it did not answer within the timeout (busy, or SIGSTOPped); the
workers' lanes keep their last known state there. Past ``max_samples`` samples the count series is halved (every other
sample dropped, ``decimated`` doubles, sampling slows down to match), so a timeline stays under ~400 kB (about
44 bytes per sample) inside its journal.
"""

import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional

from . import procs
from .testbed import state as tb_state
from .testbed.client import ClientError, request

__all__ = ["Recorder", "TestbedSource", "PlatformSource", "start_for", "finish", "COUNTS", "EVENT_KINDS"]
logger = logging.getLogger("chaostoolkit")

VERSION = 1
COUNTS = ("pending", "running", "completed", "rescheduled")
EVENT_KINDS = ("leader_acquired", "leader_lost", "worker_declared_dead", "worker_seen", "worker_lease_expired",
               "worker_registered", "node_started", "node_stopped", "task_rescheduled", "task_stale_completion",
               "task_dispatch_failed")
MAX_EVENTS = 2000


class TestbedSource:
    """Samples an embedded cluster: the record tells which master processes run; the leader's summary the rest."""

    __test__ = False
    name = "testbed /api/summary"

    def __init__(self, state_dir: str, timeout: float = 1.0):
        self.state_dir = state_dir
        self.timeout = timeout
        self.requests = 0
        self.request_seconds = 0.0
        self.preferred: Optional[str] = None
        self._record: Dict[str, Any] = {}
        self._mtime = -1.0
        self._events_offset = self._events_size()

    def _cluster(self) -> Dict[str, Any]:
        mtime = os.stat(tb_state.cluster_path(self.state_dir)).st_mtime
        if mtime != self._mtime:  # re-read only when a node was restarted (new pid)
            self._record, self._mtime = tb_state.load(self.state_dir), mtime
        return self._record

    def roles(self) -> Dict[str, List[str]]:
        nodes = self._cluster().get("nodes", [])
        return {role: [n["name"] for n in nodes if n.get("role") == role] for role in ("master", "worker")}

    def _ask(self, record: Dict[str, Any], master: str) -> Optional[Dict[str, Any]]:
        node = next(n for n in record["nodes"] if n["name"] == master)
        self.requests += 1
        started = time.monotonic()
        try:
            status, body = request(node["socket"], "GET", "/api/summary", timeout=self.timeout)
        except ClientError:
            return None
        finally:
            self.request_seconds += time.monotonic() - started
        return body if status == 200 and isinstance(body, dict) else None

    def sample(self) -> Dict[str, Any]:
        record = self._cluster()
        roles = self.roles()
        running = {m: procs.is_running(record.get("processes", {}).get(m)) for m in roles["master"]}
        queue = sorted((m for m in roles["master"] if running[m]), key=lambda m: m != self.preferred)
        answered, asked, named = False, set(), set()
        while queue:
            master = queue.pop(0)
            asked.add(master)
            body = self._ask(record, master)
            if body is None:
                continue
            answered = True
            if body.get("is_leader"):
                self.preferred = master
                workers = body.get("workers") or {}
                return {"answered": True, "leader": master, "masters": running,
                        "workers": {w: (workers.get(w) or {}).get("state", "unknown") for w in
                                    sorted(set(roles["worker"]) | set(workers))},
                        "tasks": {k: (body.get("tasks") or {}).get(k) for k in COUNTS}}
            hint = body.get("leader")  # a follower's belief (the etcd key): ask that master next
            if hint in running and running[hint]:
                named.add(hint)
                if hint in queue:
                    queue.remove(hint)
                    queue.insert(0, hint)
        if len(named) == 1:  # it holds the key and runs, but did not answer in time (busy, or SIGSTOPped)
            return {"answered": True, "leader": named.pop(), "silent": True, "masters": running, "workers": None,
                    "tasks": None}
        return {"answered": answered, "leader": None, "masters": running,
                "workers": {w: "unknown" for w in roles["worker"]}, "tasks": None}

    def _events_size(self) -> int:
        try:
            return os.path.getsize(tb_state.events_path(self.state_dir))
        except OSError:
            return 0

    def events(self) -> List[Dict[str, Any]]:
        """The ground-truth events written since this source was created (selected kinds only)."""
        import json

        out: List[Dict[str, Any]] = []
        try:
            with open(tb_state.events_path(self.state_dir), "rb") as handle:
                handle.seek(self._events_offset)
                for line in handle:
                    if len(out) >= MAX_EVENTS:
                        break
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue  # a torn last line
                    if isinstance(event, dict) and event.get("event") in EVENT_KINDS:
                        out.append(event)
        except OSError:
            pass
        return out


class PlatformSource:
    """Samples any :class:`~chaosscheduler.platforms.Platform` through ``leader()`` and ``workers()`` (two calls;
    pending and completed counts are unknown there). Master processes are checked at most every ``process_every``
    seconds: on remote platforms each check is a command on a host. Use a larger ``timeline_interval`` there."""

    def __init__(self, platform: Any, process_every: float = 1.0):
        self.platform = platform
        self.name = f"{platform.kind} leader()+workers()"
        self.process_every = process_every
        self.requests = 0
        self.request_seconds = 0.0
        self._running: Dict[str, bool] = {}
        self._checked = float("-inf")

    def roles(self) -> Dict[str, List[str]]:
        return {"master": list(self.platform.masters()), "worker": list(self.platform.worker_names())}

    def sample(self) -> Dict[str, Any]:
        started = time.monotonic()
        try:
            self.requests += 2
            leader = self.platform.leader().get("leader")
            workers = self.platform.workers()
            if started - self._checked >= self.process_every:
                masters = self.platform.masters()
                self.requests += len(masters)
                self._running = {m: bool(self.platform.is_running(m)) for m in masters}
                self._checked = started
        finally:
            self.request_seconds += time.monotonic() - started
        states = {w["name"]: ("alive" if w.get("alive") else "dead") for w in workers}
        running = sum(len(w.get("running") or []) for w in workers)
        return {"answered": True, "leader": leader, "masters": dict(self._running), "workers": states,
                "tasks": {"pending": None, "running": running, "completed": None, "rescheduled": None}}

    def events(self) -> List[Dict[str, Any]]:
        return []


def _segment(lanes: List[List[Any]], t: float, value: Any) -> None:
    if lanes and lanes[-1][2] == value:
        lanes[-1][1] = t
        return
    if lanes:
        lanes[-1][1] = t
    lanes.append([t, t, value])


class Recorder:
    def __init__(self, source: Any, interval: float = 0.2, ledger: Any = None, run_id: Optional[str] = None,
                 max_samples: int = 9000):
        self.source = source
        self.interval = float(interval)
        self.ledger = ledger
        self.run_id = run_id
        self.max_samples = max_samples
        self.started_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._errors = 0
        self._last_error: Optional[str] = None
        self._decimated = 1
        self._t: List[float] = []
        self._tasks: Dict[str, List[Optional[int]]] = {k: [] for k in COUNTS}
        self._leader: List[List[Any]] = []
        self._unanswered: List[List[Any]] = []
        self._silent: List[List[Any]] = []
        self._masters: Dict[str, List[List[Any]]] = {}
        self._workers: Dict[str, List[List[Any]]] = {}

    def start(self) -> "Recorder":
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._loop, name="chaosscheduler-timeline", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            now = time.monotonic()
            next_at = max(next_at + self.interval * self._decimated, now)  # behind: sample once, never burst
            self._stop.wait(next_at - now)

    def sample_once(self) -> None:
        try:
            sample = self.source.sample()
            error = None
        except Exception as e:  # the recorder must never take the run down
            sample, error = None, f"{type(e).__name__}: {e}"
        t = round(time.time() - self.started_at, 3)
        with self._lock:
            if error:
                self._errors += 1
                self._last_error = error
            self._apply(t, sample)

    def _apply(self, t: float, sample: Optional[Dict[str, Any]]) -> None:
        answered = bool(sample and sample.get("answered"))
        _segment(self._unanswered, t, not answered)
        if sample is None:
            return
        self._t.append(t)
        tasks = sample.get("tasks") or {}
        for key in COUNTS:
            self._tasks[key].append(tasks.get(key))
        _segment(self._leader, t, sample.get("leader"))
        _segment(self._silent, t, bool(sample.get("silent")))
        for name, up in (sample.get("masters") or {}).items():
            _segment(self._masters.setdefault(name, []), t, "running" if up else "down")
        for name, state in (sample.get("workers") or {}).items():
            _segment(self._workers.setdefault(name, []), t, state)
        if len(self._t) >= self.max_samples:
            self._t = self._t[::2]
            self._tasks = {k: v[::2] for k, v in self._tasks.items()}
            self._decimated *= 2

    def stop(self) -> Dict[str, Any]:
        """Stop sampling and return the timeline (never raises)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        end = round(time.time() - self.started_at, 3)
        with self._lock:
            for lanes in [self._leader, self._unanswered, self._silent] + list(self._masters.values()) + \
                    list(self._workers.values()):
                if lanes:
                    lanes[-1][1] = end
            requests = getattr(self.source, "requests", 0)
            timeline = {
                "version": VERSION, "source": getattr(self.source, "name", type(self.source).__name__),
                "interval": self.interval, "decimated": self._decimated, "started_at": self.started_at,
                "duration": end, "samples": len(self._t), "requests": requests,
                "requests_per_second": round(requests / end, 3) if end >= 1 else None,  # noise below 1 s
                "request_seconds": round(getattr(self.source, "request_seconds", 0.0), 3),
                "errors": self._errors, "last_error": self._last_error,
                "t": list(self._t), "tasks": {k: list(v) for k, v in self._tasks.items()},
                "leader": self._leader, "unanswered": [[a, b] for a, b, gap in self._unanswered if gap],
                "leader_silent": [[a, b] for a, b, silent in self._silent if silent],
                "masters": self._masters, "workers": self._workers,
            }
        timeline["faults"] = self._faults()
        timeline["events"] = self._events()
        return timeline

    def _offset(self, ts: Any) -> Optional[float]:
        return round(ts - self.started_at, 3) if isinstance(ts, (int, float)) else None

    def _faults(self) -> List[Dict[str, Any]]:
        if self.ledger is None:
            return []
        try:
            records = [f for f in self.ledger.all() if self.run_id is None or f.get("run_id") == self.run_id]
        except Exception as e:
            self._last_error = f"ledger: {e}"
            return []
        return [{"id": f.get("id"), "action": f.get("action"), "targets": f.get("targets", []),
                 "mode": f.get("mode"), "start": self._offset(f.get("started_at")),
                 "end": self._offset(f.get("undone_at")), "deadline": self._offset(f.get("deadline")),
                 "state": f.get("state")} for f in records if f.get("started_at")]

    def _events(self) -> List[List[Any]]:
        try:
            events = self.source.events()
        except Exception as e:
            self._last_error = f"events: {e}"
            return []
        skip = ("ts", "mono", "node", "event")
        return [[self._offset(e.get("ts")), e.get("node"), e.get("event"),
                 {k: v for k, v in e.items() if k not in skip}] for e in events]


def start_for(settings: Any, run_id: str, interval: float, secrets: Any = None) -> Optional[Recorder]:
    """Start recording the platform ``settings`` describe; None (and a warning) when it cannot be recorded."""
    from .ledger import Ledger

    try:
        if settings.platform == "testbed":
            source: Any = TestbedSource(settings.cluster_spec().state_dir)
        else:
            from .platforms import for_settings

            source = PlatformSource(for_settings(settings, secrets) if secrets else for_settings(settings))
        source.roles()
    except Exception as e:
        logger.warning("chaosscheduler: no timeline for this run, the platform cannot be sampled: %s", e)
        return None
    recorder = Recorder(source, interval=interval, ledger=Ledger(settings.home), run_id=run_id).start()
    logger.info("chaosscheduler: recording a timeline every %.2f s (%s)", interval, source.name)
    return recorder


def finish(recorder: Recorder) -> Dict[str, Any]:
    """Stop ``recorder`` and return its timeline, or ``{"error": ...}``: never raises."""
    try:
        timeline = recorder.stop()
    except Exception as e:
        logger.warning("chaosscheduler: the timeline could not be completed: %s", e)
        return {"version": VERSION, "error": f"{type(e).__name__}: {e}"}
    logger.info("chaosscheduler: timeline of %d samples, %.1f requests/s to the platform", timeline["samples"],
                timeline["requests_per_second"] or 0)
    return timeline
