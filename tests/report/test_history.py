"""History over runs: runs from pto.commit/pto.timestamp, the change point (the variant test,
Bonferroni over the splits), new failure classes; in the text and Markdown reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_pto.report._cli import EXIT_OK, main
from pytest_pto.report._history import histories, read_runs
from tests.report._history_input import Round, rounds, write_run


def _history(tmp_path: Path, per_run: list[list[Round]]) -> list[Path]:
    """One file per run, written in reverse time order (the order must come from the stamps)."""
    files = []
    for i, rs in enumerate(per_run):
        stamp = f"2026-03-{10 + i:02d}T08:00:00Z"
        name = f"{len(per_run) - i:02d}.xml"  # file names sort newest first
        files.append(write_run(tmp_path / name, rs, commit=f"c{i}" + "0" * 38, timestamp=stamp))
    return files


def test_runs_are_ordered_by_timestamp_and_a_commit_is_one_run(tmp_path: Path) -> None:
    files = _history(tmp_path, [rounds(5), rounds(5), rounds(5)])
    # a second CI job on the newest commit: same pto.commit, one run with both files' rounds
    write_run(
        tmp_path / "00-job2.xml",
        rounds(3),
        commit="c2" + "0" * 38,
        timestamp="2026-03-12T09:00:00Z",
    )
    _, runs = read_runs([tmp_path])
    assert [r.commit[:2] for r in runs if r.commit] == ["c0", "c1", "c2"]
    assert [len(r.records) for r in runs] == [5, 5, 8]
    assert runs[2].timestamp == "2026-03-12T08:00:00Z"  # the earliest of its files
    assert len(runs[2].files) == 2 and files[2] in runs[2].files
    # files without pto.commit are runs of their own, after the dated ones, in input order
    write_run(tmp_path / "zz-undated.xml", rounds(2))
    _, runs = read_runs([tmp_path])
    assert runs[-1].commit is None and runs[-1].files[0].name == "zz-undated.xml"


def test_change_point_and_new_failure_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = rounds(40)
    flaky = rounds(40, failing=range(1, 41, 2), outcome="hang")  # 20/40
    files = _history(tmp_path, [clean, clean, clean, flaky, flaky])
    _, runs = read_runs(files)
    (h,) = histories(runs)
    assert h.points == [(0, 40)] * 3 + [(20, 40)] * 2
    assert h.change is not None and h.change.significant
    assert h.change.run == 3  # the fourth run, the first flaky one
    assert h.change.comparison.method == "fisher"  # runs are unpaired samples
    assert h.change.candidates == 4
    assert h.change.p_adjusted == pytest.approx(4 * h.change.comparison.p_value, rel=1e-9, abs=0)
    # baseline: every run but the last, so run 4's hangs are known by run 5
    assert h.new_classes == {} and h.known_classes == {"hang": 20}

    assert main([str(tmp_path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "history: failure rate over runs" in out
    assert "0/40 0/40 0/40 20/40 20/40" in out
    assert "changed at run 4 (c30000000000 2026-03-13T08:00:00Z): 0/120 (0.0 %) before" in out
    assert "x 4 candidate runs (Bonferroni)" in out
    assert "new failure classes: none; also on the baseline: hang (20)" in out

    # --baseline-runs 3: the three clean runs are the baseline, the hangs of runs 4-5 are new
    assert main(["--baseline-runs", "3", "--format", "markdown", str(tmp_path)]) == EXIT_OK
    md = capsys.readouterr().out
    assert "#### History: failure rate over runs" in md
    assert "baseline: runs 1-3" in md
    assert "new failure classes: hang (40); also on the baseline: none" in md


def test_a_stable_rate_has_no_change(tmp_path: Path) -> None:
    # 2/40 in every run: the best split is still tried, but not significant after Bonferroni
    per_run = [rounds(40, failing=(3 + i, 20 + i)) for i in range(6)]
    _, runs = read_runs(_history(tmp_path, per_run))
    (h,) = histories(runs)
    assert h.change is not None and not h.change.significant
    assert h.change.p_adjusted == 1.0 or h.change.p_adjusted > 0.05
    assert h.new_classes == {} and h.known_classes == {"hang": 2}


def test_the_best_split_is_corrected_for_the_splits_tried(tmp_path: Path) -> None:
    """0/120 then 4/80: p = 0.024 for that split alone, but it is the best of 4 splits tried,
    so 4 x 0.024 = 0.098 is not a significant change."""
    per_run = [
        rounds(40),
        rounds(40),
        rounds(40),
        rounds(40, failing=(1, 2)),
        rounds(40, failing=(3, 4)),
    ]
    _, runs = read_runs(_history(tmp_path, per_run))
    (h,) = histories(runs)
    assert h.change is not None and h.change.run == 3
    assert h.change.comparison.p_value == pytest.approx(0.02445, abs=1e-4)
    assert h.change.comparison.significant  # on its own it would be
    assert h.change.p_adjusted == pytest.approx(4 * h.change.comparison.p_value, rel=1e-9)
    assert not h.change.significant


def test_one_run_has_no_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _history(tmp_path, [rounds(10, failing=(2,))])
    _, runs = read_runs(files)
    assert histories(runs) == []
    assert main([str(files[0])]) == EXIT_OK
    assert "history" not in capsys.readouterr().out
