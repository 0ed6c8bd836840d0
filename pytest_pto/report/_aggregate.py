"""Round records -> per-test, per-variant summary rows -> text / Markdown / JSON tables.

One module serves both the plugin's terminal summary (records built from live reports) and
``pto-report`` (records read back from JUnit files), so a table looks the same wherever it is
printed. Rows have the shape of docs/design.md section 1: rounds, pass, failing rounds, then one
column per outcome class that occurred, plus a Wilson pass-rate interval and which ranks
failed; :func:`statement` says what the rounds prove (the exact Clopper-Pearson interval
of the failure rate, for a clean run the one-sided bound: "30 clean rounds: failure rate
below 9.5 % (95 %)", and the ``--pto-rounds=auto`` decision); :func:`compare` adds an exact
test between the variants of one test so "15/30 vs 0/30" comes with a p-value: McNemar's
when the rounds are paired (same round index and seed in both variants), else Fisher's.

Counting rules (documented because dashboards depend on them):

- every record is one round. Infrastructure failures (``pto.verdict`` = ``infra``: poisoning
  device codes, device_unavailable, failed probes and worker launches; for files without the
  property, the outcomes of :data:`INFRA_OUTCOMES`) say nothing about the product: they are
  counted in their own ``infra`` column, ``device_unavailable``'s column is marked
  ``(infra)``, and they are left out of the pass rate and of the variant comparisons;
- ``pass`` counts outcome ``passed``; ``failing rounds`` counts every other *product*
  outcome, so ``rounds = pass + failing rounds + infra`` and the product outcome-class
  columns (``failed``, the assertion/exception class, among them) add up to
  ``failing rounds``. The pass rate is ``pass / (rounds - infra)`` (product rounds);
- ``failing ranks`` names, per failure class, the ranks that failed and in how many rounds
  (``sched_error_code=100: rank 1 (12)``);
- ``max init skew ms`` is the largest skew seen; ``>=`` marks a lower bound from a round torn
  down while a rank was still initialising (``pto.init_skew_partial``);
- a row is keyed by (test, variant, ranks): rounds of the same test id from several runs or
  files accumulate; different rank counts are different populations and never merge;
- rows keep first-seen order, so a variants file's order carries through to the table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from pytest_pto._vocabulary import OUTCOME_RULE, int_value, outcome_parts
from pytest_pto.report._stats import (
    clopper_pearson,
    clopper_pearson_upper,
    fisher_exact,
    mcnemar_exact,
    wilson_interval,
)

__all__ = [
    "INFRA_OUTCOMES",
    "OUTCOMES",
    "Comparison",
    "RoundRecord",
    "SummaryRow",
    "base_test_id",
    "compare",
    "failing_ranks_text",
    "format_p",
    "is_infra",
    "outcome_sort_key",
    "parse_outcome",
    "render_markdown",
    "render_text",
    "statement",
    "strip_round_id",
    "strip_variant_id",
    "summarize",
    "to_json",
]

#: The fixed outcome classes of docs/design.md §4, in table-column order. ``sched_error_code=N``
#: and ``orch_error_code=N`` are families (one class per code N).
OUTCOMES = (
    "passed",
    "failed",
    "sched_error_code=N",
    "orch_error_code=N",
    "stream_sync_timeout",
    "init_failed",
    "init_timeout",
    "rank_crashed",
    "hang",
    "device_unavailable",
)

#: Outcomes of the test infrastructure, not of the product: outside the pass rate.
INFRA_OUTCOMES = frozenset({"device_unavailable"})
PASSED = "passed"
JSON_SCHEMA = "pto-report/1"
_ROUND_TOKEN = re.compile(r"(?:^|-)round-(\d+)(?=-|$)")


@dataclass(frozen=True)
class RoundRecord:
    """One executed round of one test: the unit every table counts.

    ``test`` is the test id without the variant and ``round-K`` id parts (e.g.
    ``tests/test_x.py::test_allreduce[2]``); ``file``/``line`` (1-based) locate the test for
    CI annotations when known.
    """

    test: str
    variant: str | None
    round: int
    outcome: str
    ranks: int | None = None
    rank: int | None = None  # the failed rank, when one is named
    error_code: int | None = None
    init_skew_ms: float | None = None
    duration_s: float | None = None
    message: str = ""
    file: str | None = None
    line: int | None = None
    init_skew_partial: bool = False  # init_skew_ms is a lower bound
    verdict: str | None = None  # pto.verdict: "product" or "infra" (None: not recorded)
    seed: str | None = None  # pto.seed: the round's PTO_SIM_MALLOC_SEED (pairs variants)
    decision: str | None = None  # pto.decision (--pto-rounds=auto): state after this round
    target_fail_rate: float | None = None  # pto.target_fail_rate of an auto round

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED

    @property
    def infra(self) -> bool:
        """The round failed because of the infrastructure: its ``pto.verdict`` says so, or
        (files without the property) its outcome is an infrastructure class."""
        if self.verdict is not None:
            return self.verdict == "infra" and not self.passed
        return is_infra(self.outcome)


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


# --- test ids --------------------------------------------------------------------------------


def _split_params(name: str) -> tuple[str, str] | None:
    """``'f::t[a-b]'`` -> ``('f::t', 'a-b')``; None when ``name`` has no ``[...]`` suffix."""
    idx = name.find("[")
    if idx < 0 or not name.endswith("]"):
        return None
    return name[:idx], name[idx + 1 : -1]


def _join_params(head: str, params: str) -> str:
    return f"{head}[{params}]" if params else head


def strip_round_id(name: str) -> tuple[str, int | None]:
    """Remove the ``round-K`` token from a test id's ``[...]`` part.

    ``test_allreduce[2-before-fixes-round-3]`` -> ``('test_allreduce[2-before-fixes]', 3)``;
    ``test_x[round-1]`` -> ``('test_x', 1)``; an id without the token comes back unchanged
    with round None. The last ``round-K`` token wins if a parameter happens to contain one.
    """
    parts = _split_params(name)
    if parts is None:
        return name, None
    head, params = parts
    matches = list(_ROUND_TOKEN.finditer(params))
    if not matches:
        return name, None
    m = matches[-1]
    rest = params[: m.start()] + params[m.end() :]
    if rest.startswith("-") and m.start() == 0:
        rest = rest[1:]
    return _join_params(head, rest), int(m.group(1))


def strip_variant_id(name: str, variant: str | None) -> str:
    """Remove a known variant token (``-``-delimited, may itself contain ``-``) from ``[...]``.

    ``test_allreduce[2-before-fixes]`` with ``before-fixes`` -> ``test_allreduce[2]``. The
    last whole-token occurrence is removed; an id without it is returned unchanged.
    """
    if not variant:
        return name
    parts = _split_params(name)
    if parts is None:
        return name
    head, params = parts
    token = re.compile(r"(?:^|-)" + re.escape(variant) + r"(?=-|$)")
    matches = list(token.finditer(params))
    if not matches:
        return name
    m = matches[-1]
    rest = params[: m.start()] + params[m.end() :]
    if m.start() == 0 and rest.startswith("-"):
        rest = rest[1:]
    return _join_params(head, rest)


def base_test_id(name: str, variant: str | None) -> tuple[str, int | None]:
    """Both of the above: ``(test id without variant and round tokens, round or None)``."""
    base, rnd = strip_round_id(name)
    return strip_variant_id(base, variant), rnd


# --- summarising -----------------------------------------------------------------------------


def parse_outcome(raw: str) -> str:
    """A ``pto.outcome`` value as read back (JUnit file or live report) -> its outcome class.

    The one place that reads outcome strings, against the one grammar
    (:mod:`pytest_pto._vocabulary`: ``name`` or ``name=value``), so a new class family
    (an adapter's ``device_error_code=507018``) needs no other reader change: classes are kept
    verbatim, ordered by :func:`outcome_sort_key` (unknown ones last), and counted as product
    failures unless listed in :data:`INFRA_OUTCOMES`. Raises ValueError for an empty value or
    one outside the grammar.
    """
    outcome = raw.strip()
    if not outcome:
        raise ValueError("is empty")
    if outcome_parts(outcome) is None:
        raise ValueError(f"{outcome!r} is not an outcome class ({OUTCOME_RULE})")
    return outcome


def is_infra(outcome: str) -> bool:
    """An infrastructure outcome (no verdict on the product), e.g. ``device_unavailable``."""
    return outcome in INFRA_OUTCOMES


def outcome_sort_key(outcome: str) -> tuple[int, str, int, str]:
    """Column order: docs/design.md section 4's order, error-code families by code, then the classes
    of runtime adapters (by name, then value), anything else last."""
    parsed = outcome_parts(outcome)
    name, value = parsed if parsed is not None else ("~", None)
    number = int_value(outcome) or 0
    if value is not None and f"{name}=N" in OUTCOMES:
        return (OUTCOMES.index(f"{name}=N"), "", number, outcome)
    if outcome in OUTCOMES:
        return (OUTCOMES.index(outcome), "", 0, outcome)
    return (len(OUTCOMES), name, number, outcome)


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


# --- rendering -------------------------------------------------------------------------------


def format_p(p: float) -> str:
    """Two significant digits; scientific below 0.001 (``1.7e-05``), ``1`` for 1."""
    if p >= 1.0:
        return "1"
    if p < 0.001:
        return f"{p:.1e}"
    return f"{p:.2g}"


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def _pct_sp(x: float) -> str:
    return f"{100.0 * x:.1f} %"


def statement(row: SummaryRow) -> str:
    """What the rounds of ``row`` prove, in one sentence.

    A clean run gives the exact one-sided bound ("30 clean rounds: failure rate below 9.5 %
    (95 %)"); otherwise the failures and the exact two-sided Clopper-Pearson interval. An
    ``--pto-rounds=auto`` decision follows with the rounds it took; its bound is the
    anytime-valid one (the fixed-n interval before it assumes the number of rounds was fixed
    in advance, which it was not: read the decision).
    """
    conf = f"{100 * row.confidence:g} %"
    n = row.product_rounds
    if n == 0:
        text = "no product rounds (only infrastructure outcomes): nothing proven"
    elif row.failed == 0:
        word = "clean round" if n == 1 else "clean rounds"
        text = f"{n} {word}: failure rate below {_pct_sp(row.fail_upper)} ({conf})"
    else:
        text = (
            f"{row.failed}/{n} rounds failed: failure rate {_pct_sp(row.failed / n)}, "
            f"{conf} interval [{_pct_sp(row.fail_low)}, {_pct_sp(row.fail_high)}] "
            "(Clopper-Pearson)"
        )
    if row.decision is not None:
        target = _pct_sp(row.target_fail_rate) if row.target_fail_rate is not None else "target"
        meaning = {
            "passes": f"failure rate below {target}",
            "flaky": f"failure rate above {target}",
            "undecided": f"not decided against {target} within the maximum rounds",
            "running": "stopped before a decision",
        }.get(row.decision, row.decision)
        text += (
            f"; auto: {row.decision} after {row.decision_rounds} rounds ({meaning}, "
            "anytime-valid, error at most 5 %)"
        )
    return text


def _statements(rows: Sequence[SummaryRow]) -> list[str]:
    out = []
    for r in rows:
        name = r.test + (f" [{r.variant}]" if r.variant else "")
        if r.ranks is not None:
            name += f" (ranks {r.ranks})"
        out.append(f"{name}: {statement(r)}")
    return out


def _interval(row: SummaryRow) -> str:
    if not row.product_rounds:
        return "-"
    rate = row.passed / row.product_rounds
    return f"{_pct(rate)} [{_pct(row.pass_low)}, {_pct(row.pass_high)}]"


def failing_ranks_text(row: SummaryRow) -> str:
    """``sched_error_code=100: rank 1 (12); hang: rank 0 (1)``: which ranks failed, per class."""
    parts = []
    for outcome, per_rank in row.failed_ranks.items():
        ranks = ", ".join(
            f"{'rank ?' if r is None else f'rank {r}'} ({n})" for r, n in per_rank.items()
        )
        parts.append(f"{outcome}: {ranks}")
    return "; ".join(parts) or "-"


def _skew(row: SummaryRow) -> str:
    if row.max_init_skew_ms is None:
        return "-"
    return (">=" if row.max_init_skew_partial else "") + f"{row.max_init_skew_ms:.1f}"


def _class_header(outcome: str) -> str:
    return f"{outcome} (infra)" if is_infra(outcome) else outcome


def _variant(v: str | None) -> str:
    return v if v is not None else "-"


def _opt_int(v: int | None) -> str:
    return "-" if v is None else str(v)


def _outcome_columns(rows: Sequence[SummaryRow]) -> list[str]:
    seen = {o for r in rows for o in r.outcomes if o != PASSED}
    return sorted(seen, key=outcome_sort_key)


def _table(rows: Sequence[SummaryRow]) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headers, cells and right-alignment flags shared by the text and Markdown renderers."""
    classes = _outcome_columns(rows)
    show_ranks = any(r.ranks is not None for r in rows)
    show_skew = any(r.max_init_skew_ms is not None for r in rows)
    conf = rows[0].confidence if rows else 0.95
    headers = ["test", "variant"]
    right = [False, False]
    if show_ranks:
        headers.append("ranks")
        right.append(True)
    show_failing_ranks = any(r.failed_ranks for r in rows)
    excl = " excl. infra" if any(r.infra for r in rows) else ""
    show_infra = bool(excl)
    headers += ["rounds", "pass", "failing rounds"]
    headers += ["infra"] if show_infra else []
    headers += [_class_header(c) for c in classes]
    headers.append(f"pass rate{excl} [{conf:.0%} CI]")
    right += [True, True, True, *([True] * show_infra), *([True] * len(classes)), False]
    if show_failing_ranks:
        headers.append("failing ranks")
        right.append(False)
    if show_skew:
        headers.append("max init skew ms")
        right.append(True)
    cells = []
    for r in rows:
        line = [r.test, _variant(r.variant)]
        if show_ranks:
            line.append(_opt_int(r.ranks))
        line += [str(r.rounds), str(r.passed), str(r.failed)]
        line += [str(r.infra)] if show_infra else []
        line += [str(r.outcomes.get(c, 0)) for c in classes]
        line.append(_interval(r))
        if show_failing_ranks:
            line.append(failing_ranks_text(r))
        if show_skew:
            line.append(_skew(r))
        cells.append(line)
    return headers, cells, right


def _comparison_table(comps: Sequence[Comparison]) -> tuple[list[str], list[list[str]], list[bool]]:
    show_ranks = any(c.ranks is not None for c in comps)
    headers = ["test"] + (["ranks"] if show_ranks else [])
    headers += [
        "variant A",
        "variant B",
        "fail A",
        "fail B",
        "p (two-sided)",
        "test",
        "significant",
    ]
    right = [False] + ([True] if show_ranks else [])
    right += [False, False, True, True, True, False, False]
    cells = []
    for c in comps:
        line = [c.test] + ([_opt_int(c.ranks)] if show_ranks else [])
        line += [
            _variant(c.variant_a),
            _variant(c.variant_b),
            f"{c.failed_a}/{c.rounds_a}",
            f"{c.failed_b}/{c.rounds_b}",
            format_p(c.p_value),
            c.method_text,
            f"yes (p < {c.alpha:g})" if c.significant else "no",
        ]
        cells.append(line)
    return headers, cells, right


def _aligned(headers: list[str], cells: list[list[str]], right: list[bool]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]

    def fmt(values: list[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(row) for row in cells)]


def render_text(rows: Sequence[SummaryRow], comparisons: Sequence[Comparison] = ()) -> str:
    """Aligned plain-text table (terminal, logs); comparisons, if any, follow as a second table."""
    if not rows:
        return "no pto rounds recorded\n"
    lines = _aligned(*_table(rows))
    lines += ["", *_statements(rows)]
    if comparisons:
        alpha = comparisons[0].alpha
        lines += [
            "",
            f"variant comparisons: failure rates, McNemar's exact test on paired rounds, "
            f"else Fisher's exact test, alpha {alpha:g}",
        ]
        lines += _aligned(*_comparison_table(comparisons))
    return "\n".join(lines) + "\n"


def _md_cell(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _markdown(headers: list[str], cells: list[list[str]], right: list[bool]) -> list[str]:
    out = ["| " + " | ".join(_md_cell(h) for h in headers) + " |"]
    out.append("| " + " | ".join("---:" if r else "---" for r in right) + " |")
    out += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in cells]
    return out


def render_markdown(
    rows: Sequence[SummaryRow], comparisons: Sequence[Comparison] = (), title: str | None = None
) -> str:
    """GitHub-flavoured Markdown (pull requests, ``$GITHUB_STEP_SUMMARY``)."""
    lines = [f"### {title}", ""] if title else []
    if not rows:
        return "\n".join([*lines, "_no pto rounds recorded_"]) + "\n"
    lines += _markdown(*_table(rows))
    lines += ["", *(f"- {_md_cell(s)}" for s in _statements(rows))]
    if comparisons:
        alpha = comparisons[0].alpha
        lines += [
            "",
            f"Variant comparisons — failure rates, McNemar's exact test on paired rounds, "
            f"else Fisher's exact test (two-sided), alpha {alpha:g}:",
            "",
        ]
        lines += _markdown(*_comparison_table(comparisons))
    conf = rows[0].confidence
    lines += [
        "",
        f"_pass rate interval: Wilson score, {conf:.0%}; failing rounds = product rounds "
        "that did not pass; infrastructure outcomes (infra) are outside the pass rate and the "
        "comparisons; >= marks an init skew lower bound (a rank still initialising at "
        "teardown)._",
    ]
    return "\n".join(lines) + "\n"


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def to_json(rows: Sequence[SummaryRow], comparisons: Sequence[Comparison] = ()) -> dict[str, Any]:
    """A JSON-ready dict (schema ``pto-report/1``) for dashboards and other tools."""
    return {
        "schema": JSON_SCHEMA,
        "confidence": rows[0].confidence if rows else 0.95,
        "interval": "wilson",
        "rows": [
            {
                "test": r.test,
                "variant": r.variant,
                "ranks": r.ranks,
                "rounds": r.rounds,
                "passed": r.passed,
                "failed": r.failed,
                "infra": r.infra,
                "product_rounds": r.product_rounds,
                "outcomes": dict(r.outcomes),
                "failed_ranks": {
                    o: {("?" if k is None else str(k)): n for k, n in per.items()}
                    for o, per in r.failed_ranks.items()
                },
                "pass_rate": r.pass_rate,
                "pass_low": r.pass_low,
                "pass_high": r.pass_high,
                "max_init_skew_ms": r.max_init_skew_ms,
                "max_init_skew_partial": r.max_init_skew_partial,
                "fail_rate": r.fail_rate,
                "fail_low": r.fail_low,
                "fail_high": r.fail_high,
                "fail_upper_one_sided": r.fail_upper,
                "fail_interval": "clopper-pearson",
                "statement": statement(r),
                "decision": r.decision,
                "decision_rounds": r.decision_rounds,
                "target_fail_rate": r.target_fail_rate,
            }
            for r in rows
        ],
        "comparisons": [
            {
                "test": c.test,
                "ranks": c.ranks,
                "variant_a": c.variant_a,
                "variant_b": c.variant_b,
                "failed_a": c.failed_a,
                "rounds_a": c.rounds_a,
                "failed_b": c.failed_b,
                "rounds_b": c.rounds_b,
                "test_name": (
                    "mcnemar_exact_two_sided" if c.method == "mcnemar" else "fisher_exact_two_sided"
                ),
                "paired": c.method == "mcnemar",
                "discordant_a": c.only_a,
                "discordant_b": c.only_b,
                "p_value": c.p_value,
                "odds_ratio": _finite(c.odds_ratio),
                "alpha": c.alpha,
                "significant": c.significant,
            }
            for c in comparisons
        ],
    }
