"""The witness history as the probes' first source of evidence (PLAN.md §2): the tasks we submitted through the
platform's own interface, each with an identity, and the execution records they left on the hosts.

Every function returns a measurement, or None when this run has no witness history (the probe then falls back to
the platform's metrics or records and says so).
"""

import logging
from typing import Any, Dict, List, Optional

from .context import Context

__all__ = ["history", "submissions", "task_success", "consistency", "stall", "rescheduling"]
logger = logging.getLogger("chaostoolkit")


def _witness() -> Any:
    try:
        from . import witness
    except ImportError:
        return None
    return witness


def history(ctx: Context, collect: bool = True) -> Any:
    """This run's witness history: the workload the control started in this process, else the one recorded in the
    run directory; None when there is none."""
    witness = _witness()
    if witness is None:
        return None
    try:
        workload = witness.active()
        if workload is not None:
            return workload.history(collect=collect)
        return witness.load(ctx.settings.home, ctx.run_id)
    except Exception as e:  # no history for this run (e.g. the witness was disabled)
        logger.debug("no witness history: %s", e)
        return None


def submissions(ctx: Context, start: float, end: float) -> Optional[Dict[str, Any]]:
    return None


def task_success(ctx: Context, start: float, end: float, settle: float) -> Optional[Dict[str, Any]]:
    return None


def consistency(ctx: Context, settle: float, allow_rerun_after_loss: bool) -> Optional[Dict[str, Any]]:
    return None


def stall(ctx: Context, t0: float, timeout: float) -> Optional[Dict[str, Any]]:
    return None


def rescheduling(ctx: Context, targets: List[str], t0: float, bound: float) -> Optional[Dict[str, Any]]:
    return None
