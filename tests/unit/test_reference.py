"""The activity reference in docs/ is the catalogue's own rendering: regenerate it when an activity changes."""

import os

from chaosscheduler.reference import render

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "activities.md")


def test_docs_activities_is_up_to_date():
    with open(DOC) as handle:
        committed = handle.read()
    assert committed == render(), "run: python -m chaosscheduler.reference > docs/activities.md"


def test_every_activity_is_documented_with_its_arguments():
    from chaosscheduler import discover

    text = render()
    for activity in discover()["activities"]:
        assert f"### `{activity['name']}` ({activity['type']})" in text
        for arg in activity["arguments"]:
            if arg["name"] not in ("configuration", "secrets"):
                assert f"| `{arg['name']}` |" in text
