"""The HTML report in a real browser: headless Chromium (Debian's package, installed by
ci/install.sh) opens the page from a file, with no console error, no network request, the
expected sections in the rendered DOM, and a screenshot under the test's tmp dir.

Under CI=true a missing Chromium is an error, elsewhere the tests skip (a developer machine
without apt-get)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_pto.report._cli import EXIT_OK, main
from tests.report._chromium import chromium_binary, open_page
from tests.report._history_input import Round, write_run

pytestmark = pytest.mark.slow

SECTIONS = ("summary", "comparisons", "history", "concentration", "tests")


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if chromium_binary() is not None:
        return
    message = "chromium is not installed (ci/install.sh installs Debian's chromium package)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _page(tmp_path: Path) -> Path:
    """Three runs of two variants; the last run hangs on device 3 (a history, a comparison,
    a concentration and failing rounds: every section has content)."""
    inputs = tmp_path / "junit"
    inputs.mkdir()
    for i in range(3):
        rs = []
        for variant in ("before-fixes", "both-fixes"):
            for k in range(1, 31):
                pair = (2 * (k % 3), 2 * (k % 3) + 1)
                hang = variant == "before-fixes" and i == 2 and pair == (2, 3)
                rs.append(
                    Round(
                        outcome="hang" if hang else "passed",
                        variant=variant,
                        round=k,
                        devices=pair,
                        failed_rank=1 if hang else None,
                        host=f"node{k % 3}",
                        skew_ms=3.0 * k,
                    )
                )
        write_run(
            inputs / f"run{i}.xml", rs, commit=f"{i:040x}", timestamp=f"2026-05-0{i + 1}T00:00:00Z"
        )
    page = tmp_path / "report.html"
    assert main(["--format", "html", "--output", str(page), str(inputs)]) == EXIT_OK
    return page


def test_the_page_renders_without_errors_or_network(tmp_path: Path) -> None:
    page = _page(tmp_path)
    result = open_page(page, tmp_path / "profile")
    assert result.console_errors == []
    assert result.requests == []  # self-contained: nothing fetched
    dom = result.dom
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom, section
    assert 'data-pto-ready="1"' in dom  # the inline script ran to its end
    assert "hang concentrated on device 3" in dom
    assert "changed at run 3" in dom
    assert dom.count('<details id="t1-f') == 10  # the 10 failing rounds, each with its text
    shot = tmp_path / "report.png"
    shot.write_bytes(result.screenshot)
    assert result.screenshot.startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 20_000


def test_the_checker_sees_console_errors_and_requests(tmp_path: Path) -> None:
    """The two checks above can fail: a page with a console error, an exception and a fetch."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><p>x</p><script>"
        'console.error("deliberate error");'
        'fetch("http://127.0.0.1:9/nothing").catch(function () {});'
        "undefinedFunction();"
        "</script></body></html>"
    )
    result = open_page(bad, tmp_path / "profile")
    assert any("deliberate error" in e for e in result.console_errors)
    assert any("undefinedFunction" in e for e in result.console_errors)
    assert result.requests == ["http://127.0.0.1:9/nothing"]
