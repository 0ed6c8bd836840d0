"""The --junitxml file for every consumer: outcome class in the failure ``type`` and message,
properties kept, a schema-valid strict mode, both read back by pto-report.

The schema is the Jenkins xunit-plugin's ``junit-10.xsd`` (tests/report/data), checked with
xmlschema. Real inner sessions (subprocesses) with real chip workers.
"""

from __future__ import annotations

import json
import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_pto.report._cli import EXIT_OK, main

xmlschema = pytest.importorskip("xmlschema")

XSD = Path(__file__).resolve().parents[1] / "report" / "data" / "junit-10.xsd"

INNER = """
import pytest


def ident(chip):
    return chip.rank


def boom(chip):
    if chip.rank == 1:
        raise ValueError("boom in rank 1")


def test_passes(pto_world):
    assert pto_world.run(ident) == [0, 1]


def test_op_raises(pto_world):
    pto_world.run(boom)


def test_parent_assertion(pto_world):
    pto_world.run(ident)
    assert 1 == 2


@pytest.mark.pto(init_timeout=1, rank_env={1: {"PTO_SIM_INIT_DELAY_MS": "20000"}})
def test_init_too_slow(pto_world):
    pto_world.run(ident)


def test_plain(record_property):
    record_property("owner", "team-a")
"""


def _cases(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    return {c.get("name", ""): c for c in root.iter("testcase")}


def _run(ptester: pytest.Pytester, name: str, *args: str) -> Path:
    out = ptester.path / name
    result = ptester.runpytest_subprocess(
        f"--junitxml={out}", "-p", "no:cacheprovider", "--pto-seed=7", *args, timeout=120
    )
    assert result.ret == 1, result.stdout.str()
    return out


@pytest.fixture
def inner(ptester: pytest.Pytester) -> pytest.Pytester:
    ptester.makepyfile(test_rounds=textwrap.dedent(INNER))
    ptester.makeini("[pytest]\npto_junit_strict = off\n")
    return ptester


def test_default_and_strict_junit_for_every_reader(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = xmlschema.XMLSchema(str(XSD))
    default = _run(inner, "default.xml")  # ini off
    monkeypatch.setenv("PTO_JUNIT_STRICT", "off")
    strict = _run(inner, "strict.xml", "--pto-junit-strict")  # command line > env > ini

    # default: properties stay on the testcase (Datadog, junit2html) ...
    cases = _cases(default)
    props = {
        p.get("name"): p.get("value") for p in cases["test_op_raises[round-1]"].iter("property")
    }
    assert props["pto.outcome"] == "failed" and props["pto.failed_rank"] == "1"
    # ... so the file is not valid against junit-10.xsd (no properties in a testcase)
    assert not schema.is_valid(str(default))
    # strict: valid, properties in a system-out block, user properties too
    schema.validate(str(strict))
    scases = _cases(strict)
    assert scases["test_op_raises[round-1]"].find("properties") is None
    block = scases["test_op_raises[round-1]"].find("system-out")
    assert block is not None and block.text is not None
    assert block.text.startswith("[pytest-pto properties]\npto.outcome=failed\n")
    assert "pto.failed_rank=1\n" in block.text
    plain = scases["test_plain"].find("system-out")
    assert plain is not None and "owner=team-a" in str(plain.text)

    for c in (cases, scases):
        # the outcome class where a reader that drops properties still looks
        for name, outcome in (
            ("test_op_raises[round-1]", "failed"),
            ("test_parent_assertion[round-1]", "failed"),
            ("test_init_too_slow[round-1]", "init_timeout"),
        ):
            failure = c[name].find("failure")
            assert failure is not None, name
            assert failure.get("type") == outcome
            assert str(failure.get("message")).split(":")[0] == outcome
        assert c["test_passes[round-1]"].find("failure") is None
        # the session's seed, as a testsuite property the schema allows
        suite_props = ET.parse(default).getroot().find("testsuite/properties")
        assert suite_props is not None
        assert {p.get("name"): p.get("value") for p in suite_props}["pto.seed"] == "7"

    # init skew is measured for the failing round too: a lower bound, marked as such
    slow = {
        p.get("name"): p.get("value") for p in cases["test_init_too_slow[round-1]"].iter("property")
    }
    assert float(str(slow["pto.init_skew_ms"])) >= 500
    assert slow["pto.init_skew_partial"] == "true"

    # pto-report reads both forms to the same table
    capsys.readouterr()
    tables = []
    for path in (default, strict):
        assert main(["--format", "json", str(path)]) == EXIT_OK
        rows = json.loads(capsys.readouterr().out)["rows"]
        tables.append([{k: v for k, v in r.items() if k != "max_init_skew_ms"} for r in rows])
    assert tables[0] == tables[1]  # two runs: only the measured skews differ
    # report.md carries its provenance: date, commit, both commands, the seed
    md_path = inner.path / "report.md"
    assert main(["--format", "markdown", "-o", str(md_path), str(default)]) == EXIT_OK
    md = md_path.read_text()
    assert re.search(r"^- date: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", md, re.M)
    assert re.search(r"^- git commit: `([0-9a-f]{40}(-dirty)?|unknown .*)`$", md, re.M)
    assert f"- report command: `pto-report --format markdown -o {md_path} {default}`" in md
    assert re.search(r"^- pytest command\(s\): `pytest .*--junitxml=.*--pto-seed=7`$", md, re.M)
    assert "- seed(s) (--pto-seed): `7`" in md
    slow_row = next(r for r in tables[0] if "test_init_too_slow" in r["test"])
    assert slow_row["failed_ranks"] == {"init_timeout": {"1": 1}}
    assert slow_row["max_init_skew_partial"] is True


def test_strict_mode_from_the_environment(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    ptester.makepyfile(
        test_one=textwrap.dedent(
            """
            def ident(chip):
                return chip.rank

            def test_a(pto_world):
                assert pto_world.run(ident) == [1, 1]
            """
        )
    )
    ptester.makeini("[pytest]\npto_junit_strict = off\n")
    monkeypatch.setenv("PTO_JUNIT_STRICT", "on")  # env > ini
    out = ptester.path / "env.xml"
    result = ptester.runpytest_subprocess(f"--junitxml={out}", "-p", "no:cacheprovider")
    assert result.ret == 1
    xmlschema.XMLSchema(str(XSD)).validate(str(out))
    (case,) = _cases(out).values()
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "failed"
    monkeypatch.setenv("PTO_JUNIT_STRICT", "sometimes")
    bad = ptester.runpytest_subprocess(f"--junitxml={out}", "-p", "no:cacheprovider")
    assert bad.ret == 4
    assert "PTO_JUNIT_STRICT=sometimes: must be 'on' or 'off'" in bad.stderr.str()
