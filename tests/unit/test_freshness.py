"""How a metrics figure carries the age of its samples (the Prometheus part is tests/integration/test_freshness.py)."""

from chaosscheduler.measurements import measurement
from chaosscheduler.probe_windows import forms_fresh


class Forms:
    def __init__(self, fresh):
        self.fresh = fresh

    def freshness(self, start, end, exclude=()):
        self.excluded = list(exclude)
        if isinstance(self.fresh, Exception):
            raise self.fresh
        return self.fresh


def test_fresh_samples_leave_the_figure_alone():
    figure = measurement(2.0, "s", "metrics", 1.0)
    out = forms_fresh(Forms({"max_age": 1.2, "interval": 1.0, "stale": [], "refuse": ""}), figure, 0, 10)
    assert out["resolution"] == 1.0 and out["decided"] and out["reason"] == "" and out["freshness"]["max_age"] == 1.2


def test_stale_samples_widen_the_resolution_by_their_age_and_say_so():
    figure = measurement(2.0, "s", "metrics", 1.25)
    fresh = {"max_age": 12.0, "interval": 1.25, "stale": ["leaders gap 12.0 s"], "refuse": ""}
    out = forms_fresh(Forms(fresh), figure, 0, 10)
    assert out["decided"] and out["resolution"] == 13.25
    assert "12.0 s old" in out["reason"] and "leaders gap" in out["reason"] and "late" in out["reason"]


def test_samples_older_than_ten_intervals_make_the_figure_undecided():
    fresh = {"max_age": 30.0, "interval": 1.0, "stale": ["x"], "refuse": "samples up to 30.0 s old"}
    out = forms_fresh(Forms(fresh), measurement(2.0, "s", "metrics", 1.0), 0, 10)
    assert out["decided"] is False and out["reason"] == "metrics too stale to decide: samples up to 30.0 s old"


def test_a_freshness_check_that_fails_is_said():
    out = forms_fresh(Forms(RuntimeError("Prometheus gone")), measurement(2.0, "s", "metrics", 1.0), 0, 10)
    assert out["freshness"] == {"error": "Prometheus gone"} and "sample age unknown" in out["resolution"]


def test_the_nodes_the_fault_cut_off_are_left_out():
    forms = Forms({"max_age": 0.5, "interval": 1.0, "stale": [], "refuse": ""})
    figure = measurement(2.0, "s", "metrics", 1.0, fault={"id": "f1", "targets": ["worker-1"]})
    forms_fresh(forms, figure, 0, 10)
    assert forms.excluded == ["worker-1"]  # its scrapes fail during the cut: that is the fault, not staleness
