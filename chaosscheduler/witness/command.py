"""The witness task: a constant POSIX-shell script that leaves its own execution evidence on the host it runs on.

It needs only ``sh``, ``date``, ``uname`` and ``sleep``. Its values arrive as positional parameters, never inside the
script text: ``$1`` task id, ``$2`` duration (seconds), ``$3`` evidence file (a relative name is put under
``$CS_WITNESS_DIR``, default ``/tmp``). It appends one line when it starts and one when it ends (``O_APPEND``; one
short line per write, which POSIX keeps whole)::

    cs-witness 1 start <task> <host> <epoch seconds.fraction> <attempt or -> <pid>
    cs-witness 1 end   <task> <host> <epoch seconds.fraction> <attempt or -> <pid>

``<host>`` is ``$CS_WITNESS_NODE`` when the platform sets it (the embedded cluster's workers do; a Kubernetes Job can
from the downward API), else ``uname -n``. ``<attempt>`` is ``$CS_WITNESS_ATTEMPT``, else Slurm's
``$SLURM_RESTART_COUNT``, else ``-``. ``<pid>`` (the shell's) tells two executions on one host apart.

Ids are ``[a-z0-9-]`` only (:func:`task_id`), so ``shlex.join(argv(...))`` is a safe single command string for
templates that need one (``sbatch --wrap``).
"""

import re
import shlex
from typing import Any, Dict, List, Optional

__all__ = ["SCRIPT", "argv", "command_line", "task_id", "parse_line", "parse_lines", "evidence_name", "TASK_RE",
           "MARKER"]

MARKER = "cs-witness"
VERSION = "1"
TASK_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SCRIPT = (
    'f=$3; case $f in /*) ;; *) f="${CS_WITNESS_DIR:-/tmp}/$f";; esac; '
    'h=${CS_WITNESS_NODE:-$(uname -n)}; a=${CS_WITNESS_ATTEMPT:-${SLURM_RESTART_COUNT:--}}; '
    'now() { s=$(date +%s.%N); case $s in *[!0-9.]*|*.) s=$(date +%s);; esac; echo "$s"; }; '
    'printf "cs-witness 1 start %s %s %s %s %s\\n" "$1" "$h" "$(now)" "$a" "$$" >> "$f" || exit 70; '
    'sleep "$2"; '
    'printf "cs-witness 1 end %s %s %s %s %s\\n" "$1" "$h" "$(now)" "$a" "$$" >> "$f" || exit 70'
)


def task_id(run_id: str, seq: int) -> str:
    """The id of the ``seq``-th witness task of run ``run_id``: ``w-<run>-<seq>``, lowercase letters, digits and
    dashes only (job names, label values and shell words all accept it)."""
    run = re.sub(r"[^a-z0-9]+", "-", str(run_id).lower()).strip("-")[:40] or "run"
    return f"w-{run}-{int(seq)}"


def evidence_name(run_id: str) -> str:
    """The evidence file's name for run ``run_id`` (one file per run and host; the collector deletes it)."""
    return "cs-witness-" + re.sub(r"[^a-z0-9-]+", "-", str(run_id).lower()) + ".log"


def _duration(duration: float) -> str:
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 <= duration <= 86400:
        raise ValueError(f"a witness task lasts 0-86400 seconds, got {duration!r}")
    return f"{float(duration):g}" if float(duration) != int(duration) else str(int(duration))


def argv(task: str, duration: float, evidence: str) -> List[str]:
    """The argv of one witness task (``sh -c SCRIPT cs-witness <task> <duration> <evidence>``)."""
    if not TASK_RE.match(task):
        raise ValueError(f"witness task id {task!r} must be lowercase letters, digits and dashes")
    if not evidence or "\0" in evidence or "\n" in evidence:
        raise ValueError(f"evidence path {evidence!r} must be a non-empty single-line path")
    return ["sh", "-c", SCRIPT, MARKER, task, _duration(duration), evidence]


def command_line(task: str, duration: float, evidence: str) -> str:
    """:func:`argv` as one shell command string (every element quoted)."""
    return shlex.join(argv(task, duration, evidence))


def parse_line(line: str) -> Optional[Dict[str, Any]]:
    """One evidence line as ``{"task", "phase", "host", "at", "attempt", "pid"}``; None for anything else (a torn
    or foreign line)."""
    parts = line.split()
    if len(parts) not in (7, 8) or parts[0] != MARKER or parts[1] != VERSION or parts[2] not in ("start", "end"):
        return None
    try:
        at = float(parts[5])
    except ValueError:
        return None
    return {"task": parts[3], "phase": parts[2], "host": parts[4], "at": at,
            "attempt": None if parts[6] == "-" else parts[6], "pid": parts[7] if len(parts) == 8 else None}


def parse_lines(text: str, node: Optional[str] = None, source: str = "") -> List[Dict[str, Any]]:
    """Every evidence line in ``text``; ``node`` (where the collector read it) and ``source`` are added."""
    records = []
    for line in text.splitlines():
        record = parse_line(line)
        if record is not None:
            record["node"] = node or record["host"]
            if source:
                record["source"] = source
            records.append(record)
    return records
