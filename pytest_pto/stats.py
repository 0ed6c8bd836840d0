"""Small, dependency-free statistics for round tables: Wilson intervals and Fisher's exact test.

Why here and not scipy: the report must run anywhere pytest runs (CI images, dashboards),
and both computations are short. Fisher's test is computed with exact integer arithmetic
(``math.comb`` and ``fractions.Fraction``), so ties between table probabilities are decided
exactly rather than with the relative tolerance that floating-point implementations (R,
scipy) need; for every table those tools handle, the p-values agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Literal

__all__ = ["FisherResult", "fisher_exact", "wilson_interval", "z_for_confidence"]

Alternative = Literal["two-sided", "less", "greater"]


def z_for_confidence(confidence: float) -> float:
    """The two-sided standard-normal quantile for ``confidence`` (0.95 -> 1.959963...)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r}: must be strictly between 0 and 1")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Chosen over the textbook Wald interval because round counts are small (tens) and pass
    rates sit near 0 or 1, where Wald collapses to a zero-width interval (30/30 would claim
    [100%, 100%]); Wilson stays inside [0, 1] and keeps close to nominal coverage
    (Newcombe 1998, "Two-sided confidence intervals for the single proportion").

    ``n == 0`` gives the uninformative ``(0.0, 1.0)``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"wilson_interval({successes}, {n}): need 0 <= successes <= n")
    if n == 0:
        return (0.0, 1.0)
    z = z_for_confidence(confidence)
    z2 = z * z
    p = successes / n
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class FisherResult:
    """Result of :func:`fisher_exact`.

    ``p_exact`` is the exact rational p-value; ``p_value`` is it as a float. ``odds_ratio`` is
    the sample odds ratio ``(a*d)/(b*c)`` (``inf`` when only ``b*c`` is 0, ``nan`` when both
    products are 0), the same statistic scipy reports.
    """

    p_value: float
    p_exact: Fraction
    odds_ratio: float
    alternative: Alternative


def _check_table(table: tuple[tuple[int, int], tuple[int, int]]) -> tuple[int, int, int, int]:
    try:
        (a, b), (c, d) = table
    except (TypeError, ValueError):
        raise ValueError(f"fisher_exact: table must be 2x2, got {table!r}") from None
    for cell in (a, b, c, d):
        if not isinstance(cell, int) or isinstance(cell, bool) or cell < 0:
            raise ValueError(f"fisher_exact: cells must be non-negative integers, got {table!r}")
    return a, b, c, d


def _odds_ratio(a: int, b: int, c: int, d: int) -> float:
    if b * c:
        return (a * d) / (b * c)
    return math.nan if a * d == 0 else math.inf


def fisher_exact(
    table: tuple[tuple[int, int], tuple[int, int]], alternative: Alternative = "two-sided"
) -> FisherResult:
    """Fisher's exact test on a 2x2 table ``((a, b), (c, d))``.

    With the margins fixed, ``a`` follows the hypergeometric distribution
    ``P(X = x) = C(a+b, x) * C(c+d, (a+c) - x) / C(n, a+c)``. The two-sided p-value is the
    total probability of every table at most as probable as the observed one (the
    definition R's ``fisher.test`` and scipy use); ``less``/``greater`` sum the lower/upper
    tail of ``X``. All sums are exact integers, divided once at the end.

    For round tables use rows = variants and columns = (failed, passed) rounds, so
    ``((15, 15), (0, 30))`` asks whether 15/30 failures vs 0/30 could be chance.
    """
    a, b, c, d = _check_table(table)
    row1, row2, col1 = a + b, c + d, a + c
    n = row1 + row2
    lo, hi = max(0, col1 - row2), min(row1, col1)

    def weight(x: int) -> int:  # numerator of P(X = x); the common denominator is C(n, col1)
        return math.comb(row1, x) * math.comb(row2, col1 - x)

    total = math.comb(n, col1)
    if alternative == "two-sided":
        observed = weight(a)
        numerator = sum(w for w in (weight(x) for x in range(lo, hi + 1)) if w <= observed)
    elif alternative == "less":
        numerator = sum(weight(x) for x in range(lo, a + 1))
    elif alternative == "greater":
        numerator = sum(weight(x) for x in range(a, hi + 1))
    else:
        raise ValueError(
            f"fisher_exact: alternative={alternative!r}: must be two-sided, less or greater"
        )
    p = min(Fraction(numerator, total), Fraction(1))
    odds = _odds_ratio(a, b, c, d)
    return FisherResult(p_value=float(p), p_exact=p, odds_ratio=odds, alternative=alternative)
