"""The witness's options (configuration key ``chaosscheduler_witness``, or the control's ``witness`` argument) and
how it is sized when they leave a value out.

Sizing: the article's thresholds are judged on one-sided 95 % bounds (:mod:`.stats`), so a run must hold enough
witness tasks: 539 submissions around the fault for "> 99.5 %", 133 judged executions for "> 98 %", and 52 tasks
**running on the lost worker at the cut** for "> 95 %" rescheduling. Tasks running at once ~ rate x duration
(Little's law), spread over the workers; ``size`` picks the duration so the busiest worker holds ~60 at the cut
(a margin over 52: the spread is uneven) and says how many slots per worker that needs: after a worker is lost, each
of the W-1 survivors runs its share of the steady load plus its share of the victims started again from scratch,
per_worker x (W+1)/(W-1), plus ~10 % (tasks assigned to the lost worker before it is declared dead, the load
generator), and should stay below 90 % of its slots. Measured on the embedded cluster (4 workers, 10 tasks/s x 24 s,
benchmarks/witness.py --part sizing): 63 per worker before the cut, a survivors' peak of 107-108 running tasks.
"""

import math
from typing import Any, Dict, Optional

from ..errors import ConfigurationError

__all__ = ["parse", "size", "DEFAULTS", "SUBMITTERS", "VICTIM_TASKS"]

SUBMITTERS = ("testbed", "command", "python", "kubernetes")
VICTIM_TASKS = 60          # witness tasks the lost worker should hold at the cut (52 decide "> 95 %")
PEAK_SHARE = 0.9           # survivors of a lost worker should stay below this share of their slots
TRANSIENT = 1.1            # measured peak / the steady-state model (tasks sent to the lost worker before detection)
DEFAULTS: Dict[str, Any] = {
    "enabled": True,
    "rate": None,           # tasks per second; None = 10 (600 in a 60 s window: 539 decide "> 99.5 %"), less
                            # when the platform's slots cannot hold that (see size())
    "duration": None,       # seconds a task runs; None = sized from the workers (see size())
    "max_in_flight": 64,    # submissions awaiting the platform's answer at once (beyond: a tick is skipped)
    "settle": None,         # seconds an acknowledged task may take to complete; None = duration + 90
    "submit_timeout": 10.0,  # seconds one submission may take (retries included) before it is indeterminate
    "stop_wait": None,      # seconds stop() waits for acknowledged tasks to finish; None = duration + 30
    "evidence": "",         # evidence file; "" = cs-witness-<run>.log under the task's $CS_WITNESS_DIR or /tmp
    "evidence_dir": "/tmp",  # where collectors look on hosts (may hold {node}); the testbed knows its own
    "collect": True,        # read the evidence back (and delete it) at stop
    "submitter": None,      # {"type": ...}; None = the platform's own (testbed) or required (hosts, kubernetes)
}


def _number(key: str, value: Any, low: float, high: float, allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or not low <= value <= high:
        raise ConfigurationError(f"chaosscheduler_witness.{key} must be a number from {low:g} to {high:g}, "
                                 f"got {value!r}")
    return float(value)


def parse(raw: Any, platform: str = "testbed") -> Dict[str, Any]:
    """Validate the witness options (unknown keys refused by name) and fill in the fixed defaults; sizing that
    depends on the platform's workers is left to :func:`size`."""
    if raw is None:
        raw = {}
    configured = bool(raw)
    if isinstance(raw, bool):
        raw = {"enabled": raw}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"chaosscheduler_witness must be an object (or false to switch the witness off), "
                                 f"got {raw!r}")
    raw = {k: v for k, v in raw.items() if k not in ("disabled_reason", "unconfigured")}  # (options parsed before)
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigurationError(f"unknown chaosscheduler_witness key(s) {', '.join(map(repr, unknown))}; known: "
                                 f"{', '.join(sorted(DEFAULTS))}")
    out = dict(DEFAULTS, **raw)
    if not isinstance(out["enabled"], bool):
        raise ConfigurationError(f"chaosscheduler_witness.enabled must be true or false, got {out['enabled']!r}")
    if not isinstance(out["collect"], bool):
        raise ConfigurationError(f"chaosscheduler_witness.collect must be true or false, got {out['collect']!r}")
    out["rate"] = _number("rate", out["rate"], 0.01, 1000, allow_none=True)
    out["duration"] = _number("duration", out["duration"], 0, 3600, allow_none=True)
    max_in_flight = out["max_in_flight"]
    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or not 1 <= max_in_flight <= 4096:
        raise ConfigurationError(f"chaosscheduler_witness.max_in_flight must be an integer from 1 to 4096, "
                                 f"got {max_in_flight!r}")
    out["settle"] = _number("settle", out["settle"], 0, 86400, allow_none=True)
    out["submit_timeout"] = _number("submit_timeout", out["submit_timeout"], 0.1, 600)
    out["stop_wait"] = _number("stop_wait", out["stop_wait"], 0, 86400, allow_none=True)
    for key in ("evidence", "evidence_dir"):
        value = out[key]
        if not isinstance(value, str) or "\0" in value or "\n" in value:
            raise ConfigurationError(f"chaosscheduler_witness.{key} must be a path, got {value!r}")
    submitter = out["submitter"]
    out["disabled_reason"] = None if out["enabled"] else "switched off by chaosscheduler_witness"
    out["unconfigured"] = False
    if submitter is None and platform != "testbed" and out["enabled"] and not configured:
        out["enabled"] = False  # nothing said: the probes fall back to the platform's own account and say so
        out["unconfigured"] = True  # (options given later, e.g. the control's argument, switch it on again)
        out["disabled_reason"] = (f"no witness submitter configured for the {platform} platform "
                                  f"(chaosscheduler_witness.submitter, docs/witness.md)")
    if submitter is None:
        if out["enabled"] and platform != "testbed":
            raise ConfigurationError(
                f"chaosscheduler_witness.submitter is needed on the {platform} platform: how tasks are submitted, "
                f"e.g. {{\"type\": \"command\", \"argv\": [\"sbatch\", \"--parsable\", \"--wrap\", \"{{command}}\"]}} "
                f"(docs/witness.md), or set chaosscheduler_witness to false")
        if platform != "testbed":  # switched off: no submitter to stand in for the one it would need
            out["submitter"] = None
            return out
        submitter = {"type": "testbed"}
    if not isinstance(submitter, dict) or submitter.get("type") not in SUBMITTERS:
        raise ConfigurationError(f"chaosscheduler_witness.submitter.type must be one of {', '.join(SUBMITTERS)}, "
                                 f"got {submitter!r}")
    from .submitters import validate  # each submitter validates its own options

    out["submitter"] = validate(submitter)
    return out


def size(options: Dict[str, Any], workers: int, slots: Optional[int] = None,
         background: float = 0.0) -> Dict[str, Any]:
    """Fill in ``rate``, ``duration``, ``settle`` and ``stop_wait`` for a platform of ``workers`` workers and
    return the sizing: ``{"duration", "running" (tasks at once), "per_worker", "after_loss", "slots_needed" (per
    worker), "warnings"}``. With ``slots`` known (per worker) and ``background`` tasks of others running at once
    (the embedded cluster's load generator), what is left to the witness caps what it sizes itself: the survivors of a
    lost worker must stay below 90 % of their slots, so the witness never becomes the fault. When nothing fits (less
    than one task every 2 s of 0.5 s), the witness is switched off (``enabled`` False, ``disabled_reason``)."""
    out = options
    workers = max(1, int(workers))
    spread = (workers + 1) / (workers - 1) * TRANSIENT if workers > 1 else 1.0
    warnings = []
    rate_given, duration_given = out["rate"] is not None, out["duration"] is not None
    if not rate_given:
        out["rate"] = 10.0
    if not duration_given:
        out["duration"] = float(min(120, max(5, math.ceil(VICTIM_TASKS * workers / out["rate"]))))
    if slots is not None and not (rate_given and duration_given):
        room = slots * PEAK_SHARE * workers / spread - background  # witness tasks that fit at once, in total
        if out["rate"] * out["duration"] > room:
            if not duration_given:
                out["duration"] = max(0.5, math.floor(room / out["rate"] * 10) / 10.0)
            if out["rate"] * out["duration"] > room and not rate_given:
                out["rate"] = math.floor(max(0.0, room) / out["duration"] * 100) / 100.0
            if out["rate"] < 0.5:
                out["rate"] = max(out["rate"], 0.01)
                out["enabled"] = False
                out["disabled_reason"] = (f"the platform has no room for the witness: {slots} slots per worker, "
                                          f"{background:g} tasks of others running; the survivors of a lost worker "
                                          f"would pass 90 % busy. Give the workers more slots (docs/witness.md)")
                warnings.append(out["disabled_reason"])
            else:
                warnings.append(f"the workers' slots hold only ~{max(room, 0) / workers:.0f} witness tasks each with "
                                f"room for a lost worker's: the witness runs {out['rate']:g} tasks/s of "
                                f"{out['duration']:g} s")
    if out["settle"] is None:
        out["settle"] = out["duration"] + 90.0
    if out["stop_wait"] is None:  # every fault is healed by then: a task still running ends within its duration
        out["stop_wait"] = out["duration"] + 30.0
    running = out["rate"] * out["duration"]
    per_worker = running / workers
    after = (running + background) * spread / workers
    needed = math.ceil(after / PEAK_SHARE)
    if per_worker < 52 and out["enabled"]:
        warnings.append(f"the witness keeps ~{per_worker:.0f} tasks per worker running (rate {out['rate']:g}/s x "
                        f"duration {out['duration']:g} s over {workers} workers): fewer than 52 on a lost worker "
                        f"cannot decide rescheduling > 95 %")
    if slots is not None and slots < needed and out["enabled"]:
        warnings.append(f"the witness keeps ~{per_worker:.0f} tasks per worker running, ~{after:.0f} tasks on each "
                        f"survivor after a worker is lost (with others'), but the workers have {slots} slots: give "
                        f"them >= {needed} (< 90 % busy after a loss) or lower rate/duration")
    return {"rate": out["rate"], "duration": out["duration"], "settle": out["settle"], "running": running,
            "per_worker": per_worker, "after_loss": after, "slots_needed": needed, "workers": workers, "slots": slots,
            "background": background, "warnings": warnings, "enabled": out["enabled"]}
