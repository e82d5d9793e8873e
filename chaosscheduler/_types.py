"""Argument types for the discovery catalogue that say what the code accepts.

chaoslib's ``portable_type_name`` maps a ``typing.Union`` (and ``Optional``) to "object" (chaoslib 1.44 and
1.45 alike), which hides what an argument takes. For those arguments the catalogue gets the members' portable names
joined by " | " (``Union[str, int, List[str]]`` → "string | integer | list"); every other type is left as chaoslib
named it.
"""

import importlib
import inspect
import types
import typing
from typing import Any, Dict, List

__all__ = ["refine_union_types"]


def _union_members(annotation: Any) -> List[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is getattr(types, "UnionType")):
        return list(typing.get_args(annotation))
    return []


def refine_union_types(activities: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Give each argument annotated with a union the union of its members' portable names (in place)."""
    from chaoslib.discovery.discover import portable_type_name

    for activity in activities:
        func = getattr(importlib.import_module(activity["mod"]), activity["name"])
        hints = typing.get_type_hints(inspect.unwrap(func))
        for arg in activity["arguments"]:
            members = _union_members(hints.get(arg["name"]))
            if members:
                names = [portable_type_name(None if m is type(None) else m) for m in members]
                arg["type"] = " | ".join(dict.fromkeys(names))
    return activities
