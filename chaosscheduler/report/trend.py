"""The trend of one figure across runs: a bar per run, coloured against the default threshold."""

from typing import Optional, Sequence, Tuple

from .canvas import FONT, Canvas, nice
from .model import fmt_value

__all__ = ["trend_svg"]


def trend_svg(label: str, unit: str, op: str, limit: float, points: Sequence[Tuple[str, Optional[float]]]) -> str:
    """Bars of one figure across runs, with the default threshold as a dashed line when it is on scale."""
    values = [v for _, v in points if v is not None]
    if not values:
        return ""
    width, height, left, bottom = 340, 170, 46, 30
    if unit == "%" and op != "<":  # success ratios near 100 %: zoom in below the threshold
        low = max(0.0, min(values + [limit]) - 0.02)
        high = 1.0
    elif unit == "%":  # a share that must stay low (utilisation): the whole range
        low, high = 0.0, 1.0
    else:
        low, high = 0.0, nice(max(values) * 1.2)
    plot_w, plot_h = width - left - 10, height - bottom - 28
    c = Canvas()
    c.add("rect", x=0, y=0, width=width, height=height, fill="#fff")
    c.text(left, 16, f"{label} ({op} {fmt_value(limit, unit)})", size=11, fill="#222")

    def y_of(v: float) -> float:
        return 24 + plot_h - (min(max(v, low), high) - low) / ((high - low) or 1) * plot_h

    slot = plot_w / max(len(points), 1)
    for i, (run, v) in enumerate(points):
        x = left + i * slot + slot * 0.15
        c.text(x + slot * 0.35, 24 + plot_h + 14, run, size=10, anchor="middle", fill="#555")
        if v is None:
            c.text(x + slot * 0.35, 24 + plot_h - 4, "—", size=10, anchor="middle", fill="#999")
            continue
        ok = v < limit if op == "<" else v > limit if op == ">" else abs(v - limit) < 1e-9
        c.add("rect", title=f"{run}: {fmt_value(v, unit)}", x=x, y=y_of(v), width=slot * 0.7,
              height=max(24 + plot_h - y_of(v), 1), fill="#3fa463" if ok else "#d64545", class_="bar",
              data_run=run, data_value=v)
    for frac in (0, 1):
        v = low + frac * (high - low)
        c.text(left - 4, y_of(v) + 4, fmt_value(v, unit), size=9, anchor="end", fill="#666")
    if low <= limit <= high:
        c.add("line", x1=left, y1=y_of(limit), x2=left + plot_w, y2=y_of(limit), stroke="#222",
              stroke_dasharray="5 3", class_="threshold")
    else:
        c.text(left + plot_w, 30, "threshold off scale", size=9, anchor="end", fill="#666")
    return (f"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"trend\" viewBox=\"0 0 {width} {height}\" "
            f"width=\"{width}\" height=\"{height}\" {FONT} role=\"img\">{''.join(c.parts)}</svg>")
