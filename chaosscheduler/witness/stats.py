"""Ratios with their sample size and a one-sided confidence bound, so a threshold is judged on what the sample can
show, never on a point value drawn from a handful of tasks.

``ratio(successes, n, threshold)`` is what every ratio of the witness reports::

    >>> r = ratio(539, 539, threshold=0.995)
    >>> r["value"], r["n"], round(r["lower"], 4), r["decidable"], r["passed"]
    (1.0, 539, 0.995, True, True)

Bounds are one-sided at 95 % by default: ``lower`` is the value the true rate exceeds with 95 % confidence,
``upper`` the value it stays under. Wilson's score bound (the default: close to nominal coverage, defined at 0 and
n) or the exact Clopper-Pearson bound (conservative). With no failure among n, Wilson's lower bound is
n / (n + z^2) (z^2 = 2.706 at 95 %), Clopper-Pearson's is 0.05^(1/n); :func:`n_needed` inverts them.
"""

import math
from statistics import NormalDist
from typing import Any, Dict, Optional, Tuple

__all__ = ["ratio", "wilson", "clopper_pearson", "n_needed", "METHODS", "CONFIDENCE"]

CONFIDENCE = 0.95
METHODS = ("wilson", "clopper-pearson")


def _z(confidence: float, sided: int) -> float:
    alpha = 1.0 - confidence
    return NormalDist().inv_cdf(1.0 - (alpha if sided == 1 else alpha / 2.0))


def _check(successes: int, n: int, confidence: float, sided: int) -> None:
    if isinstance(n, bool) or isinstance(successes, bool) or int(n) != n or int(successes) != successes:
        raise ValueError(f"successes and n must be integers, got {successes!r} of {n!r}")
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"successes must be from 0 to n, got {successes} of {n}")
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0.5 and 1, got {confidence!r}")
    if sided not in (1, 2):
        raise ValueError(f"sided must be 1 or 2, got {sided!r}")


def wilson(successes: int, n: int, confidence: float = CONFIDENCE, sided: int = 1) -> Tuple[float, float]:
    """Wilson score bounds ``(lower, upper)``; one-sided bounds by default (each holds at ``confidence``),
    ``sided=2`` for the two-sided interval. ``n == 0`` gives ``(0, 1)``: nothing is known."""
    _check(successes, n, confidence, sided)
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence, sided)
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    lower = 0.0 if successes == 0 else (centre - spread) / scale
    upper = 1.0 if successes == n else (centre + spread) / scale
    return max(0.0, lower), min(1.0, upper)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)), -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _beta_ppf(q: float, a: float, b: float) -> float:
    low, high = 0.0, 1.0
    for _ in range(200):  # bisection: I_x is monotonic in x
        mid = (low + high) / 2.0
        if _betainc(a, b, mid) < q:
            low = mid
        else:
            high = mid
        if high - low < 1e-15:
            break
    return (low + high) / 2.0


def clopper_pearson(successes: int, n: int, confidence: float = CONFIDENCE, sided: int = 1) -> Tuple[float, float]:
    """Exact (Clopper-Pearson) bounds ``(lower, upper)`` from the beta quantiles; one-sided by default."""
    _check(successes, n, confidence, sided)
    if n == 0:
        return 0.0, 1.0
    alpha = (1.0 - confidence) / (1 if sided == 1 else 2)
    if successes == n:
        lower = alpha ** (1.0 / n)
    else:
        lower = 0.0 if successes == 0 else _beta_ppf(alpha, successes, n - successes + 1)
    if successes == 0:
        upper = 1.0 - alpha ** (1.0 / n)
    else:
        upper = 1.0 if successes == n else _beta_ppf(1.0 - alpha, successes + 1, n - successes)
    return lower, upper


def n_needed(threshold: float, method: str = "wilson", confidence: float = CONFIDENCE) -> int:
    """The smallest n whose lower bound exceeds ``threshold`` when none of the n failed: below it no sample can
    show "> threshold". Wilson: n > t z^2 / (1 - t); Clopper-Pearson: n > ln(alpha) / ln(t)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold!r}")
    if method == "wilson":
        z = _z(confidence, 1)
        n = int(math.floor(threshold * z * z / (1.0 - threshold))) + 1
    elif method == "clopper-pearson":
        n = int(math.floor(math.log(1.0 - confidence) / math.log(threshold))) + 1
    else:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    while _bounds(method, n, n, confidence)[0] <= threshold:  # guard against rounding at the boundary
        n += 1
    return n


def _bounds(method: str, successes: int, n: int, confidence: float) -> Tuple[float, float]:
    if method == "wilson":
        return wilson(successes, n, confidence)
    if method == "clopper-pearson":
        return clopper_pearson(successes, n, confidence)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def ratio(successes: int, n: int, threshold: Optional[float] = None, method: str = "wilson",
          confidence: float = CONFIDENCE) -> Dict[str, Any]:
    """A ratio as the probes report it: ``value`` (None when n is 0), ``n``, ``successes``, ``failures``, the
    one-sided ``lower``/``upper`` bounds, ``method``, ``confidence``. With a ``threshold`` (a "> threshold"
    requirement): ``n_needed`` (the n that could show it with no failure), ``decidable`` (n >= n_needed),
    ``passed`` (True when the lower bound exceeds it, False when the upper bound does not reach it, None when the
    sample cannot tell)."""
    lower, upper = _bounds(method, successes, n, confidence)
    out: Dict[str, Any] = {"value": (successes / n) if n else None, "n": n, "successes": successes,
                           "failures": n - successes, "lower": lower, "upper": upper, "method": method,
                           "confidence": confidence}
    if threshold is not None:
        needed = n_needed(threshold, method, confidence)
        out.update(threshold=threshold, n_needed=needed, decidable=n >= needed,
                   passed=True if lower > threshold else False if upper <= threshold else None)
    return out
