"""The chaosscheduler control: a platform to break before the experiment, nothing of ours left after it, and a run
that never looks green when it was not.

Declare it once in an experiment::

    "controls": [{"name": "chaosscheduler", "provider": {"type": "python", "module": "chaosscheduler.control",
                  "arguments": {"testbed": "auto", "warmup": 5, "strict": true}}}]

Arguments (docs/configuration.md; every one validated, unknown ones refused):

- ``testbed``: "auto" (default) starts the embedded cluster described by the configuration when it is not running
  and removes it afterwards; "keep" starts it if needed and leaves it running; "never" requires it to run already.
  Several runs can share one cluster: each registers as a user, and a cluster started with "auto" is removed by
  the last run to finish. Ignored when the configuration targets another platform.
- ``warmup``: seconds of load the platform gets after start-up before the steady state is checked.
- ``strict`` (default true): a steady state not met *before* the method, one of our actions failing, or a fault
  left by a killed run that cannot be undone makes the run "failed" (``chaos run`` exits 1).
- ``timeline`` (default true), ``timeline_interval`` (default 0.2 s): sample the platform while the run goes, into
  the journal under ``"chaosscheduler"."timeline"``, for ``chaosscheduler report``.
- ``witness``: options of the witness workload (overrides the configuration key ``chaosscheduler_witness``).
- ``repair_actions``: names of method actions that repair rather than break (ours — restart_master, heal_partition,
  rejoin_worker, undo_all_faults — are known), so they are not taken for observed faults.

What the control does on top of Chaos Toolkit:

- keeps the run record ``<home>/runs/<run_id>/run.json`` (:mod:`chaosscheduler.runs`) up to date, so a SIGKILLed
  run leaves evidence that ``chaosscheduler report`` renders; records every action of the method as an observed
  fault (:func:`chaosscheduler.runs.observed_faults`), whoever provides it;
- heals what a killed run left (:mod:`chaosscheduler.leftovers`) before it measures anything;
- SIGTERM or SIGINT at any phase ends the run as "interrupted" (non-zero exit): the run stops at the next step, the
  rollbacks and the control's undo still run, and a signal during the undo is recorded but does not cut it short;
- when a hypothesis deviates, evaluates the probes Chaos Toolkit skipped (:mod:`chaosscheduler.symptoms`); a
  hypothesis that deviates during the method (``--hypothesis-strategy continuously``) marks the run deviated;
- after the experiment, whatever its status, undoes every fault this run recorded in the ledger, stores its summary
  in the journal under ``"chaosscheduler"``, and logs the final status as the run's last line.
"""

import logging
import signal
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from chaoslib.exceptions import InterruptExecution, InvalidControl
from chaoslib.types import Configuration, Experiment, Journal, Secrets

from . import config, control_end, control_options, control_run, runs, symptoms
from .errors import ChaosSchedulerError

__all__ = ["validate_control", "configure_control", "before_experiment_control", "before_hypothesis_control",
           "after_hypothesis_control", "before_method_control", "after_method_control", "before_rollback_control",
           "after_rollback_control", "before_activity_control", "after_activity_control",
           "after_experiment_control", "cleanup_control"]
logger = logging.getLogger("chaostoolkit")

TESTBED_MODES = control_options.TESTBED_MODES
SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT") if hasattr(signal, n))


class Run:
    """What the control knows about the run in this process."""

    def __init__(self) -> None:
        self.run_id: Optional[str] = None
        self.options: Dict[str, Any] = control_options.defaults()
        self.settings: Optional[config.Settings] = None
        self.recorder: Optional[runs.Recorder] = None
        self.testbed: Optional[str] = None
        self.timeline: Any = None
        self.witness: Any = None
        self.witness_summary: Optional[Dict[str, Any]] = None
        self.signal: Optional[Dict[str, Any]] = None
        self.shielded = False           # undoing: a signal is recorded, the undo is not cut short
        self.finished = False
        self.finishing = False
        self.failed_actions: List[str] = []
        self.skipped_probes: List[Dict[str, Any]] = []
        self.leftovers: Optional[Dict[str, Any]] = None
        self.dry: Optional[str] = None
        self.open: Dict[Any, Any] = {}  # (id(activity), thread) -> (entry, fault)
        self.attributed: set = set()
        self.previous: Dict[int, Any] = {}
        self.local = threading.local()


_run = Run()


# ------------------------------------------------------------------------------------------------ validation
def validate_control(control: Dict[str, Any]) -> None:
    """Called by ``chaos validate`` and before ``chaos run`` starts: bad arguments stop it before anything is done."""
    try:
        control_options.check_declared((control.get("provider") or {}).get("arguments"))
    except ChaosSchedulerError as e:
        raise InvalidControl(f"chaosscheduler control: {e}") from e


# ------------------------------------------------------------------------------------------------ signals
def _on_signal(signum: int, frame: Any) -> Any:
    name = signal.Signals(signum).name
    run = _run
    if run.signal is None:
        run.signal = {"name": name, "at": time.time(),
                      "phase": run.recorder.phase if run.recorder else "starting"}
        if run.recorder is not None:
            run.recorder.data["signal"] = run.signal
            run.recorder.write(blocking=False)  # a hook that is writing now writes it anyway
    if run.shielded or (run.recorder is not None and run.recorder.phase in ("ending", "ended")):
        logger.warning("chaosscheduler: %s received while undoing this run's faults: the undo goes on, then the run "
                       "ends as interrupted", name)
        return None
    previous = run.previous.get(signum)
    if callable(previous):
        return previous(signum, frame)  # chaoslib: InterruptExecution (SIGTERM); Python: KeyboardInterrupt (SIGINT)
    raise InterruptExecution(f"{name} signal received")


def _install_signals() -> None:
    if threading.current_thread() is not threading.main_thread() or _run.previous:
        return
    for signum in SIGNALS:
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN:
            continue  # the caller chose to ignore it: so do we
        _run.previous[signum] = previous
        signal.signal(signum, _on_signal)


def _restore_signals() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in _run.previous.items():
        if signal.getsignal(signum) is _on_signal:
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    _run.previous = {}


def _stop_if_signalled(where: str) -> None:
    """Raise InterruptExecution at a hook once a signal came, outside the undo (rollbacks, ending)."""
    run = _run
    if run.signal is None or run.shielded or run.recorder is None or run.recorder.phase in ("rollbacks", "ending",
                                                                                           "ended"):
        return
    raise InterruptExecution(f"{run.signal['name']} received during the {run.signal['phase']}: the run stops "
                             f"({where}); the rollbacks and the chaosscheduler control's undo follow")


# ------------------------------------------------------------------------------------------------ start
def configure_control(configuration: Configuration = None, secrets: Secrets = None, **kwargs: Any) -> None:
    global _run
    control_end.stop_recorder(_run)
    _restore_signals()
    _run = Run()
    _install_signals()


def _interrupt(message: str, cause: Optional[BaseException] = None) -> InterruptExecution:
    logger.error("chaosscheduler control: %s", message)
    error = InterruptExecution(f"chaosscheduler control: {message}")
    error.__cause__ = cause
    return error


def _check_experiment(experiment: Experiment, configuration: Configuration) -> None:
    """The verdict engineer's experiment checks (timings that cannot work), when that module provides them."""
    try:
        from . import tolerances
    except ImportError:
        return
    check = getattr(tolerances, "check_experiment", None)
    if check is None:
        return
    try:
        problems = check(experiment, configuration)
    except (ChaosSchedulerError, ValueError, TypeError) as e:
        raise _interrupt(f"the experiment cannot measure what it claims: {e}", e) from e
    if problems:
        problems = [problems] if isinstance(problems, str) else list(problems)
        raise _interrupt("the experiment cannot measure what it claims: " + "; ".join(map(str, problems)))


def before_experiment_control(context: Experiment, configuration: Configuration = None, secrets: Secrets = None,
                              **kwargs: Any) -> None:
    """Validate, open the run record, heal leftovers, start the platform, the timeline and the witness. Any error
    interrupts the run (Chaos Toolkit would otherwise swallow it and measure a platform that is not ready)."""
    try:
        _start(context, configuration, secrets, kwargs)
    except InterruptExecution:
        raise
    except Exception as e:
        raise _interrupt(f"could not prepare the run: {type(e).__name__}: {e}".splitlines()[0], e) from e


def _start(context: Experiment, configuration: Configuration, secrets: Secrets, kwargs: Dict[str, Any]) -> None:
    run = _run
    _install_signals()
    experiment = context if isinstance(context, dict) else {}
    try:
        run.options = control_options.parse(kwargs, experiment.get("method") or [])
        run.settings = config.load(configuration)
    except ChaosSchedulerError as e:
        raise _interrupt(str(e), e) from e
    _check_experiment(experiment, configuration)
    run.run_id = f"run-{uuid.uuid4().hex[:12]}"
    config.set_current_run(run.run_id)
    dry = experiment.get("dry")
    run.dry = getattr(dry, "value", dry)
    run.recorder = control_run.start_record(run.settings.home, run.run_id, experiment)
    logger.info("chaosscheduler: run %s, record at %s", run.run_id, run.recorder.path)
    control_run.heal_leftovers(run)
    if run.settings.platform == "testbed":
        control_run.ensure_testbed(run)
    if run.options["timeline"]:
        from . import timeline as _timeline

        run.timeline = _timeline.start_for(run.settings, run.run_id, run.options["timeline_interval"], secrets)
    control_run.start_witness(run, secrets)
    _stop_if_signalled("the end of start-up")


# ------------------------------------------------------------------------------------------------ phases
def _phase(phase: str) -> None:
    if _run.recorder is not None and _run.recorder.phase != phase:
        _run.recorder.set_phase(phase)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def before_hypothesis_control(context: Dict[str, Any], **kwargs: Any) -> None:
    recorder = _run.recorder
    if recorder is None:
        return
    if not _main_thread():
        when = "during"
    elif recorder.phase == "starting":
        when = "before"
        _phase("steady-state-before")
    else:
        when = "after"
        _phase("steady-state-after")
    _run.local.hypothesis = when
    _run.local.entries = []
    _stop_if_signalled("the steady-state hypothesis")


def after_hypothesis_control(context: Dict[str, Any], state: Any = None, configuration: Configuration = None,
                             secrets: Secrets = None, **kwargs: Any) -> None:
    run = _run
    when = getattr(run.local, "hypothesis", None)
    run.local.hypothesis = None
    if run.recorder is None or when is None or not isinstance(state, dict):
        return
    control_run.record_tolerances(run, state, when)
    if state.get("steady_state_met") is False and when in ("before", "after") and run.signal is None \
            and run.dry not in ("probes", "activities"):
        skipped = symptoms.evaluate_skipped(context, state, when, configuration, secrets)
        run.skipped_probes += skipped
        if skipped:
            run.recorder.update(skipped_probes=run.skipped_probes)
    if when == "after":
        run.shielded = True  # from here on the run only undoes: a signal must not cut that short
    _stop_if_signalled("the end of the steady-state hypothesis")


def before_method_control(context: Experiment, **kwargs: Any) -> None:
    _phase("method")
    _stop_if_signalled("the start of the method")


def after_method_control(context: Experiment, state: Any = None, **kwargs: Any) -> None:
    if _run.recorder is not None:
        _run.recorder.method_ended = True
        _run.recorder.update(method_ended_at=time.time())
    _stop_if_signalled("the end of the method")


def before_rollback_control(context: Experiment, **kwargs: Any) -> None:
    _run.shielded = False  # Chaos Toolkit's own handling of a signal in the rollbacks applies (see docs)
    _phase("rollbacks")


def after_rollback_control(context: Experiment, state: Any = None, **kwargs: Any) -> None:
    _run.shielded = True


# ------------------------------------------------------------------------------------------------ activities
def before_activity_control(context: Dict[str, Any], **kwargs: Any) -> None:
    if _run.recorder is None or not isinstance(context, dict):
        return
    _stop_if_signalled(f"the {context.get('type', 'activity')} '{context.get('name')}'")
    try:
        control_run.activity_started(_run, context)
    except Exception as e:  # the record is evidence, not the run: say so and go on
        logger.warning("chaosscheduler: could not record the start of '%s': %s", context.get("name"), e)


def after_activity_control(context: Dict[str, Any], state: Any = None, **kwargs: Any) -> None:
    run = _run
    if run.recorder is None or not isinstance(context, dict):
        return
    try:
        control_run.activity_ended(run, context, state if isinstance(state, dict) else None)
    except Exception as e:
        logger.warning("chaosscheduler: could not record the end of '%s': %s", context.get("name"), e)
    _stop_if_signalled(f"the end of the {context.get('type', 'activity')} '{context.get('name')}'")


# ------------------------------------------------------------------------------------------------ end
def after_experiment_control(context: Experiment, state: Journal = None, configuration: Configuration = None,
                             secrets: Secrets = None, **kwargs: Any) -> None:
    try:
        control_end.finish(_run, state if isinstance(state, dict) else None, configuration)
    except Exception as e:  # chaoslib would hide it at debug level: say it; the cleanup hook tries again
        logger.error("chaosscheduler control: the end of the run failed (%s: %s); retrying on cleanup",
                     type(e).__name__, e)


def cleanup_control(**kwargs: Any) -> None:
    """Always called last, even when the run blew up between the rollbacks and the after-experiment hook: then the
    undo happens here (no journal to write to, the run record says what happened)."""
    run = _run
    try:
        if run.recorder is not None and not run.finished:
            control_end.finish(run, None, None)
    finally:
        control_end.stop_recorder(run)
        _restore_signals()
        if run.recorder is not None:
            run.recorder.deactivate()
        config.set_current_run(None)
