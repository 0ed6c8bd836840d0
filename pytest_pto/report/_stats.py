"""Small, dependency-free statistics for round tables: Wilson and Clopper-Pearson intervals,
Fisher's and McNemar's exact tests, and the anytime-valid confidence sequence of
``--pto-rounds=auto``.

Why here and not scipy: the report must run anywhere pytest runs (CI images, dashboards),
and both computations are short. Fisher's test is computed with exact integer arithmetic
(``math.comb`` and ``fractions.Fraction``), so ties between table probabilities are decided
exactly rather than with the relative tolerance that floating-point implementations (R,
scipy) need; for every table those tools handle, the p-values agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Literal

__all__ = [
    "FisherResult",
    "McNemarResult",
    "binom_cdf",
    "clopper_pearson",
    "clopper_pearson_upper",
    "confidence_sequence",
    "fisher_exact",
    "mcnemar_exact",
    "sequential_decision",
    "wilson_interval",
    "z_for_confidence",
]

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


def _weights(row1: int, row2: int, col1: int, start: int, stop: int) -> Iterator[int]:
    """``C(row1, x) * C(row2, col1 - x)`` for ``x`` in ``start..stop``, exact integers.

    Each binomial coefficient is derived from the previous one by one multiplication and one
    exact division (``C(r, x+1) = C(r, x) (r-x) / (x+1)``), instead of computing every
    coefficient afresh: the same integers, 20x faster for thousands of rounds (a merged CI
    history), where computing each ``math.comb`` anew took seconds per table.
    """
    if start > stop:
        return
    c1 = math.comb(row1, start)
    c2 = math.comb(row2, col1 - start)
    for x in range(start, stop + 1):
        yield c1 * c2
        c1 = c1 * (row1 - x) // (x + 1)
        j = col1 - x  # C(row2, j - 1) = C(row2, j) * j / (row2 - j + 1)
        c2 = c2 * j // (row2 - j + 1) if j > 0 else 0


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
        numerator = sum(w for w in _weights(row1, row2, col1, lo, hi) if w <= observed)
    elif alternative == "less":
        numerator = sum(_weights(row1, row2, col1, lo, a))
    elif alternative == "greater":
        numerator = sum(_weights(row1, row2, col1, a, hi))
    else:
        raise ValueError(
            f"fisher_exact: alternative={alternative!r}: must be two-sided, less or greater"
        )
    p = min(Fraction(numerator, total), Fraction(1))
    odds = _odds_ratio(a, b, c, d)
    return FisherResult(p_value=float(p), p_exact=p, odds_ratio=odds, alternative=alternative)


# --- exact binomial: Clopper-Pearson -----------------------------------------------------------


def _check_counts(where: str, k: int, n: int) -> None:
    for v in (k, n):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{where}({k!r}, {n!r}): counts must be integers")
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"{where}({k}, {n}): need 0 <= k <= n")


def _alpha(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r}: must be strictly between 0 and 1")
    return 1.0 - confidence


def binom_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, summed term by term in log space.

    Every term is ``exp(log C(n, i) + i log p + (n-i) log(1-p))`` with exact ``lgamma``
    coefficients, so n in the thousands neither overflows nor loses the tail (a float
    ``comb(n, i) * p**i`` would overflow at n ~ 1030).
    """
    _check_counts("binom_cdf", min(max(k, 0), n), n)
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    lgn = math.lgamma(n + 1)

    # The tail away from the mode is summed from its inner end outwards (the lower tail
    # P(X <= k) when k is below the mode, else 1 - P(X >= k+1)), each term from the one
    # before it (term(i-1) = term(i) * i / (n-i+1) * (1-p)/p), the first one in log space
    # (lgamma). Away from the mode the terms fall geometrically, so once a term is below
    # 1e-17 of the sum the rest cannot change a double: a tail of thousands of rounds costs
    # tens of terms, not k.
    def term(i: int) -> float:
        return math.exp(lgn - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)

    mode = (n + 1) * p
    total = 0.0
    if k < mode:
        t, ratio = term(k), math.exp(lq - lp)
        for i in range(k, -1, -1):
            total += t
            if t < total * 1e-17:
                break
            t *= i / (n - i + 1) * ratio
        return min(total, 1.0)
    t, ratio = term(k + 1), math.exp(lp - lq)
    for i in range(k + 1, n + 1):
        total += t
        if t < total * 1e-17:
            break
        t *= (n - i) / (i + 1) * ratio
    return max(0.0, 1.0 - total)


def _bisect(f: Callable[[float], float], target: float, increasing: bool) -> float:
    """The p in (0, 1) where the monotone ``f(p)`` crosses ``target`` (to 1e-12)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        above = f(mid) > target
        if above == increasing:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2.0


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion ``k / n``.

    The bounds are the beta quantiles ``Beta(alpha/2; k, n-k+1)`` and
    ``Beta(1-alpha/2; k+1, n-k)``, found here without a beta function: by bisection on the
    exact binomial tail they are defined by (``P(X >= k | low) = alpha/2``,
    ``P(X <= k | high) = alpha/2``). Coverage is at least ``confidence`` for every n and
    rate, which is why a round table that "proves" something uses it (Wilson is only close
    to nominal on average). ``n == 0`` gives ``(0.0, 1.0)``.
    """
    _check_counts("clopper_pearson", k, n)
    half = _alpha(confidence) / 2.0
    if n == 0:
        return (0.0, 1.0)
    low = 0.0 if k == 0 else _bisect(lambda p: 1.0 - binom_cdf(k - 1, n, p), half, True)
    high = 1.0 if k == n else _bisect(lambda p: binom_cdf(k, n, p), half, False)
    return (low, high)


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact upper bound: the largest rate with ``P(X <= k) >= 1 - confidence``.

    For a clean run (``k == 0``) this is ``1 - (1 - confidence) ** (1 / n)``: 30 clean
    rounds bound the failure rate below 9.5 % at 95 %, 19 clean rounds only below 14.6 %.
    """
    _check_counts("clopper_pearson_upper", k, n)
    alpha = _alpha(confidence)
    if k == n:  # n == 0 too: nothing observed, nothing bounded
        return 1.0
    if k == 0:
        return 1.0 - alpha ** (1.0 / n)
    return _bisect(lambda p: binom_cdf(k, n, p), alpha, False)


# --- McNemar's exact test for paired rounds ----------------------------------------------------


@dataclass(frozen=True)
class McNemarResult:
    """Result of :func:`mcnemar_exact`: ``only_a``/``only_b`` are the discordant pairs (A
    failed and B passed / the reverse); ``p_exact`` is the exact rational p-value."""

    p_value: float
    p_exact: Fraction
    only_a: int
    only_b: int


def mcnemar_exact(only_a: int, only_b: int) -> McNemarResult:
    """Exact (binomial) McNemar test, two-sided, on the discordant pairs of paired rounds.

    Under "no difference" every discordant pair is equally likely to go either way, so
    ``only_a ~ Binomial(only_a + only_b, 1/2)``; the two-sided p-value is twice the smaller
    tail, capped at 1 (for p = 1/2 the binomial is symmetric, so this equals the
    sum-of-less-probable-outcomes definition of ``scipy.stats.binomtest``). Concordant pairs
    carry no information about the difference and do not enter. Exact integers throughout.
    """
    for v in (only_a, only_b):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"mcnemar_exact({only_a!r}, {only_b!r}): need integers >= 0")
    n = only_a + only_b
    small = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(small + 1))
    p = min(Fraction(2 * tail, 2**n), Fraction(1))
    return McNemarResult(p_value=float(p), p_exact=p, only_a=only_a, only_b=only_b)


# --- anytime-valid confidence sequence for --pto-rounds=auto -----------------------------------

#: Prior of the mixture martingale (Beta(1, 1), uniform): symmetric, so neither decision is
#: favoured; a deterministic failure is decided within 2 rounds at the default target.
CS_PRIOR = (1.0, 1.0)


def _log_mixture_ratio(k: int, n: int, p: float) -> float:
    """log M_n(p): the Beta-binomial mixture likelihood over the likelihood at ``p``.

    ``M_n(p) = B(a + k, b + n - k) / B(a, b) / (p^k (1-p)^(n-k))`` is a nonnegative
    martingale with mean 1 when the true rate is ``p``, so by Ville's inequality
    ``P(exists n: M_n(p) >= 1/alpha) <= alpha`` (Robbins 1970; Howard et al. 2021, "Time-
    uniform, nonparametric, nonasymptotic confidence sequences").
    """
    a, b = CS_PRIOR

    def lbeta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    if p <= 0.0:
        return math.inf if k > 0 else lbeta(a, b + n) - lbeta(a, b)
    if p >= 1.0:
        return math.inf if k < n else lbeta(a + n, b) - lbeta(a, b)
    mix = lbeta(a + k, b + n - k) - lbeta(a, b)
    return mix - k * math.log(p) - (n - k) * math.log1p(-p)


def confidence_sequence(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Anytime-valid bounds ``(low, high)`` of the failure rate after ``k`` failures in ``n``
    rounds: ``{p : M_n(p) < 1/alpha}``.

    Unlike a fixed-n interval recomputed after every round, the probability that the true
    rate is *ever* outside these bounds, over all n, is at most ``1 - confidence``; so a run
    may look after every round and stop whenever it likes. The set is an interval (``log
    M_n`` is convex in p) that contains ``k / n`` (the mixture never beats the maximum
    likelihood).
    """
    _check_counts("confidence_sequence", k, n)
    threshold = math.log(1.0 / _alpha(confidence))
    if n == 0:
        return (0.0, 1.0)
    mle = k / n

    def outside(p: float) -> float:
        return _log_mixture_ratio(k, n, p)

    low = 0.0
    if k > 0 and outside(0.0) >= threshold:
        lo, hi = 0.0, mle
        for _ in range(60):
            mid = (lo + hi) / 2.0
            if outside(mid) >= threshold:
                lo = mid
            else:
                hi = mid
        low = lo
    high = 1.0
    if k < n and outside(1.0) >= threshold:
        lo, hi = mle, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2.0
            if outside(mid) >= threshold:
                hi = mid
            else:
                lo = mid
        high = hi
    return (low, high)


Decision = Literal["passes", "flaky", "undecided", "running"]


def sequential_decision(
    failures: int, rounds: int, target: float, max_rounds: int, confidence: float = 0.95
) -> Decision:
    """The ``--pto-rounds=auto`` rule after ``rounds`` rounds with ``failures`` failures.

    ``passes`` once the confidence sequence's upper bound is below ``target``, ``flaky``
    once its lower bound is above it, ``undecided`` at ``max_rounds`` without either, else
    ``running``. Because the bounds hold simultaneously for every n, the probability that a
    run ever decides wrongly (``passes`` with a true rate >= target, or ``flaky`` with a
    true rate <= target) is at most ``1 - confidence`` (5 % by default), whenever it stops.
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target={target!r}: must be strictly between 0 and 1")
    _check_counts("sequential_decision", failures, rounds)
    # The sequence is an interval around k/n: target lies outside it exactly when
    # M_n(target) >= 1/alpha, on the side of k/n (no bisection needed per round).
    if rounds and _log_mixture_ratio(failures, rounds, target) >= math.log(1 / _alpha(confidence)):
        return "passes" if failures / rounds < target else "flaky"
    return "undecided" if rounds >= max_rounds else "running"
