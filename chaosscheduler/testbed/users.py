"""Which experiment runs use an embedded cluster: one file per run under ``<state>/users/`` holding the run's
process identity. A run whose process died no longer counts, so a crashed run never keeps a cluster alive."""

import contextlib
import os
from typing import List

from .. import procs
from .._files import locked, read_json, write_json_atomic

__all__ = ["join", "leave", "auto_started"]


def _dir(state_dir: str) -> str:
    return os.path.join(state_dir, "users")


def join(state_dir: str, run_id: str, auto: bool) -> None:
    """Register ``run_id`` (this process) as a user; ``auto`` marks a cluster the last user must remove."""
    with locked(os.path.join(state_dir, ".users.lock")):
        write_json_atomic(os.path.join(_dir(state_dir), f"{run_id}.json"), procs.ProcessRecord.of(os.getpid()))
        if auto:
            write_json_atomic(os.path.join(state_dir, "auto-started.json"), {"by": run_id})


def leave(state_dir: str, run_id: str) -> List[str]:
    """Unregister ``run_id``; return the runs still using the cluster (their process alive)."""
    if not os.path.isdir(state_dir):
        return []
    with locked(os.path.join(state_dir, ".users.lock")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(_dir(state_dir), f"{run_id}.json"))
        alive = []
        for name in sorted(os.listdir(_dir(state_dir))) if os.path.isdir(_dir(state_dir)) else []:
            with contextlib.suppress(ValueError, OSError):
                if procs.is_running(read_json(os.path.join(_dir(state_dir), name))):
                    alive.append(name[:-len(".json")])
        return alive


def auto_started(state_dir: str) -> bool:
    return os.path.exists(os.path.join(state_dir, "auto-started.json"))
