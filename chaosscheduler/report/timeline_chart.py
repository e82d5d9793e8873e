"""The timeline chart of one run, as hand-written SVG (why: docs/report.md).

Every mark carries ``data-*`` attributes (lane, value, start and end in seconds from the chart's origin), so tests
and scripts can read the chart back; every mark has a ``<title>``, which browsers show on hover without JavaScript.
"""

import datetime
import math
from typing import Any, Dict, List, Optional, Tuple
from xml.sax.saxutils import quoteattr

from .canvas import FAULT, FONT, LEFT, PALETTE, RIGHT, SERIES, STATE, WIDTH, Canvas, Scale, fits, tick_step
from .model import fmt_value
from .witness_lane import HEIGHT as WITNESS_HEIGHT, MARKS as WITNESS_MARKS, draw_witness

__all__ = ["timeline_svg"]

MEASURED_FROM_FAULT = {"leader_election_time": ("kill_master", "new leader after"),
                       "worker_failure_detection_time": ("isolate_worker partition_workers", "declared dead after"),
                       "rescheduling_latency": ("isolate_worker partition_workers", "p95 rescheduled after")}



def _offset(ts: Optional[float], origin: float) -> Optional[float]:
    return None if ts is None else ts - origin


def _faults(view: Dict[str, Any], origin: float) -> List[Dict[str, Any]]:
    """Fault windows in seconds from the origin: the timeline's copy of the ledger, else the journal summary's."""
    timeline = view.get("timeline") or {}
    by_id = {f.get("id"): f for f in view.get("faults", [])}
    if isinstance(timeline.get("faults"), list) and timeline.get("started_at") is not None:
        windows = [dict(f) for f in timeline["faults"] if isinstance(f, dict) and f.get("start") is not None]
    else:
        windows = [{"id": f.get("id"), "action": f.get("action"), "targets": f.get("targets", []),
                    "start": _offset(f.get("started_at"), origin), "end": _offset(f.get("undone_at"), origin),
                    "state": f.get("state")} for f in view.get("faults", []) if isinstance(f.get("started_at"),
                                                                                          (int, float))]
    for window in windows:
        window["measurements"] = (by_id.get(window.get("id")) or {}).get("measurements") or {}
        window["was_leader"] = (by_id.get(window.get("id")) or {}).get("was_leader")
    return windows


def _measures(view: Dict[str, Any], windows: List[Dict[str, Any]]) -> List[Tuple[str, float, float, str]]:
    """(probe, start, end, label) for the figures measured from a fault's start: where each number came from."""
    out = []
    for row in view.get("figures", []):
        spec = MEASURED_FROM_FAULT.get(row["func"])
        if not spec or row["value"] is None:
            continue
        actions, words = spec
        candidates = [w for w in windows if w.get("action") in actions.split()
                      and (row["func"] != "leader_election_time" or w.get("was_leader") is not False)]
        if candidates:
            start = candidates[-1]["start"]
            out.append((row["func"], start, start + row["value"], f"{words} {fmt_value(row['value'], 's')}"))
    return out


def _origin(view: Dict[str, Any]) -> Optional[float]:
    timeline = view.get("timeline") or {}
    if isinstance(timeline.get("started_at"), (int, float)):
        return float(timeline["started_at"])
    stamps = [a["start"] for a in view.get("activities", []) if a.get("start") is not None]
    stamps += [f["started_at"] for f in view.get("faults", []) if isinstance(f.get("started_at"), (int, float))]
    if view.get("start") is not None:
        stamps.append(view["start"])
    return min(stamps) if stamps else None


def _segments(canvas: Canvas, scale: Scale, y: float, h: float, lane: str, segments: Any,
              color: Any, label: Any = None) -> None:
    for seg in segments if isinstance(segments, list) else []:
        if not (isinstance(seg, list) and len(seg) == 3 and all(isinstance(v, (int, float)) for v in seg[:2])):
            continue
        start, end, value = seg
        x0, x1 = scale.x(start), scale.x(end)
        name = "none" if value is None else str(value)
        canvas.add("rect", title=f"{lane}: {name} from {start:.2f} s to {end:.2f} s", x=x0, y=y,
                   width=max(x1 - x0, 0.8), height=h, fill=color(value), class_="seg", data_lane=lane,
                   data_value=name, data_start=start, data_end=end)
        text = label(value) if label else None
        if text and fits(text, x1 - x0):
            canvas.text((x0 + x1) / 2, y + h / 2 + 4, text, size=11, anchor="middle", fill="#fff",
                        pointer_events="none")


def timeline_svg(view: Dict[str, Any], chart_id: str = "c0") -> str:
    """The run on one time axis; "" when the journal holds no timestamp at all."""
    origin = _origin(view)
    if origin is None:
        return ""
    timeline = view.get("timeline") or {}
    has_series = isinstance(timeline.get("t"), list) and bool(timeline.get("t"))
    windows = _faults(view, origin)
    acts = [dict(a, s=_offset(a["start"], origin), e=_offset(a["end"], origin)) for a in view.get("activities", [])
            if a.get("start") is not None]
    ends = [0.0, float(timeline.get("duration") or 0)] + [a["e"] or a["s"] for a in acts]
    ends += [w["end"] or w["start"] for w in windows]
    starts = [0.0] + [a["s"] for a in acts] + [w["start"] for w in windows]
    scale = Scale(min(starts), max(ends))
    masters = sorted((timeline.get("masters") or {}) if isinstance(timeline.get("masters"), dict) else {})
    workers = sorted((timeline.get("workers") or {}) if isinstance(timeline.get("workers"), dict) else {})
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(masters)}
    for seg in timeline.get("leader") or []:
        if isinstance(seg, list) and len(seg) == 3 and seg[2] and seg[2] not in colors:
            colors[seg[2]] = PALETTE[len(colors) % len(PALETTE)]
    measures = _measures(view, windows)
    hatch = f"{chart_id}-hatch"

    rows: List[Tuple[str, str, float]] = []  # (key, label, height)
    phases = [("hypothesis", "steady state", ("hypothesis before", "hypothesis after")),
              ("method", "method", ("method",)), ("rollback", "rollbacks", ("rollback",))]
    for key, label, names in phases:
        if any(a["phase"] in names for a in acts):
            rows.append((key, label, 16))
    if windows:
        rows.append(("faults", "faults", 18))
    for i, _ in enumerate(measures):
        rows.append((f"measure{i}", "measured" if i == 0 else "", 14))
    witness = view.get("witness_timeline") or {}
    if witness.get("bins"):
        rows.append(("witness", "witness tasks", WITNESS_HEIGHT))
    if timeline.get("leader"):
        rows.append(("leader", "leader", 20))
    rows += [(f"master:{m}", m, 11) for m in masters]
    rows += [(f"worker:{w}", w, 13) for w in workers]
    top, gap = 30, 4
    y_of: Dict[str, float] = {}
    y = top
    for key, _, height in rows:
        y_of[key] = y
        y += height + gap
    chart_top = y + 8
    chart_h = 110 if has_series else 0
    axis_y = chart_top + chart_h + (6 if has_series else 0)
    legend_y = axis_y + 34
    legend = _legend_items(hatch, bool(timeline.get("leader")), has_series, bool(windows))
    if witness.get("bins"):
        legend += [("#9fd3ae", "witness: started /s"), ("#2b6cb0", "witness: submitted /s")]
        legend += [(color, f"witness: {words}") for kind, (color, words) in WITNESS_MARKS.items()
                   if any(m[0] == kind for m in witness.get("marks") or [])]
    height = legend_y + 18 * _legend_lines(legend) + 8

    c = Canvas()
    c.parts.append(f"<defs><pattern id=\"{hatch}\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
                   f"patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#eee\"/>"
                   f"<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#bbb\" stroke-width=\"3\"/></pattern></defs>")
    c.add("rect", x=0, y=0, width=WIDTH, height=height, fill="#fff")
    when = datetime.datetime.fromtimestamp(origin, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    source = f", sampled every {timeline.get('interval')} s" if has_series else ", no timeline recorded"
    c.text(LEFT, 16, f"t = 0 s at {when}{source}", size=11, fill="#555")

    # fault windows behind everything
    band_top = y_of.get("faults", top) - 2
    for w in windows:
        end = w["end"] if w.get("end") is not None else scale.t1
        x0, x1 = scale.x(w["start"]), scale.x(end)
        c.add("rect", title=f"{w.get('action')} on {', '.join(w.get('targets') or [])}: {w['start']:.2f} s to "
                            f"{'still open' if w.get('end') is None else f'{end:.2f} s'} ({w.get('state')})",
              x=x0, y=band_top, width=max(x1 - x0, 1.0), height=axis_y - band_top, fill=FAULT, fill_opacity=0.14,
              stroke=FAULT, stroke_dasharray="4 3", class_="fault-window", data_fault=w.get("id"),
              data_action=w.get("action"), data_start=w["start"], data_end=end,
              data_open="true" if w.get("end") is None else None)

    for key, label, h in rows:
        if label:
            c.text(LEFT - 8, y_of[key] + h / 2 + 4, label, size=11, anchor="end",
                   fill="#222" if not key.startswith(("master:", "worker:")) else "#555")

    for key, _, names in phases:
        for a in (a for a in acts if a["phase"] in names):
            if key not in y_of:
                continue
            x0, x1 = scale.x(a["s"]), scale.x(a["e"] if a["e"] is not None else a["s"])
            color = "#d64545" if a["status"] == "failed" else "#555" if a["type"] == "action" else "#8aa4c8"
            c.add("rect", title=f"{a['phase']}: {a['name']} ({a['status']}), {a['s']:.2f}–"
                                f"{(a['e'] if a['e'] is not None else a['s']):.2f} s",
                  x=x0, y=y_of[key], width=max(x1 - x0, 2.0), height=16, fill=color, class_="activity",
                  data_phase=a["phase"], data_name=a["name"], data_start=a["s"], data_end=a["e"])
            if fits(a["name"], x1 - x0, 10):
                c.text(x0 + 3, y_of[key] + 12, a["name"], size=10, fill="#fff", pointer_events="none")

    overlays: List[Dict[str, Any]] = []
    if windows:
        for w in windows:
            end = w["end"] if w.get("end") is not None else scale.t1
            x0, x1 = scale.x(w["start"]), scale.x(end)
            targets = [str(t) for t in w.get("targets") or []]
            mode = f" {w['mode']}" if w.get("mode") else ""
            text = f"{w.get('action')}{mode} {', '.join(targets)}"
            short = next((t for t in (text, f"{w.get('action')}{mode} ({len(targets)} targets)",
                                      f"{w.get('action')}{mode}", str(w.get("action"))) if fits(t, x1 - x0)), "")
            c.add("rect", title=text, x=x0, y=y_of["faults"], width=max(x1 - x0, 2.0), height=18, fill=FAULT,
                  class_="fault", data_fault=w.get("id"), data_start=w["start"], data_end=end)
            c.text(x0 + 3, y_of["faults"] + 13, short, size=11, fill="#222")
            for target in targets:  # the ground truth on the node's own row: the fault hit it here
                key = f"worker:{target}" if f"worker:{target}" in y_of else f"master:{target}"
                if key in y_of:
                    h = 13 if key.startswith("worker:") else 11
                    overlays.append(dict(title=f"{w.get('action')}{mode} on {target}", x=x0, y=y_of[key] - 1.5,
                                         width=max(x1 - x0, 2.0), height=h + 3, fill="none", stroke=FAULT,
                                         stroke_width=2.5, class_="fault-target", data_node=target,
                                         data_fault=w.get("id"), data_start=w["start"], data_end=end))
    for i, (probe, start, end, text) in enumerate(measures):
        y0 = y_of[f"measure{i}"] + 7
        x0, x1 = scale.x(start), scale.x(end)
        c.add("line", title=f"{probe}: {text}", x1=x0, y1=y0, x2=x1, y2=y0, stroke="#222", stroke_width=2,
              class_="measure", data_probe=probe, data_start=start, data_end=end)
        for x in (x0, x1):
            c.add("line", x1=x, y1=y0 - 5, x2=x, y2=y0 + 5, stroke="#222", stroke_width=2)
        c.text(x1 + 5, y0 + 4, f"{text} ({probe})", size=10, fill="#222")

    if "witness" in y_of:
        draw_witness(c, scale, y_of["witness"], witness)
    if "leader" in y_of:
        _segments(c, scale, y_of["leader"], 20, "leader", timeline["leader"],
                  lambda v: colors.get(v, "#888") if v else f"url(#{hatch})", label=lambda v: v)
        for seg in timeline["leader"]:
            if isinstance(seg, list) and len(seg) == 3 and seg[2] is None and fits("no leader", scale.x(seg[1])
                                                                                      - scale.x(seg[0])):
                c.text((scale.x(seg[0]) + scale.x(seg[1])) / 2, y_of["leader"] + 14, "no leader", size=11,
                       anchor="middle", fill="#b02a2a")
    for m in masters:
        _segments(c, scale, y_of[f"master:{m}"], 11, f"master:{m}", timeline["masters"][m],
                  lambda v: STATE.get(v, f"url(#{hatch})"))
    for w in workers:
        _segments(c, scale, y_of[f"worker:{w}"], 13, f"worker:{w}", timeline["workers"][w],
                  lambda v: STATE.get(v, f"url(#{hatch})"))
    for gap_ in timeline.get("unanswered") or []:
        if isinstance(gap_, list) and len(gap_) == 2 and "leader" in y_of:
            c.add("rect", title=f"no master answered: {gap_[0]:.2f}–{gap_[1]:.2f} s", x=scale.x(gap_[0]),
                  y=y_of["leader"], width=max(scale.x(gap_[1]) - scale.x(gap_[0]), 0.8), height=20,
                  fill=f"url(#{hatch})", class_="unanswered", data_start=gap_[0], data_end=gap_[1])
    for quiet in timeline.get("leader_silent") or []:
        if isinstance(quiet, list) and len(quiet) == 2 and "leader" in y_of:
            c.add("rect", title=f"the leader held its key but did not answer: {quiet[0]:.2f}–{quiet[1]:.2f} s",
                  x=scale.x(quiet[0]), y=y_of["leader"] + 14, width=max(scale.x(quiet[1]) - scale.x(quiet[0]), 0.8),
                  height=6, fill=f"url(#{hatch})", class_="leader-silent", data_start=quiet[0], data_end=quiet[1])
    for overlay in overlays:
        c.add("rect", **overlay)
    for a in acts:  # an activity without a status was cut off: the run was interrupted there
        if a["status"] is None:
            x = scale.x(a["e"] if a["e"] is not None else a["s"])
            c.add("line", title=f"interrupted during {a['name']}", x1=x, y1=top - 4, x2=x, y2=axis_y,
                  stroke="#d64545", stroke_width=2, stroke_dasharray="6 3", class_="interrupted", data_t=a["e"])
            c.text(x - 4, top - 6, "interrupted", size=11, anchor="end", fill="#d64545")
    _events(c, scale, timeline, y_of, chart_top + chart_h)
    if has_series:
        _tasks_chart(c, scale, timeline, chart_top, chart_h)
    _axis(c, scale, axis_y)
    _legend(c, legend_y, legend)
    body = "".join(c.parts)
    return (f"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" id={quoteattr(chart_id)} "
            f"viewBox=\"0 0 {WIDTH} {height:.0f}\" width=\"{WIDTH}\" height=\"{height:.0f}\" {FONT} "
            f"data-origin=\"{origin:.3f}\" data-t0=\"{scale.t0:.3f}\" data-t1=\"{scale.t1:.3f}\" role=\"img\">"
            f"{body}</svg>")


def _events(c: Canvas, scale: Scale, timeline: Dict[str, Any], y_of: Dict[str, float], chart_bottom: float) -> None:
    seen_ticks = set()
    for event in timeline.get("events") or []:
        if not (isinstance(event, list) and len(event) == 4 and isinstance(event[0], (int, float))):
            continue
        t, node, kind, fields = event
        fields = fields if isinstance(fields, dict) else {}
        x = scale.x(t)
        if kind in ("leader_acquired", "leader_lost") and "leader" in y_of:
            y = y_of["leader"]
            what = (f"elected (term {fields.get('term')})" if kind == "leader_acquired"
                    else f"lost the lead: {fields.get('reason')}")
            title = f"{t:.3f} s: {node} {what}"
            points = f"{x - 5:.1f},{y - 6:.1f} {x + 5:.1f},{y - 6:.1f} {x:.1f},{y:.1f}"
            c.add("polygon", title=title, points=points, fill="#222" if kind == "leader_acquired" else "#d64545",
                  class_="event", data_event=kind, data_node=node, data_t=t)
        elif kind in ("worker_declared_dead", "worker_seen") and f"worker:{fields.get('worker')}" in y_of:
            y = y_of[f"worker:{fields.get('worker')}"] + 6.5
            c.add("circle", title=f"{t:.3f} s: {fields.get('worker')} "
                                  f"{'declared dead' if kind == 'worker_declared_dead' else 'seen again'} by {node}",
                  cx=x, cy=y, r=3.5, fill="#fff", stroke="#222", stroke_width=1.5, class_="event",
                  data_event=kind, data_node=fields.get("worker"), data_t=t)
        elif kind == "task_rescheduled" and round(x) not in seen_ticks:
            seen_ticks.add(round(x))
            c.add("line", title=f"{t:.3f} s: task {fields.get('task')} rescheduled from {fields.get('from_worker')}",
                  x1=x, y1=chart_bottom - 6, x2=x, y2=chart_bottom, stroke="#7b52c7", stroke_width=1.5,
                  class_="event", data_event=kind, data_t=t)


def _tasks_chart(c: Canvas, scale: Scale, timeline: Dict[str, Any], top: float, height: float) -> None:
    t = [v for v in timeline["t"]]
    tasks = timeline.get("tasks") if isinstance(timeline.get("tasks"), dict) else {}
    values = [v for key, _, _ in SERIES for v in (tasks.get(key) or []) if isinstance(v, (int, float))]
    peak = max(values + [1])
    step = max(1, 10 ** math.floor(math.log10(peak)))
    ymax = math.ceil(peak * 1.1 / step) * step
    c.add("rect", x=LEFT, y=top, width=scale.width, height=height, fill="none", stroke="#ccc")
    c.text(LEFT - 34, top + height / 2 + 4, "tasks", size=11, anchor="end")
    for frac in (0, 0.5, 1):
        y = top + height - frac * height
        c.add("line", x1=LEFT, y1=y, x2=LEFT + scale.width, y2=y, stroke="#e4e4e4")
        c.text(LEFT - 8, y + 4, f"{ymax * frac:g}", size=10, anchor="end", fill="#666")
    for key, color, label in SERIES:
        series = tasks.get(key) or []
        runs: List[List[str]] = [[]]
        for ti, v in zip(t, series):
            if isinstance(v, (int, float)) and isinstance(ti, (int, float)):
                runs[-1].append(f"{scale.x(ti):.1f},{top + height - v / ymax * height:.1f}")
            elif runs[-1]:
                runs.append([])
        points = sum(len(r) for r in runs)
        for run in (r for r in runs if r):
            c.add("polyline", title=label, points=" ".join(run), fill="none", stroke=color, stroke_width=1.8,
                  class_="series", data_series=key, data_points=points,
                  data_max=max((v for v in series if isinstance(v, (int, float))), default=0))


def _axis(c: Canvas, scale: Scale, y: float) -> None:
    c.add("line", x1=LEFT, y1=y, x2=LEFT + scale.width, y2=y, stroke="#888")
    step = tick_step(scale.t1 - scale.t0)
    tick = math.ceil(scale.t0 / step) * step
    while tick <= scale.t1 + 1e-9:
        x = scale.x(tick)
        c.add("line", x1=x, y1=y, x2=x, y2=y + 5, stroke="#888")
        c.text(x, y + 17, f"{round(tick, 6):g} s", size=10, anchor="middle", fill="#555")
        tick += step


def _legend_items(hatch: str, lanes: bool, series: bool, faults: bool) -> List[Tuple[str, str]]:
    items = [("#555", "action"), ("#8aa4c8", "probe")]
    if faults:
        items += [(FAULT, "fault window"), ("none", "fault on this node")]
    if lanes:
        items += [(STATE["alive"], "worker alive"), (STATE["dead"], "dead / master down"),
                  (STATE["running"], "master running"), (f"url(#{hatch})", "no leader / unknown")]
    if series:
        items += [(color, label) for _, color, label in SERIES]
    return items


def _legend_layout(items: List[Tuple[str, str]]) -> List[Tuple[float, int]]:
    """(x, line) of each legend item, wrapping at the chart's width."""
    out, x, line = [], float(LEFT), 0
    for _, label in items:
        width = 26 + len(label) * 6
        if x + width > WIDTH - RIGHT and x > LEFT:
            x, line = float(LEFT), line + 1
        out.append((x, line))
        x += width
    return out


def _legend_lines(items: List[Tuple[str, str]]) -> int:
    return 1 + max((line for _, line in _legend_layout(items)), default=0)


def _legend(c: Canvas, y: float, items: List[Tuple[str, str]]) -> None:
    for (color, label), (x, line) in zip(items, _legend_layout(items)):
        row = y + 18 * line
        if color == "none":
            c.add("rect", x=x, y=row - 9, width=12, height=10, fill="none", stroke=FAULT, stroke_width=2)
        else:
            c.add("rect", x=x, y=row - 9, width=12, height=10, fill=color, stroke="#999", stroke_width=0.5)
        c.text(x + 16, row, label, size=10, fill="#444")
