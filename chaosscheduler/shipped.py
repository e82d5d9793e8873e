"""The experiments and var files that ship with the package, and writing them out where the user wants them.

    chaosscheduler experiments list
    chaosscheduler experiments write DIR [--force]

An installed wheel holds them in ``chaosscheduler/experiments/`` (copied from the checkout's top-level
``experiments/`` when the wheel is built, see setup.py); a checkout or an editable install reads that top-level
directory itself, so there is only ever one copy in the source tree.
"""

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Any, Dict, List, Optional

from .errors import ChaosSchedulerError

__all__ = ["experiments_dir", "catalogue", "write"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def experiments_dir() -> str:
    """Where the shipped experiments are: inside the installed package, else the checkout's ``experiments/``."""
    for candidate in (os.path.join(_PACKAGE, "experiments"), os.path.join(os.path.dirname(_PACKAGE), "experiments")):
        if os.path.isdir(candidate) and any(n.endswith(".json") for n in os.listdir(candidate)):
            return candidate
    raise ChaosSchedulerError(f"no experiments found next to the package ({_PACKAGE}/experiments) nor in a "
                              f"checkout; reinstall chaosscheduler from a wheel or run from the source tree")


def _describe(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read())
    except (OSError, ValueError) as e:
        return {"title": "", "problem": f"unreadable: {e}"}
    if not isinstance(data, dict):
        return {"title": "", "problem": "not a JSON object"}
    if "method" in data:
        return {"title": data.get("title", ""), "kind": "experiment"}
    keys = sorted(data.get("configuration", {})) if isinstance(data.get("configuration"), dict) else []
    return {"title": f"sets {', '.join(keys)}" if keys else "", "kind": "var file"}


def catalogue(source: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every shipped file: ``{"name": "worker-disconnect.json" | "vars/kubernetes.json", "kind": "experiment" |
    "var file", "title", "path"}``, experiments first, each group sorted by name."""
    source = source or experiments_dir()
    found = []
    for sub in ("", "vars"):
        directory = os.path.join(source, sub)
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if name.endswith(".json") and os.path.isfile(path):
                entry = {"name": f"{sub}/{name}" if sub else name, "path": path}
                entry.update(_describe(path))
                found.append(entry)
    return found


def _digest(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None


def write(target: str, force: bool = False, source: Optional[str] = None) -> Dict[str, List[str]]:
    """Write every shipped file under ``target`` (``target/vars/`` for the var files).

    Every file is checked before anything is written: an existing file with other content is refused (all such
    files named) unless ``force``; an identical one is left as it is. Returns ``{"written": [...],
    "unchanged": [...], "replaced": [...]}`` (paths under ``target``). Raises ChaosSchedulerError with nothing
    written when ``target`` is not a directory that can be created and written, or on a refused overwrite."""
    files = catalogue(source)
    if not files:
        raise ChaosSchedulerError("this installation holds no experiment to write")
    if os.path.exists(target) and not os.path.isdir(target):
        raise ChaosSchedulerError(f"{target} exists and is not a directory: give a directory to write into")
    plan: Dict[str, List[str]] = {"written": [], "unchanged": [], "replaced": []}
    conflicts = []
    for entry in files:
        destination = os.path.join(target, entry["name"])
        if os.path.isdir(destination):
            raise ChaosSchedulerError(f"{destination} is a directory: cannot write {entry['name']} there")
        existing = _digest(destination)
        if existing is None:
            plan["written"].append(destination)
        elif existing == _digest(entry["path"]):
            plan["unchanged"].append(destination)
        else:
            plan["replaced"].append(destination)
            conflicts.append(destination)
    if conflicts and not force:
        raise ChaosSchedulerError(f"refusing to overwrite {len(conflicts)} file(s) that differ from the shipped "
                                  f"ones: {', '.join(conflicts)} (pass --force to replace them)")
    created: List[str] = []  # files and directories this call made: removed again if a write fails
    try:
        for entry in files:
            destination = os.path.join(target, entry["name"])
            if destination in plan["unchanged"]:
                continue
            _make_dirs(os.path.dirname(destination), created)
            with open(entry["path"], "rb") as handle:
                _write_file(destination, handle.read())
            if destination in plan["written"]:
                created.append(destination)
    except OSError as e:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
        where = f" ({e.filename})" if e.filename else ""
        raise ChaosSchedulerError(f"cannot write the experiments into {target}: {e.strerror or e}{where}; what this "
                                  f"call had created was removed") from e
    return plan


def _make_dirs(path: str, created: List[str]) -> None:
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        os.mkdir(directory)
        created.append(directory)


def _write_file(path: str, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, with the permissions a new file gets (umask), not mkstemp's 0600."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
