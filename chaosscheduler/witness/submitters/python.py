"""Submit witness tasks through a Python function, for schedulers with a Python client::

    {"type": "python", "function": "mypkg.witness:submit",
     "completions": "mypkg.witness:completions", "cleanup": "mypkg.witness:cancel", "options": {...}}

``submit(task_id=..., argv=[...], command="...", duration=..., options={...})`` returns the platform's job id (a
string: ``ok``) or a dict ``{"outcome": "ok"|"fail"|"info", "job_id", "error"}``. A ``TimeoutError`` or
``ConnectionError`` it raises is ``info`` (it may have been accepted); any other exception is ``fail``.
``completions(jobs={task: job_id}, options=...)`` returns ``[{"task", "at", "host"?, "attempt"?}]``;
``cleanup(jobs=..., options=...)`` cancels what is still queued.
"""

import importlib
import shlex
import time
from typing import Any, Callable, Dict, List, Optional

from ...errors import ConfigurationError
from .base import Submitter, result

__all__ = ["PythonSubmitter", "validate", "build", "load_function"]

KEYS = {"type", "function", "completions", "cleanup", "options"}


def load_function(key: str, spec: Any) -> Callable[..., Any]:
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigurationError(f"chaosscheduler_witness.submitter.{key} must be 'module:function', got {spec!r}")
    module_name, name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigurationError(f"chaosscheduler_witness.submitter.{key}: cannot import {module_name!r}: {e}") \
            from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigurationError(f"chaosscheduler_witness.submitter.{key}: {module_name} has no function {name!r}")
    return function


def validate(options: Dict[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(options) - KEYS)
    if unknown:
        raise ConfigurationError(f"unknown chaosscheduler_witness.submitter key(s) {', '.join(unknown)} for type "
                                 f"'python'; known: {', '.join(sorted(KEYS - {'type'}))}")
    for key in ("function", "completions", "cleanup"):
        if key == "function" or options.get(key) is not None:
            load_function(key, options.get(key))
    extra = options.get("options", {})
    if not isinstance(extra, dict):
        raise ConfigurationError(f"chaosscheduler_witness.submitter.options must be an object, got {extra!r}")
    return {"type": "python", "function": options["function"], "completions": options.get("completions"),
            "cleanup": options.get("cleanup"), "options": extra}


class PythonSubmitter(Submitter):
    kind = "python"

    def __init__(self, options: Dict[str, Any]):
        self.options = options
        self.function = load_function("function", options["function"])
        self.on_completions: Optional[Callable[..., Any]] = \
            load_function("completions", options["completions"]) if options.get("completions") else None
        self.on_cleanup: Optional[Callable[..., Any]] = \
            load_function("cleanup", options["cleanup"]) if options.get("cleanup") else None
        self.reports_completions = self.on_completions is not None

    def submit(self, task_id: str, argv: List[str], duration: float) -> Dict[str, Any]:
        started = time.monotonic()
        try:
            answer = self.function(task_id=task_id, argv=list(argv), command=shlex.join(argv), duration=duration,
                                   options=self.options["options"])
        except (TimeoutError, ConnectionError) as e:
            return result("info", started, error=f"{type(e).__name__}: {e}")
        except Exception as e:
            return result("fail", started, error=f"{type(e).__name__}: {e}")
        if isinstance(answer, dict):
            outcome = answer.get("outcome", "ok")
            if outcome not in ("ok", "fail", "info"):
                return result("info", started, error=f"the submit function answered outcome {outcome!r}")
            job = answer.get("job_id")
            return result(outcome, started, job_id=None if job is None else str(job), error=answer.get("error"))
        if answer is None:
            return result("info", started, error="the submit function returned no job id")
        return result("ok", started, job_id=str(answer))

    def completions(self, jobs: Dict[str, str]) -> List[Dict[str, Any]]:
        if self.on_completions is None:
            return []
        return [dict(c) for c in self.on_completions(jobs=dict(jobs), options=self.options["options"]) or []]

    def cleanup(self, jobs: Dict[str, str]) -> Dict[str, Any]:
        if self.on_cleanup is None:
            return {"cancelled": [], "errors": [], "supported": False}
        answer = self.on_cleanup(jobs=dict(jobs), options=self.options["options"])
        return dict(answer) if isinstance(answer, dict) else {"cancelled": [], "errors": [], "supported": True}

    def describe(self) -> Dict[str, Any]:
        return {"type": "python", "function": self.options["function"]}


def build(options: Dict[str, Any], platform: Any, context: Dict[str, Any]) -> PythonSubmitter:
    return PythonSubmitter(options)
