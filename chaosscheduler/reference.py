"""Render the activity reference (``docs/activities.md``) from the discovery catalogue, so the two never drift:

    python -m chaosscheduler.reference > docs/activities.md

A test compares the committed file with this output.
"""

import inspect
import json
import sys
from typing import Any, Dict, List

from . import discover

__all__ = ["render"]

SECTIONS = (("chaosscheduler.actions", "Actions"), ("chaosscheduler.probes", "Probes"),
            ("chaosscheduler.rollbacks", "Rollbacks"))


def _argument_row(arg: Dict[str, Any]) -> str:
    default = json.dumps(arg["default"]) if "default" in arg else "required"
    return f"| `{arg['name']}` | {arg.get('type', 'object')} | `{default}` |"


def _activity(activity: Dict[str, Any]) -> List[str]:
    lines = [f"### `{activity['name']}` ({activity['type']})", ""]
    lines += [inspect.cleandoc(activity.get("doc") or "").replace("``", "`"), ""]
    args = [a for a in activity["arguments"] if a["name"] not in ("configuration", "secrets")]
    if args:
        lines += ["| argument | type | default |", "|---|---|---|"] + [_argument_row(a) for a in args] + [""]
    example = {"type": activity["type"], "name": activity["name"].replace("_", "-"),
               "provider": {"type": "python", "module": activity["mod"], "func": activity["name"]}}
    lines += ["```json", json.dumps(example), "```", ""]
    return lines


def render() -> str:
    catalogue = discover()["activities"]
    lines = ["# Activity reference", "",
             "Generated from the discovery catalogue by `python -m chaosscheduler.reference` (a test keeps it in",
             "sync). Every activity also takes `configuration` and `secrets` (see `docs/configuration.md`), and raises",
             "`ActivityFailed` with a one-line message naming the argument when an argument is not acceptable; nothing",
             "is done in that case.", ""]
    for module, title in SECTIONS:
        lines += [f"## {title}", ""]
        if module == "chaosscheduler.probes":
            lines += MEASUREMENTS
        for activity in sorted((a for a in catalogue if a["mod"] == module), key=lambda a: a["name"]):
            lines += _activity(activity)
    lines += _tolerances()
    return "\n".join(lines).rstrip() + "\n"


MEASUREMENTS = [
    "Every probe but `cluster_health` returns a *measurement*: `{\"value\": number or null, \"unit\", \"source\" (where "
    "the figure comes from: `witness`, the platform's records, `metrics`...), \"resolution\", \"applicable\", "
    "\"decided\", \"ongoing\", \"reason\", ...}`; ratios add `n`, `successes`, `lower` and `upper` (one-sided 95 % "
    "Wilson bounds). `applicable` false: the figure has no meaning now (a fault-timed probe before the method); "
    "`decided` false: the probe could not measure (no fault in the run, too little evidence), `reason` says why; "
    "`ongoing` true: what it measures was still going on at its bound (`value` is the time waited). Judge them with "
    "the tolerances below (docs/experiments.md, \"Reading the numbers\").", ""]


def _tolerances() -> List[str]:
    from chaoslib.discovery.discover import discover_probes

    lines = ["## Tolerances", "",
             "Probe-type tolerances for the measurements, in `chaosscheduler.tolerances`: a threshold is an argument, "
             "so `${var}` works in it (Chaos Toolkit does not substitute inside a `range`). Chaos Toolkit passes the "
             "probe's output as `value`.", ""]
    for activity in sorted((a for a in discover_probes("chaosscheduler.tolerances") if a["name"] in TOLERANCES),
                           key=lambda a: a["name"]):
        lines += [f"### `{activity['name']}` (tolerance)", "",
                  inspect.cleandoc(activity.get("doc") or "").replace("``", "`"), ""]
        args = [a for a in activity["arguments"] if a["name"] not in ("configuration", "secrets", "value")]
        lines += ["| argument | type | default |", "|---|---|---|"] + [_argument_row(a) for a in args] + [""]
        example = {"type": "probe", "name": activity["name"].replace("_", "-"),
                   "provider": {"type": "python", "module": "chaosscheduler.tolerances", "func": activity["name"],
                                "arguments": {args[0]["name"]: "${" + TOLERANCES[activity["name"]] + "}"}}}
        lines += ["```json", json.dumps({"tolerance": example}), "```", ""]
    return lines


TOLERANCES = {"at_most": "leader_election_limit", "at_least": "submission_threshold",
              "consistent": "consistency_min_tasks"}


if __name__ == "__main__":
    sys.stdout.write(render())
