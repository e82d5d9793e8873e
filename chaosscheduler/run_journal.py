"""A journal-shaped view of a run record, for runs that never wrote their journal (SIGKILL, a crash).

``chaosscheduler report <run dir | run.json | run id>`` renders it like any journal: status "killed", the activities
recorded so far (the one that was running has no end), the faults of the run and what became of them according to
the ledger (undone by the run, expired at their deadline by their reaper, undone by a later run that found them),
and, in ``"chaosscheduler"."failure_reasons"``, a headline such as "killed during the method".
"""

import datetime
import os
from typing import Any, Dict, List, Optional, Tuple

from . import runs
from ._files import read_json

__all__ = ["to_journal", "journal_for_report", "is_run_record", "fault_summary", "utc_text", "PHASE_TEXT"]

PHASE_TEXT = {"starting": "start-up (before the steady-state hypothesis)",
              "steady-state-before": "steady-state hypothesis before the method", "method": "method",
              "steady-state-after": "steady-state hypothesis after the method", "rollbacks": "rollbacks",
              "ending": "final undo (the control's cleanup)", "ended": "end"}
_FAULT_KEYS = ("id", "action", "kind", "targets", "state", "started_at", "deadline", "undone_at", "measurements",
               "mode", "signal", "was_leader", "healed_by", "error")


def fault_summary(record: Dict[str, Any]) -> Dict[str, Any]:
    return {k: record[k] for k in _FAULT_KEYS if k in record}


def _iso(ts: Any) -> Optional[str]:
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


def utc_text(ts: Any) -> str:
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return "an unknown time"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def is_run_record(data: Any) -> bool:
    return isinstance(data, dict) and "run_id" in data and "phase" in data and "steady_states" not in data


def _entry(activity: Dict[str, Any]) -> Dict[str, Any]:
    provider: Dict[str, Any] = {"type": str(activity.get("provider", "python:")).split(":", 1)[0]}
    for key in ("module", "func"):
        if activity.get(key):
            provider[key] = activity[key]
    run: Dict[str, Any] = {"activity": {"name": activity.get("name"), "type": activity.get("type"),
                                        "provider": provider},
                           "start": _iso(activity.get("started_at")),
                           "status": activity.get("status") if activity.get("ended_at") is not None else None,
                           "output": activity.get("output")}
    if activity.get("ended_at") is not None:
        run["end"] = _iso(activity["ended_at"])
        run["duration"] = activity["ended_at"] - (activity.get("started_at") or activity["ended_at"])
    if activity.get("error"):
        run["exception"] = [activity["error"]]
    if "tolerance_met" in activity:
        run["tolerance_met"] = activity["tolerance_met"]
    return run


def _hypothesis(entries: List[Dict[str, Any]], declared: int) -> Optional[Dict[str, Any]]:
    if not entries:
        return None
    met = [e.get("tolerance_met") for e in entries]
    if any(m is False for m in met):
        verdict: Optional[bool] = False
    elif declared and len(entries) >= declared and all(m is True for m in met):
        verdict = True
    else:
        verdict = None  # cut off before every probe was checked
    return {"steady_state_met": verdict, "probes": [_entry(e) for e in entries]}


def _fate(fault: Dict[str, Any]) -> str:
    state = fault.get("state")
    if state == "expired":
        return (f"expired at {utc_text(fault.get('undone_at'))} (its deadline was "
                f"{utc_text(fault.get('deadline'))}: undone by its reaper)")
    if state == "undone":
        by = f" by run {fault['healed_by']}, which found it left behind" if fault.get("healed_by") else ""
        return f"undone at {utc_text(fault.get('undone_at'))}{by}"
    if state == "failed":
        return "failed while being injected (what was applied was undone at once)"
    if state in ("recorded", "active"):
        return (f"still open: it expires at {utc_text(fault.get('deadline'))}; 'chaosscheduler heal' undoes it now"
                if fault.get("deadline") else "still open: 'chaosscheduler heal' undoes it")
    return f"in state {state!r}"


def _ledger_faults(record: Dict[str, Any]) -> List[Dict[str, Any]]:
    from .ledger import Ledger

    home = record.get("home")
    if not isinstance(home, str) or not os.path.exists(os.path.join(home, "ledger.json")):
        return []
    try:
        return [f for f in Ledger(home).all() if f.get("run_id") == record.get("run_id")]
    except Exception:  # an unreadable ledger must not hide the rest of the record
        return []


def to_journal(record: Dict[str, Any], faults: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """``record`` (a run record) as a journal: status "killed" for a run found dead, "running" for a live one."""
    faults = _ledger_faults(record) if faults is None else faults
    state = runs.state_of(record)
    phase = record.get("phase")
    experiment: Dict[str, Any] = dict(record.get("experiment") or {})
    if isinstance(record.get("home"), str) and isinstance(record.get("run_id"), str):
        stored = None
        try:
            stored = read_json(os.path.join(runs.run_dir(record["home"], record["run_id"]), "experiment.json"))
        except (ValueError, OSError, runs.RunRecordError):
            pass
        if isinstance(stored, dict):
            experiment = stored
    activities = [a for a in record.get("activities") or [] if isinstance(a, dict)]
    declared = len((experiment.get("steady-state-hypothesis") or {}).get("probes") or [])
    running = [a for a in activities if a.get("ended_at") is None]
    if state in ("killed", "dead"):
        where = PHASE_TEXT.get(phase, str(phase))
        during = f", during the {running[-1].get('type')} '{running[-1].get('name')}'" if running else ""
        headline = (f"killed during the {where}{during}: the chaos process (pid {record.get('pid')}) vanished "
                    f"without ending the run; last recorded {utc_text(record.get('updated_at'))}")
        status = "killed"
    elif state == "running":
        headline = f"still running (pid {record.get('pid')}) in the {PHASE_TEXT.get(phase, phase)}: its record so far"
        status = None
    else:
        headline = f"ended with status {record.get('status')!r}"
        status = record.get("status")
    reasons = [headline[0].upper() + headline[1:]]
    if faults:
        reasons.append("Its faults: " + "; ".join(
            f"{f.get('id')} ({f.get('action', f.get('kind'))} on {', '.join(f.get('targets') or []) or '?'}) "
            f"{_fate(f)}" for f in faults))
    elif state in ("killed", "dead"):
        reasons.append("No fault of chaosscheduler was recorded for this run.")
    others = [f for f in record.get("observed_faults") or [] if not f.get("ours")]
    if others and state in ("killed", "dead"):
        reasons.append("Chaosscheduler cannot undo what other tools' actions did, and this run's rollbacks did not "
                       "all run: " + "; ".join(f"'{f.get('name')}' ({f.get('provider')}) from "
                                               f"{utc_text(f.get('started_at'))}" for f in others))
    by_phase: Dict[str, List[Dict[str, Any]]] = {}
    for activity in activities:
        by_phase.setdefault(activity.get("phase"), []).append(activity)
    end = record.get("ended_at") or record.get("updated_at")
    return {
        "chaoslib-version": None, "platform": None, "node": record.get("host"), "experiment": experiment,
        "start": _iso(record.get("started_at")), "end": _iso(end),
        "duration": (end - record["started_at"]) if isinstance(end, (int, float)) and isinstance(
            record.get("started_at"), (int, float)) else None,
        "status": status, "deviated": False,
        "steady_states": {"before": _hypothesis(by_phase.get("steady-state-before", []), declared),
                          "after": _hypothesis(by_phase.get("steady-state-after", []), declared), "during": []},
        "run": [_entry(a) for a in by_phase.get("method", [])],
        "rollbacks": [_entry(a) for a in by_phase.get("rollbacks", [])],
        "chaosscheduler": {"run_id": record.get("run_id"), "source": "run record",
                           "killed": {"phase": phase, "headline": headline, "state": state,
                                      "last_update": record.get("updated_at"), "pid": record.get("pid")},
                           "failure_reasons": reasons, "faults": [fault_summary(f) for f in faults],
                           "observed_faults": record.get("observed_faults") or [], "undo_errors": [],
                           "signal": record.get("signal")},
    }


def journal_for_report(ref: str, home: str = "") -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``(journal, None)`` for a run directory, a run.json, or a run id under ``home`` (default: the state home);
    ``(None, None)`` when ``ref`` is none of these (a journal path); ``(None, why)`` when it is one but unreadable."""
    from .testbed.spec import default_home

    path = ref
    if not os.path.exists(path):
        try:
            path = runs.run_dir(home or default_home(), ref)
        except runs.RunRecordError:
            return None, None
        if not os.path.isdir(path):
            return None, None
    elif not (os.path.isdir(path) or os.path.basename(path) == runs.RECORD):
        return None, None
    try:
        return to_journal(runs.read(path)), None
    except runs.RunRecordError as e:
        return None, str(e)
