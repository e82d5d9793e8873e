"""The witness workload: a thread in the ``chaos`` process that submits one witness task every ``1 / rate``
seconds through the platform's own submission interface and records every event of the history as it happens.

At most ``max_in_flight`` submissions await an answer at once (a tick that finds them all busy is skipped and
counted: the witness never piles threads on a platform that stopped answering). ``stop()`` stops submitting, waits
(up to ``stop_wait``) until every acknowledged task, and every other one seen starting, has left its end line,
cancels what is still queued, collects and deletes the evidence, asks the platform which tasks it reports completed,
and removes what the submitter created. ``history()`` gives the history at any time (while running: the events so
far and the evidence as it is now, read without deleting it).
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional

from . import command
from .checker import check, executions
from .collectors import Collector
from .history import History, Recorder
from .submitters import Submitter

__all__ = ["Workload"]

logger = logging.getLogger("chaostoolkit")


class Workload:
    def __init__(self, run_id: str, directory: str, submitter: Submitter, collector: Optional[Collector],
                 options: Dict[str, Any], meta: Optional[Dict[str, Any]] = None):
        self.run_id = run_id
        self.directory = directory
        self.submitter = submitter
        self.collector = collector
        self.options = options
        self.evidence = (options.get("evidence") or getattr(submitter, "evidence_path", None)
                         or command.evidence_name(run_id))
        self.recorder = Recorder(directory, dict(meta or {}, run_id=run_id, options=options, evidence=self.evidence,
                                                 submitter=submitter.describe(),
                                                 completions_reported=bool(submitter.reports_completions
                                                                           and options.get("collect", True))))
        self.lock = threading.Lock()
        self.jobs: Dict[str, str] = {}
        self.in_flight = 0
        self.skipped = 0
        self.seq = 0
        self.stopping = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.pool: Optional[ThreadPoolExecutor] = None
        self.started_at: Optional[float] = None
        self.stopped: Optional[Dict[str, Any]] = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.stopped is None

    # ------------------------------------------------------------------ submitting
    def start(self) -> "Workload":
        if self.thread is not None:
            raise RuntimeError("this witness workload was already started")
        self.started_at = time.time()
        self.recorder.save_meta(started_at=self.started_at)
        self.pool = ThreadPoolExecutor(max_workers=self.options["max_in_flight"], thread_name_prefix="witness-submit")
        self.thread = threading.Thread(target=self._pace, name="witness", daemon=True)
        self.thread.start()
        return self

    def _pace(self) -> None:
        period = 1.0 / self.options["rate"]
        next_at = time.monotonic()
        while not self.stopping.is_set():
            with self.lock:
                free = self.in_flight < self.options["max_in_flight"]
                if free:
                    self.in_flight += 1
                    self.seq += 1
                    seq = self.seq
                else:
                    self.skipped += 1
            if free:
                try:
                    self.pool.submit(self._submit_one, seq)
                except RuntimeError:  # the pool is shutting down
                    break
            next_at += period
            now = time.monotonic()
            if next_at < now - 1.0:  # starved for more than a second: keep the pace, never burst to catch up
                next_at = now
            self.stopping.wait(max(0.0, next_at - now))

    def _submit_one(self, seq: int) -> None:
        task = command.task_id(self.run_id, seq)
        duration = self.options["duration"]
        try:
            argv = command.argv(task, duration, self.evidence)
            self.recorder.record("invoke", task, duration=duration)
            try:
                answer = self.submitter.submit(task, argv, duration)
            except Exception as e:  # a submitter bug or an unexpected error: we cannot know if it was accepted
                answer = {"outcome": "info", "error": f"{type(e).__name__}: {e}", "latency": None}
            self.recorder.record(answer["outcome"], task, job_id=answer.get("job_id"), error=answer.get("error"),
                                 latency=answer.get("latency"))
            if answer["outcome"] == "ok":
                with self.lock:
                    self.jobs[task] = answer.get("job_id") or task
        finally:
            with self.lock:
                self.in_flight -= 1

    # ------------------------------------------------------------------ stopping
    def _wait_for_ends(self, deadline: float) -> Dict[str, Any]:
        interval = 0.5
        waiting: List[str] = []
        while True:
            with self.lock:
                acked = set(self.jobs)
            try:
                records, _ = self.collector.collect(self.evidence, delete=False)
            except Exception as e:
                logger.warning("witness: could not read the evidence while waiting: %s", e)
                records = []
            runs_by_task = executions(records)
            ended = {t for t, runs in runs_by_task.items() if any(r["end"] is not None for r in runs)}
            # acknowledged ones, and indeterminate ones seen running (the platform took them after all)
            waiting = sorted((acked | set(runs_by_task)) - ended)
            if not waiting or time.monotonic() >= deadline:
                return {"waited_for": len(waiting), "unfinished": waiting[:50]}
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 1.5, 5.0)

    def stop(self, collect: Optional[bool] = None) -> Dict[str, Any]:
        """Stop submitting, settle, cancel, collect, clean up; returns :meth:`summary`. Idempotent."""
        if self.stopped is not None:
            return self.summary()
        collect = self.options.get("collect", True) if collect is None else collect
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=30)
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        stopped_at = time.time()
        report: Dict[str, Any] = {"stopped_at": stopped_at, "skipped_ticks": self.skipped}
        if collect and self.collector is not None and self.jobs:
            report["settle"] = self._wait_for_ends(time.monotonic() + self.options["stop_wait"])
        with self.lock:
            jobs = dict(self.jobs)
        try:
            cleanup = self.submitter.cleanup(jobs)
        except Exception as e:
            cleanup = {"cancelled": [], "errors": [f"{type(e).__name__}: {e}"]}
        for task in cleanup.get("cancelled", []):
            self.recorder.record("cancel", task)
        report["cleanup"] = cleanup
        if collect and self.collector is not None:
            try:
                records, collection = self.collector.collect(self.evidence, delete=True)
            except Exception as e:
                records, collection = [], {"errors": [f"{type(e).__name__}: {e}"]}
            self.recorder.add_executions(records)
            report["collection"] = collection
            report["completions_asked_at"] = time.time()  # what the platform reports is as of this moment
            try:
                for done in self.submitter.completions(jobs):
                    self.recorder.record("completion", done["task"], at=done.get("at") or time.time(),
                                         job_id=done.get("job_id"), host=done.get("host"),
                                         attempt=done.get("attempt"))
            except Exception as e:
                report["completions_error"] = f"{type(e).__name__}: {e}"
        try:
            report["close"] = self.submitter.close()
        except Exception as e:
            report["close"] = {"errors": [f"{type(e).__name__}: {e}"]}
        self.recorder.save_meta(stopped_at=stopped_at, end=time.time(), collected=bool(collect), stop=report)
        self.recorder.close()
        self.stopped = report
        return self.summary()

    # ------------------------------------------------------------------ reading
    def history(self, collect: bool = True) -> History:
        """The history so far. While running, ``collect`` reads the evidence as it is now (nothing deleted) and the
        history ends now."""
        snapshot = self.recorder.history()
        if self.stopped is None:
            snapshot.meta["end"] = time.time()
            if collect and self.collector is not None:
                try:
                    records, report = self.collector.collect(self.evidence, delete=False)
                except Exception as e:
                    records, report = [], {"errors": [f"{type(e).__name__}: {e}"]}
                snapshot.executions = records
                snapshot.meta["collection"] = report
        return snapshot

    def summary(self, faults: Any = ()) -> Dict[str, Any]:
        """A compact account for the journal: the counts and findings of the checker (ids cut to 20 per list)."""
        found = check(self.history(collect=self.stopped is None), faults=faults)

        def cut(ids: List[Any]) -> List[Any]:
            return ids[:20]

        meta = self.recorder.meta
        return {"run_id": self.run_id, "directory": self.directory, "options": self.options,
                "sizing": meta.get("sizing"), "submitter": meta.get("submitter"), "started_at": self.started_at,
                "stopped_at": (self.stopped or {}).get("stopped_at"), "running": self.running,
                "skipped_ticks": self.skipped, "valid": found["valid"], "counts": found["counts"],
                "submissions": found["submissions"], "execution": found["execution"],
                "lost": cut(found["lost"]), "duplicated": cut(found["duplicated_ids"]),
                "forgotten": cut(found["forgotten"]),
                "completed_without_evidence": cut(found["completed_without_evidence"]),
                "reexecuted_after_loss": len(found["reexecuted_after_loss"]), "refused": cut(found["refused"]),
                "indeterminate": {k: cut(v) for k, v in found["indeterminate"].items()},
                "unexpected": cut(found["unexpected"]), "stall": found["stall"],
                "collection_errors": ((self.stopped or {}).get("collection") or {}).get("errors", [])}
