"""Every outcome class produced by a real fault, read back from JUnit, plus the summary table.

One inner session (a subprocess: ranks are killed and hung) runs one test per fault, so the
whole matrix costs one pytest start-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_pto.devices import DevicePool
from tests.plugin.conftest import junit_cases

INNER = """
import os
import time

import pytest


def ident(chip, x):
    return (chip.rank, chip.size, chip.device_id, x)


def boom(chip):
    if chip.rank == 1:
        raise ValueError("boom in rank 1")
    return chip.rank


def die(chip):
    if chip.rank == 1:
        os.kill(os.getpid(), 9)
    time.sleep(30)


def sleepy(chip):
    time.sleep(60)


def wait_forever(chip):
    graph = chip.runtime.graph()
    graph.wait(0, ">=", 1)  # nobody notifies: a RUNNING task that never completes
    chip.runtime.run(graph)


def hang_kernel(chip):
    graph = chip.runtime.graph()
    graph.hang()
    chip.runtime.run(graph)


@pytest.mark.pto(env={"PTO_SCHEDULER_TIMEOUT_MS": "300", "PTO_STREAM_SYNC_TIMEOUT_MS": "20000"})
def test_scheduler_latches(pto_world):
    pto_world.run(wait_forever)


@pytest.mark.pto(env={"PTO_SCHEDULER_TIMEOUT_MS": "20000", "PTO_STREAM_SYNC_TIMEOUT_MS": "300"})
def test_stream_sync_expires(pto_world):
    pto_world.run(hang_kernel)


@pytest.mark.pto(env={"PTO2_RING_TASK_WINDOW": "3"})
def test_bad_ring_window(pto_world):
    pto_world.run(ident, 1)


def test_passes(pto_world):
    results = pto_world.run(ident, 7)
    assert [r[0] for r in results] == [0, 1]
    assert [r[2] for r in results] == list(pto_world.devices)
    assert pto_world.size == 2 and pto_world.round == 1


def test_parent_assertion(pto_world):
    assert pto_world.run(ident, 1)[0][3] == 2


def test_op_raises(pto_world):
    pto_world.run(boom)


def test_rank_killed(pto_world):
    pto_world.run(die)


@pytest.mark.pto(round_timeout=1)
def test_op_hangs(pto_world):
    pto_world.run(sleepy)


@pytest.mark.pto(round_timeout=1)
def test_body_hangs(pto_world):
    pto_world.run(ident, 1)
    time.sleep(60)


@pytest.mark.pto(init_timeout=1, rank_env={1: {"PTO_SIM_INIT_DELAY_MS": "20000"}})
def test_init_too_slow(pto_world):
    pto_world.run(ident, 1)


@pytest.mark.pto(ranks=8)
def test_devices_held(pto_world):
    pto_world.run(ident, 1)


def test_after_all(pto_world):
    assert pto_world.run(ident, 3)[1][3] == 3
"""

HOLDER = """
import sys, time
from pathlib import Path
from pytest_pto.devices import DevicePool
pool = DevicePool(range(8), Path(sys.argv[1]))
lease = pool.lease(1, "holder-session::test_other", timeout=10)
assert lease.devices == (0,), lease.devices
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def held_device(ptester: pytest.Pytester, tmp_path: Path):
    """Device 0 held by another process (a different 'session'), released at the end."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ptester.path / "locks")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_every_outcome_class_from_a_real_fault(
    ptester: pytest.Pytester, held_device: subprocess.Popen[str]
) -> None:
    ptester.makepyfile(test_faults=textwrap.dedent(INNER))
    result = ptester.runpytest_subprocess(
        "--junitxml=out.xml",
        "--pto-lock-timeout=1",
        "--pto-trace=trace.json",
        "-p",
        "no:cacheprovider",
        timeout=120,
    )
    out = result.stdout.str()
    cases = junit_cases(ptester.path / "out.xml")

    def case(name: str) -> dict[str, object]:
        return cases[f"{name}[round-1]"]

    def props(name: str) -> dict[str, str]:
        return case(name)["props"]  # type: ignore[return-value]

    # passed: every base property; the lease avoided the held device 0 and took a pair
    p = props("test_passes")
    assert p["pto.outcome"] == "passed"
    assert (p["pto.round"], p["pto.rounds"], p["pto.ranks"]) == ("1", "1", "2")
    assert p["pto.devices"] in ("2,3", "4,5", "6,7")
    # measured, finite and within the inner session's budgets (not a placeholder or -1)
    assert 0 <= float(p["pto.lock_wait_ms"]) < 60_000
    assert 0 <= float(p["pto.init_skew_ms"]) < 60_000
    assert "pto.failed_rank" not in p and "pto.variant" not in p
    assert case("test_passes")["failure"] is None

    assert props("test_parent_assertion")["pto.outcome"] == "failed"
    assert str(case("test_parent_assertion")["failure"]).startswith("failed: assert 1 == 2")

    p = props("test_op_raises")
    assert (p["pto.outcome"], p["pto.failed_rank"]) == ("failed", "1")
    msg = str(case("test_op_raises")["failure"])
    assert msg.startswith("failed: rank 1: ") and "ValueError: boom in rank 1" in msg
    assert 'raise ValueError("boom in rank 1")' in str(case("test_op_raises")["text"])

    p = props("test_rank_killed")
    assert (p["pto.outcome"], p["pto.failed_rank"]) == ("rank_crashed", "1")
    assert str(case("test_rank_killed")["failure"]).startswith("rank_crashed: rank 1: ")
    assert "SIGKILL" in str(case("test_rank_killed")["failure"])

    for name in ("test_op_hangs", "test_body_hangs"):
        assert props(name)["pto.outcome"] == "hang"
        assert str(case(name)["failure"]).startswith("hang: ")
        assert str(case(name)["failure"]).count("hang:") == 1  # the class is said once
        text = str(case(name)["text"])  # every rank's stack reaches JUnit with default settings
        assert "rank 0" in text and "rank 1" in text
    assert "in sleepy" in str(case("test_op_hangs")["text"])

    p = props("test_init_too_slow")
    assert (p["pto.outcome"], p["pto.failed_rank"]) == ("init_timeout", "1")
    assert str(case("test_init_too_slow")["failure"]).startswith("init_timeout: rank 1: ")

    p = props("test_devices_held")
    assert p["pto.outcome"] == "device_unavailable" and p["pto.ranks"] == "8"
    msg = str(case("test_devices_held")["failure"])
    assert msg.startswith("device_unavailable: waited")
    assert f"device 0 held by pid {held_device.pid}" in msg and "holder-session::test_other" in msg

    p = props("test_scheduler_latches")
    assert p["pto.outcome"] == "sched_error_code=100"
    assert (p["pto.error_code"], p["pto.error_name"]) == ("100", "SCHEDULER_TIMEOUT")
    assert p["pto.failed_rank"] in ("0", "1")
    msg = str(case("test_scheduler_latches")["failure"])
    assert msg.startswith(f"sched_error_code=100: rank {p['pto.failed_rank']}: SCHEDULER_TIMEOUT")
    assert "S1" in msg

    p = props("test_stream_sync_expires")
    assert p["pto.outcome"] == "stream_sync_timeout" and p["pto.failed_rank"] in ("0", "1")
    assert str(case("test_stream_sync_expires")["failure"]).startswith("stream_sync_timeout: rank")

    p = props("test_bad_ring_window")
    assert p["pto.outcome"] == "init_failed" and p["pto.failed_rank"] in ("0", "1")
    msg = str(case("test_bad_ring_window")["failure"])
    assert msg.startswith("init_failed: rank ")
    assert "PTO2_RING_TASK_WINDOW=3: must be a power of two >= 4" in msg

    assert props("test_after_all")["pto.outcome"] == "passed"  # the session went on

    # terminal: verbose-free run still shows the classified summary and the table
    assert "FAILED rank_crashed test_faults.py::test_rank_killed[round-1] - rank_crashed" in out
    for column in ("failed", "init_timeout", "rank_crashed", "hang", "device_unavailable"):
        assert column in out
    result.stdout.re_match_lines([r"test_faults.py::test_op_hangs\s+-\s+2\s+1\s+0\s+1\b"])
    # the summary: infra outcomes marked and outside the pass rate, failing ranks named
    assert "device_unavailable (infra)" in out and "pass rate excl. infra" in out
    result.stdout.re_match_lines([r".*test_rank_killed\s.*\srank_crashed: rank 1 \(1\)"])
    result.stdout.re_match_lines([r".*test_devices_held\s+-\s+8\s+1\s+0\s+0\s.*\s-\s*$"])
    # every failure element carries its outcome class as its type
    for elem in ET.parse(ptester.path / "out.xml").getroot().iter("testcase"):
        outcome = {p.get("name"): p.get("value") for p in elem.iter("property")}["pto.outcome"]
        for res in [*elem.iter("failure"), *elem.iter("error")]:
            assert res.get("type") == outcome, elem.get("name")
    # init skew measured for the failing init too (a lower bound: rank 1 never finished)
    assert float(props("test_init_too_slow")["pto.init_skew_ms"]) >= 500
    # the trace shows what each rank was doing when its round was stopped
    trace = json.loads((ptester.path / "trace.json").read_text())["traceEvents"]
    pids = {
        e["args"]["name"].split(" round 1")[0]: e["pid"]
        for e in trace
        if e.get("name") == "process_name"
    }
    slices = [e for e in trace if e.get("ph") == "X"]

    def open_slices(test: str) -> set[tuple[str, int]]:
        pid = pids[f"test_faults.py::{test}"]
        return {
            (e["name"], e["tid"] - 1) for e in slices if e["pid"] == pid and e["args"].get("open")
        }

    assert open_slices("test_init_too_slow") == {("init", 1)}
    assert ("op", 0) in open_slices("test_op_hangs") and open_slices("test_passes") == set()
    # nothing held afterwards except the other session's device 0
    state = DevicePool(range(8), ptester.path / "locks").state()
    assert [s.device for s in state if s.held] == [0]
