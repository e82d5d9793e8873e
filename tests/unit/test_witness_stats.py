"""Bounds of the witness's ratios against published and independently computed values."""

import pytest

from chaosscheduler.witness.stats import clopper_pearson, n_needed, ratio, wilson


@pytest.mark.parametrize("k,n,low,high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", table I, method 3 (score)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_two_sided_matches_newcombe(k, n, low, high):
    lower, upper = wilson(k, n, sided=2)
    assert lower == pytest.approx(low, abs=6e-5) and upper == pytest.approx(high, abs=6e-5)


@pytest.mark.parametrize("k,n,low,high", [
    # scipy.stats.beta.ppf(0.05, k, n-k+1) and beta.ppf(0.95, k+1, n-k) (scipy 1.17)
    (5, 10, 0.2224411010081294, 0.7775588989918706), (9, 10, 0.6058366975634952, 0.9948838031081763),
    (81, 263, 0.26105574600911197, 0.35817849557578413), (1, 50, 0.0010253398672320636, 0.09139813071969738),
    (130, 133, 0.9427363666801173, 0.9938243731435519), (0, 10, 0.0, 0.2588655508930522),
    (10, 10, 0.7411344491069477, 1.0)])
def test_clopper_pearson_one_sided_matches_the_beta_quantiles(k, n, low, high):
    lower, upper = clopper_pearson(k, n)
    assert lower == pytest.approx(low, abs=1e-9) and upper == pytest.approx(high, abs=1e-9)


def test_no_failure_bounds_have_their_closed_forms():
    for n in (1, 52, 133, 539):
        assert wilson(n, n)[0] == pytest.approx(n / (n + 2.705543454095413))
        assert clopper_pearson(n, n)[0] == pytest.approx(0.05 ** (1 / n))


@pytest.mark.parametrize("threshold,wilson_n,cp_n", [(0.995, 539, 598), (0.98, 133, 149), (0.95, 52, 59),
                                                     (0.99, 268, 299)])
def test_n_needed_is_the_smallest_sample_that_can_show_the_threshold(threshold, wilson_n, cp_n):
    assert n_needed(threshold) == wilson_n
    assert n_needed(threshold, "clopper-pearson") == cp_n
    assert wilson(wilson_n, wilson_n)[0] > threshold >= wilson(wilson_n - 1, wilson_n - 1)[0]
    assert clopper_pearson(cp_n, cp_n)[0] > threshold >= clopper_pearson(cp_n - 1, cp_n - 1)[0]


def test_ratio_says_when_the_sample_cannot_decide():
    small = ratio(23, 23, threshold=0.995)
    assert small["value"] == 1.0 and small["n"] == 23 and not small["decidable"] and small["passed"] is None
    assert small["n_needed"] == 539
    big = ratio(600, 600, threshold=0.995)
    assert big["decidable"] and big["passed"] is True
    bad = ratio(90, 100, threshold=0.98)
    assert bad["passed"] is False and bad["upper"] < 0.98
    empty = ratio(0, 0, threshold=0.95)
    assert empty["value"] is None and empty["lower"] == 0.0 and empty["upper"] == 1.0 and not empty["decidable"]


def test_bad_inputs_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="from 0 to n"):
        wilson(5, 4)
    with pytest.raises(ValueError, match="integers"):
        ratio(1.5, 3)
    with pytest.raises(ValueError, match="method"):
        ratio(1, 2, method="bayes")
    with pytest.raises(ValueError, match="threshold"):
        n_needed(1.0)
