"""Submitters: how the witness hands a task to the platform, one small module per platform, one interface
(:class:`.base.Submitter`): ``submit(task_id, argv, duration)`` -> ``{"outcome": "ok"|"fail"|"info", "job_id",
"error", "at", "latency"}``, optional ``completions(jobs)``, ``cleanup(jobs)`` (cancel what is still queued) and
``close()`` (remove what we created).

* ``testbed`` — the embedded cluster's masters over their Unix sockets, retrying the others like a client.
* ``command`` — an argv template run here or over SSH on a submit host (``sbatch --parsable --wrap {command}``).
* ``python`` — a ``module:function`` for schedulers with a Python client.
* ``kubernetes`` — a Job per task (or a template of any object).
"""

from typing import Any, Dict

from ...errors import ConfigurationError
from .base import Submitter, expand

__all__ = ["Submitter", "build", "validate", "expand"]


def _module(kind: str) -> Any:
    if kind == "testbed":
        from . import testbed as module
    elif kind == "command":
        from . import command as module
    elif kind == "python":
        from . import python as module
    elif kind == "kubernetes":
        from . import kubernetes as module
    else:
        raise ConfigurationError(f"unknown witness submitter type {kind!r}")
    return module


def validate(options: Dict[str, Any]) -> Dict[str, Any]:
    """The submitter options normalised (defaults filled in); ConfigurationError naming the key otherwise."""
    return _module(options.get("type")).validate(options)


def build(options: Dict[str, Any], platform: Any, context: Dict[str, Any]) -> Submitter:
    """The submitter ``options`` describe, for ``platform``; ``context`` holds ``run_id``, ``evidence``,
    ``submit_timeout`` and the activity's ``secrets``."""
    return _module(options["type"]).build(options, platform, context)
