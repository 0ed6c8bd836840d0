"""Round records -> per-test, per-variant summary rows, and the exact tests between variants.

The aggregation half of the round table (rendering is :mod:`pytest_pto.report._render`): one
module serves both the plugin's terminal summary (records built from live reports) and
``pto-report`` (records read back from JUnit files), so the numbers are the same wherever
they are printed. Rows have the shape of docs/design.md section 1: rounds, pass, failing
rounds, then one count per outcome class that occurred, plus a Wilson pass-rate interval, the
exact Clopper-Pearson interval of the failure rate (and, for a clean run, its one-sided bound)
and which ranks failed; :func:`compare` adds an exact test between the variants of one test
so "15/30 vs 0/30" comes with a p-value: McNemar's when the rounds are paired (same round
index and seed in both variants), else Fisher's.

Counting rules (documented because dashboards depend on them):

- every record is one round. Infrastructure failures (``pto.verdict`` = ``infra``: poisoning
  device codes, device_unavailable, failed probes and worker launches; for files without the
  property, the vocabulary's ``INFRA_OUTCOMES``) say nothing about the product: they are
  counted in their own ``infra`` column and left out of the pass rate and of the variant
  comparisons;
- ``pass`` counts outcome ``passed``; ``failing rounds`` counts every other *product*
  outcome, so ``rounds = pass + failing rounds + infra`` and the product outcome-class
  columns (``failed``, the assertion/exception class, among them) add up to
  ``failing rounds``. The pass rate is ``pass / (rounds - infra)`` (product rounds);
- ``failing ranks`` names, per failure class, the ranks that failed and in how many rounds;
- ``max init skew ms`` is the largest skew seen, a lower bound when a round was torn down
  while a rank was still initialising (``pto.init_skew_partial``);
- a row is keyed by (test, variant, ranks): rounds of the same test id from several runs or
  files accumulate; different rank counts are different populations and never merge;
- rows keep first-seen order, so a variants file's order carries through to the table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from pytest_pto._vocabulary import RoundRecord, outcome_sort_key
from pytest_pto.report._stats import (
    clopper_pearson,
    clopper_pearson_upper,
    fisher_exact,
    mcnemar_exact,
    wilson_interval,
)

__all__ = ["Comparison", "SummaryRow", "compare", "summarize"]


@dataclass(frozen=True)
class SummaryRow:
    """All rounds of one (test, variant, ranks).

    ``outcomes`` has one entry per outcome class that occurred (``passed`` included);
    ``failed`` counts failing *product* rounds and ``infra`` the infrastructure ones, so
    ``rounds = passed + failed + infra``; ``pass_low``/``pass_high`` is the Wilson interval
    of ``passed / product_rounds`` at ``confidence``; ``failed_ranks`` maps each failure
    class to ``{rank (None: not named): rounds}``; ``max_init_skew_ms`` is the largest init
    skew seen (None if never recorded), a lower bound when ``max_init_skew_partial``.
    """

    test: str
    variant: str | None
    rounds: int
    passed: int
    failed: int
    outcomes: dict[str, int]
    pass_low: float
    pass_high: float
    ranks: int | None = None
    confidence: float = 0.95
    max_init_skew_ms: float | None = None
    infra: int = 0
    failed_ranks: dict[str, dict[int | None, int]] = field(default_factory=dict)
    max_init_skew_partial: bool = False
    #: exact (Clopper-Pearson) two-sided interval of the failure rate, and the one-sided
    #: upper bound, at ``confidence``
    fail_low: float = 0.0
    fail_high: float = 1.0
    fail_upper: float = 1.0
    #: ``--pto-rounds=auto``: passes / flaky / undecided (None: fixed rounds), the rounds
    #: it took and the target failure rate it was decided against
    decision: str | None = None
    decision_rounds: int | None = None
    target_fail_rate: float | None = None

    @property
    def product_rounds(self) -> int:
        """Rounds that say something about the product (all but infrastructure outcomes)."""
        return self.rounds - self.infra

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.product_rounds if self.product_rounds else None

    @property
    def fail_rate(self) -> float | None:
        return self.failed / self.product_rounds if self.product_rounds else None


@dataclass(frozen=True)
class Comparison:
    """An exact two-sided test of the failure rates of two variants of one test.

    ``method`` is ``mcnemar`` when every round of both variants has its partner (same round
    index and seed) in the other: then ``only_a``/``only_b`` are the discordant pairs (A
    failed and B passed, and the reverse) and ``odds_ratio`` is ``only_a / only_b``; else
    ``fisher`` on the 2x2 table of failing and passing rounds.
    """

    test: str
    ranks: int | None
    variant_a: str | None
    variant_b: str | None
    failed_a: int
    rounds_a: int
    failed_b: int
    rounds_b: int
    p_value: float
    odds_ratio: float
    alpha: float = 0.05
    method: str = "fisher"
    only_a: int | None = None
    only_b: int | None = None

    @property
    def method_text(self) -> str:
        if self.method == "mcnemar":
            return f"McNemar exact, paired ({self.only_a} vs {self.only_b} discordant)"
        return "Fisher exact"

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha


@dataclass
class _Acc:
    rounds: int = 0
    passed: int = 0
    infra: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    ranks: dict[str, dict[int | None, int]] = field(default_factory=dict)
    max_skew: float | None = None
    skew_partial: bool = False
    decision: tuple[int, str, float | None] | None = None  # (round, decision, target)


def summarize(records: Iterable[RoundRecord], confidence: float = 0.95) -> list[SummaryRow]:
    """Group rounds by (test, variant, ranks) in first-seen order and count them."""
    accs: dict[tuple[str, str | None, int | None], _Acc] = {}
    for rec in records:
        acc = accs.setdefault((rec.test, rec.variant, rec.ranks), _Acc())
        acc.rounds += 1
        acc.passed += rec.passed
        acc.infra += rec.infra
        acc.outcomes[rec.outcome] = acc.outcomes.get(rec.outcome, 0) + 1
        if rec.decision is not None and (acc.decision is None or rec.round >= acc.decision[0]):
            acc.decision = (rec.round, rec.decision, rec.target_fail_rate)
        if not rec.passed and not rec.infra:
            per_rank = acc.ranks.setdefault(rec.outcome, {})
            per_rank[rec.rank] = per_rank.get(rec.rank, 0) + 1
        skew = rec.init_skew_ms
        if skew is not None and not math.isnan(skew):
            if acc.max_skew is None or skew > acc.max_skew:
                acc.max_skew, acc.skew_partial = skew, rec.init_skew_partial
            elif skew == acc.max_skew:
                acc.skew_partial = acc.skew_partial and rec.init_skew_partial
    rows = []
    for (test, variant, ranks), acc in accs.items():
        product = acc.rounds - acc.infra
        low, high = wilson_interval(acc.passed, product, confidence) if product else (0.0, 1.0)
        failed = product - acc.passed
        fail_low, fail_high = clopper_pearson(failed, product, confidence)
        decision = acc.decision
        rows.append(
            SummaryRow(
                test=test,
                variant=variant,
                rounds=acc.rounds,
                passed=acc.passed,
                failed=product - acc.passed,
                outcomes=dict(sorted(acc.outcomes.items(), key=lambda kv: outcome_sort_key(kv[0]))),
                pass_low=low,
                pass_high=high,
                ranks=ranks,
                confidence=confidence,
                max_init_skew_ms=acc.max_skew,
                infra=acc.infra,
                failed_ranks={
                    o: dict(sorted(acc.ranks[o].items(), key=_rank_order))
                    for o in sorted(acc.ranks, key=outcome_sort_key)
                },
                max_init_skew_partial=acc.skew_partial,
                fail_low=fail_low,
                fail_high=fail_high,
                fail_upper=clopper_pearson_upper(failed, product, confidence),
                decision=decision[1] if decision else None,
                decision_rounds=decision[0] if decision else None,
                target_fail_rate=decision[2] if decision else None,
            )
        )
    return rows


def _rank_order(item: tuple[int | None, int]) -> tuple[int, int]:
    """Most failing rounds first; then by rank, an unnamed rank last."""
    rank, n = item
    return (-n, rank if rank is not None else 1 << 30)


def _pairs(
    records: Sequence[RoundRecord], key: tuple[str, int | None], a: str | None, b: str | None
) -> tuple[int, int] | None:
    """Discordant pairs ``(A failed & B passed, A passed & B failed)`` when the product rounds
    of variants ``a`` and ``b`` of one test pair up one to one by (round index, seed); None
    when any round lacks its partner, a seed is unknown, or a (round, seed) repeats (several
    runs merged): then the rounds are independent samples and Fisher's test applies."""
    sides: list[dict[tuple[int, str], bool]] = [{}, {}]
    for rec in records:
        if (rec.test, rec.ranks) != key or rec.infra or rec.variant not in (a, b):
            continue
        if rec.seed is None:
            return None
        side = sides[0 if rec.variant == a else 1]
        k = (rec.round, rec.seed)
        if k in side:
            return None
        side[k] = rec.passed
    if not sides[0] or sides[0].keys() != sides[1].keys():
        return None
    only_a = sum(1 for k, ok in sides[0].items() if not ok and sides[1][k])
    only_b = sum(1 for k, ok in sides[0].items() if ok and not sides[1][k])
    return only_a, only_b


def compare(
    rows: Sequence[SummaryRow],
    baseline: str | None = None,
    alpha: float = 0.05,
    records: Sequence[RoundRecord] | None = None,
) -> list[Comparison]:
    """An exact test between variants of the same test (and rank count).

    With ``records`` (the rounds behind ``rows``), two variants whose rounds are paired (see
    :func:`_pairs`) get McNemar's exact test on the discordant pairs (variants run the same
    round seeds, so round K of both saw the same init-latency draws); otherwise, and without
    ``records``, Fisher's exact test on the failing/passing counts.

    Without ``baseline`` every pair of variants is compared (in row order); with it, each
    other variant is compared against the baseline (tests without that variant get no
    comparison). p-values are per comparison, not adjusted for multiple comparisons.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r}: must be strictly between 0 and 1")
    groups: dict[tuple[str, int | None], list[SummaryRow]] = {}
    for row in rows:
        groups.setdefault((row.test, row.ranks), []).append(row)
    out = []
    for (test, ranks), group in groups.items():
        if baseline is None:
            pairs = list(combinations(group, 2))
        else:
            base = [r for r in group if r.variant == baseline]
            pairs = [(base[0], r) for r in group if base and r.variant != baseline]
        for a, b in pairs:
            paired = _pairs(records, (test, ranks), a.variant, b.variant) if records else None
            if paired is not None:
                mc = mcnemar_exact(*paired)
                p_value, method = mc.p_value, "mcnemar"
                odds = paired[0] / paired[1] if paired[1] else (math.inf if paired[0] else math.nan)
            else:
                res = fisher_exact(((a.failed, a.passed), (b.failed, b.passed)))
                p_value, odds, method = res.p_value, res.odds_ratio, "fisher"
            out.append(
                Comparison(
                    test=test,
                    ranks=ranks,
                    variant_a=a.variant,
                    variant_b=b.variant,
                    failed_a=a.failed,
                    rounds_a=a.rounds,
                    failed_b=b.failed,
                    rounds_b=b.rounds,
                    p_value=p_value,
                    odds_ratio=odds,
                    alpha=alpha,
                    method=method,
                    only_a=paired[0] if paired else None,
                    only_b=paired[1] if paired else None,
                )
            )
    return out
