"""``chaosscheduler report``: one self-contained HTML page from one or more Chaos Toolkit journals.

    from chaosscheduler.report import write_report
    write_report(["journal.json"], "report.html")

The page holds the verdict, the steady-state hypothesis before and after the method, the measured figures against
the reference article's thresholds, and a timeline chart (fault windows, leader, masters, workers, task counts) drawn
as inline SVG from the timeline the chaosscheduler control stores in the journal. Several journals add a comparison
table and a trend chart per figure. Any journal renders, whatever it lacks; what is missing is said on the page.
"""

import json
import os
from typing import Any, Dict, Optional, Sequence, Tuple

from ..errors import ChaosSchedulerError
from .html import page
from .model import run_view

__all__ = ["load_journal", "render", "write_report"]


def load_journal(path: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``(journal, None)`` or ``(None, why it cannot be read)``. A run's record (its directory, run.json or run id)
    reads as the journal of a run that never wrote one (:mod:`chaosscheduler.run_journal`)."""
    from ..run_journal import is_run_record, journal_for_report, to_journal

    journal, error = journal_for_report(path)
    if journal is not None or error is not None:
        return journal, error
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None, f"{path}: no such file"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"{path}: cannot be read ({e})"
    except ValueError as e:
        return None, f"{path}: not JSON ({e})"
    if not isinstance(data, dict):
        return None, f"{path}: not a Chaos Toolkit journal (a JSON {type(data).__name__}, not an object)"
    return (to_journal(data) if is_run_record(data) else data), None


def render(journals: Sequence[Dict[str, Any]], sources: Sequence[str], unreadable: Sequence[str] = (),
           title: str = "") -> str:
    views = [run_view(j, label=f"#{i}") for i, j in enumerate(journals, 1)]
    return page(views, list(sources), list(unreadable), title)


def write_report(paths: Sequence[str], output: str, title: str = "", png: str = "") -> Dict[str, Any]:
    """Render the journals at ``paths`` into ``output``; with ``png``, also an image of the page (see
    :mod:`chaosscheduler.report.png`). Returns ``{"output", "runs", "unreadable", "png"}``; raises
    ChaosSchedulerError when no journal could be read."""
    journals, sources, unreadable = [], [], []
    for path in paths:
        journal, error = load_journal(path)
        if error:
            unreadable.append(error)
        else:
            journals.append(journal)
            sources.append(os.path.basename(path))
    if not journals:
        raise ChaosSchedulerError("no journal could be read: " + "; ".join(unreadable))
    text = render(journals, sources, unreadable, title)
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, output)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ChaosSchedulerError(f"cannot write the report to {output}: {e}") from e
    result: Dict[str, Any] = {"output": output, "runs": len(journals), "unreadable": unreadable, "png": None}
    if png:
        from .png import export_png

        result["png"] = export_png(output, png)
    return result
