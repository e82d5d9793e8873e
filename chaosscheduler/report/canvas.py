"""Drawing primitives shared by the report's SVG charts: a canvas that writes escaped elements, the time scale,
round tick steps, and the palette."""

import math
from typing import Any, Dict, List, Optional
from xml.sax.saxutils import escape, quoteattr

__all__ = ["Canvas", "Scale", "tick_step", "fits", "nice", "PALETTE", "STATE", "SERIES", "FAULT", "FONT", "WIDTH",
           "LEFT", "RIGHT"]

PALETTE = ["#3b6fb6", "#e08a1e", "#7b52c7", "#1f9e89", "#c2408f", "#8a9a2b", "#a0522d", "#4d4d4d", "#2f8fd8"]
STATE = {"alive": "#3fa463", "dead": "#d64545", "running": "#a9c1de", "down": "#d64545"}
SERIES = (("running", "#3b6fb6", "running tasks"), ("pending", "#e08a1e", "pending tasks"),
          ("rescheduled", "#7b52c7", "rescheduled (cumulative)"))
FAULT = "#f2a33a"
FONT = "font-family=\"DejaVu Sans, Verdana, sans-serif\""
WIDTH, LEFT, RIGHT = 1100, 150, 24  # the timeline chart: total width, label column, margin


class Canvas:
    """Collects SVG elements; ``add("rect", title=..., class_="seg", data_lane=...)`` writes ``class``/``data-lane``
    attributes, escaped, and the title as a child ``<title>`` (a tooltip without script)."""

    def __init__(self) -> None:
        self.parts: List[str] = []

    @staticmethod
    def _attrs(attrs: Dict[str, Any]) -> str:
        out = []
        for key, value in attrs.items():
            if value is None:
                continue
            if isinstance(value, float):
                value = f"{value:.2f}".rstrip("0").rstrip(".")
            out.append(f"{key.rstrip('_').replace('_', '-')}={quoteattr(str(value))}")
        return " ".join(out)

    def add(self, tag: str, title: Optional[str] = None, text: Optional[str] = None, **attrs: Any) -> None:
        inner = (f"<title>{escape(title)}</title>" if title else "") + (escape(text) if text else "")
        self.parts.append(f"<{tag} {self._attrs(attrs)}>{inner}</{tag}>" if inner else f"<{tag} {self._attrs(attrs)}/>")

    def text(self, x: float, y: float, text: str, size: int = 11, anchor: str = "start", fill: str = "#222",
             **attrs: Any) -> None:
        self.add("text", text=text, x=x, y=y, font_size=size, text_anchor=anchor, fill=fill, **attrs)


def tick_step(span: float) -> float:
    """A round step giving at most 12 ticks over ``span`` seconds, whatever the span."""
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900,
                 1800, 3600):
        if span / step <= 12:
            return step
    return nice(span / 12)


def fits(text: str, width: float, size: int = 11) -> bool:
    return len(text) * size * 0.6 + 6 < width


class Scale:
    def __init__(self, t0: float, t1: float):
        self.t0, self.t1 = t0, max(t1, t0 + 1e-3)
        self.width = WIDTH - LEFT - RIGHT

    def x(self, t: float) -> float:
        return LEFT + (min(max(t, self.t0), self.t1) - self.t0) / (self.t1 - self.t0) * self.width


def nice(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value)
