"""Every symptom: the hypothesis probes Chaos Toolkit skipped after the first one out of tolerance.

Chaos Toolkit stops checking a steady-state hypothesis at its first failing probe, so one run shows one symptom (a
split brain shows up as "lost tasks", and the probe that names two leaders never runs). When a hypothesis deviates,
the control calls :func:`evaluate_skipped` at once — the platform in the same state as when Chaos Toolkit stopped —
and stores the results in the journal under ``"chaosscheduler"."skipped_probes"``::

    [{"hypothesis": "before" | "after", "after_failure_of": "<the probe Chaos Toolkit stopped at>",
      "name", "type", "provider", "status": "succeeded" | "failed", "output", "error" (when failed),
      "tolerance" (as declared), "tolerance_met": true | false, "start", "end", "duration"}, ...]

in the hypothesis's order. Each probe is run and judged the way chaoslib does (``run_activity``, ``within_tolerance``,
configuration and secrets substituted); a probe that raises counts as out of tolerance, as in chaoslib.
"""

import copy
import logging
import time
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from chaoslib import substitute
from chaoslib.activity import run_activity
from chaoslib.exceptions import ActivityFailed
from chaoslib.hypothesis import within_tolerance

__all__ = ["evaluate_skipped", "provider_text"]
logger = logging.getLogger("chaostoolkit")


def provider_text(activity: Dict[str, Any]) -> str:
    """"python:module.func", "process:path" or "http:url"."""
    provider = activity.get("provider") if isinstance(activity.get("provider"), dict) else {}
    kind = provider.get("type", "?")
    if kind == "python":
        return f"python:{provider.get('module', '?')}.{provider.get('func', '?')}"
    if kind == "process":
        return f"process:{provider.get('path', '?')}"
    if kind == "http":
        url = provider.get("url", "?")
        return f"http:{url if isinstance(url, str) else '?'}"
    return str(kind)


def _resolve(activity: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    if "ref" not in activity:
        return activity
    from chaoslib.caching import lookup_activity

    return lookup_activity(activity["ref"])


def evaluate_skipped(hypothesis: Dict[str, Any], state: Dict[str, Any], when: str, configuration: Any = None,
                     secrets: Any = None) -> List[Dict[str, Any]]:
    """Run and judge the probes of ``hypothesis`` that come after the ones in ``state`` (chaoslib's hypothesis
    state, stopped at its first failure). Never raises for a probe's failure; returns one entry per probe."""
    declared = [p for p in (hypothesis or {}).get("probes") or [] if isinstance(p, dict)]
    done = [p for p in (state or {}).get("probes") or [] if isinstance(p, dict)]
    if not done or len(done) >= len(declared):
        return []
    stopped_at = (done[-1].get("activity") or {}).get("name")
    results = []
    for declared_probe in declared[len(done):]:
        activity = _resolve(declared_probe)
        if activity is None:
            results.append({"hypothesis": when, "after_failure_of": stopped_at, "name": declared_probe.get("ref"),
                            "status": "failed", "error": "referenced activity not found", "tolerance_met": False})
            continue
        logger.info("chaosscheduler: probe skipped by Chaos Toolkit after '%s' failed: %s", stopped_at,
                    activity.get("name"))
        results.append(_judge(activity, when, stopped_at, configuration, secrets))
    return results


def _judge(activity: Dict[str, Any], when: str, stopped_at: Optional[str], configuration: Any,
           secrets: Any) -> Dict[str, Any]:
    started = time.time()
    entry: Dict[str, Any] = {"hypothesis": when, "after_failure_of": stopped_at, "name": activity.get("name"),
                             "type": activity.get("type"), "provider": provider_text(activity),
                             "tolerance": activity.get("tolerance"), "output": None,
                             "start": datetime.now(timezone.utc).isoformat()}
    try:
        entry["output"] = run_activity(copy.deepcopy(activity), configuration, secrets)
        entry["status"] = "succeeded"
    except ActivityFailed as e:
        entry.update(status="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
    except Exception as e:  # a provider bug: chaoslib would have failed the probe too
        entry.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
    ended = time.time()
    entry["end"] = datetime.now(timezone.utc).isoformat()
    entry["duration"] = round(ended - started, 6)
    if entry["status"] != "succeeded":
        entry["tolerance_met"] = False
        return entry
    tolerance = copy.deepcopy(activity.get("tolerance"))  # a probe tolerance is mutated by chaoslib: not ours
    if isinstance(tolerance, str):
        tolerance = substitute(tolerance, configuration, secrets)
    try:
        entry["tolerance_met"] = bool(within_tolerance(tolerance, entry["output"], configuration=configuration,
                                                       secrets=secrets))
    except Exception as e:  # e.g. a regex tolerance on a number: chaoslib would raise out of the hypothesis
        entry.update(tolerance_met=False, error=f"the tolerance could not be checked: {type(e).__name__}: {e}"
                     .splitlines()[0])
    return entry
