"""The witness history on the report's timeline: our tasks submitted, started and completed per second, and the
tasks that tell something, each at its own moment: refused submissions, lost tasks (at their submission) and tasks
run twice (at their second start). Read from the run's witness directory (``"chaosscheduler"."witness"."directory"``
in the journal) when it is still on this machine; the journal's witness summary otherwise."""

import math
import os
from typing import Any, Dict, List, Optional

from .canvas import Canvas, Scale

__all__ = ["witness_view", "draw_witness", "HEIGHT"]

HEIGHT = 34
MARKS = {"refused": ("#e08a1e", "refused submission"), "lost": ("#d64545", "lost (at its submission)"),
         "doubled": ("#8e44ad", "run twice (at its second start)")}


def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def witness_view(ours: Dict[str, Any], origin: Optional[float]) -> Optional[Dict[str, Any]]:
    summary = _dict(ours.get("witness"))
    if not summary or origin is None:
        return None
    directory = summary.get("directory")
    out: Dict[str, Any] = {"summary": summary, "bins": [], "marks": [], "note": None}
    if not isinstance(directory, str) or not os.path.isdir(directory):
        out["note"] = ("the witness history is not on this machine any more: the timeline shows no task of the "
                       "witness, the figures keep their n")
        return out
    try:
        from ..witness import checker
        from ..witness.history import load
    except ImportError:
        out["note"] = "this version cannot read a witness history"
        return out
    history = load(directory)
    faults = [{"targets": f.get("targets") or [], "started_at": f["started_at"], "ended_at": f.get("undone_at")}
              for f in ours.get("faults") or [] if isinstance(f, dict) and f.get("started_at")]
    found = checker.check(history, faults=faults)
    runs = checker.executions(history.executions)
    counts: Dict[int, List[int]] = {}

    def count(at: Optional[float], index: int) -> None:
        if at is not None:
            counts.setdefault(int(math.floor(at - origin)), [0, 0, 0])[index] += 1

    invoked = {}
    for event in history.events:
        if event.get("type") == "invoke":
            invoked.setdefault(event["task"], event["at"])
            count(event["at"], 0)
    for runs_of in runs.values():
        for run in runs_of:
            count(run["start"], 1)
            count(run["end"], 2)
    out["bins"] = [[t, *v] for t, v in sorted(counts.items())]
    for task in found["refused"]:
        if task in invoked:
            out["marks"].append(["refused", task, invoked[task] - origin])
    for task in found["lost"]:
        if task in invoked:
            out["marks"].append(["lost", task, invoked[task] - origin])
    for task in found["duplicated_ids"]:
        starts = [r["start"] for r in runs.get(task, []) if r["start"] is not None]
        if len(starts) > 1:
            out["marks"].append(["doubled", task, sorted(starts)[1] - origin])
    out["counts"] = found["counts"]
    return out


def draw_witness(c: Canvas, scale: Scale, y: float, view: Dict[str, Any]) -> None:
    """Per-second starts (bars) and submissions (a line) of our tasks, and the telling tasks as marks."""
    bins = view.get("bins") or []
    peak = max([b[1] for b in bins] + [b[2] for b in bins] + [1])
    width = max(scale.x(1.0) - scale.x(0.0) - 0.5, 0.8)
    for t, submitted, started, ended in bins:
        h = (HEIGHT - 6) * started / peak
        c.add("rect", title=f"{t}–{t + 1} s: {submitted} submitted, {started} started, {ended} completed",
              x=scale.x(t), y=y + HEIGHT - h, width=width, height=h, fill="#9fd3ae", class_="witness-bin",
              data_t=t, data_submitted=submitted, data_started=started, data_completed=ended)
    if bins:
        points = " ".join(f"{scale.x(t + 0.5):.1f},{y + HEIGHT - (HEIGHT - 6) * s / peak:.1f}" for t, s, _, _ in bins)
        c.add("polyline", points=points, fill="none", stroke="#2b6cb0", stroke_width=1, class_="witness-submitted")
    for kind, task, t in view.get("marks") or []:
        color, words = MARKS[kind]
        x = scale.x(t)
        c.add("path", title=f"{task}: {words}, {t:.2f} s", d=f"M{x - 4:.1f},{y:.1f} L{x + 4:.1f},{y:.1f} "
              f"L{x:.1f},{y + 7:.1f} Z", fill=color, class_="witness-mark", data_kind=kind, data_task=task,
              data_t=round(t, 3))
