"""Summary rows -> the three renderings of the round table: aligned text, Markdown, JSON.

The rendering half of the round table (the numbers are :mod:`pytest_pto.report._aggregate`'s),
shared by the plugin's terminal summary, ``pto-report`` and the GitHub step summary, so a table
looks the same wherever it is printed: test, variant, ranks, rounds, pass, failing rounds,
``infra``, one column per outcome class that occurred (in the vocabulary's order;
``device_unavailable``'s marked ``(infra)``), the pass rate with its Wilson interval, the
failing ranks per class (``sched_error_code=100: rank 1 (12)``) and the largest init skew
(``>=`` for a lower bound). :func:`statement` says what the rounds prove in one sentence
("30 clean rounds: failure rate below 9.5 % (95 %)", and the ``--pto-rounds=auto``
decision).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pytest_pto._vocabulary import PASSED, is_infra, outcome_sort_key, round_label
from pytest_pto.report._aggregate import Comparison, SummaryRow

__all__ = [
    "JSON_SCHEMA",
    "failing_ranks_text",
    "format_p",
    "render_markdown",
    "render_text",
    "statement",
    "to_json",
]

JSON_SCHEMA = "pto-report/1"


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
        name = round_label(r.test, r.variant)
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
