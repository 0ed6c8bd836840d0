"""pto-report inputs: FIFOs never hang, files count once, big valid files read, attacks refused.

These run with lxml installed (a dev extra): junitparser then uses lxml, whose default parser
refuses text nodes over 10 MB; pto-report must not depend on which library is present.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pytest_pto.report._cli import EXIT_BAD_INPUT, EXIT_NO_DATA, EXIT_OK, main
from pytest_pto.report._junit_read import read_junit_files
from tests.report.conftest import MakeRun

ROUND = (
    '<testcase classname="tests.test_x" name="test_a[round-{k}]" time="0.1">'
    '<properties><property name="pto.outcome" value="{outcome}"/>'
    '<property name="pto.round" value="{k}"/></properties>{body}</testcase>'
)


def _junit(path: Path, rounds: list[str], body: str = "") -> Path:
    cases = "".join(ROUND.format(k=k, outcome=o, body=body) for k, o in enumerate(rounds, start=1))
    path.write_text(f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')
    return path


def test_fifo_input_is_refused_without_hanging(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "junit.xml"
    os.mkfifo(fifo)  # nobody will ever write it: reading it the usual way blocks forever
    good = _junit(tmp_path / "good.xml", ["passed"])
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(main([str(good), str(fifo)])), daemon=True)
    t.start()
    t.join(timeout=60)
    assert done == [EXIT_BAD_INPUT], "pto-report hung on a FIFO"
    err = capsys.readouterr().err
    assert f"{fifo}: is a FIFO; pto-report reads only regular JUnit XML files" in err


def test_directory_walk_skips_fifos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "stream.xml")
    _junit(tmp_path / "good.xml", ["passed", "hang"])
    assert main(["--format", "json", str(tmp_path)]) == EXIT_OK
    assert "1 file(s), 2 pto rounds" in capsys.readouterr().err


def test_a_file_named_twice_or_through_a_symlink_counts_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _junit(tmp_path / "run.xml", ["passed", "hang", "passed"])
    link = tmp_path / "latest.xml"
    link.symlink_to(good)
    data = read_junit_files([good, good, link, tmp_path])
    assert len(data.records) == 3
    assert data.files == [good]
    assert len(data.duplicates) == 4  # named again, the link, and both again in the directory
    assert main([str(good), str(link)]) == EXIT_OK
    captured = capsys.readouterr()
    assert "1 file(s), 3 pto rounds; 1 file(s) named again and read once" in captured.err
    row = next(line for line in captured.out.splitlines() if "test_a" in line)
    assert row.split()[2] == "3"  # rounds, not 6


def test_a_valid_file_with_a_huge_text_node_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("lxml")  # the dev extras install it: this is the case that broke
    big = "x" * (11 * 1024 * 1024)  # lxml's default parser stops at 10 MB text nodes
    path = _junit(tmp_path / "big.xml", ["hang"], body=f"<system-out>{big}</system-out>")
    other = _junit(tmp_path / "other.xml", ["passed"])
    assert main([str(path), str(other)]) == EXIT_OK
    assert "2 file(s), 2 pto rounds" in capsys.readouterr().err


def test_entity_expansion_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entities = ['<!ENTITY l0 "lol">']
    entities += [f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)]
    lol = "".join(entities)  # &l9; would expand to 10**9 "lol"s
    path = tmp_path / "bomb.xml"
    path.write_text(
        f"<?xml version='1.0'?><!DOCTYPE testsuites [{lol}]>"
        '<testsuites><testsuite name="s"><testcase name="t[round-1]"><properties>'
        '<property name="pto.outcome" value="&l9;"/></properties></testcase>'
        "</testsuite></testsuites>"
    )
    assert main([str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{path}: refused: a DTD (<!DOCTYPE ...>) is not allowed" in err


def test_external_entity_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("sched_error_code=999")
    path = tmp_path / "xxe.xml"
    path.write_text(
        f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY s SYSTEM "file://{secret}">]>'
        '<testsuites><testsuite name="s"><testcase name="t[round-1]"><properties>'
        '<property name="pto.outcome" value="passed"/></properties>'
        "<system-out>&s;</system-out></testcase></testsuite></testsuites>"
    )
    assert main([str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "refused: a DTD" in err and "sched_error_code=999" not in err


def test_foreign_junit_is_no_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    surefire = tmp_path / "TEST-com.example.FooTest.xml"
    surefire.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'name="com.example.FooTest" time="0.01" tests="2" errors="0" skipped="0" failures="1">'
        '<properties><property name="java.version" value="17"/></properties>'
        '<testcase name="testA" classname="com.example.FooTest" time="0.001"/>'
        '<testcase name="testB" classname="com.example.FooTest" time="0.002">'
        '<failure message="expected 1" type="java.lang.AssertionError">trace</failure>'
        "</testcase></testsuite>"
    )
    assert main([str(surefire)]) == EXIT_NO_DATA
    assert "2 testcases without pto.outcome ignored" in capsys.readouterr().err


def test_plain_pytest_junit_is_no_data(
    make_run: MakeRun, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n\ndef test_bad():\n    assert 0\n")
    xml = pytester.path / "plain.xml"
    pytester.runpytest_subprocess("-p", "no:pto", f"--junitxml={xml}")
    assert main([str(xml)]) == EXIT_NO_DATA
    assert "2 testcases without pto.outcome ignored" in capsys.readouterr().err
