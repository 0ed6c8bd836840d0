"""The vendor runtime example end to end: its adapter over the vendor runtime's test double
(libpto's real simulator underneath), through the plugin, into JUnit."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pytest_pto import Classified
from tests.plugin.conftest import junit_cases

EXAMPLE = Path(__file__).parents[2] / "examples" / "vendor_runtime"


@pytest.fixture
def vendor_adapter() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield importlib.import_module("vendor_adapter")
    finally:
        sys.path.remove(str(EXAMPLE))
        sys.modules.pop("vendor_adapter", None)


def test_example_outcomes_in_junit(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("vendor_rt_double.py", "vendor_adapter.py", "test_vendor_runtime.py"):
        shutil.copy(EXAMPLE / name, ptester.path / name)
    monkeypatch.setenv("VENDOR_DEMO_FAILURES", "1")
    result = ptester.runpytest_subprocess("--junitxml=junit.xml", "--pto-log-dir=logs", "-q")
    assert result.ret == 1, result.stdout.str()
    cases = junit_cases(ptester.path / "junit.xml")

    ok = cases["test_allreduce[round-1]"]
    assert ok["props"]["pto.outcome"] == "passed" and ok["failure"] is None
    logs = ptester.path / "logs" / "test_vendor_runtime.py_test_allreduce_round-1"
    text = "".join(p.read_text() for p in sorted(logs.glob("rank*.log")))
    assert text.count("[ERROR]") >= 4, "the passing round logged [ERROR] lines (fd 2) and passed"

    stall = cases["test_peer_skips_allreduce[round-1]"]
    assert stall["props"]["pto.outcome"] == "sched_error_code=100"
    assert stall["props"]["pto.error_code"] == "100"
    assert stall["props"]["pto.error_name"] == "SCHEDULER_TIMEOUT"
    assert stall["props"]["pto.failed_rank"] == "0"
    message = str(stall["failure"])
    assert message.startswith("sched_error_code=100: rank 0: "), message
    assert "finalize_native_run failed with code -100" in message
    assert "sub_class=S1" in message and "on simulator" in message

    orch = cases["test_graph_overflows_dep_pool[round-1]"]
    assert orch["props"]["pto.outcome"] == "orch_error_code=4"
    assert orch["props"]["pto.error_name"] == "DEP_POOL_OVERFLOW"
    assert orch["props"]["pto.failed_rank"] == "1"
    assert "code 4 (run_id=" in str(orch["failure"]) and "on hardware" in str(orch["failure"])

    wrong = cases["test_wrong_expectation[round-1]"]
    assert wrong["props"]["pto.outcome"] == "failed", "an [ERROR] line alone is no runtime error"
    assert "pto.error_name" not in wrong["props"]


def test_classify_reads_code_from_the_message_and_names_from_the_log(
    vendor_adapter: ModuleType,
) -> None:
    classify = vendor_adapter.classify_native
    log = (
        "[ERROR] RUNTIME dev 0: aclrtGetDeviceInfo attribute 7 is not supported\n"
        "[ERROR] PTO2 runtime failed: orch_error_code=0 sched_error_code=101\n"
        "[ERROR] error detail: sched1 latched ASYNC_COMPLETION_INVALID - task 9 on core 2: x\n"
    )
    got = classify("finalize_native_run failed with code 101 (run_id=7)", log)
    assert got == Classified("sched_error_code=101", "ASYNC_COMPLETION_INVALID", "on hardware")
    # a log that describes another code does not lend its name: the table does
    got = classify("finalize_native_run failed with code -9 (run_id=2)", log)
    assert got == Classified("orch_error_code=9", "EXPLICIT_ORCH_FATAL", "on simulator")
    # codes outside the runtime's ranges keep their number
    got = classify("finalize_native_run failed with code -50 (run_id=2)", "")
    assert got is not None and got.outcome == "native_error_code=-50"
    # [ERROR] lines without the code in the exception: not this adapter's business
    assert classify("assert 1 == 2", log) is None


def test_a_killed_rank_is_classified_from_what_the_runtime_logged(
    vendor_adapter: ModuleType,
) -> None:
    log = (
        "[ERROR] PTO2 runtime failed: orch_error_code=0 sched_error_code=100\n"
        "[ERROR] error detail: sched0 latched SCHEDULER_TIMEOUT - task 4 on core 1: stalled\n"
        "[ERROR] stall diagnosis: sub_class=S1 stuck_task=4 core=1 completed=3/8\n"
    )
    adapter = vendor_adapter.VendorRuntimeAdapter()
    from pytest_pto import RankFailure

    killed = RankFailure(rank=1, phase="op", kind="timeout", message="hang", log=log)
    assert adapter.classify(killed) == Classified(
        "sched_error_code=100", "SCHEDULER_TIMEOUT", "sub_class=S1 stuck_task=4 core=1"
    )
    exited = RankFailure(rank=1, phase="op", kind="exit", message="exit 1", log=log)
    assert adapter.classify(exited) is None  # only the watchdog's victims are read from logs
