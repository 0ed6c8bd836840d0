"""GitHub Actions annotation escaping and step-summary append."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pytest_pto._vocabulary import RoundRecord
from pytest_pto.report._github import (
    annotation,
    append_step_summary,
    emit_annotations,
    escape_data,
    escape_property,
    failure_annotations,
    in_github_actions,
)


def test_escaping_rules() -> None:
    # % first (so an existing "%0A" in text is not decoded as a newline), then CR, LF
    assert escape_data("50% a\r\nb %0A") == "50%25 a%0D%0Ab %250A"
    assert escape_data("a:b,c") == "a:b,c"  # ':' and ',' are fine in the message
    assert escape_property("x: y, z%\n") == "x%3A y%2C z%25%0A"


def test_annotation_line() -> None:
    line = annotation("boom\nrank 1", file="tests/t.py", line=12, title="hang, rank 1: round 3")
    assert line == "::error file=tests/t.py,line=12,title=hang%2C rank 1%3A round 3::boom%0Arank 1"
    assert annotation("m") == "::error::m"
    assert annotation("m", level="warning", line=4) == "::warning::m"  # line needs a file
    with pytest.raises(ValueError, match="level"):
        annotation("m", level="fatal")


def test_failure_annotations_name_test_round_rank_outcome() -> None:
    recs = [
        RoundRecord("tests/t.py::test_a[2]", "before-fixes", 1, "passed"),
        RoundRecord(
            "tests/t.py::test_a[2]",
            "before-fixes",
            2,
            "sched_error_code=100",
            rank=1,
            message="rank 1: SCHEDULER_TIMEOUT (code 100, S1, stuck task 3)",
            file="tests/t.py",
            line=7,
        ),
        RoundRecord("tests/t.py::test_b", None, 5, "hang"),
    ]
    lines = failure_annotations(recs)
    assert len(lines) == 2
    assert lines[0] == (
        "::error file=tests/t.py,line=7,"
        "title=pto sched_error_code=100%2C rank 1%2C round 2 [before-fixes]::"
        "tests/t.py::test_a[2] [before-fixes] round 2: sched_error_code=100 on rank 1"
        "%0Arank 1: SCHEDULER_TIMEOUT (code 100, S1, stuck task 3)"
    )
    assert lines[1] == (
        "::error title=pto hang%2C rank unknown%2C round 5::"
        "tests/t.py::test_b round 5: hang on rank unknown"
    )
    out = io.StringIO()
    assert emit_annotations(recs * 3, out, max_annotations=4) == 4
    text = out.getvalue().splitlines()
    assert len(text) == 5 and text[-1] == "::notice::2 more failed pto rounds not annotated"


def test_step_summary_appends(tmp_path: Path) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("# from an earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTIONS": "true"}
    assert in_github_actions(env)
    assert append_step_summary("| a |\n| --- |", environ=env) == summary
    assert append_step_summary("second", environ=env) == summary
    assert summary.read_text() == "# from an earlier step\n\n| a |\n| --- |\n\nsecond\n"
    assert append_step_summary("x", environ={}) is None
    assert not in_github_actions({"GITHUB_ACTIONS": "false"})
    other = tmp_path / "explicit.md"
    assert append_step_summary("y", path=other, environ={}) == other
