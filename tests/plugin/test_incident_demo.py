"""The incident demo end to end: examples/test_incident.py under examples/variants.yaml.

The demo's own long-tail init model is random by design; here the same variants run with a
deterministic injected delay instead (rank 1's init sleeps 2.5 s, everything else as shipped),
so each variant's outcome class is certain with wide margins:

- before-fixes: the idle cap (~92 ms) is reached 25x sooner than the peer arrives -> code 100;
- latch-fix: the 0.5 s stream sync is charged 2.5 s of peer init -> stream_sync_timeout;
- both-fixes: the barrier absorbs the skew; the 5 s scheduler budget is never approached.

Then pto-report reads the JUnit the run wrote, and the trace has one track per rank.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pytest_pto.report_cli import main as report_main
from tests.plugin.conftest import junit_cases

ROOT = Path(__file__).resolve().parents[2]
# Margin: the slow rank's init (5 s) is 10x the fast rank's stream-sync budget (0.5 s), so the
# latch-fix variant times out long before the slow rank is up, even on a loaded runner.
SLOW_RANK_DELAY_MS = 5000
STREAM_SYNC_MS = 500


def _deterministic_variants(dest: Path) -> Path:
    variants = yaml.safe_load((ROOT / "examples" / "variants.yaml").read_text())
    assert set(variants) == {"before-fixes", "latch-fix", "both-fixes"}
    for spec in variants.values():
        env = dict(spec["env"])
        env["PTO_SIM_MALLOC_MODEL"] = "none"
        env["PTO_SIM_INIT_DELAY_MS"] = f"1:{SLOW_RANK_DELAY_MS}"
        env["PTO_STREAM_SYNC_TIMEOUT_MS"] = str(STREAM_SYNC_MS)
        spec["env"] = env
    path = dest / "variants.yaml"
    path.write_text(yaml.safe_dump(variants))
    return path


def test_each_variant_shows_its_outcome_class(
    ptester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "examples" / "test_incident.py", ptester.path / "test_incident.py")
    variants = _deterministic_variants(ptester.path)
    junit = ptester.path / "junit.xml"
    trace = ptester.path / "trace.json"
    result = ptester.runpytest_subprocess(
        "test_incident.py",
        "-k",
        "ranks-2",
        f"--pto-variants={variants}",
        "--pto-rounds=1",
        f"--junitxml={junit}",
        f"--pto-trace={trace}",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()

    cases = junit_cases(junit)
    outcomes = {c["props"]["pto.variant"]: c["props"] for c in cases.values()}  # type: ignore[index]
    assert outcomes["before-fixes"]["pto.outcome"] == "sched_error_code=100"
    assert outcomes["before-fixes"]["pto.error_name"] == "SCHEDULER_TIMEOUT"
    assert outcomes["before-fixes"]["pto.failed_rank"] == "0"  # the fast rank latched
    assert outcomes["latch-fix"]["pto.outcome"] == "stream_sync_timeout"
    assert outcomes["latch-fix"]["pto.failed_rank"] == "0"
    assert outcomes["both-fixes"]["pto.outcome"] == "passed"
    assert float(outcomes["both-fixes"]["pto.init_skew_ms"]) >= SLOW_RANK_DELAY_MS * 0.9

    # the terminal table has the shape of DESIGN section 1's
    out = result.stdout.str()
    assert "pto rounds" in out
    assert "sched_error_code=100" in out and "stream_sync_timeout" in out

    # pto-report on the real JUnit: the same three rows
    capsys.readouterr()
    assert report_main([str(junit), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["variant"]: row for row in report["rows"]}
    assert rows["before-fixes"]["outcomes"] == {"sched_error_code=100": 1}
    assert rows["latch-fix"]["outcomes"] == {"stream_sync_timeout": 1}
    assert rows["both-fixes"]["passed"] == 1

    # the trace: one track (tid) per rank in every round's process
    events = json.loads(trace.read_text())["traceEvents"]
    names = {(e["pid"], e["args"]["name"]) for e in events if e.get("name") == "thread_name"}
    for pid in {e["pid"] for e in events if e.get("ph") == "X"}:
        assert {n for p, n in names if p == pid} >= {"rank 0", "rank 1"}
