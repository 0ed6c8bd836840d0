"""pto-report on JUnit files of stand-in runs (a test double of the plugin's JUnit writer,
see conftest.py), merged runs, malformed and empty input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Properties, Property, TestCase, TestSuite

from pytest_pto.report._cli import EXIT_BAD_INPUT, EXIT_FAILURES, EXIT_NO_DATA, EXIT_OK, main
from tests.report.conftest import MakeRun

TEST = "test_incident.py::test_allreduce[2]"


def _json_report(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["--format", "json", *argv]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def _rows(report: dict) -> dict[str, dict]:
    return {r["variant"]: r for r in report["rows"]}


def test_text_table_from_a_stand_in_run(
    make_run: MakeRun, incident_plan: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = make_run(incident_plan)
    assert main([str(junit)]) == EXIT_OK
    out, err = capsys.readouterr()
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:7] == ["test", "variant", "ranks", "rounds", "pass", "failing", "rounds"]
    assert "sched_error_code=100" in header and "stream_sync_timeout" in header
    assert "failed" not in header  # only outcome classes that occurred get a column
    before = next(line for line in lines if "before-fixes" in line and "round" not in line)
    assert before.split()[:8] == [TEST, "before-fixes", "2", "30", "15", "15", "15", "0"]
    assert "50.0% [33.2%, 66.8%]" in before
    both = next(line for line in lines[2:] if line.split()[1] == "both-fixes")
    assert "100.0% [88.6%, 100.0%]" in both
    # the comparison table: 15/30 vs 0/30 is significant, 1/30 vs 0/30 is not
    comp = next(line for line in lines if "before-fixes" in line and "both-fixes" in line)
    assert "15/30" in comp and "0/30" in comp and "5.8e-06" in comp and "yes" in comp
    comp = next(line for line in lines if "latch-fix" in line and "both-fixes" in line)
    assert comp.rstrip().endswith("no")
    # the non-distributed test is counted as ignored, on stderr
    assert "90 pto rounds" in err and "1 testcases without pto.outcome ignored" in err


def test_json_rows_and_properties(
    make_run: MakeRun, incident_plan: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = make_run(incident_plan)
    report = _json_report(capsys, str(junit))
    assert report["schema"] == "pto-report/1"
    rows = _rows(report)
    assert list(rows) == ["before-fixes", "latch-fix", "both-fixes"]  # first-seen order
    assert rows["before-fixes"]["outcomes"] == {"passed": 15, "sched_error_code=100": 15}
    assert rows["latch-fix"]["outcomes"] == {"passed": 29, "stream_sync_timeout": 1}
    assert rows["before-fixes"]["max_init_skew_ms"] == 300.0
    assert all(r["test"] == TEST and r["ranks"] == 2 for r in rows.values())
    comps = {(c["variant_a"], c["variant_b"]): c for c in report["comparisons"]}
    assert set(comps) == {
        ("before-fixes", "latch-fix"),
        ("before-fixes", "both-fixes"),
        ("latch-fix", "both-fixes"),
    }
    assert comps[("before-fixes", "both-fixes")]["p_value"] == pytest.approx(6 / 1028783)


def test_runs_from_several_processes_and_jobs_accumulate(
    make_run: MakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    # job 1: an xdist session (2 workers, the controller writes the file)
    first = make_run({"before-fixes": ["sched_error_code=100", "passed"] * 3}, xdist=2)
    # job 2: a plain session of the same test and variant, plus a second variant
    second = make_run(
        {"before-fixes": ["passed"] * 4, "both-fixes": ["passed"] * 4}, family="xunit1"
    )
    report = _json_report(capsys, str(first), str(second))
    rows = _rows(report)
    assert rows["before-fixes"]["rounds"] == 10
    assert rows["before-fixes"]["outcomes"] == {"passed": 7, "sched_error_code=100": 3}
    assert rows["both-fixes"]["rounds"] == 4
    # xunit1 (file= attribute) and xunit2 files name the test the same way
    assert {r["test"] for r in report["rows"]} == {TEST}


def test_directory_input_and_rank_counts_stay_apart(
    make_run: MakeRun, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    make_run({"both-fixes": ["passed", "rank_crashed"]}, ranks=(2, 4))
    report = _json_report(capsys, str(pytester.path))
    keys = sorted((r["test"], r["ranks"]) for r in report["rows"])
    assert keys == [
        ("test_incident.py::test_allreduce[2]", 2),
        ("test_incident.py::test_allreduce[4]", 4),
    ]


def _suite(name: str, cases: list[TestCase]) -> TestSuite:
    suite = TestSuite(name)
    for case in cases:
        suite.add_testcase(case)
    return suite


def _case(
    name: str, props: dict[str, str], failed: str | None = None, cls: str = "tests.test_demo"
) -> TestCase:
    case = TestCase(name, classname=cls, time=0.25)
    if props:
        plist = Properties()
        for key, value in props.items():
            plist.add_property(Property(key, value))
        case.append(plist)
    if failed:
        case.result = [Failure(failed)]
    return case


def test_several_and_nested_testsuites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def pto(k: int, outcome: str) -> TestCase:
        props = {"pto.outcome": outcome, "pto.round": str(k), "pto.variant": "v1"}
        fail = None if outcome == "passed" else f"{outcome}: rank 0"
        return _case(f"test_a[v1-round-{k}]", props, fail)

    outer = _suite("outer", [pto(1, "passed")])
    outer.add_testsuite(_suite("inner", [pto(2, "hang"), _case("test_plain", {})]))
    xml = JUnitXml("all")
    xml.add_testsuite(outer)
    in_class = _case("test_a[v1-round-1]", {"pto.outcome": "passed", "pto.variant": "v1"}, None,
                     "tests.test_demo.TestGroup")  # fmt: skip
    xml.add_testsuite(_suite("second", [pto(3, "passed"), in_class]))
    path = tmp_path / "nested.xml"
    xml.write(str(path))
    report = _json_report(capsys, str(path))
    row, in_class = report["rows"]
    # the module is not on disk here: its path is rebuilt from the classname
    assert row["test"] == "tests/test_demo.py::test_a"
    assert row["outcomes"] == {"passed": 2, "hang": 1}
    assert in_class["test"] == "tests/test_demo.py::TestGroup::test_a"
    assert in_class["rounds"] == 1


def test_markdown_output_file(
    make_run: MakeRun, incident_plan: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = make_run(incident_plan)
    out = tmp_path / "table.md"
    argv = ["--format", "markdown", "--baseline", "before-fixes", "-o", str(out), str(junit)]
    assert main(argv) == EXIT_OK
    assert capsys.readouterr().out == ""
    text = out.read_text()
    assert "| test | variant | ranks | rounds | pass | failing rounds |" in text
    assert (
        "| before-fixes | both-fixes | 15/30 | 0/30 | 5.8e-06 | Fisher exact | yes (p < 0.05) |"
    ) in text
    assert "latch-fix | both-fixes" not in text  # --baseline: only comparisons against it


def test_unknown_baseline(
    make_run: MakeRun, incident_plan: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = make_run(incident_plan)
    assert main(["--baseline", "nope", str(junit)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--baseline nope" in err and "before-fixes" in err


def test_malformed_xml_is_one_clear_error_and_writes_nothing(
    make_run: MakeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make_run({"v": ["passed"]})
    bad = tmp_path / "broken.xml"
    bad.write_text('<testsuites><testsuite name="x"><testcase name="a"></testsuite>')
    out = tmp_path / "report.md"
    assert main(["-o", str(out), str(good), str(bad)]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"pto-report: error: {bad}: not well-formed XML: ")
    assert "line 1" in lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]  # no temp file left either


def test_not_junit_and_bad_property(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "page.xml"
    html.write_text("<html><body/></html>")
    assert main([str(html)]) == EXIT_BAD_INPUT
    assert "root element must be <testsuites> or <testsuite>" in capsys.readouterr().err

    xml = JUnitXml()
    xml.add_testsuite(
        _suite("s", [_case("t[round-1]", {"pto.outcome": "passed", "pto.round": "x"})])
    )
    path = tmp_path / "badprop.xml"
    xml.write(str(path))
    assert main([str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{path}: testcase tests.test_demo::t[round-1]" in err
    assert "pto.round='x': must be an integer" in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.xml")]) == EXIT_BAD_INPUT
    assert "nope.xml: no such file or directory" in capsys.readouterr().err


def test_empty_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # no file arguments at all: usage error from argparse
    assert main([]) == EXIT_BAD_INPUT
    capsys.readouterr()
    # a directory without XML files
    empty = tmp_path / "artifacts"
    empty.mkdir()
    out = tmp_path / "r.txt"
    assert main(["-o", str(out), str(empty)]) == EXIT_NO_DATA
    assert "no JUnit XML files found" in capsys.readouterr().err
    # JUnit without any pto round
    xml = JUnitXml()
    xml.add_testsuite(_suite("s", [_case("test_plain", {})]))
    path = tmp_path / "plain.xml"
    xml.write(str(path))
    assert main(["-o", str(out), str(path)]) == EXIT_NO_DATA
    err = capsys.readouterr().err
    assert "1 testcases without pto.outcome ignored" in err and "no pto rounds" in err
    assert not out.exists()


def test_fail_on_failure(make_run: MakeRun, capsys: pytest.CaptureFixture[str]) -> None:
    ok = make_run({"v": ["passed", "passed"]})
    assert main(["--fail-on-failure", str(ok)]) == EXIT_OK
    bad = make_run({"v": ["passed", "init_timeout"]})
    assert main(["--fail-on-failure", str(bad)]) == EXIT_FAILURES
    capsys.readouterr()


def test_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for needle in ("Wilson", "Fisher's exact test", "pto.outcome", "exit status", "--baseline"):
        assert needle in out


def test_github_mode(
    make_run: MakeRun,
    incident_plan: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    junit = make_run(incident_plan, family="xunit1")
    assert main(["--github", "--format", "markdown", "--max-annotations", "5", str(junit)]) == 0
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    assert len(errors) == 5
    first = errors[0]
    assert first.startswith("::error file=test_incident.py,line=")
    assert "title=pto sched_error_code=100%2C rank 1%2C round 2 [before-fixes]::" in first
    assert "test_incident.py::test_allreduce[2] [before-fixes] round 2: " in first
    assert "sched_error_code=100 on rank 1%0A" in first
    assert "::notice::11 more failed pto rounds not annotated" in out
    text = summary.read_text()
    assert text.startswith("earlier step\n")
    assert "### pytest-pto rounds" in text and "| before-fixes | both-fixes | 15/30 |" in text


def test_github_step_summary_that_cannot_be_written_is_a_warning(
    make_run: MakeRun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    junit = make_run({"v": ["passed", "hang"]})
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path))  # a directory: open() fails
    assert main(["--github", str(junit)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert "GITHUB_STEP_SUMMARY: cannot append:" in err and "Traceback" not in err
    assert "::error" in out and "rounds" in out  # annotations and the table still come out
