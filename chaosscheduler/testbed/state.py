"""The state directory of one embedded cluster: ``cluster.json`` (the record of everything created), the event
log, node logs, Unix sockets and etcd data."""

import os
from typing import Any, Dict

from .._files import locked, read_json, write_json_atomic
from ..errors import TestbedError

__all__ = ["cluster_path", "events_path", "load", "save", "lock", "exists"]


def cluster_path(state_dir: str) -> str:
    return os.path.join(state_dir, "cluster.json")


def events_path(state_dir: str) -> str:
    return os.path.join(state_dir, "events.jsonl")


def log_path(state_dir: str, node: str) -> str:
    return os.path.join(state_dir, "logs", f"{node}.log")


def exists(state_dir: str) -> bool:
    return os.path.exists(cluster_path(state_dir))


def load(state_dir: str) -> Dict[str, Any]:
    try:
        data = read_json(cluster_path(state_dir))
    except ValueError as e:
        raise TestbedError(f"{cluster_path(state_dir)} is corrupt ({e}); "
                           f"'chaosscheduler testbed down --force' removes what it can find") from e
    if data is None:
        raise TestbedError(f"no embedded cluster at {state_dir}: start one with 'chaosscheduler testbed up'")
    return data


def save(state_dir: str, data: Dict[str, Any]) -> None:
    write_json_atomic(cluster_path(state_dir), data)


def lock(state_dir: str):
    """Serialise up/down/restart of one cluster across processes."""
    return locked(os.path.join(os.path.dirname(state_dir.rstrip("/")), f".{os.path.basename(state_dir)}.lock"))
