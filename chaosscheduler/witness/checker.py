"""The checker: a pure function from a witness history to findings, Jepsen style. Nothing here asks the platform
anything; every anomaly comes with the task ids that prove it, so a person can follow one task through the history.

``check(history, settle, faults)`` finds:

* **lost** — acknowledged (or indeterminate but seen running) more than ``settle`` seconds before the end of the
  history and never executed to completion. Not completed and acknowledged later: ``unsettled`` (not judged). The
  execution ratio is completed / (completed + lost).
* **completed_without_evidence** — the platform reported a completion, no execution ran to its end.
* **forgotten** — (when the platform reports completions: ``meta["completions_reported"]``) ran to its end, yet
  ``settle`` seconds later the platform has reported no completion: it dropped the task from its books.
* **duplicated** — ``recorded_twice`` (the platform reported more than one completion), ``concurrent`` (two
  executions on two hosts at once, neither of them lost), ``executed_twice`` (run again after a complete, undisturbed
  execution). The same known attempt token on two hosts is always a duplicate.
* **reexecuted_after_loss** — run again after an execution that was lost: its host was under a fault (``faults``:
  the method's fault windows with their target nodes) or it never ended. The scheduler's right; reported apart.
* **refused** (``fail``) and **indeterminate** (``info``) submissions; an indeterminate one seen executing is
  resolved as accepted (``indeterminate.executed``), otherwise it stays ``indeterminate.unknown``.
* **unexpected** — executed or reported complete, never submitted by us.
* **stall** — the longest time work was waiting (submitted, acknowledged in the end or run, not started yet) while
  nothing started; one still open at the end of the history is ``ongoing`` with its length so far (:func:`stalls`).

:func:`rescheduling` answers, for the tasks running on given hosts at a given time (the cut), whether and when each
one started again elsewhere. Ratios carry n and one-sided 95 % bounds (:mod:`.stats`).
"""

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .history import History
from .stats import ratio

__all__ = ["check", "executions", "stalls", "rescheduling", "fault_windows", "quantile"]

DEFAULT_SETTLE = 30.0
Execution = Dict[str, Any]


def _history(history: Union[History, Dict[str, Any]]) -> History:
    return history if isinstance(history, History) else History.from_dict(history)


def executions(records: Iterable[Dict[str, Any]]) -> Dict[str, List[Execution]]:
    """Evidence lines paired into executions ``{"task", "node", "host", "pid", "attempt", "start", "end"}`` per
    task, sorted by start. Identical lines collected twice count once; an end without its start keeps
    ``start`` None (sorted by its end)."""
    seen = set()
    runs: List[Execution] = []
    open_runs: Dict[Tuple[Any, ...], Execution] = {}
    for r in sorted(records, key=lambda r: (r["at"], r["phase"] != "start")):
        ident = (r["task"], r["phase"], r.get("host"), r["at"], r.get("pid"))
        if ident in seen:
            continue
        seen.add(ident)
        node = r.get("node") or r.get("host")
        key = (r["task"], node, r.get("pid"), r.get("attempt"))
        run = open_runs.pop(key, None) if r["phase"] == "end" else None
        if run is None:
            run = {"task": r["task"], "node": node, "host": r.get("host"), "pid": r.get("pid"),
                   "attempt": r.get("attempt"), "start": None, "end": None}
            runs.append(run)
        if r["phase"] == "start":
            run["start"] = r["at"]
            open_runs[key] = run
        else:
            run["end"] = r["at"]
    out: Dict[str, List[Execution]] = {}
    for run in runs:
        out.setdefault(run["task"], []).append(run)
    for runs_of in out.values():
        runs_of.sort(key=lambda x: x["start"] if x["start"] is not None else x["end"])
    return out


def fault_windows(faults: Iterable[Dict[str, Any]], end: Optional[float]) -> List[Dict[str, Any]]:
    """Normalise fault records (``targets``/``hosts``/``nodes``, ``started_at``, ``ended_at`` or open) to
    ``{"nodes": set, "from", "to"}``; an open fault lasts until ``end``."""
    out = []
    for fault in faults or ():
        nodes = fault.get("targets") or fault.get("hosts") or fault.get("nodes") or []
        start = fault.get("started_at", fault.get("from"))
        if start is None:
            continue
        stop = fault.get("ended_at", fault.get("to"))
        out.append({"nodes": set(nodes), "from": float(start),
                    "to": float(stop) if stop is not None else (end if end is not None else math.inf)})
    return out


def _lost_at(run: Execution, windows: List[Dict[str, Any]]) -> Optional[float]:
    """When execution ``run`` was lost: the start of a fault on its node during it, or its start if it never
    ended; None for a complete, undisturbed execution."""
    begin = run["start"] if run["start"] is not None else run["end"]
    finish = run["end"] if run["end"] is not None else math.inf
    hits = [max(w["from"], begin) for w in windows if run["node"] in w["nodes"] and w["from"] <= finish
            and w["to"] >= begin]
    if hits:
        return min(hits)
    return begin if run["end"] is None else None


def _overlap(a: Execution, b: Execution) -> float:
    a0, b0 = a["start"] if a["start"] is not None else a["end"], b["start"] if b["start"] is not None else b["end"]
    a1 = a["end"] if a["end"] is not None else math.inf
    b1 = b["end"] if b["end"] is not None else math.inf
    return min(a1, b1) - max(a0, b0)


def _repeats(task: str, runs: List[Execution], windows: List[Dict[str, Any]], found: Dict[str, List[Any]]) -> None:
    for i, later in enumerate(runs[1:], 1):
        begin = later["start"] if later["start"] is not None else later["end"]
        earlier = runs[:i]
        same = [e for e in earlier if e["attempt"] and e["attempt"] == later["attempt"] and e["node"] != later["node"]]
        explained = [e for e in earlier if (_lost_at(e, windows) or math.inf) <= begin]
        if not same and explained:
            first = explained[0]
            found["reexecuted"].append({"task": task, "from": first["node"], "to": later["node"],
                                        "lost_at": _lost_at(first, windows), "restarted_at": begin,
                                        "attempts": [first["attempt"], later["attempt"]]})
            continue
        concurrent = [e for e in (same or earlier) if e["node"] != later["node"] and _overlap(e, later) > 0]
        if concurrent:
            other = concurrent[0]
            found["concurrent"].append({"task": task, "nodes": [other["node"], later["node"]],
                                        "overlap": round(min(_overlap(other, later), 1e9), 6),
                                        "attempts": [other["attempt"], later["attempt"]]})
        else:
            other = (same or earlier)[-1]
            found["executed_twice"].append({"task": task, "nodes": [other["node"], later["node"]],
                                            "at": [other["start"], begin],
                                            "attempts": [other["attempt"], later["attempt"]]})


def stalls(history: Union[History, Dict[str, Any]], start: Optional[float] = None,
           end: Optional[float] = None, since: str = "invoke") -> List[Dict[str, Any]]:
    """Every interval in which work was waiting while no task started, clipped to ``[start, end]`` (default: the
    whole history). A task waits from its submission (``since="invoke"``: a client retrying through a leaderless
    window is work waiting) or from its acknowledgement (``since="ack"``) until its first start; only tasks the
    platform acknowledged or ran count. ``{"from", "to", "seconds", "waiting" (tasks waiting when it began or that
    joined), "ongoing" (still open at the end: its length so far)}``, longest first."""
    if since not in ("invoke", "ack"):
        raise ValueError(f"since must be 'invoke' or 'ack', got {since!r}")
    h = _history(history)
    end = h.end if end is None else end
    if end is None:
        return []
    first_start: Dict[str, float] = {}
    starts: List[float] = []
    for task, runs in executions(h.executions).items():
        for run in runs:
            if run["start"] is not None:
                starts.append(run["start"])
                first_start[task] = min(first_start.get(task, math.inf), run["start"])
    points: List[Tuple[float, int, str]] = [(t, 0, "") for t in starts]
    invoked = {e["task"]: e["at"] for e in h.events if e.get("type") == "invoke"}
    acked = {e["task"]: e["at"] for e in h.events if e.get("type") == "ok"}
    for task in set(acked) | (set(first_start) & set(invoked)):
        at = invoked.get(task) if since == "invoke" else acked.get(task)
        if at is not None and first_start.get(task, math.inf) > at:
            points.append((at, 1, task))
    points.sort()
    waiting: set = set()
    joined = 0
    since: Optional[float] = None
    out: List[Dict[str, Any]] = []

    def close(until: float, ongoing: bool) -> None:
        lo, hi = max(since, start) if start is not None else since, min(until, end)
        if hi > lo:
            out.append({"from": lo, "to": hi, "seconds": hi - lo, "waiting": joined, "ongoing": ongoing})

    for at, kind, task in points:
        if at > end:
            break
        if kind == 1:
            if task in waiting or first_start.get(task, math.inf) <= at:
                continue
            waiting.add(task)
            if since is None:
                since, joined = at, 0
            joined += 1
            continue
        if since is not None:
            close(at, False)
        waiting = {t for t in waiting if first_start.get(t, math.inf) > at}
        since, joined = (at, len(waiting)) if waiting else (None, 0)
    if since is not None and waiting:
        close(end, True)
    out.sort(key=lambda s: -s["seconds"])
    return out


def quantile(values: Sequence[float], q: float) -> Optional[float]:
    """Nearest-rank quantile; None when empty or when the rank lands on an unfinished (infinite) value."""
    if not values:
        return None
    ordered = sorted(values)
    value = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    return None if math.isinf(value) else value


def rescheduling(history: Union[History, Dict[str, Any]], hosts: Iterable[str], at: float,
                 deadline: Optional[float] = None, threshold: Optional[float] = None,
                 end: Optional[float] = None) -> Dict[str, Any]:
    """For the witness tasks running on ``hosts`` at time ``at`` (started, not ended), whether and when each one
    started again on another host afterwards. ``deadline`` (seconds after ``at``) bounds a success; the ratio
    carries n and its bounds against ``threshold``. Latencies are from ``at`` to the first start elsewhere; a task
    not started again is ``waiting`` (for as long as the history goes on: ``end - at``)."""
    h = _history(history)
    end = h.end if end is None else end
    hosts = set(hosts)
    runs_by_task = executions(h.executions)
    victims: List[Dict[str, Any]] = []
    for task, runs in sorted(runs_by_task.items()):
        on_cut = [r for r in runs if r["node"] in hosts and r["start"] is not None and r["start"] <= at
                  and (r["end"] is None or r["end"] > at)]
        if not on_cut:
            continue
        again = [r for r in runs if r["node"] not in hosts and r["start"] is not None and r["start"] >= at]
        first = min(again, key=lambda r: r["start"]) if again else None
        latency = (first["start"] - at) if first else None
        victims.append({"task": task, "node": on_cut[0]["node"], "restarted_on": first["node"] if first else None,
                        "restarted_at": first["start"] if first else None, "latency": latency,
                        "in_time": latency is not None and (deadline is None or latency <= deadline),
                        "finished_in_place": any(r["end"] is not None for r in on_cut)})
    successes = sum(1 for v in victims if v["in_time"])
    latencies = [v["latency"] if v["latency"] is not None else math.inf for v in victims]
    result = ratio(successes, len(victims), threshold)
    result.update(hosts=sorted(hosts), at=at, deadline=deadline, end=end, tasks=victims,
                  not_restarted=[v["task"] for v in victims if v["latency"] is None],
                  late=[v["task"] for v in victims if v["latency"] is not None and not v["in_time"]],
                  latency={"p50": quantile(latencies, 0.5), "p95": quantile(latencies, 0.95),
                           "max": quantile(latencies, 1.0), "n": len(latencies),
                           "waiting": (end - at) if end is not None and any(math.isinf(x) for x in latencies)
                           else None})
    return result


def check(history: Union[History, Dict[str, Any]], settle: Optional[float] = None,
          faults: Iterable[Dict[str, Any]] = (), window: Optional[Sequence[float]] = None,
          end: Optional[float] = None, thresholds: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """Check ``history``; see the module docstring for every finding. ``settle`` (default: the workload's option,
    else 30 s) is how long an acknowledged task may take to complete; ``window`` (from, to) restricts the judged
    tasks (ratios, lost) to those invoked in it; ``thresholds`` (``{"submissions": 0.995, "execution": 0.98}``)
    add ``decidable``/``passed`` to those ratios. ``valid`` is False on any loss, duplicate, unexpected task or
    completion without evidence, None when no task could be judged."""
    h = _history(history)
    end = h.end if end is None else end
    settle = float(settle if settle is not None else (h.meta.get("options") or {}).get("settle", DEFAULT_SETTLE))
    thresholds = thresholds or {}
    windows = fault_windows(faults, end)
    runs_by_task = executions(h.executions)
    tasks: Dict[str, Dict[str, Any]] = {}
    completions: Dict[str, int] = {}
    stray: set = set()
    latencies: List[float] = []
    for event in h.events:
        kind, task = event.get("type"), event.get("task")
        if kind == "invoke":
            tasks.setdefault(task, {"invoked_at": event["at"], "outcome": None})
        elif kind in ("ok", "fail", "info"):
            if task not in tasks:
                stray.add(task)
                continue
            entry = tasks[task]
            if entry["outcome"] is None:
                entry.update(outcome=kind, answered_at=event["at"], job_id=event.get("job_id"),
                             error=event.get("error"))
                if event.get("latency") is not None:
                    latencies.append(float(event["latency"]))
        elif kind == "completion":
            completions[task] = completions.get(task, 0) + 1
    unexpected = sorted((set(runs_by_task) | set(completions) | stray) - set(tasks))
    lo, hi = (window[0], window[1]) if window else (-math.inf, math.inf)
    judged = {t: e for t, e in tasks.items() if lo <= e["invoked_at"] <= hi}
    counts = {"invoked": len(judged), "ok": 0, "fail": 0, "info": 0, "unanswered": 0, "executed": 0,
              "completed": 0, "judged": 0, "unsettled": 0}
    lost, unsettled, refused, info_exec, info_unknown, no_evidence, forgotten = [], [], [], [], [], [], []
    reported = bool(h.meta.get("completions_reported"))
    errors: Dict[str, str] = {}
    for task, entry in judged.items():
        outcome = entry["outcome"] or "unanswered"
        counts[outcome] += 1
        runs = runs_by_task.get(task, [])
        executed, completed = bool(runs), any(r["end"] is not None for r in runs)
        counts["executed"] += executed
        counts["completed"] += completed
        if outcome == "fail":
            refused.append(task)
            errors.setdefault(task, str(entry.get("error") or ""))
        if outcome in ("info", "unanswered"):
            (info_exec if executed or completions.get(task) else info_unknown).append(task)
        accepted = outcome == "ok" or (outcome in ("info", "unanswered") and (executed or completions.get(task)))
        if completions.get(task) and not completed:
            no_evidence.append(task)
        if reported and completed and not completions.get(task):
            if max(r["end"] for r in runs if r["end"] is not None) + settle <= end:
                forgotten.append(task)
        if not accepted:
            continue
        since = entry.get("answered_at") if outcome == "ok" else entry["invoked_at"]
        if completed:
            counts["judged"] += 1
        elif since + settle > end:
            counts["unsettled"] += 1  # may still complete: not judged
            unsettled.append(task)
        else:
            counts["judged"] += 1
            lost.append(task)
    found: Dict[str, List[Any]] = {"reexecuted": [], "concurrent": [], "executed_twice": []}
    for task, runs in runs_by_task.items():
        if len(runs) > 1 and task in tasks:
            _repeats(task, runs, windows, found)
    recorded_twice = sorted(t for t, n in completions.items() if n > 1 and t in tasks)
    duplicated_ids = sorted(set(recorded_twice) | {d["task"] for d in found["concurrent"]}
                            | {d["task"] for d in found["executed_twice"]})
    attempted = counts["invoked"]
    judged_done = counts["judged"] - len(lost)
    stall_list = stalls(h, window[0] if window else None, min(end, window[1]) if window else end)
    anomalies = bool(lost or duplicated_ids or unexpected or no_evidence or forgotten)
    return {
        "valid": False if anomalies else (None if counts["judged"] == 0 else True),
        "end": end, "settle": settle, "window": list(window) if window else None,
        "counts": counts,
        "submissions": ratio(counts["ok"], attempted, thresholds.get("submissions")),
        "execution": ratio(judged_done, counts["judged"], thresholds.get("execution")),
        "lost": sorted(lost), "unsettled": sorted(unsettled), "completed_without_evidence": sorted(no_evidence),
        "forgotten": sorted(forgotten),
        "duplicated": {"recorded_twice": recorded_twice, "concurrent": found["concurrent"],
                       "executed_twice": found["executed_twice"]},
        "duplicated_ids": duplicated_ids,
        "reexecuted_after_loss": found["reexecuted"],
        "refused": sorted(refused), "refusal_errors": dict(sorted(errors.items())[:20]),
        "indeterminate": {"executed": sorted(info_exec), "unknown": sorted(info_unknown)},
        "unexpected": unexpected,
        "stall": stall_list[0] if stall_list else None,
        "open_stall": next((s for s in stall_list if s["ongoing"]), None),
        "submission_latency": {"p50": quantile(latencies, 0.5), "p95": quantile(latencies, 0.95),
                               "max": quantile(latencies, 1.0), "n": len(latencies)},
    }
