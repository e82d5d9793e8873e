"""One self-contained HTML page: inline CSS, inline SVG, no script, no external resource."""

import datetime
import html
import json
from typing import Any, Dict, List, Optional

from .model import SHORT, THRESHOLDS, fmt_value
from .timeline_chart import timeline_svg
from .trend import trend_svg

__all__ = ["page"]

CSS = """
body{font-family:"DejaVu Sans",Verdana,sans-serif;font-size:14px;color:#222;margin:0;background:#fff}
main{max-width:1120px;margin:0 auto;padding:18px 20px 40px}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#666;font-size:12px;margin:0 0 10px}
table{border-collapse:collapse;margin:4px 0 8px;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:flex;gap:14px;align-items:center;padding:10px 14px;border-radius:6px;margin:8px 0;border:1px solid}
.badge{font-weight:bold;font-size:16px;text-transform:uppercase;letter-spacing:.05em;padding:3px 10px;border-radius:4px;
color:#fff}.passed{background:#eef8f1;border-color:#3fa463}.passed .badge{background:#3fa463}
.deviated,.failed,.nofault{background:#fdeeee;border-color:#d64545}.deviated .badge,.failed .badge,
.nofault .badge{background:#d64545}table.checks td.why{max-width:760px}
.interrupted,.untested,.unknown{background:#fff6e8;border-color:#e08a1e}.interrupted .badge,.untested .badge,
.unknown .badge{background:#e08a1e}td.ok{background:#e3f4e8;color:#1d6b38}td.bad{background:#fbe3e3;color:#a02828}
td.na{color:#888;font-style:italic}
.notes{background:#fff6e8;border-left:4px solid #e08a1e;padding:6px 12px;margin:8px 0}.notes p{margin:4px 0}
.reasons li{color:#b02a2a}.chart{overflow-x:auto}.chart svg{max-width:100%;height:auto}
.trends{display:flex;flex-wrap:wrap;gap:10px}.cost{color:#555;font-size:12px}
details summary{cursor:pointer;color:#555}code{font-size:12px}.wide{overflow-x:auto}
table.comparison{font-size:12px}table.comparison td.title{min-width:220px}table.comparison td.num,
table.comparison td.when{white-space:nowrap}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _utc(ts: Optional[float]) -> str:
    if ts is None:
        return "—"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _met(result: Optional[Dict[str, Any]]) -> str:
    if result is None:
        return "<td class=\"na\">not run</td>"
    shown = fmt_value(result["value"]) if result["value"] is not None else fmt_value(result["output"])
    if result.get("kind") == "na":  # a measurement that does not apply is never shown as measured
        mark = " ✓" if result["met"] is True else " ✗" if result["met"] is False else ""
        return f"<td class=\"na\" title=\"{_e(result['output'].get('reason'))}\">not applicable{mark}</td>"
    if result.get("text"):
        shown = result["text"]
    if result["status"] == "failed":
        return f"<td class=\"bad\" title=\"{_e(result['error'])}\">error: {_e(result['error'] or 'failed')}</td>"
    css = "ok" if result["met"] is True else "bad" if result["met"] is False else "na"
    mark = " ✓" if result["met"] is True else " ✗" if result["met"] is False else ""
    return f"<td class=\"num {css}\" title=\"{_e(json.dumps(result['output'], default=str))}\">{_e(shown)}{mark}</td>"


def _verdict(view: Dict[str, Any], source: str) -> str:
    facts = [f"status <b>{_e(view['status'] or 'unknown')}</b>",
             f"deviated <b>{_e(json.dumps(view['deviated']) if view['deviated'] is not None else 'unknown')}</b>",
             f"started {_e(_utc(view['start']))}",
             f"duration {_e(fmt_value(view['duration'], 's'))}"]
    if view["run_id"]:
        facts.append(f"run <code>{_e(view['run_id'])}</code>")
    out = [f"<div class=\"verdict {view['verdict']}\" data-verdict=\"{view['verdict']}\"><span class=\"badge\">"
           f"{_e(view['verdict'])}</span><div><div>{_e(view['verdict_text'])}</div><div class=\"sub\">"
           f"{' · '.join(facts)} · <code>{_e(source)}</code></div></div></div>"]
    if view["failure_reasons"] or view["errors"]:
        items = "".join(f"<li>{_e(r)}</li>" for r in view["failure_reasons"] + view["errors"])
        out.append(f"<ul class=\"reasons\">{items}</ul>")
    if view.get("failed_checks"):
        rows = "".join(f"<tr data-check=\"{_e(c['name'])}\"><td>{i}</td><td>{_e(c['name'])}<div class=\"sub\">"
                       f"{_e(c['func'])}</div></td><td>{_e(c['when'])} the method"
                       f"{' (skipped by Chaos Toolkit, evaluated by the control)' if c['skipped_by_chaos_toolkit'] else ''}"
                       f"</td><td class=\"why\">{_e(c['reason'])}</td></tr>"
                       for i, c in enumerate(view["failed_checks"], 1))
        out.append("<h3>Every failed check, most telling first</h3><table class=\"checks\"><tr><th>#</th><th>check"
                   f"</th><th>when</th><th>why</th></tr>{rows}</table>")
    if view["notes"]:
        out.append("<div class=\"notes\"><b>What is missing or worth knowing</b>"
                   + "".join(f"<p>{_e(n)}</p>" for n in view["notes"]) + "</div>")
    return "".join(out)


def _timeline(view: Dict[str, Any], chart_id: str) -> str:
    svg = timeline_svg(view, chart_id)
    if not svg:
        return "<p class=\"na\">No timestamp in this journal: nothing to draw.</p>"
    timeline = view.get("timeline") or {}
    cost = ""
    if timeline.get("samples"):
        cost = (f"<p class=\"cost\">{timeline['samples']} samples every {_e(timeline.get('interval'))} s over "
                f"{fmt_value(timeline.get('duration'), 's')} through {_e(timeline.get('source'))}: "
                f"{_e(timeline.get('requests'))} requests, {_e(timeline.get('requests_per_second'))} requests/s "
                f"added to the platform.</p>")
    return f"<div class=\"chart\">{svg}</div>{cost}"


def _figures(view: Dict[str, Any]) -> str:
    if not view["figures"]:
        return "<p class=\"na\">None of the article's measures is part of this experiment.</p>"
    rows = []
    for f in view["figures"]:
        css = "na" if f["passed"] is None else "ok" if f["passed"] else "bad"
        value = f.get("text") or ("not measured" if f["value"] is None else fmt_value(f["value"], f["unit"]))
        rows.append(f"<tr data-figure=\"{_e(f['func'])}\"><td>{_e(f['label'])}</td><td>{_e(f['scenario'])}</td>"
                    f"<td class=\"num\">{_e(f['threshold'])}</td><td class=\"num {css}\">{_e(value)}</td>"
                    f"<td>{_e(f['source'] or '—')}</td></tr>")
    return ("<table><tr><th>measure</th><th>scenario</th><th>default threshold</th><th>measured</th>"
            f"<th>from</th></tr>{''.join(rows)}</table>")


def _witness(view: Dict[str, Any]) -> str:
    summary = view.get("witness") or {}
    if not summary:
        return ""
    if summary.get("enabled") is False or summary.get("error"):
        return (f"<h3>Witness</h3><p class=\"na\">No witness history: "
                f"{_e(summary.get('error') or 'switched off')}; the figures come from the platform's own account.</p>")
    counts = summary.get("counts") or {}
    parts = [f"{counts.get(k, 0)} {k}" for k in ("invoked", "ok", "fail", "info", "executed", "completed")]

    def ratio(name: str) -> str:
        r = summary.get(name) or {}
        if r.get("value") is None:
            return f"{name}: —"
        return (f"{name}: {r['value'] * 100:.4g} % (n = {r.get('n')}, 95 % lower bound "
                f"{(r.get('lower') or 0) * 100:.4g} %)")

    anomalies = "; ".join(f"{k}: {', '.join(map(str, summary.get(k) or []))}" for k in ("lost", "duplicated", "forgotten",
                                                                                       "unexpected")
                          if summary.get(k)) or "no task lost, run twice, forgotten or unexpected"
    stall = summary.get("stall") or {}
    stall_text = f"; longest stall {stall['seconds']:.2f} s" if isinstance(stall.get("seconds"), (int, float)) else ""
    return (f"<h3>Witness</h3><p>Our own tasks, submitted through the platform's interface: {_e(', '.join(parts))}. "
            f"{_e(ratio('submissions'))}; {_e(ratio('execution'))}{_e(stall_text)}. {_e(anomalies)}.</p>")


def _hypothesis(view: Dict[str, Any]) -> str:
    if not view["hypothesis"]:
        return "<p class=\"na\">The experiment declares no steady-state hypothesis.</p>"
    rows = "".join(f"<tr><td>{_e(p['name'])}<div class=\"sub\">{_e(p['func'])}</div></td>"
                   f"<td class=\"num\">{_e(p['tolerance'])}</td>{_met(p['before'])}{_met(p['after'])}</tr>"
                   for p in view["hypothesis"])
    return ("<table><tr><th>probe</th><th>tolerance</th><th>before the method</th><th>after the method</th></tr>"
            f"{rows}</table>")


def _faults(view: Dict[str, Any], origin: Optional[float]) -> str:
    if not view["faults"]:
        return "<p class=\"na\">No fault recorded for this run.</p>"

    def at(ts: Any) -> str:
        if not isinstance(ts, (int, float)):
            return "—"
        return f"{ts - origin:+.2f} s" if origin is not None else _utc(ts)

    rows = []
    for f in view["faults"]:
        measured = "; ".join(f"{k} = {fmt_value((v or {}).get('value') if isinstance(v, dict) else v)}"
                             for k, v in (f.get("measurements") or {}).items())
        rows.append(f"<tr><td><code>{_e(f.get('id'))}</code></td><td>{_e(f.get('action'))}</td>"
                    f"<td>{_e(', '.join(map(str, f.get('targets') or [])))}</td><td class=\"num\">"
                    f"{at(f.get('started_at'))}</td><td class=\"num\">{at(f.get('undone_at'))}</td>"
                    f"<td>{_e(f.get('state'))}</td><td>{_e(measured or '—')}</td></tr>")
    return ("<table><tr><th>fault</th><th>action</th><th>targets</th><th>started</th><th>ended</th><th>state</th>"
            f"<th>measured from it</th></tr>{''.join(rows)}</table>")


def _activities(view: Dict[str, Any], origin: Optional[float]) -> str:
    if not view["activities"]:
        return ""
    rows = []
    for a in view["activities"]:
        start = f"{a['start'] - origin:+.2f} s" if a["start"] is not None and origin is not None else "—"
        took = fmt_value(a["end"] - a["start"], "s") if a["start"] is not None and a["end"] is not None else "—"
        output = a["error"] or fmt_value(a["output"])
        rows.append(f"<tr><td>{_e(a['phase'])}</td><td>{_e(a['name'])}</td><td>{_e(a['status'])}</td>"
                    f"<td class=\"num\">{start}</td><td class=\"num\">{_e(took)}</td><td>{_e(output)}</td></tr>")
    return ("<details><summary>Every activity of the run</summary><table><tr><th>phase</th><th>activity</th>"
            "<th>status</th><th>start</th><th>took</th><th>output</th></tr>" + "".join(rows) + "</table></details>")


def _origin(view: Dict[str, Any]) -> Optional[float]:
    timeline = view.get("timeline") or {}
    if isinstance(timeline.get("started_at"), (int, float)):
        return float(timeline["started_at"])
    return view["start"]


def _run(view: Dict[str, Any], index: int, source: str) -> str:
    origin = _origin(view)
    return (f"<section class=\"run\" id=\"run-{index}\"><h2>#{index} {_e(view['title'])}</h2>"
            f"{_verdict(view, source)}<h3>Timeline</h3>{_timeline(view, f'timeline-{index}')}"
            f"<h3>Measured figures against the article's thresholds</h3>{_figures(view)}{_witness(view)}"
            f"<h3>Steady-state hypothesis</h3>{_hypothesis(view)}<h3>Faults</h3>{_faults(view, origin)}"
            f"{_activities(view, origin)}</section>")


def _comparison(views: List[Dict[str, Any]], sources: List[str]) -> str:
    funcs = [t for t in THRESHOLDS if any(f["func"] == t[0] for v in views for f in v["figures"])]
    head = "".join(f"<th title=\"{_e(label)}\">{_e(SHORT.get(func, label))}<div class=\"sub\">{_e(op)} "
                   f"{_e(fmt_value(limit, unit))}</div></th>" for func, label, _, op, limit, unit in funcs)
    rows = []
    for i, (view, source) in enumerate(zip(views, sources), 1):
        figures = {f["func"]: f for f in view["figures"]}
        cells = []
        for func, *_ in funcs:
            f = figures.get(func)
            if f is None or f["value"] is None:
                cells.append("<td class=\"na\">—</td>")
            else:
                cells.append(f"<td class=\"num {'ok' if f['passed'] else 'bad'}\">"
                             f"{_e(fmt_value(f['value'], f['unit']))}</td>")
        rows.append(f"<tr><td><a href=\"#run-{i}\">#{i}</a></td><td class=\"title\">{_e(view['title'])}"
                    f"<div class=\"sub\">{_e(source)}</div></td><td class=\"when\">{_e(_utc(view['start'])[:16])}</td>"
                    f"<td class=\"num\">"
                    f"{_e(fmt_value(view['duration'], 's'))}</td><td class=\"{view['verdict']}\">"
                    f"{_e(view['verdict'])}</td>{''.join(cells)}</tr>")
    trends = []
    for func, label, _, op, limit, unit in funcs:
        points = [(f"#{i}", next((f["value"] for f in v["figures"] if f["func"] == func), None))
                  for i, v in enumerate(views, 1)]
        if sum(1 for _, value in points if value is not None) >= 1:
            trends.append(trend_svg(label, unit, op, limit, points))
    return ("<section class=\"compare\"><h2>Comparison across runs</h2><div class=\"wide\"><table class=\"comparison\">"
            f"<tr><th>run</th><th>experiment</th><th>started (UTC)</th><th>duration</th><th>verdict</th>{head}</tr>"
            f"{''.join(rows)}</table></div><div class=\"trends\">{''.join(t for t in trends if t)}</div></section>")


def page(views: List[Dict[str, Any]], sources: List[str], unreadable: Optional[List[str]] = None,
         title: str = "") -> str:
    title = title or (views[0]["title"] if len(views) == 1 else f"{len(views)} chaos experiment runs")
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
             f"content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title><style>{CSS}</style>"
             f"</head><body><main><h1>{_e(title)}</h1><p class=\"sub\">Generated by chaosscheduler report on "
             f"{generated} from {len(sources)} journal(s).</p>"]
    if unreadable:
        parts.append("<div class=\"notes\"><b>Journals that could not be read</b>"
                     + "".join(f"<p>{_e(u)}</p>" for u in unreadable) + "</div>")
    if len(views) > 1:
        parts.append(_comparison(views, sources))
    parts += [_run(view, i, source) for i, (view, source) in enumerate(zip(views, sources), 1)]
    parts.append("</main></body></html>\n")
    return "".join(parts)
