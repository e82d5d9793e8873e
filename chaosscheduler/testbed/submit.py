"""The embedded cluster's command-line client, its ``sbatch``/``squeue``/``scancel``: what a user on a node runs to
submit a job, look at it or cancel it (the witness's ``command`` submitter drives it over SSH in the sshd lab).

    python -m chaosscheduler.testbed.submit --master 198.18.2.1:8080 [--master ...] [--job ID] [--duration S] -- ARGV...
    python -m chaosscheduler.testbed.submit --master ... --status JOB [JOB...]
    python -m chaosscheduler.testbed.submit --master ... --cancel JOB [JOB...]

Submitting prints the job id and exits 0; a refusal exits 1; a submission that may or may not have been accepted
(a master timed out after the request was sent) exits 75 (EX_TEMPFAIL). ``--status`` prints
``<job> <state> <completed_at or -> <worker or ->`` per job (one line per recorded completion of a completed job).
Every master is tried, the last one that answered first, until one accepts or ``--deadline`` passes.
"""

import argparse
import json
import socket
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .client import ClientError, Target, request

__all__ = ["submit", "main", "EX_TEMPFAIL"]

EX_TEMPFAIL = 75


def _definitely_unsent(error: ClientError) -> bool:
    """A request that cannot have reached a master: its socket is gone, the connection was refused, or its accept
    queue was full (EAGAIN on a Unix socket)."""
    return isinstance(error.__cause__, (FileNotFoundError, ConnectionRefusedError, BlockingIOError)) \
        and not isinstance(error.__cause__, socket.timeout)


def submit(masters: Sequence[Tuple[str, Target]], body: Dict[str, Any], deadline: float = 10.0,
           attempt_timeout: float = 1.0, preferred: Optional[str] = None) -> Dict[str, Any]:
    """Submit ``body`` (a job with a unique ``job`` id) through any master. ``{"outcome": "ok"|"fail"|"info",
    "job", "leader", "tries", "error"}``: ``info`` when every try failed and one may have been accepted (a timeout
    after sending); a 409 "already exists" on a retry proves an earlier try was accepted (``ok``)."""
    started = time.monotonic()
    errors: List[str] = []
    maybe_sent = False
    tries = 0
    while True:
        for name, target in sorted(masters, key=lambda m: m[0] != preferred):
            if tries and time.monotonic() - started > deadline:
                return {"outcome": "info" if maybe_sent else "fail", "tries": tries, "error": "; ".join(errors[-3:])}
            tries += 1
            try:
                status, answer = request(target, "POST", "/api/jobs", body, timeout=attempt_timeout)
            except ClientError as e:
                maybe_sent = maybe_sent or not _definitely_unsent(e)
                errors.append(str(e))
                continue
            if status == 201:
                return {"outcome": "ok", "job": answer.get("job"), "leader": answer.get("leader") or name,
                        "tries": tries}
            message = answer.get("error") if isinstance(answer, dict) else str(answer)
            if status == 409 and "already exists" in str(message):
                return {"outcome": "ok", "job": body.get("job"), "leader": name, "tries": tries,
                        "note": "accepted by an earlier try"}
            errors.append(f"{name}: {status} {message}")
            if status == 400:
                return {"outcome": "fail", "tries": tries, "error": errors[-1]}
        time.sleep(0.05)


def _any(masters: Sequence[Tuple[str, Target]], method: str, path: str, body: Any = None,
         timeout: float = 10.0) -> Any:
    errors = []
    for name, target in masters:
        try:
            status, answer = request(target, method, path, body, timeout=timeout)
        except ClientError as e:
            errors.append(str(e))
            continue
        if status == 200:
            return answer
        errors.append(f"{name}: {status} {answer}")
    raise ClientError(f"no master answered {path}: {'; '.join(errors)}")


def _target(text: str) -> Tuple[str, Target]:
    if text.startswith("/"):
        return text, text
    host, _, port = text.rpartition(":")
    return text, (host, int(port))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaosscheduler.testbed.submit",
                                     description="submit, inspect or cancel jobs on an embedded cluster")
    parser.add_argument("--master", action="append", required=True, help="ADDRESS:PORT or a Unix socket path")
    parser.add_argument("--job", help="the job id (unique); default: the cluster picks one")
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--deadline", type=float, default=10.0)
    parser.add_argument("--status", action="store_true", help="print the state of the jobs named")
    parser.add_argument("--cancel", action="store_true", help="cancel the jobs named while they are pending")
    parser.add_argument("rest", nargs="*", help="the task's argv (submit) or job ids (--status, --cancel)")
    args = parser.parse_args(argv)
    masters = [_target(m) for m in args.master]
    try:
        if args.status or args.cancel:
            jobs = set(args.rest)
            tasks = [t for t in _any(masters, "GET", "/api/tasks", timeout=args.deadline)["tasks"]
                     if t.get("job") in jobs]
            if args.cancel:
                answer = _any(masters, "POST", "/api/cancel", {"tasks": [t["id"] for t in tasks]},
                              timeout=args.deadline)
                print(json.dumps(answer))
                return 0
            for task in tasks:
                done = [h for h in task.get("history") or [] if h.get("event") == "completed"]
                for entry in done or [{}]:
                    print(task["job"], task["state"], entry.get("at", "-"), entry.get("worker", "-"))
            return 0
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    body = {"tasks": 1, "duration": args.duration, "command": args.rest or None}
    if args.job:
        body["job"] = args.job
    result = submit(masters, body, deadline=args.deadline)
    if result["outcome"] == "ok":
        print(result["job"])
        return 0
    print(f"error: {result['error']}", file=sys.stderr)
    return EX_TEMPFAIL if result["outcome"] == "info" else 1


if __name__ == "__main__":
    sys.exit(main())
