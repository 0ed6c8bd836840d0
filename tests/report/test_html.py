"""pto-report --format html: the page's content (same statistics as the text report), its
bounds, escaping, the device heat map, and the GitHub step summary's link to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_pto.report._cli import EXIT_OK, main
from tests.report._history_input import Round, rounds, write_run
from tests.report.conftest import MakeRun


def _html(tmp_path: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> str:
    page = tmp_path / "report.html"
    assert main(["--format", "html", "--output", str(page), *extra, *map(str, inputs)]) == EXIT_OK
    return page.read_text()


def test_page_has_the_text_reports_numbers(
    make_run: MakeRun, incident_plan: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = make_run(incident_plan)
    page = _html(tmp_path, junit)
    assert main([str(junit)]) == EXIT_OK
    text = capsys.readouterr().out
    # the same intervals and p-values as the text table (Wilson, Clopper-Pearson, Fisher)
    assert "50.0% [33.2%, 66.8%]" in text
    assert "50.0 % [33.2 %, 66.8 %]" in page
    assert "5.8e-06" in text and "5.8e-06" in page
    # each card repeats its own variant tests
    assert "before-fixes 15/30 vs both-fixes 0/30: p = 5.8e-06 (Fisher exact)" in page
    assert "15/30 rounds failed: failure rate 50.0 %, 95 % interval [31.3 %, 68.7 %]" in page
    for section in ("summary", "comparisons", "history", "concentration", "tests"):
        assert f'<section id="{section}">' in page
    # stacked bar segments with their numbers
    assert "sched_error_code=100: 15 of 30 rounds (50.0 %)" in page
    assert "stream_sync_timeout: 1 of 30 rounds (3.3 %)" in page
    # histograms of init skew (10 ms per round in the stand-in) and duration
    assert page.count('aria-label="distribution (ms)"') == 3
    assert page.count('aria-label="distribution (s)"') == 3
    # failing rounds link to their failure text and rank
    assert re.search(r'<a href="#t1-f1">round 2: sched_error_code=100, rank 1, device 1', page)
    assert '<details id="t1-f1">' in page
    assert "stand-in failure of round 2" in page


def test_self_contained(make_run: MakeRun, incident_plan: dict, tmp_path: Path) -> None:
    page = _html(tmp_path, make_run(incident_plan))
    assert page.startswith("<!DOCTYPE html>")
    # nothing that a browser would fetch: no src/href to another place, no stylesheet links
    assert not re.search(r"\bsrc=", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    hrefs = set(re.findall(r'href="([^"]*)"', page))
    assert hrefs and all(h.startswith("#") for h in hrefs)


def test_failing_rounds_are_bounded_and_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script> & more\n" + "x" * 5000
    rs = rounds(200, failing=range(1, 201), outcome="hang", text=evil)
    page = _html(tmp_path, write_run(tmp_path / "run.xml", rs))
    assert page.count('<details id="t1-f') == 25
    assert "175 more failing rounds not listed (the first 25 are)" in page
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    # the reader keeps 4000 characters, the page shows 1500 of them
    assert "more characters)" in page
    assert len(page) < 400_000


def test_heat_map_above_eight_devices(tmp_path: Path) -> None:
    rs = [
        Round(
            outcome="hang" if k % 4 == 0 else "passed",
            round=k,
            devices=(k % 12, (k + 1) % 12),
            failed_rank=0 if k % 4 == 0 else None,
        )
        for k in range(1, 97)
    ]
    page = _html(tmp_path, write_run(tmp_path / "run.xml", rs))
    assert 'aria-label="failures by device"' in page
    # one cell per device for the one failure class; hangs only on devices 0, 4, 8
    assert page.count("<title>device ") == 12
    assert "device 4, hang: 8/16 rounds" in page
    assert "device 1, hang: 0/16 rounds" in page
    few = [Round(round=k, devices=(0, 1)) for k in range(1, 5)]
    small = _html(tmp_path, write_run(tmp_path / "few.xml", few))
    assert 'aria-label="failures by device"' not in small  # a table for 2 devices


def test_step_summary_keeps_the_table_and_links_the_page(
    make_run: MakeRun,
    incident_plan: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    junit = make_run(incident_plan)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "org/repo")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    _html(tmp_path, junit, extra=("--github",))
    md = summary.read_text()
    assert "| test | variant |" in md  # the Markdown table stays
    assert (
        "HTML report with plots and history: [`report.html`]"
        "(https://github.com/org/repo/actions/runs/42#artifacts)"
    ) in md
    _html(tmp_path, junit, extra=("--github", "--artifact-url", "https://x.test/a/1"))
    assert "[`report.html`](https://x.test/a/1)" in summary.read_text()
    capsys.readouterr()
