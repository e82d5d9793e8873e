"""The control's end of a run: undo every fault of the run, stop the witness and the timeline, release the embedded
cluster, settle the journal's status (a signal → "interrupted"; strict reasons → "failed"; a hypothesis that
deviated during the method → deviated), close the run record, and log the final status as the last line."""

import contextlib
import datetime
import logging
import os
import time
from typing import Any, Dict, List, Optional

from . import config
from .errors import ChaosSchedulerError
from .faults import undo_open
from .ledger import Ledger
from .run_journal import PHASE_TEXT, fault_summary

__all__ = ["finish", "stop_recorder", "final_line"]
logger = logging.getLogger("chaostoolkit")


def stop_recorder(run: Any) -> None:
    recorder, run.timeline = run.timeline, None
    if recorder is not None:
        with contextlib.suppress(Exception):
            recorder.stop()


def _hhmmss(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def _undo(run: Any, summary: Dict[str, Any]) -> None:
    try:
        ledger = Ledger(run.settings.home)
        result = undo_open(ledger, lambda record: record.get("run_id") == run.run_id)
        summary["undone"] = result["undone"]
        summary["undo_errors"] = result["errors"]
        summary["faults"] = [fault_summary(f) for f in ledger.all() if f.get("run_id") == run.run_id]
    except Exception as e:  # never let cleanup errors hide: log and record them
        logger.error("chaosscheduler control: cleanup failed: %s", e)
        summary["undone"], summary["undo_errors"], summary["faults"] = [], [str(e)], []


def _stop_witness(run: Any, faults: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Stop the witness (after the rollbacks and the undo: its evidence is read back over a healed network) and
    return its summary, judged with this run's fault windows (a task run again after a cut is not a duplicate)."""
    workload, run.witness = run.witness, None
    if workload is None:
        return run.witness_summary
    windows = [{"id": f.get("id"), "targets": f.get("targets") or [], "started_at": f["started_at"],
                "ended_at": f.get("undone_at") or f.get("deadline")} for f in faults if f.get("started_at")]
    try:
        result = workload.stop()
        if windows and callable(getattr(workload, "summary", None)):
            result = workload.summary(faults=windows)
        return result if isinstance(result, dict) else {"stopped": True}
    except Exception as e:  # the undo and the journal matter more: record it
        logger.error("chaosscheduler: the witness workload could not be stopped cleanly: %s", e)
        return {"error": f"{type(e).__name__}: {e}".splitlines()[0]}


def _stop_testbed(run: Any, summary: Dict[str, Any]) -> None:
    from .testbed import users

    state_dir = run.testbed
    if not state_dir:
        return
    remaining = users.leave(state_dir, run.run_id)
    if remaining or not users.auto_started(state_dir):
        summary["testbed"] = {"kept": state_dir, "other_runs": remaining}
        return
    from . import testbed

    try:
        summary["testbed"] = testbed.down(state_dir)
    except ChaosSchedulerError as e:
        summary.setdefault("undo_errors", []).append(f"could not remove the embedded cluster: {e}")


def _strict_reasons(run: Any, journal: Dict[str, Any], observed: List[Dict[str, Any]]) -> List[str]:
    reasons = []
    before = (journal.get("steady_states") or {}).get("before")
    if before and not before.get("steady_state_met"):
        failing = [p["activity"]["name"] for p in before.get("probes", []) if not p.get("tolerance_met", True)]
        reasons.append(f"the steady state was not met before the method ({', '.join(failing) or 'a probe failed'})"
                       f": the method was skipped, the platform was not tested")
    for failure in run.failed_actions:
        reasons.append(f"action failed: {failure}")
    method = (journal.get("experiment") or {}).get("method") or []
    actions = [a for a in method if isinstance(a, dict) and a.get("type") == "action"
               and a.get("name") not in run.options.get("repair_actions", [])
               and not str((a.get("provider") or {}).get("module", "")).startswith("chaosscheduler.rollbacks")]
    happened = [f for f in observed if f.get("status") == "succeeded" and not f.get("dry_run")
                and (not f.get("ours") or f.get("fault_ids"))]
    if actions and journal.get("run") and not happened and journal.get("status") == "completed":
        why = "skipped (--dry)" if run.dry in ("actions", "activities") else "dry runs or failed"
        reasons.append(f"no fault happened: the method's actions were {why}; nothing was tested")
    return reasons


def _during(journal: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    states = [s for s in (journal.get("steady_states") or {}).get("during") or [] if isinstance(s, dict)]
    failed = [s for s in states if s.get("steady_state_met") is False]
    if not failed:
        return None
    probes = [p for p in failed[0].get("probes") or [] if isinstance(p, dict)]
    first = next(((p.get("activity") or {}).get("name") for p in probes if p.get("tolerance_met") is False), None)
    return {"checks": len(states), "failed": len(failed), "first_failed_probe": first}


def _verdicts() -> Optional[Dict[str, Any]]:
    """The tolerances' judgments and the experiment's warnings (``chaosscheduler.tolerances.journal_section``), when
    that module provides them."""
    try:
        from . import tolerances
    except ImportError:
        return None
    section = getattr(tolerances, "journal_section", None)
    if not callable(section):
        return None
    try:
        return section()
    except Exception as e:  # the journal must still be written
        logger.warning("chaosscheduler: the verdicts' journal section failed: %s", e)
        return None


def _exit_code(status: Optional[str], deviated: bool) -> str:
    from .control_run import _click_param

    code = 1 if status != "completed" or deviated else 0
    if code and _click_param("no_exit"):
        return "chaos run exits 0 (--no-exit)"
    return f"chaos run exits {code}"


def final_line(run_id: Optional[str], status: Optional[str], deviated: bool, why: str) -> str:
    word = "DEVIATED" if deviated and status == "completed" else str(status or "unknown").upper()
    said = f"journal status {status!r}" + (", deviated" if deviated else "")
    return (f"chaosscheduler: final status of run {run_id or '(none)'}: {word} ({said}){': ' + why if why else ''}; "
            f"{_exit_code(status, deviated)}")


def finish(run: Any, journal: Optional[Dict[str, Any]], configuration: Optional[Dict[str, Any]] = None) -> None:
    """Everything the end of a run needs, whatever its status; ``journal`` is None when Chaos Toolkit never called
    the after-experiment hook (then the run record alone says what happened). If it fails half-way, the control's
    cleanup hook calls it again (every step is idempotent)."""
    if run.finished or run.finishing:
        return
    run.finishing, run.shielded = True, True
    try:
        _finish(run, journal)
    finally:
        run.finishing = False
    run.finished = True


def _finish(run: Any, journal: Optional[Dict[str, Any]]) -> None:
    recorder = run.recorder
    if recorder is not None:
        recorder.set_phase("ending")
    summary: Dict[str, Any] = {"run_id": run.run_id}
    if run.run_id is None:  # refused before anything was done (bad arguments, configuration, experiment)
        reason = "the chaosscheduler control refused to start the run (see the error above); nothing was done"
        summary.update(failure_reasons=[reason], undo_errors=[], faults=[])
        status = (journal or {}).get("status") or "interrupted"
        if journal is not None:
            journal["chaosscheduler"] = summary
        logger.info(final_line(None, status, bool((journal or {}).get("deviated")), reason))
        return
    summary["run_dir"] = os.path.dirname(recorder.path) if recorder else None
    _undo(run, summary)
    summary["witness"] = _stop_witness(run, summary.get("faults") or [])
    observed = recorder.observed() if recorder else []
    journal_view = journal if journal is not None else {"status": "aborted", "steady_states": {}}
    reasons = _strict_reasons(run, journal_view, observed) if run.options.get("strict", True) else []
    if summary.get("undo_errors"):
        reasons.append(f"faults could not be undone: {'; '.join(summary['undo_errors'])}")
    if reasons and journal_view.get("status") == "completed":
        journal_view["status"] = "failed"
    during = _during(journal_view)
    if during:
        journal_view["deviated"] = True
        summary["deviated_during_method"] = during
        logger.warning("chaosscheduler: the steady state did not hold during the method: %d of %d checks failed "
                       "(first: %s)", during["failed"], during["checks"], during["first_failed_probe"])
    if run.signal is not None:
        where = PHASE_TEXT.get(run.signal["phase"], run.signal["phase"])
        played = len((journal or {}).get("rollbacks") or [])
        declared = len(((journal or {}).get("experiment") or {}).get("rollbacks") or [])
        reasons.insert(0, f"interrupted by {run.signal['name']} during the {where} at {_hhmmss(run.signal['at'])}; "
                          f"rollbacks played: {played} of {declared}; the control undid "
                          f"{len(summary.get('undone') or [])} fault(s) of the run")
        journal_view["status"] = "interrupted"
        journal_view.setdefault("interruption", {"kind": "signal", "name": run.signal["name"],
                                                 "reason": f"received {run.signal['name']}"})
        summary["signal"] = run.signal
    elif journal is None:
        reasons.insert(0, "the run ended without Chaos Toolkit's after-experiment step (an error between the "
                          "rollbacks and the end): the control undid its faults on cleanup")
    summary["failure_reasons"] = reasons
    if run.timeline is not None:
        from . import timeline as _timeline

        timeline, run.timeline = run.timeline, None
        summary["timeline"] = _timeline.finish(timeline)
    _stop_testbed(run, summary)
    summary.update(observed_faults=observed, skipped_probes=run.skipped_probes, leftovers=run.leftovers)
    verdicts = _verdicts()
    if verdicts is not None:
        summary["verdicts"] = verdicts
    if journal is not None:
        journal["chaosscheduler"] = summary
    for reason in reasons:
        logger.error("chaosscheduler: %s", reason)
    status, deviated = journal_view.get("status"), bool(journal_view.get("deviated"))
    if recorder is not None:
        recorder.update(phase="ended", status=status, deviated=deviated, ended_at=time.time(),
                        failure_reasons=reasons, undone=summary.get("undone", []))
    config.set_current_run(None)
    why = reasons[0] if reasons else ("the steady state did not hold" if deviated else
                                      "the steady state held" if status == "completed" else "")
    logger.info(final_line(run.run_id, status, deviated, why))
