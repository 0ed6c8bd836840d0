"""The round table: summarising (report._aggregate) and its three renderings (report._render)."""

from __future__ import annotations

import json

import pytest

from pytest_pto._vocabulary import RoundRecord
from pytest_pto.report._aggregate import compare, summarize
from pytest_pto.report._render import format_p, render_markdown, render_text, to_json


def _records() -> list[RoundRecord]:
    recs = []
    for k in range(1, 31):
        recs.append(
            RoundRecord("t[2]", "before-fixes", k, "passed" if k % 2 else "sched_error_code=100", 2)
        )
        recs.append(
            RoundRecord("t[2]", "latch-fix", k, "stream_sync_timeout" if k == 4 else "passed", 2)
        )
        recs.append(RoundRecord("t[2]", "both-fixes", k, "passed", 2, init_skew_ms=float(k)))
    recs.append(RoundRecord("u", None, 1, "orch_error_code=4", rank=0))
    recs.append(RoundRecord("u", None, 2, "sched_error_code=101", rank=0))
    recs.append(RoundRecord("u", None, 3, "failed"))
    recs.append(RoundRecord("u", None, 4, "some_future_class"))
    return recs


def test_summarize_counts_and_order() -> None:
    rows = summarize(_records())
    assert [(r.test, r.variant) for r in rows] == [
        ("t[2]", "before-fixes"),
        ("t[2]", "latch-fix"),
        ("t[2]", "both-fixes"),
        ("u", None),
    ]
    before, latch, both, u = rows
    assert (before.rounds, before.passed, before.failed) == (30, 15, 15)
    assert before.outcomes == {"passed": 15, "sched_error_code=100": 15}
    assert latch.outcomes == {"passed": 29, "stream_sync_timeout": 1}
    assert both.max_init_skew_ms == 30.0 and before.max_init_skew_ms is None
    assert (round(before.pass_low, 4), round(before.pass_high, 4)) == (0.3315, 0.6685)
    assert before.pass_rate == 0.5 and both.fail_rate == 0.0
    # docs/design.md section 4 order, code families by code, unknown classes last
    assert list(u.outcomes) == [
        "failed",
        "sched_error_code=101",
        "orch_error_code=4",
        "some_future_class",
    ]
    assert u.failed == 4 and u.passed == 0


def test_text_columns_are_aligned_and_only_for_occurring_classes() -> None:
    rows = summarize(r for r in _records() if r.test == "t[2]")
    text = render_text(rows)
    lines = text.splitlines()
    header = lines[0]
    assert header.split()[:7] == ["test", "variant", "ranks", "rounds", "pass", "failing", "rounds"]
    assert "sched_error_code=100" in header and "stream_sync_timeout" in header
    assert "hang" not in header and "failed" not in header
    # numbers are right-aligned under their header
    col_end = header.index("sched_error_code=100") + len("sched_error_code=100")
    for line in lines[2:5]:
        assert line[col_end - 1].isdigit() and line[col_end] == " "
    assert lines[1].startswith("----")
    assert render_text([]) == "no pto rounds recorded\n"


def test_compare_pairs_and_baseline() -> None:
    rows = summarize(_records())
    comps = compare(rows)
    pairs = [(c.variant_a, c.variant_b) for c in comps]
    assert pairs == [
        ("before-fixes", "latch-fix"),
        ("before-fixes", "both-fixes"),
        ("latch-fix", "both-fixes"),
    ]  # "u" has one variant: nothing to compare
    by_pair = {(c.variant_a, c.variant_b): c for c in comps}
    assert by_pair[("before-fixes", "both-fixes")].significant
    assert not by_pair[("latch-fix", "both-fixes")].significant
    base = compare(rows, baseline="both-fixes", alpha=0.01)
    assert [(c.variant_a, c.variant_b) for c in base] == [
        ("both-fixes", "before-fixes"),
        ("both-fixes", "latch-fix"),
    ]
    assert base[0].alpha == 0.01
    with pytest.raises(ValueError, match="alpha"):
        compare(rows, alpha=0)
    text = render_text(rows, comps)
    assert "Fisher's exact test" in text and "5.8e-06" in text


def test_markdown_and_json() -> None:
    rows = summarize(r for r in _records() if r.test == "t[2]")
    comps = compare(rows)
    md = render_markdown(rows, comps, title="incident")
    assert md.startswith(
        "### incident\n\n| test | variant | ranks | rounds | pass | failing rounds |"
    )
    assert "| --- | --- | ---: | ---: | ---: | ---: |" in md
    assert "| t[2] | before-fixes | 2 | 30 | 15 | 15 | 15 | 0 | 50.0% [33.2%, 66.8%] |" in md
    assert "Wilson" in md
    pipe = summarize([RoundRecord("t[a|b]", None, 1, "passed")])
    assert "t[a\\|b]" in render_markdown(pipe)
    data = json.loads(json.dumps(to_json(rows, comps)))  # JSON-serialisable (no inf/nan)
    assert data["rows"][0]["outcomes"] == {"passed": 15, "sched_error_code=100": 15}
    assert data["comparisons"][1]["odds_ratio"] is None  # infinite odds ratio -> null
    assert data["comparisons"][1]["significant"] is True


def test_format_p() -> None:
    assert format_p(1.0) == "1"
    assert format_p(0.4857) == "0.49"
    assert format_p(0.0123) == "0.012"
    assert format_p(5.832e-06) == "5.8e-06"


def test_table_columns_cover_exactly_the_plugins_outcome_classes() -> None:
    """pto-report and the plugin share one column order; its fixed classes are the plugin's."""
    from pytest_pto._vocabulary import OUTCOMES
    from pytest_pto.outcomes import FIXED_OUTCOMES

    assert tuple(o for o in OUTCOMES if not o.endswith("=N")) == FIXED_OUTCOMES


def test_infra_outcomes_stay_out_of_the_pass_rate_and_failing_ranks_are_named() -> None:
    recs = [
        RoundRecord("t[2]", "v", 1, "passed", ranks=2, init_skew_ms=5.0),
        RoundRecord("t[2]", "v", 2, "sched_error_code=100", ranks=2, rank=1, init_skew_ms=5.0),
        RoundRecord("t[2]", "v", 3, "sched_error_code=100", ranks=2, rank=1),
        RoundRecord("t[2]", "v", 4, "sched_error_code=100", ranks=2, rank=0),
        RoundRecord("t[2]", "v", 5, "failed", ranks=2),
        RoundRecord("t[2]", "v", 6, "device_unavailable", ranks=2),
        RoundRecord("t[2]", "v", 7, "device_unavailable", ranks=2),
    ]
    (row,) = summarize(recs)
    assert (row.rounds, row.passed, row.failed, row.infra) == (7, 1, 4, 2)
    assert row.pass_rate == 1 / 5  # over the 5 product rounds, not 1/7
    assert row.failed_ranks == {
        "failed": {None: 1},
        "sched_error_code=100": {1: 2, 0: 1},
    }
    text = render_text([row])
    header, _, line, _, said = text.splitlines()
    assert said == (
        "t[2] [v] (ranks 2): 4/5 rounds failed: failure rate 80.0 %, 95 % interval "
        "[28.4 %, 99.5 %] (Clopper-Pearson)"
    )
    assert "failing rounds" in header and "fail " not in header + " "
    assert "device_unavailable (infra)" in header
    assert "pass rate excl. infra [95% CI]" in header
    assert "20.0% [" in line
    assert "failed: rank ? (1); sched_error_code=100: rank 1 (2), rank 0 (1)" in line
    data = to_json([row])["rows"][0]
    assert data["infra"] == 2 and data["product_rounds"] == 5 and data["failed"] == 4
    assert data["failed_ranks"]["sched_error_code=100"] == {"1": 2, "0": 1}
    # a table without infra rounds keeps the plain header
    assert "excl. infra" not in render_text(summarize(recs[:2]))


def test_init_skew_lower_bound_is_marked() -> None:
    recs = [
        RoundRecord("t", None, 1, "passed", init_skew_ms=40.0),
        RoundRecord(
            "t", None, 2, "sched_error_code=100", rank=0, init_skew_ms=900.0, init_skew_partial=True
        ),
    ]
    (row,) = summarize(recs)
    assert row.max_init_skew_ms == 900.0 and row.max_init_skew_partial
    assert render_text([row]).splitlines()[2].endswith(">=900.0")
    (exact,) = summarize(recs[:1])
    assert render_text([exact]).splitlines()[2].endswith(" 40.0")
    assert to_json([row])["rows"][0]["max_init_skew_partial"] is True
