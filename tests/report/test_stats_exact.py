"""Clopper-Pearson, McNemar and the auto-rounds confidence sequence, checked against scipy
(an independent implementation: scipy.stats.beta quantiles, binomtest, fisher_exact) and
against closed forms (a clean run's bound is ``1 - alpha**(1/n)``)."""

from __future__ import annotations

import math
import random

import pytest

from pytest_pto.report._stats import (
    binom_cdf,
    clopper_pearson,
    clopper_pearson_upper,
    confidence_sequence,
    fisher_exact,
    mcnemar_exact,
    sequential_decision,
    wilson_interval,
)

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(("n", "bound"), [(30, 0.095), (19, 0.146), (59, 0.0495)])
def test_clean_run_bound_matches_the_issue(n: int, bound: float) -> None:
    assert round(clopper_pearson_upper(0, n), 3 if n < 50 else 4) == bound
    assert clopper_pearson_upper(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-12)


def _cases() -> list[tuple[int, int]]:
    rng = random.Random(14)
    cases = [(0, 1), (1, 1), (0, 30), (30, 30), (15, 30), (1, 29), (3, 10), (81, 263)]
    cases += [(k, n) for n in (rng.randint(1, 400) for _ in range(40)) for k in [rng.randint(0, n)]]
    return cases


@pytest.mark.parametrize(("k", "n"), _cases())
@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_clopper_pearson_matches_scipy(k: int, n: int, confidence: float) -> None:
    low, high = clopper_pearson(k, n, confidence)
    ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    assert low == pytest.approx(ref.low, abs=1e-9)
    assert high == pytest.approx(ref.high, abs=1e-9)
    alpha = 1 - confidence
    up = clopper_pearson_upper(k, n, confidence)
    expected = 1.0 if k == n else scipy_stats.beta.ppf(1 - alpha, k + 1, n - k)
    assert up == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("k", "n", "p"), [(0, 10, 0.1), (5, 10, 0.5), (3, 2000, 0.001)])
def test_binom_cdf_matches_scipy(k: int, n: int, p: float) -> None:
    assert binom_cdf(k, n, p) == pytest.approx(scipy_stats.binom.cdf(k, n, p), rel=1e-10)


def test_bad_counts_are_rejected_with_the_rule() -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson(5, 3)
    with pytest.raises(ValueError, match="confidence"):
        clopper_pearson(1, 3, 1.5)
    with pytest.raises(ValueError, match="integers >= 0"):
        mcnemar_exact(-1, 2)


@pytest.mark.parametrize(
    ("only_a", "only_b"), [(0, 0), (7, 1), (1, 7), (5, 5), (0, 12), (13, 2), (40, 25)]
)
def test_mcnemar_exact_matches_scipy_binomtest(only_a: int, only_b: int) -> None:
    res = mcnemar_exact(only_a, only_b)
    n = only_a + only_b
    ref = 1.0 if n == 0 else scipy_stats.binomtest(only_a, n, 0.5).pvalue
    assert res.p_value == pytest.approx(ref, rel=1e-12)


def test_paired_and_unpaired_tests_differ_where_pairing_matters() -> None:
    """Pairs (A fail, B pass) x 8 and 22 concordant passes: McNemar sees 8 vs 0 discordant
    pairs (p = 2/256); Fisher on the margins 8/30 vs 0/30 gives scipy's value."""
    assert mcnemar_exact(8, 0).p_value == pytest.approx(2 / 256)
    fisher = fisher_exact(((8, 22), (0, 30))).p_value
    assert fisher == pytest.approx(scipy_stats.fisher_exact([[8, 22], [0, 30]])[1], rel=1e-12)


def test_confidence_sequence_is_wider_than_the_fixed_n_interval() -> None:
    """Anytime validity costs width: the sequence's bounds enclose Clopper-Pearson's."""
    for k, n in [(0, 30), (3, 30), (15, 30), (30, 30), (5, 200)]:
        low, high = confidence_sequence(k, n)
        cp_low, cp_high = clopper_pearson(k, n)
        assert low <= cp_low + 1e-12
        assert high >= cp_high - 1e-12
        assert low <= k / n <= high


def test_sequential_decisions() -> None:
    # deterministic failure: flaky within 2 rounds at the default 5 % target
    assert sequential_decision(1, 1, 0.05, 200) == "running"
    assert sequential_decision(2, 2, 0.05, 200) == "flaky"
    # clean rounds: passes once the anytime-valid bound is below 5 % (158 rounds)
    assert sequential_decision(0, 157, 0.05, 200) == "running"
    assert sequential_decision(0, 158, 0.05, 200) == "passes"
    # at the cap without a decision
    assert sequential_decision(5, 100, 0.05, 100) == "undecided"
    # the O(1) rule agrees with the bounds of the sequence itself
    for k, n in [(0, 158), (0, 157), (2, 2), (4, 30), (12, 30), (1, 80)]:
        low, high = confidence_sequence(k, n)
        expected = "passes" if high < 0.05 else "flaky" if low > 0.05 else "running"
        assert sequential_decision(k, n, 0.05, 200) == expected


def test_sequential_rule_error_rate_under_continuous_monitoring() -> None:
    """Simulated runs at a true rate exactly at the target: the rule may decide either way
    only wrongly, and must do so in at most 5 % of runs although it looks after every round
    (a fixed-n 95 % interval recomputed each round would exceed 5 %)."""
    rng = random.Random(2026)
    target, runs, wrong, naive_wrong = 0.2, 300, 0, 0
    for _ in range(runs):
        k = 0
        naive_done = False
        for n in range(1, 101):
            k += rng.random() < target
            decision = sequential_decision(k, n, target, 100)
            if not naive_done:
                lo, hi = wilson_interval(k, n)
                if lo > target or hi < target:
                    naive_wrong += 1
                    naive_done = True
            if decision in ("passes", "flaky"):
                wrong += 1
                break
    assert wrong / runs <= 0.05
    assert naive_wrong / runs > 0.05  # the reason for the confidence sequence
    assert math.isfinite(wrong)
