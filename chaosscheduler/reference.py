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
        for activity in sorted((a for a in catalogue if a["mod"] == module), key=lambda a: a["name"]):
            lines += _activity(activity)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
