"""The control's steps while a run goes: open the run record, heal leftovers, bring the embedded cluster up, start
the witness, and record every activity (with its window) as it starts and ends. See :mod:`chaosscheduler.control`."""

import contextlib
import inspect
import json
import logging
import os
import threading
import time
from datetime import datetime
from typing import Any, Dict, Optional

from chaoslib.exceptions import InterruptExecution

from . import leftovers, runs, symptoms
from ._files import locked, write_json_atomic
from .errors import ChaosSchedulerError

__all__ = ["start_record", "heal_leftovers", "ensure_testbed", "start_witness", "activity_started",
           "activity_ended", "record_tolerances"]
logger = logging.getLogger("chaostoolkit")


def _interrupt(message: str) -> InterruptExecution:
    logger.error("chaosscheduler control: %s", message)
    return InterruptExecution(f"chaosscheduler control: {message}")


def _click_param(name: str) -> Any:
    """A parameter of the running ``chaos run`` command (its experiment path, --no-exit), if there is one."""
    try:
        import click

        ctx = click.get_current_context(silent=True)
    except ImportError:
        return None
    return ctx.params.get(name) if ctx is not None else None


def _experiment_copy(experiment: Dict[str, Any]) -> Dict[str, Any]:
    """The experiment as JSON, its secrets reduced to their names (values may be written inline)."""
    data = json.loads(json.dumps(experiment, default=lambda v: getattr(v, "value", str(v))))
    if isinstance(data.get("secrets"), dict):
        data["secrets"] = {scope: sorted(values) if isinstance(values, dict) else "(not kept)"
                           for scope, values in data["secrets"].items()}
    return data


def start_record(home: str, run_id: str, experiment: Dict[str, Any]) -> runs.Recorder:
    with contextlib.suppress(OSError):
        removed = runs.prune(home)
        if removed:
            logger.debug("chaosscheduler: pruned %d old run record(s)", len(removed))
    source = _click_param("source")
    recorder = runs.Recorder(home, run_id, experiment, source if isinstance(source, str) else None)
    write_json_atomic(os.path.join(os.path.dirname(recorder.path), "experiment.json"), _experiment_copy(experiment))
    recorder.activate()
    return recorder


def heal_leftovers(run: Any) -> None:
    summary = leftovers.heal_faults(run.settings.home, run.run_id)
    run.leftovers = summary
    if summary["runs"] or summary["faults_undone"] or summary["errors"]:
        run.recorder.update(leftovers=summary)
    if summary["errors"]:
        message = (f"faults left by a killed run could not be undone ({'; '.join(summary['errors'])}): the platform "
                   f"is not in the state the experiment assumes; 'chaosscheduler heal' retries")
        if run.options["strict"]:
            raise _interrupt(message)
        logger.warning("chaosscheduler: %s (strict: false, going on)", message)


def ensure_testbed(run: Any) -> None:
    """Start the embedded cluster if needed (replacing one a killed run left) and register this run as one of its
    users. Several runs may share one cluster; with testbed "auto" the last run to finish removes it."""
    from . import testbed
    from .testbed import state as tb_state, users

    options, spec = run.options, run.settings.cluster_spec()
    started = False
    with locked(os.path.join(runs.runs_dir(run.settings.home), f".start-{spec.name}.lock")):
        left = leftovers.left_cluster(spec.state_dir)
        if left is not None:
            try:
                run.leftovers["cluster"] = leftovers.release_cluster(left, options["testbed"])
            except ChaosSchedulerError as e:
                raise _interrupt(f"could not take down the embedded cluster {spec.name!r} a killed run left: "
                                 f"{e}") from e
            run.recorder.update(leftovers=run.leftovers)
        if not tb_state.exists(spec.state_dir):
            if options["testbed"] == "never":
                raise _interrupt(f"the embedded cluster {spec.name!r} is not running and the control was told not "
                                 f"to start it (testbed: never)")
            logger.info("chaosscheduler: starting the embedded cluster %r (%d masters, %d workers)", spec.name,
                        spec.masters, spec.workers)
            try:
                testbed.up(spec)
                started = True
            except ChaosSchedulerError as e:
                if not tb_state.exists(spec.state_dir):  # not someone else's start (by hand) that came first
                    raise _interrupt(f"could not start the embedded cluster: {e}") from e
        users.join(spec.state_dir, run.run_id, auto=started and options["testbed"] == "auto")
    run.testbed = spec.state_dir
    run.recorder.update(cluster={"name": spec.name, "state_dir": spec.state_dir, "started": started})
    tb = testbed.Testbed(spec.state_dir)
    if started and options["warmup"]:
        begun = time.monotonic()
        while time.monotonic() - begun < options["warmup"]:
            time.sleep(0.1)  # a deliberate period of load, not a synchronisation
    try:
        tb.wait_healthy(timeout=30.0 if not started else 5.0)
    except ChaosSchedulerError as e:
        raise _interrupt(f"the embedded cluster {spec.name!r} is not healthy: {e}") from e
    if not started:
        logger.info("chaosscheduler: using the running embedded cluster %r", spec.name)


def start_witness(run: Any, secrets: Any) -> None:
    """Start the witness workload (``chaosscheduler.witness``) once the platform is ready, if that package is
    present and its options (configuration ``chaosscheduler_witness``, overridden key by key by the control's
    ``witness`` argument) do not switch it off. A witness that cannot start is recorded, not fatal: the probes that
    need its history then say they cannot decide."""
    argument = run.options.get("witness")
    if argument is False or (isinstance(argument, dict) and argument.get("enabled") is False):
        run.witness_summary = {"enabled": False}
        return
    try:
        from . import witness
    except ImportError:
        logger.debug("chaosscheduler: no witness package in this version: no witness workload")
        return
    start = getattr(witness, "start", None)
    if not callable(start):
        return
    try:
        from .platforms import for_settings

        platform = for_settings(run.settings, secrets) if secrets else for_settings(run.settings)
        extra = {"secrets": secrets} if "secrets" in inspect.signature(start).parameters else {}
        run.witness = start(run.settings, platform, os.path.dirname(run.recorder.path), argument, **extra)
    except (ChaosSchedulerError, ValueError, TypeError, OSError) as e:
        run.witness_summary = {"error": str(e).splitlines()[0] if str(e) else type(e).__name__}
        logger.error("chaosscheduler: the witness workload could not start: %s", run.witness_summary["error"])
        return
    if run.witness is None:
        run.witness_summary = {"enabled": False}
        return
    run.recorder.update(witness={"started_at": time.time(), "directory": getattr(run.witness, "directory", None)})
    logger.info("chaosscheduler: witness workload started")


# ------------------------------------------------------------------------------------------------ activities
def _epoch(value: Any) -> Optional[float]:
    if not isinstance(value, str):
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def _is_dry(run: Any, activity: Dict[str, Any]) -> bool:
    dry = activity.get("dry", run.dry)
    dry = getattr(dry, "value", dry)
    return dry == "activities" or dry == f"{activity.get('type')}s"


def _key(context: Dict[str, Any]) -> Any:
    return id(context), threading.get_ident()


def activity_started(run: Any, context: Dict[str, Any]) -> None:
    recorder = run.recorder
    provider = context.get("provider") if isinstance(context.get("provider"), dict) else {}
    module = provider.get("module") if isinstance(provider.get("module"), str) else None
    when = getattr(run.local, "hypothesis", None)
    phase = f"steady-state-{when}" if when else recorder.phase
    ours = bool(module and (module == "chaosscheduler" or module.startswith("chaosscheduler.")))
    now = time.time()
    entry: Dict[str, Any] = {"name": context.get("name"), "type": context.get("type"),
                             "provider": symptoms.provider_text(context), "module": module,
                             "func": provider.get("func"), "phase": phase, "started_at": now, "ended_at": None,
                             "status": "running", "ours": ours, "background": bool(context.get("background"))}
    fault = None
    dry = _is_dry(run, context)
    if dry:
        entry["dry"] = True
    in_method = when is None and recorder.phase == "method" and not recorder.method_ended
    if context.get("type") == "action" and in_method and not dry \
            and context.get("name") not in run.options.get("repair_actions", []) \
            and (not ours or module == "chaosscheduler.actions"):
        fault = {"name": context.get("name"), "provider": entry["provider"], "started_at": now, "ended_at": None,
                 "status": "running", "ours": ours, "fault_ids": [], "background": entry["background"]}
    if when:
        run.local.entries = getattr(run.local, "entries", []) + [entry]
    run.open[_key(context)] = (entry, fault)
    recorder.begin(entry, fault)


def _fault_ids(run: Any, output: Any, since: float) -> list:
    if isinstance(output, dict) and isinstance(output.get("id"), str):
        return [] if output.get("state") == "dry-run" else [output["id"]]
    from .ledger import Ledger

    with contextlib.suppress(ChaosSchedulerError, OSError):  # a failed action: what did it record?
        found = [f["id"] for f in Ledger(run.settings.home).all() if f.get("run_id") == run.run_id
                 and (f.get("created_at") or 0) >= since - 0.001 and f["id"] not in run.attributed]
        return found
    return []


def activity_ended(run: Any, context: Dict[str, Any], state: Optional[Dict[str, Any]]) -> None:
    opened = run.open.pop(_key(context), None)
    if opened is None:
        return
    entry, fault = opened
    facts: Dict[str, Any] = {"ended_at": time.time(), "status": "interrupted"}
    if state is not None:
        facts["status"] = state.get("status") or "interrupted"
        facts["started_at"] = _epoch(state.get("start")) or entry["started_at"]
        facts["ended_at"] = _epoch(state.get("end")) or facts["ended_at"]
        exception = state.get("exception")
        if isinstance(exception, list) and exception:
            facts["error"] = str(exception[-1]).strip().splitlines()[-1][:500]
        facts.update(runs.output_for_record(state.get("output")))
    if entry.get("dry"):
        facts["status"] = "skipped"
    if fault is not None and entry["ours"]:
        output = state.get("output") if state is not None else None
        ids = _fault_ids(run, output, entry["started_at"])
        run.attributed.update(ids)
        fault["fault_ids"] = ids
        if isinstance(output, dict) and output.get("state") == "dry-run":
            fault["dry_run"] = True
    if entry["ours"] and entry["type"] == "action" and facts["status"] == "failed":
        run.failed_actions.append(f"{entry['name']}: {facts.get('error', '')}".strip())
    run.recorder.end(entry, fault, **facts)


def record_tolerances(run: Any, state: Dict[str, Any], when: str) -> None:
    """Copy each probe's ``tolerance_met`` from chaoslib's hypothesis state into the record's entries."""
    entries = getattr(run.local, "entries", [])
    run.local.entries = []
    probes = [p for p in state.get("probes") or [] if isinstance(p, dict)]

    def copy(_: Dict[str, Any]) -> None:
        for entry, probe in zip(entries, probes):
            if "tolerance_met" in probe:
                entry["tolerance_met"] = probe["tolerance_met"]

    if when != "during":
        run.recorder.change(copy)
