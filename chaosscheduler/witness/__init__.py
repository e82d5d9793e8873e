"""The witness: an independent history of the platform under test, recorded from the outside (Jepsen's rule).

During a run the witness submits small tasks of its own through the platform's own submission interface (one
submitter per platform), each with an id derived from the run id; every task leaves a start and an end line on the
host that runs it; the lines are collected (and deleted) over the platform's own channel when the run ends. The
pure checker then reads that history: lost, duplicated, re-executed, refused, indeterminate, unexpected tasks, the
longest stall, rescheduling by identity, every ratio with its n and a one-sided 95 % bound.

For the control and the probes::

    workload = witness.start(settings, platform, run_dir, options)   # None when switched off
    ...
    witness.active().history()          # the probes, during the run
    summary = workload.stop()           # after the hypothesis and the rollbacks
    history = witness.load(home, run_id)   # any process, later

Options: configuration key ``chaosscheduler_witness`` (docs/witness.md); the control's ``witness`` argument
overrides it key by key.
"""

import logging
import os
from typing import Any, Dict, Optional, Tuple, Union

from . import collectors, submitters
from .checker import check, rescheduling, stalls
from .history import History, load as load_directory
from .options import parse, size
from .stats import ratio
from .workload import Workload

__all__ = ["start", "active", "load", "directory", "options_for", "Workload", "History", "check", "rescheduling",
           "stalls", "ratio"]

logger = logging.getLogger("chaostoolkit")
_active: Optional[Workload] = None


def directory(run_dir: str) -> str:
    """Where a run's witness history lives: ``<run_dir>/witness``."""
    return os.path.join(run_dir, "witness")


def options_for(settings: Any, options: Union[None, bool, Dict[str, Any]] = None) -> Dict[str, Any]:
    """The configuration's witness options (already validated in ``settings.witness``) overridden key by key by
    ``options`` (the control's argument; ``False`` switches the witness off)."""
    merged: Dict[str, Any] = dict(getattr(settings, "witness", None) or {})
    if isinstance(options, bool):
        merged["enabled"] = options and merged.get("enabled", True)
    elif options:
        if merged.get("unconfigured") and "enabled" not in options:
            merged["enabled"] = True  # off only because the configuration said nothing: these options say something
        merged.update(options)
    return parse(merged, settings.platform)


def _slots(platform: Any) -> Tuple[Optional[int], float]:
    """Slots per worker, and the tasks of others running at once (the embedded cluster's load generator)."""
    if platform.kind == "testbed":
        spec = platform.tb.spec
        return spec.slots, spec.load_rate * spec.task_duration
    return (getattr(platform, "description", None) or {}).get("slots"), 0.0


def start(settings: Any, platform: Any, run_dir: str, options: Union[None, bool, Dict[str, Any]] = None,
          run_id: Optional[str] = None, secrets: Optional[Dict[str, Any]] = None) -> Optional[Workload]:
    """Start the witness workload of a run against ``platform`` (already up) and return it, or None when the
    options switch it off. It becomes :func:`active` in this process. Raises ConfigurationError on bad options."""
    global _active
    opts = options_for(settings, options)
    if not opts["enabled"]:
        logger.info("witness: switched off (%s)", opts.get("disabled_reason") or "by its options")
        return None
    run_id = run_id or os.path.basename(os.path.abspath(run_dir))
    workers = platform.worker_names()
    slots, background = _slots(platform)
    sizing = size(opts, len(workers), slots, background)
    for warning in sizing["warnings"]:
        logger.warning("witness: %s", warning)
    if not opts["enabled"]:
        return None
    submitter = submitters.build(opts["submitter"], platform, {"run_id": run_id, "secrets": secrets,
                                                               "submit_timeout": opts["submit_timeout"],
                                                               "evidence": opts["evidence"]})
    collector = collectors.for_platform(platform, opts, submitter) if opts["collect"] else None
    workload = Workload(run_id, directory(run_dir), submitter, collector, opts,
                        meta={"platform": platform.reference(), "sizing": sizing, "workers": workers})
    if _active is not None and _active.running:
        logger.warning("witness: another workload (%s) is still running in this process", _active.run_id)
    _active = workload.start()
    return workload


def active() -> Optional[Workload]:
    """The workload the control started in this process (running or stopped), or None."""
    return _active


def load(home: str, run_id: str) -> History:
    """The witness history of run ``run_id`` under state home ``home`` (empty when the run had none)."""
    return load_directory(directory(os.path.join(home, "runs", run_id)))
