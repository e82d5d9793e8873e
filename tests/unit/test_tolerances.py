"""The probe-type tolerances: pass what does not apply, fail what is undecided or still going on, judge ratios on
their one-sided 95 % bound and say the n needed."""

from chaosscheduler import tolerances
from chaosscheduler.measurements import measurement, not_applicable, ratio, undecided
from chaosscheduler.tolerances import at_least, at_most, consistent, judge


def test_at_most_judges_decided_values_and_fails_what_is_undecided_or_ongoing():
    assert at_most(measurement(2.5, "s", "leader source"), limit=30)
    assert not at_most(measurement(31.0, "s", "leader source"), limit=30)
    assert at_most(not_applicable("s", "before the method"), limit=30)
    assert not at_most(undecided("s", "none", "no fault: nothing happened"), limit=30)
    ongoing = measurement(30.5, "s", "records", ongoing=True, reason="still stalled at the bound")
    assert not at_most(ongoing, limit=60)  # a value below the limit that was still growing is no pass
    assert judge("at_most", ongoing, 60)["reason"] == "still stalled at the bound"
    assert at_most(2.0, limit=3) and not at_most(4, limit=3)  # a bare number (another extension's probe)


def test_at_least_judges_the_lower_bound_and_says_the_n_needed():
    assert at_least(ratio(600, 600, "witness"), threshold=0.995)
    small = ratio(100, 100, "witness")
    result = judge("at_least", small, 0.995)
    assert not result["met"] and "undecidable" in result["reason"] and "n >= 539" in result["reason"]
    result = judge("at_least", ratio(90, 100, "witness"), 0.95)
    assert not result["met"] and "below" in result["reason"] and "n = 100" in result["reason"]
    assert at_least(not_applicable("ratio", "before the method"), threshold=0.99)
    assert not at_least(ratio(0, 0, "witness"), threshold=0.5)
    assert at_least(measurement(0.97, "ratio", "x"), threshold=0.95)  # no bounds: the value itself


def test_consistent_fails_on_any_anomaly_and_on_too_few_tasks_after_the_method():
    good = ratio(150, 150, "witness", anomalies=0, lost=[], duplicated=[])
    assert consistent(good, min_tasks=100)
    assert not consistent(dict(good, n=50), min_tasks=100)
    bad = ratio(149, 150, "witness", anomalies=1, lost=[], duplicated=[], run_twice=["t-7"])
    result = judge("consistent", bad, 1)
    assert not result["met"] and "run_twice 1" in result["reason"]
    # before the method the run is young: a few tasks are enough, an anomaly still fails
    young = dict(good, n=12, phase="before-method")
    assert consistent(young, min_tasks=100)
    assert not consistent(dict(bad, phase="before-method"), min_tasks=100)
    # a witness that has just started has judged nothing yet: before the method that contradicts nothing, after it
    # that is no evidence
    empty = ratio(0, 0, "witness", anomalies=0, lost=[], duplicated=[], reason="no witness task could be judged yet")
    assert consistent(dict(empty, phase="before-method"), min_tasks=100)
    assert not consistent(dict(empty, phase="after-method"), min_tasks=100)
    assert not consistent(empty, min_tasks=1)


def test_a_threshold_that_is_not_a_number_fails_with_the_reason():
    result = judge("at_most", measurement(1.0, "s", "x"), "${leader_election_limit}")
    assert not result["met"] and "declared in the experiment's configuration" in result["reason"]


def test_every_judgment_is_kept_for_the_journal():
    before = len(tolerances.journal_section()["judgments"])
    output = measurement(3.0, "s", "x")
    at_most(output, limit=5)
    section = tolerances.journal_section()
    last = section["judgments"][-1]
    assert len(section["judgments"]) == before + 1
    assert last == {"func": "at_most", "argument": 5, "met": True, "reason": "3 s <= 5 (x)",
                    "output": tolerances.fingerprint(output)}
