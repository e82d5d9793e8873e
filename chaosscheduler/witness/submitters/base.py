"""The submitter interface and the template expansion every template-driven submitter shares."""

import time
from typing import Any, Dict, Iterable, List, Optional

from ...errors import ConfigurationError

__all__ = ["Submitter", "result", "expand", "expand_value", "check_template", "PLACEHOLDERS"]

PLACEHOLDERS = ("{task}", "{duration}", "{duration_int}", "{command}", "{argv}", "{evidence}", "{run}", "{job_id}",
                "{job_ids}")


def result(outcome: str, started: float, job_id: Optional[str] = None, error: Optional[str] = None,
           **extra: Any) -> Dict[str, Any]:
    """A submission's answer: ``started`` is ``time.monotonic()`` when the call began."""
    out = {"outcome": outcome, "job_id": job_id, "error": error, "at": time.time(),
           "latency": time.monotonic() - started}
    out.update(extra)
    return out


def expand(template: Iterable[str], values: Dict[str, Any]) -> List[str]:
    """An argv from ``template``: an element that is exactly ``{argv}`` or ``{job_ids}`` becomes those elements;
    inside an element, each placeholder becomes its text (``{argv}`` shell-quoted as one line, ``{job_ids}``
    comma-joined). Plain text replacement, never ``str.format``: braces elsewhere stay as they are."""
    out: List[str] = []
    for item in template:
        if item in ("{argv}", "{job_ids}") and isinstance(values.get(item[1:-1]), list):
            out.extend(str(v) for v in values[item[1:-1]])
            continue
        out.append(expand_value(item, values))
    return out


def expand_value(text: str, values: Dict[str, Any]) -> str:
    for name, value in values.items():
        token = "{" + name + "}"
        if token in text:
            text = text.replace(token, ",".join(map(str, value)) if isinstance(value, list) else str(value))
    return text


def check_template(key: str, template: Any, required: Iterable[str] = ()) -> List[str]:
    if not isinstance(template, list) or not template or not all(isinstance(a, str) for a in template):
        raise ConfigurationError(f"chaosscheduler_witness.submitter.{key} must be a non-empty argv (list of "
                                 f"strings), got {template!r}")
    joined = " ".join(template)
    missing = [p for p in required if not any(r in joined for r in p.split("|"))]
    if missing:
        raise ConfigurationError(f"chaosscheduler_witness.submitter.{key} must contain "
                                 f"{' and '.join(m.replace('|', ' or ') for m in missing)}, got {template!r}")
    return list(template)


class Submitter:
    """Hands witness tasks to a platform. Subclasses implement :meth:`submit`; the rest is optional."""

    kind = "abstract"
    reports_completions = False  # True when completions() can tell which tasks the platform completed

    def submit(self, task_id: str, argv: List[str], duration: float) -> Dict[str, Any]:
        """Submit one task; never raises for the platform's errors: ``fail`` (definitely refused) or ``info``
        (unknown: a timeout, a lost connection)."""
        raise NotImplementedError

    def completions(self, jobs: Dict[str, str]) -> List[Dict[str, Any]]:
        """Completions the platform reports for ``jobs`` (task id -> job id): ``[{"task", "at", "job_id", "host",
        "attempt"}]``, one per completion it recorded. Empty when the platform cannot tell."""
        return []

    def cleanup(self, jobs: Dict[str, str]) -> Dict[str, Any]:
        """Cancel what is still queued of ``jobs``; ``{"cancelled": [task ids], "errors": [...]}``."""
        return {"cancelled": [], "errors": [], "supported": False}

    def close(self) -> Dict[str, Any]:
        """Remove what the submitter created on the platform (after the evidence was collected)."""
        return {}

    def describe(self) -> Dict[str, Any]:
        return {"type": self.kind}
