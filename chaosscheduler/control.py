"""The chaosscheduler control: a platform to break before the experiment, nothing of ours left after it.

Declare it once in an experiment::

    "controls": [{"name": "chaosscheduler", "provider": {"type": "python", "module": "chaosscheduler.control",
                  "arguments": {"testbed": "auto", "warmup": 5, "strict": true}}}]

- ``testbed``: "auto" (default) starts the embedded cluster described by the configuration when it is not running
  and removes it afterwards; "keep" starts it if needed and leaves it running; "never" requires it to run already.
  Several runs can share one cluster: each registers as a user, and a cluster started with "auto" is removed by
  the last run to finish. Ignored when the configuration targets another platform.
- ``warmup``: seconds of load the platform gets after start-up before the steady state is checked.
- ``strict`` (default true): a steady state not met *before* the method, or one of our actions failing, makes the
  run "failed" (``chaos run`` exits 1). Chaos Toolkit alone reports both as "completed" and exits 0.
- ``timeline`` (default true) and ``timeline_interval`` (default 0.2 s): sample the platform from the moment it is
  ready until the run ends (``chaosscheduler.timeline``) and store the series in the journal under
  ``"chaosscheduler"."timeline"``, for ``chaosscheduler report``.

After the experiment, whatever its status (failed, interrupted, deviated), every fault this run recorded in the
ledger is undone; the outcome is stored in the journal under ``"chaosscheduler"``.
"""

import logging
import time
import uuid
from typing import Any, Dict, List

from chaoslib.exceptions import InterruptExecution
from chaoslib.types import Configuration, Experiment, Journal, Secrets

from . import config, timeline as _timeline
from .errors import ChaosSchedulerError
from .faults import undo_open
from .ledger import Ledger
from .testbed import users
from .testbed import state as tb_state

__all__ = ["configure_control", "before_experiment_control", "before_method_control",
           "after_activity_control", "after_experiment_control", "cleanup_control"]
logger = logging.getLogger("chaostoolkit")

TESTBED_MODES = ("auto", "keep", "never")
_run: Dict[str, Any] = {}


def configure_control(configuration: Configuration = None, secrets: Secrets = None, **kwargs: Any) -> None:
    _stop_recorder()
    _run.clear()


def _options(testbed: str = "auto", warmup: float = 5.0, strict: bool = True, timeline: bool = True,
             timeline_interval: float = 0.2, **_: Any) -> Dict[str, Any]:
    if testbed not in TESTBED_MODES:
        raise InterruptExecution(f"chaosscheduler control: argument 'testbed' must be one of "
                                 f"{', '.join(TESTBED_MODES)}, got {testbed!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup <= 600:
        raise InterruptExecution(f"chaosscheduler control: argument 'warmup' must be 0-600 seconds, got {warmup!r}")
    if not isinstance(timeline, bool):
        raise InterruptExecution(f"chaosscheduler control: argument 'timeline' must be true or false, got "
                                 f"{timeline!r}")
    if isinstance(timeline_interval, bool) or not isinstance(timeline_interval, (int, float)) \
            or not 0.05 <= timeline_interval <= 60:
        raise InterruptExecution(f"chaosscheduler control: argument 'timeline_interval' must be 0.05-60 seconds, "
                                 f"got {timeline_interval!r}")
    return {"testbed": testbed, "warmup": float(warmup), "strict": bool(strict), "timeline": timeline,
            "timeline_interval": float(timeline_interval)}


def before_experiment_control(context: Experiment, configuration: Configuration = None, secrets: Secrets = None,
                              **kwargs: Any) -> None:
    options = _options(**kwargs)
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    config.set_current_run(run_id)
    _run.update(run_id=run_id, options=options, testbed=None, method_started=False, failed_actions=[],
                started_at=time.time())
    try:
        settings = config.load(configuration)
    except ChaosSchedulerError as e:
        raise InterruptExecution(f"chaosscheduler control: {e}") from e
    _run["settings"] = settings
    if settings.platform == "testbed":
        _ensure_testbed(settings, options)
    if options["timeline"]:
        _run["recorder"] = _timeline.start_for(settings, run_id, options["timeline_interval"], secrets)


def _ensure_testbed(settings: config.Settings, options: Dict[str, Any]) -> None:
    """Start the embedded cluster if needed and register this run as one of its users. Several runs may share one
    cluster; with testbed "auto" the last run to finish removes it, whoever started it."""
    from . import testbed

    spec = settings.cluster_spec()
    started = False
    if not tb_state.exists(spec.state_dir):
        if options["testbed"] == "never":
            raise InterruptExecution(f"chaosscheduler control: the embedded cluster {spec.name!r} is not running "
                                     f"and the control was told not to start it (testbed: never)")
        logger.info("chaosscheduler: starting the embedded cluster %r (%d masters, %d workers)", spec.name,
                    spec.masters, spec.workers)
        try:
            testbed.up(spec)
            started = True
        except ChaosSchedulerError as e:
            if not tb_state.exists(spec.state_dir):  # not a concurrent run that started it first
                raise InterruptExecution(f"chaosscheduler control: could not start the embedded cluster: {e}") from e
    tb = testbed.Testbed(spec.state_dir)
    users.join(spec.state_dir, _run["run_id"], auto=started and options["testbed"] == "auto")
    _run["testbed"] = spec.state_dir
    if started and options["warmup"]:
        begun = time.monotonic()
        while time.monotonic() - begun < options["warmup"]:
            time.sleep(0.1)  # a deliberate period of load, not a synchronisation
    try:
        tb.wait_healthy(timeout=30.0 if not started else 5.0)
    except ChaosSchedulerError as e:
        raise InterruptExecution(f"chaosscheduler control: the embedded cluster {spec.name!r} is not healthy: "
                                 f"{e}") from e
    if not started:
        logger.info("chaosscheduler: using the running embedded cluster %r", spec.name)


def before_method_control(context: Experiment, **kwargs: Any) -> None:
    _run["method_started"] = True


def after_activity_control(context: Dict[str, Any], state: Dict[str, Any], **kwargs: Any) -> None:
    provider = (context or {}).get("provider", {})
    if (context or {}).get("type") == "action" and str(provider.get("module", "")).startswith("chaosscheduler") \
            and isinstance(state, dict) and state.get("status") == "failed":
        _run.setdefault("failed_actions", []).append(f"{context.get('name')}: {state.get('exception', [''])[-1]}"
                                                     .strip())


def after_experiment_control(context: Experiment, state: Journal, configuration: Configuration = None,
                             secrets: Secrets = None, **kwargs: Any) -> None:
    journal = state if isinstance(state, dict) else {}
    summary: Dict[str, Any] = {"run_id": _run.get("run_id")}
    try:
        settings = _run.get("settings") or config.load(configuration)
        ledger = Ledger(settings.home)
        run_id = _run.get("run_id")
        result = undo_open(ledger, lambda record: record.get("run_id") == run_id)
        summary["undone"] = result["undone"]
        summary["undo_errors"] = result["errors"]
        summary["faults"] = [_fault_summary(f) for f in ledger.all() if f.get("run_id") == run_id]
    except Exception as e:  # never let cleanup errors hide: log and record them
        logger.error("chaosscheduler control: cleanup failed: %s", e)
        summary["undo_errors"] = [str(e)]
    reasons = _strict_reasons(journal) if _run.get("options", {}).get("strict", True) else []
    if summary.get("undo_errors"):
        reasons.append(f"faults could not be undone: {'; '.join(summary['undo_errors'])}")
    if reasons and journal.get("status") == "completed":
        journal["status"] = "failed"
    summary["failure_reasons"] = reasons
    if _run.get("recorder"):
        summary["timeline"] = _timeline.finish(_run.pop("recorder"))
    _stop_testbed(summary)
    journal["chaosscheduler"] = summary
    for reason in reasons:
        logger.error("chaosscheduler: %s", reason)
    config.set_current_run(None)


def _strict_reasons(journal: Dict[str, Any]) -> List[str]:
    reasons = []
    before = (journal.get("steady_states") or {}).get("before")
    if before and not before.get("steady_state_met"):
        failing = [p["activity"]["name"] for p in before.get("probes", []) if not p.get("tolerance_met", True)]
        reasons.append(f"the steady state was not met before the method ({', '.join(failing) or 'a probe failed'})"
                       f": the method was skipped, the platform was not tested")
    for failure in _run.get("failed_actions", []):
        reasons.append(f"action failed: {failure}")
    return reasons


def _stop_testbed(summary: Dict[str, Any]) -> None:
    state_dir = _run.get("testbed")
    if not state_dir:
        return
    remaining = users.leave(state_dir, _run.get("run_id"))
    if remaining or not users.auto_started(state_dir):
        summary["testbed"] = {"kept": state_dir, "other_runs": remaining}
        return
    from . import testbed

    try:
        summary["testbed"] = testbed.down(state_dir)
    except ChaosSchedulerError as e:
        summary.setdefault("undo_errors", []).append(f"could not remove the embedded cluster: {e}")


def _fault_summary(record: Dict[str, Any]) -> Dict[str, Any]:
    keys = ("id", "action", "targets", "state", "started_at", "deadline", "undone_at", "measurements", "mode",
            "signal", "was_leader")
    return {k: record[k] for k in keys if k in record}


def _stop_recorder() -> None:
    recorder = _run.pop("recorder", None)
    if recorder is not None:
        recorder.stop()


def cleanup_control(**kwargs: Any) -> None:
    _stop_recorder()
    config.set_current_run(None)
