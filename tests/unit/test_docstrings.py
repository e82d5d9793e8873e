"""Docstrings and discovery types say what the code does: ``chaos discover`` copies both verbatim to users."""

import re
import signal

import pytest

from chaosscheduler import actions, discover
from chaosscheduler._types import refine_union_types
from chaosscheduler.errors import ChaosSchedulerError

try:
    from chaoslib.exceptions import ActivityFailed
except ImportError:  # pragma: no cover
    ActivityFailed = Exception


def _arguments(name):
    activity = next(a for a in discover()["activities"] if a["name"] == name)
    return {a["name"]: a.get("type") for a in activity["arguments"]}


def test_union_arguments_are_discovered_as_the_union_of_what_they_take():
    assert _arguments("partition_workers")["workers"] == "string | integer | list"
    assert _arguments("partition_workers")["peers"] == "string | list"
    assert _arguments("kill_master")["signal"] == "string | integer"
    assert _arguments("kill_master")["target"] == "string"  # plain types as chaoslib names them


def _refused_as_a_bad_signal(value, tmp_path) -> bool:
    """Whether kill_master refuses ``value`` as a signal (it checks the signal before looking for the platform,
    which here does not exist, so an accepted signal fails later, on the missing cluster)."""
    configuration = {"chaosscheduler_home": str(tmp_path), "chaosscheduler_cluster": "nosuch"}
    with pytest.raises((ActivityFailed, ChaosSchedulerError)) as caught:
        actions.kill_master(signal=value, configuration=configuration)
    return "argument 'signal'" in str(caught.value)


def test_kill_master_docstring_lists_exactly_the_signals_the_code_accepts(tmp_path):
    documented = set(re.findall(r'"(SIG[A-Z]+)"', actions.kill_master.__doc__))
    accepted = {s.name for s in signal.Signals if not _refused_as_a_bad_signal(s.name, tmp_path)}
    assert documented == accepted == {"SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGSTOP"}
    assert not _refused_as_a_bad_signal(9, tmp_path) and not _refused_as_a_bad_signal("KILL", tmp_path)


def test_refine_leaves_other_types_alone():
    activity = {"mod": "chaosscheduler.actions", "name": "isolate_worker",
                "arguments": [{"name": "worker", "type": "string"}, {"name": "duration", "type": "number"}]}
    assert refine_union_types([activity])[0]["arguments"] == [{"name": "worker", "type": "string"},
                                                              {"name": "duration", "type": "number"}]
