"""Significance figures against published values and an independent computation.

References for the expected numbers:
- Wilson intervals: Newcombe RG (1998), "Two-sided confidence intervals for the single
  proportion: comparison of seven methods", Stat Med 17:857-872, Table I, method 3
  (81/263, 15/148, 0/20, 1/29).
- Fisher: R's ``?fisher.test`` examples (TeaTasting, Convictions) and the worked example of
  the Wikipedia article "Fisher's exact test" ([[1, 9], [11, 3]] -> 0.002759).
- The incident table [[15, 15], [0, 30]]: only the two extreme tables (0 or 15 failures in a
  row) are as improbable as the observed one, so p = 2 * C(30,15) / C(60,15) = 6/1028783
  (about 5.83e-06) in closed form.
scipy (a dev dependency, so this runs in CI) is the independent cross-check of Fisher.
"""

from __future__ import annotations

import importlib
import math
import random
from fractions import Fraction

import pytest

from pytest_pto.report._stats import fisher_exact, wilson_interval, z_for_confidence


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_newcombe_examples(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert round(lo, 4) == low
    assert round(hi, 4) == high


def test_wilson_incident_rows_and_edges() -> None:
    lo, hi = wilson_interval(15, 30)
    assert (round(lo, 4), round(hi, 4)) == (0.3315, 0.6685)
    # 30/30: closed form upper 1, lower n / (n + z^2)
    z2 = z_for_confidence(0.95) ** 2
    assert wilson_interval(30, 30) == (pytest.approx(30 / (30 + z2)), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert z_for_confidence(0.95) == pytest.approx(1.959964, abs=1e-6)
    narrow, wide = wilson_interval(15, 30, 0.80), wilson_interval(15, 30, 0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        wilson_interval(1, 2, confidence=1.0)


def test_fisher_incident_exact() -> None:
    res = fisher_exact(((15, 15), (0, 30)))
    assert res.p_exact == Fraction(2 * math.comb(30, 15), math.comb(60, 15)) == Fraction(6, 1028783)
    assert res.p_value == pytest.approx(5.8321e-06, rel=1e-4)
    assert res.odds_ratio == math.inf
    assert fisher_exact(((1, 29), (0, 30))).p_value == 1.0
    assert fisher_exact(((15, 15), (1, 29))).p_value == pytest.approx(6.4153e-05, rel=1e-4)


@pytest.mark.parametrize(
    ("table", "alternative", "expected"),
    [
        (((3, 1), (1, 3)), "two-sided", 0.4857),  # R TeaTasting
        (((3, 1), (1, 3)), "greater", 0.2429),  # R TeaTasting, alternative = "greater"
        (((2, 10), (15, 3)), "two-sided", 0.0005367),  # R Convictions
        (((2, 10), (15, 3)), "less", 0.0004652),  # R Convictions, alternative = "less"
        (((1, 9), (11, 3)), "two-sided", 0.002759),  # Wikipedia worked example
    ],
)
def test_fisher_published_values(table: tuple, alternative: str, expected: float) -> None:
    p = fisher_exact(table, alternative).p_value  # type: ignore[arg-type]
    assert p == pytest.approx(expected, abs=0.5 * 10 ** (math.floor(math.log10(expected)) - 3))


def _fisher_float(a: int, b: int, c: int, d: int) -> float:
    """Independent textbook version: float factorials and R's 1e-7 relative tie tolerance."""
    r1, r2, c1 = a + b, c + d, a + c
    n = r1 + r2

    def lf(k: int) -> float:
        return math.lgamma(k + 1)

    def lp(x: int) -> float:  # log P(X = x) from factorials
        margins = lf(r1) + lf(r2) + lf(c1) + lf(n - c1) - lf(n)
        return margins - lf(x) - lf(r1 - x) - lf(c1 - x) - lf(r2 - c1 + x)

    obs = lp(a)
    xs = range(max(0, c1 - r2), min(r1, c1) + 1)
    return min(1.0, sum(math.exp(lp(x)) for x in xs if lp(x) <= obs + 1e-7))


def test_fisher_matches_independent_computation_and_is_symmetric() -> None:
    rng = random.Random(5)
    for _ in range(200):
        a, b, c, d = (rng.randint(0, 30) for _ in range(4))
        p = fisher_exact(((a, b), (c, d))).p_value
        assert p == pytest.approx(_fisher_float(a, b, c, d), rel=1e-9, abs=1e-15)
        assert fisher_exact(((c, d), (a, b))).p_value == pytest.approx(p, rel=1e-12)
        assert fisher_exact(((b, a), (d, c))).p_value == pytest.approx(p, rel=1e-12)


def test_fisher_matches_scipy() -> None:
    """Not skipped when scipy is missing: it is in the dev extras, and a skipped cross-check
    is no check."""
    scipy_fisher = importlib.import_module("scipy.stats").fisher_exact

    for table in (((15, 15), (0, 30)), ((29, 1), (30, 0)), ((3, 1), (1, 3)), ((2, 10), (15, 3))):
        assert fisher_exact(table).p_value == pytest.approx(scipy_fisher(table)[1], rel=1e-9)


def test_fisher_rejects_bad_tables() -> None:
    with pytest.raises(ValueError, match="non-negative integers"):
        fisher_exact(((1, -1), (0, 0)))
    with pytest.raises(ValueError, match="2x2"):
        fisher_exact(((1, 2, 3), (0, 0)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alternative"):
        fisher_exact(((1, 2), (3, 4)), "both")  # type: ignore[arg-type]
