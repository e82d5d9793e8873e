"""Checks of an experiment's timings when it loads (``chaosscheduler.tolerances.check_experiment``): the control calls
it before anything is injected, so a run whose timings cannot give a true verdict stops at once, with the reason.

Errors (raise ChaosSchedulerError):
- a fault of ours expires before a probe of the experiment stops waiting for its effect (the fault's ``duration``
  must be at least the probe's bound plus a margin of max(5 s, 10 %)): a platform that reacts within the limit would
  be seen after the fault is gone, and fail for the wrong reason;
- a fault expires during its own pause;
- a probe stops waiting before its tolerance's limit (it could never see a value between the two).

Warnings (returned and logged; the control stores them in the journal): a network split shorter than the heartbeat
timeout the experiment assumes (configuration ``heartbeat_timeout``, null = the platform's own when known: the
embedded cluster's ``heartbeat_ttl``): the platform cannot have declared a split worker dead by then, so the run
cannot fail on the split.
"""

import inspect
import logging
from typing import Any, Dict, List, Optional, Tuple

from .errors import ChaosSchedulerError

__all__ = ["check_experiment", "review", "warnings_of_run", "WAIT_BOUNDS", "margin"]
logger = logging.getLogger("chaostoolkit")

# probe -> (argument that bounds its wait, fault actions whose effect it waits for, drop faults only)
WAIT_BOUNDS = {
    "leader_election_time": ("timeout", ("kill_master",), False),
    "worker_failure_detection_time": ("timeout", ("isolate_worker", "partition_workers"), True),
    "rescheduling_success_rate": ("deadline", ("isolate_worker", "partition_workers"), True),
    "rescheduling_latency": ("timeout", ("isolate_worker", "partition_workers"), True),
}
# probe -> argument bounding its wait, compared with its tolerance's limit (at_most)
LIMITED = {"leader_election_time": "timeout", "worker_failure_detection_time": "timeout",
           "rescheduling_latency": "timeout", "scheduling_interruption": "timeout"}
FAULT_ACTIONS = ("kill_master", "partition_workers", "isolate_worker")
_WARNINGS: List[str] = []  # of the experiment checked last in this process, for the journal


def margin(bound: float) -> float:
    return max(5.0, 0.1 * bound)


def _defaults(module: str, func: str) -> Dict[str, Any]:
    try:
        import importlib

        target = getattr(importlib.import_module(module), func)
        return {k: p.default for k, p in inspect.signature(target).parameters.items()
                if p.default is not inspect.Parameter.empty}
    except Exception:
        return {}


def _ours(activity: Dict[str, Any], module: str) -> Optional[str]:
    provider = activity.get("provider") if isinstance(activity, dict) else None
    if not isinstance(provider, dict) or provider.get("type") != "python" or provider.get("module") != module:
        return None
    return provider.get("func")


def _arguments(activity: Dict[str, Any], module: str, func: str, configuration: Dict[str, Any]) -> Dict[str, Any]:
    from chaoslib import substitute

    args = dict(_defaults(module, func))
    args.update(substitute(dict(activity["provider"].get("arguments") or {}), configuration, {}) or {})
    return args


def _seconds(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ChaosSchedulerError(f"{what} must be a number of seconds, got {value!r} (is its ${{var}} declared in "
                                  f"the experiment's configuration?)")
    return float(value)


def _heartbeat_timeout(configuration: Dict[str, Any]) -> Tuple[Optional[float], str]:
    declared = configuration.get("heartbeat_timeout")
    if declared is not None:
        return _seconds("configuration heartbeat_timeout", declared), "configuration heartbeat_timeout"
    try:
        from . import config

        settings = config.load(configuration)
        if settings.platform == "testbed":
            return float(settings.cluster_spec().heartbeat_ttl), "the embedded cluster's heartbeat_ttl"
    except Exception:
        pass
    return None, ""


def check_experiment(experiment: Dict[str, Any], configuration: Optional[Dict[str, Any]] = None) -> None:
    """Check the timings of ``experiment`` under ``configuration`` (the loaded configuration, var files applied), as
    the control does when the experiment loads: raises ChaosSchedulerError naming the activities and the variables
    to change when a fault would end before a probe stops waiting for its effect; logs the warnings (a run that
    cannot fail) and keeps them for the journal (:func:`warnings_of_run`). Returns None."""
    found = review(experiment, configuration)
    _WARNINGS[:] = found["warnings"]
    for warning in found["warnings"]:
        logger.warning("chaosscheduler: %s", warning)


def warnings_of_run() -> List[str]:
    return list(_WARNINGS)


def review(experiment: Dict[str, Any], configuration: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What :func:`check_experiment` checks, as data: ``{"warnings": [...], "faults": [...], "bounds": [...]}``;
    raises ChaosSchedulerError on the errors."""
    from chaoslib import substitute

    configuration = dict(configuration or {})
    if not isinstance(experiment, dict):
        raise ChaosSchedulerError("the experiment is not a JSON object")
    method = [a for a in experiment.get("method") or [] if isinstance(a, dict)]
    hypothesis = [p for p in (experiment.get("steady-state-hypothesis") or {}).get("probes") or []
                  if isinstance(p, dict)]
    errors: List[str] = []
    warnings: List[str] = []
    faults = []
    for position, activity in enumerate(method):
        func = _ours(activity, "chaosscheduler.actions")
        if func not in FAULT_ACTIONS:
            continue
        args = _arguments(activity, "chaosscheduler.actions", func, configuration)
        duration = _seconds(f"'{activity.get('name')}' argument duration", args.get("duration"))
        pauses = substitute(dict(activity.get("pauses") or {}), configuration, {}) or {}
        pause = pauses.get("after")
        fault = {"name": activity.get("name"), "func": func, "duration": duration,
                 "drop": func == "isolate_worker" or args.get("mode", "drop") == "drop",
                 "pause": None if pause is None else _seconds(f"'{activity.get('name')}' pause", pause),
                 "cuts_registry": func == "isolate_worker" or args.get("peers") in ("registry", "all"),
                 "position": position}
        faults.append(fault)
        if fault["pause"] is not None and fault["pause"] + margin(fault["pause"]) > duration:
            errors.append(f"'{fault['name']}' ({func}) undoes itself after {duration:g} s, during its own pause of "
                          f"{fault['pause']:g} s (+ {margin(fault['pause']):g} s margin): raise its duration "
                          f"(fault_duration)")
    bounds = []
    needs: Dict[str, Tuple[float, str, str]] = {}  # fault name -> (longest bound, probe, argument)
    # a probe of the method waits for the effect of the faults before it; the hypothesis (after the method) for all
    steps = list(enumerate(method)) + [(len(method), p) for p in hypothesis]
    for position, activity in steps:
        func = _ours(activity, "chaosscheduler.probes")
        if func not in WAIT_BOUNDS and func not in LIMITED:
            continue
        args = _arguments(activity, "chaosscheduler.probes", func, configuration)
        if func in WAIT_BOUNDS:
            arg, actions, drop_only = WAIT_BOUNDS[func]
            bound = _seconds(f"'{activity.get('name')}' argument {arg}", args.get(arg))
            bounds.append({"probe": activity.get("name"), "func": func, "bound": bound})
            for fault in faults:
                if fault["position"] < position and fault["func"] in actions and (fault["drop"] or not drop_only) \
                        and bound > needs.get(fault["name"], (-1.0, "", ""))[0]:
                    needs[fault["name"]] = (bound, str(activity.get("name")), arg)
        tolerance = activity.get("tolerance")
        if func in LIMITED and isinstance(tolerance, dict) and _ours(tolerance, "chaosscheduler.tolerances") == "at_most":
            limit = substitute(dict(tolerance["provider"].get("arguments") or {}), configuration, {}).get("limit")
            bound = args.get(LIMITED[func])
            if isinstance(limit, (int, float)) and isinstance(bound, (int, float)) and bound < limit:
                errors.append(f"'{activity.get('name')}' stops waiting after {bound:g} s ({LIMITED[func]}), before "
                              f"its limit of {limit:g} s: it could never see a value between the two; set its "
                              f"{LIMITED[func]} to at least the limit")
    for fault in faults:
        bound, probe, arg = needs.get(fault["name"], (-1.0, "", ""))
        if bound >= 0 and fault["duration"] < bound + margin(bound):
            errors.append(f"'{fault['name']}' ({fault['func']}) undoes itself after {fault['duration']:g} s, but "
                          f"'{probe}' waits up to {bound:g} s ({arg}) for its effect: the fault must last at least "
                          f"{bound + margin(bound):g} s (the bound + {margin(bound):g} s margin); raise "
                          f"fault_duration or lower the probe's {arg}")
    timeout, origin = _heartbeat_timeout(configuration)
    for fault in faults:
        if fault["func"] != "partition_workers" or not fault["drop"] or fault["pause"] is None:
            continue
        if timeout is None:
            warnings.append(f"'{fault['name']}' splits the network for {fault['pause']:g} s, but the platform's "
                            f"heartbeat timeout is unknown (set configuration heartbeat_timeout): whether this split "
                            f"can make the platform declare a worker dead is not known")
        elif fault["pause"] < timeout:
            warnings.append(f"'{fault['name']}' splits the network for {fault['pause']:g} s, shorter than the "
                            f"{timeout:g} s heartbeat timeout ({origin}): the platform cannot have declared a split "
                            f"worker dead by then, so this run cannot fail on the split (raise split_seconds above "
                            f"{timeout:g} s to test it)")
    if errors:
        raise ChaosSchedulerError("experiment timings: " + "; ".join(errors))
    return {"warnings": warnings, "faults": faults, "bounds": bounds}
