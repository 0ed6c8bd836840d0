"""Device health (issue 12): simulated device faults, quarantine in the shared lock dir,
``pto-devices`` listing and releasing, preflight probes, the infra/product verdict with one
retry, and the timeout ladder. Real sessions, real processes, real file locks; the one test
double is a stand-in ``npu-smi`` script (no NPU here)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_pto.devices import DevicePool, DeviceUnavailable
from tests.plugin.conftest import junit_cases

TRIVIAL = """
import pytest


def where(chip):
    return chip.device_id


@pytest.mark.pto(ranks={ranks})
def test_quad(pto_world):
    assert pto_world.run(where) == list(pto_world.devices)
"""

DEVICE_WORK = """
import pytest


def work(chip):
    g = chip.runtime.graph()
    g.noop()
    chip.runtime.run(g)
    return chip.device_id


@pytest.mark.pto(ranks=4)
def test_work(pto_world):
    assert pto_world.run(work) == list(pto_world.devices)
"""


def _pool(ptester: pytest.Pytester) -> DevicePool:
    return DevicePool(range(8), ptester.path / "locks")


def test_a_faulty_device_fails_its_round_is_quarantined_and_the_round_retried(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Device 3 fails init with 507899 (a poisoning code): the round's first attempt is
    device_error_code=507899 on the rank of device 3, device 3 is quarantined with its
    evidence, and the second attempt runs in fresh workers on other devices and passes."""
    monkeypatch.setenv("PTO_SIM_DEVICE_FAULTS", "3=507899")
    ptester.makepyfile(test_h=TRIVIAL.format(ranks=4))
    result = ptester.runpytest_subprocess("--junitxml=j.xml", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    props = junit_cases(ptester.path / "j.xml")["test_quad[round-1]"]["props"]
    assert props["pto.outcome"] == "passed"
    assert props["pto.attempt"] == "2"
    assert props["pto.first_outcome"] == "device_error_code=507899"
    assert props["pto.first_devices"] == "0,1,2,3"
    assert "3" not in str(props["pto.devices"]).split(",")
    assert props["pto.verdict"] == "product" and props["pto.host"]
    q = _pool(ptester).quarantined()
    assert list(q) == [3]
    ev = q[3]
    assert (ev.code, ev.outcome, ev.round) == (507899, "device_error_code=507899", 1)
    assert ev.test == "test_h.py::test_quad[round-1]" and ev.pid > 0 and ev.host
    assert ev.until is None and abs(time.time() - ev.since) < 600
    raw = json.loads((ptester.path / "locks" / "quarantine" / "device-3.json").read_text())
    assert raw["code"] == 507899 and raw["test"] == ev.test

    # pto-devices lists it with the evidence, and --release brings it back
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTO_")}
    env["PTO_LOCK_DIR"] = str(ptester.path / "locks")
    cli = [sys.executable, "-c", "from pytest_pto.cli import devices_main; exit(devices_main())"]
    shown = subprocess.run(cli, env=env, capture_output=True, text=True, check=True).stdout
    assert "1 quarantined" in shown and "device_error_code=507899 code 507899" in shown
    assert "test_h.py::test_quad[round-1] round 1" in shown
    listed = subprocess.run([*cli, "--json"], env=env, capture_output=True, text=True, check=True)
    data = json.loads(listed.stdout)
    assert [d["quarantine"]["code"] for d in data["devices"] if "quarantine" in d] == [507899]
    bad = subprocess.run(
        [*cli, "--release=x"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "--release=x" in bad.stderr
    done = subprocess.run(
        [*cli, "--release=3"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "released device 3" in done.stdout
    assert _pool(ptester).quarantined() == {}


def test_a_fault_marks_only_rounds_that_use_its_device(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTO_SIM_DEVICE_FAULTS", "5=507899")
    ptester.makepyfile(test_h=TRIVIAL.format(ranks=2))
    result = ptester.runpytest_subprocess("--junitxml=j.xml", "--pto-rounds=3")
    result.assert_outcomes(passed=3)
    for case in junit_cases(ptester.path / "j.xml").values():
        props = case["props"]
        assert props["pto.devices"] == "0,1" and props["pto.attempt"] == "1"
        assert "pto.first_outcome" not in props
    assert _pool(ptester).quarantined() == {}


def test_an_op_fault_with_quarantine_off_is_retried_but_not_quarantined(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``@op``: init succeeds, the first device run raises; --pto-quarantine off writes no
    quarantine, yet the infra failure is still retried once on other devices."""
    monkeypatch.setenv("PTO_SIM_DEVICE_FAULTS", "2=507015@op")
    ptester.makepyfile(test_h=DEVICE_WORK)
    result = ptester.runpytest_subprocess("--junitxml=j.xml", "--pto-quarantine=off")
    result.assert_outcomes(passed=1)
    props = junit_cases(ptester.path / "j.xml")["test_work[round-1]"]["props"]
    assert props["pto.first_outcome"] == "device_error_code=507015"
    assert props["pto.devices"] == "4,5,6,7" and props["pto.attempt"] == "2"
    assert _pool(ptester).quarantined() == {}


def test_a_product_failure_is_never_retried(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device error code outside poison_codes is the product's: one attempt, verdict
    product, no quarantine."""
    monkeypatch.setenv("PTO_SIM_DEVICE_FAULTS", "1=123456@op")
    ptester.makepyfile(test_h=DEVICE_WORK)
    result = ptester.runpytest_subprocess("--junitxml=j.xml")
    result.assert_outcomes(failed=1)
    props = junit_cases(ptester.path / "j.xml")["test_work[round-1]"]["props"]
    assert props["pto.outcome"] == "device_error_code=123456"
    assert props["pto.verdict"] == "product" and props["pto.attempt"] == "1"
    assert props["pto.failed_rank"] == "1" and props["pto.error_code"] == "123456"
    assert _pool(ptester).quarantined() == {}


def test_too_few_healthy_devices_is_device_unavailable_at_once(
    ptester: pytest.Pytester,
) -> None:
    """With 7 of 8 devices quarantined a 2-rank round cannot be served: device_unavailable
    (infra, retried once, and again unavailable), naming the quarantined devices and why,
    without waiting for the lock timeout; the summary counts it as infra."""
    pool = _pool(ptester)
    for d in range(7):
        pool.quarantine(d, reason="device_error_code=507899", code=507899, test="t::x", round=1)
    ptester.makepyfile(test_h=TRIVIAL.format(ranks=2))
    result = ptester.runpytest_subprocess("--junitxml=j.xml", "--pto-lock-timeout=3000")
    result.assert_outcomes(failed=1)
    case = junit_cases(ptester.path / "j.xml")["test_quad[round-1]"]
    props = case["props"]
    assert props["pto.outcome"] == "device_unavailable" and props["pto.verdict"] == "infra"
    assert props["pto.attempt"] == "2" and props["pto.first_outcome"] == "device_unavailable"
    msg = str(case["failure"])
    assert "only 1 healthy" in msg and "7 quarantined" in msg
    assert "device 0 quarantined: device_error_code=507899 in t::x round 1" in msg
    assert "waited" not in msg  # not the lock timeout's message
    out = result.stdout.str()
    assert "infra" in out and "pass rate excl. infra" in out


def test_health_probe_quarantines_and_the_lease_moves_on(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--pto-health-check on: the sim platform's probe reports the faulty device before any
    worker starts; it is quarantined (reason ``probe: ...``) and the round runs elsewhere on
    its first attempt."""
    monkeypatch.setenv("PTO_SIM_DEVICE_FAULTS", "3=507899")
    ptester.makepyfile(test_h=TRIVIAL.format(ranks=4))
    result = ptester.runpytest_subprocess("--junitxml=j.xml", "--pto-health-check=on")
    result.assert_outcomes(passed=1)
    props = junit_cases(ptester.path / "j.xml")["test_quad[round-1]"]["props"]
    assert props["pto.attempt"] == "1" and props["pto.devices"] == "4,5,6,7"
    q = _pool(ptester).quarantined()
    assert list(q) == [3] and q[3].reason.startswith("probe: sim device 3 is faulty")
    assert q[3].outcome == "probe_failed"


NPU_SMI_DOUBLE = """#!/bin/sh
# test double of Ascend's npu-smi: `npu-smi info -t health -i ID`
if [ "$1 $2 $3 $4" != "info -t health -i" ]; then exit 9; fi
case "$5" in
  2) printf '        Health Status                  : Alarm\\n' ;;
  6) echo "Error: card 6 not found" >&2; exit 3 ;;
  *) printf '        Health Status                  : OK\\n' ;;
esac
"""


def test_ascend_probe_reads_npu_smi_health(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_pto._platforms import AscendPlatform, CudaPlatform

    assert getattr(CudaPlatform(), "probe", None) is None  # npu-smi is Ascend's alone

    smi = tmp_path / "npu-smi"
    smi.write_text(NPU_SMI_DOUBLE)
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    platform = AscendPlatform()
    assert platform.probe(1) is None
    assert platform.probe(2) == "npu-smi health of card 2: Alarm"
    reason = platform.probe(6)
    assert reason is not None and "exit 3" in reason and "card 6 not found" in reason


def test_quarantine_expiry_and_release_all(tmp_path: Path) -> None:
    pool = DevicePool(range(4), tmp_path / "locks")
    pool.quarantine(1, reason="r", ttl=0.05)
    pool.quarantine(0, reason="r")
    assert set(pool.quarantined()) == {0, 1}
    time.sleep(0.5)  # 10x the expiry
    assert set(pool.quarantined()) == {0}
    with pool.lease(2, "t", timeout=5) as lease:  # the aligned block 0-1 would be first
        assert lease.devices == (2, 3)
    with pytest.raises(DeviceUnavailable, match="only 3 healthy"):
        pool.lease(4, "t", timeout=3000)
    ignoring = DevicePool(range(4), tmp_path / "locks", honour_quarantine=False)
    with ignoring.lease(4, "t", timeout=5) as lease:
        assert lease.devices == (0, 1, 2, 3)
    assert pool.release_quarantine() == [0]
    assert pool.quarantined() == {}


def test_runtime_raises_device_error_and_validates_the_variable() -> None:
    import libpto
    from libpto.errors import ConfigError, DeviceError

    env = {"PTO_SIM_DEVICE_FAULTS": "3=507899,5=507015@op"}
    with pytest.raises(DeviceError) as info:
        libpto.Runtime(env, rank=1, device_id=3)
    assert info.value.code == 507899 and info.value.details["device_id"] == 3
    with libpto.Runtime(env, rank=0, device_id=[4, 5]) as rt:  # init passes, the op fails
        g = rt.graph()
        g.noop()
        with pytest.raises(DeviceError) as op:
            rt.run(g)
        assert op.value.code == 507015 and op.value.details["phase"] == "op"
    with libpto.Runtime(env, rank=0, device_id=0) as rt:
        g = rt.graph()
        g.noop()
        rt.run(g)
    for bad in ("3", "3=x", "3=1@later", "3=1,3=2", "70000=1", "3=0"):
        with pytest.raises(ConfigError, match=r"PTO_SIM_DEVICE_FAULTS.*DEVICE=CODE"):
            libpto.Runtime({"PTO_SIM_DEVICE_FAULTS": bad}, device_id=0)


def test_a_bad_fault_variable_is_a_usage_error(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTO_SIM_DEVICE_FAULTS", "3=oops")
    ptester.makepyfile(test_h=TRIVIAL.format(ranks=2))
    result = ptester.runpytest_subprocess()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*PTO_SIM_DEVICE_FAULTS=3=oops: entry '3=oops': must be*"])


def test_timeout_ladder_is_said_once_in_the_header(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(test_h=TRIVIAL.format(ranks=2))
    result = ptester.runpytest_subprocess(
        "--pto-env=PTO_SCHEDULER_TIMEOUT_MS=9000", "--pto-init-timeout=500"
    )
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert out.count("WARNING timeout ladder") == 1
    assert "scheduler budget 9 s (libpto) >= stream-sync 2 s (libpto)" in out
    assert "init timeout 500 s >= round timeout 300 s" in out
    fine = ptester.runpytest_subprocess()
    assert "timeout ladder" not in fine.stdout.str()
    inert = ptester.makepyfile(test_plain="def test_x():\n    pass\n")
    plain = ptester.runpytest_subprocess(str(inert), "--pto-init-timeout=500")
    assert "timeout ladder" not in plain.stdout.str()


CONCURRENT = """
import time
import pytest


def nap(chip, seconds):
    time.sleep(seconds)
    return chip.device_id


@pytest.mark.pto(ranks={ranks})
def test_many(pto_world):
    assert pto_world.run(nap, 0.05) == list(pto_world.devices)
"""


def test_three_sessions_never_lease_a_quarantined_device(tmp_path: Path) -> None:
    """Three sessions share a lock dir; one has a faulty device 3 (it leases 6 of devices
    1-7, so device 3 whenever another session does not hold it). After the quarantine is
    written no session's lease contains device 3 (audit log of lease times, stamped under
    the pool lock as the quarantine is), and every round of every session ends with an
    outcome (none lost)."""
    from tests.plugin.test_sessions import AUDIT_CONFTEST

    conftest = AUDIT_CONFTEST.replace(
        '"devices": list(lease.devices)}', '"devices": list(lease.devices), "since": lease.since}'
    )
    assert conftest != AUDIT_CONFTEST
    lock_dir = tmp_path / "locks"
    procs = []
    rounds = 8
    for name, ranks, extra, fault in (
        ("a", 2, [], None),
        ("b", 2, [], None),
        ("faulty", 6, ["--pto-devices=1-7"], "3=507899"),
    ):
        d = tmp_path / name
        d.mkdir()
        (d / "conftest.py").write_text(conftest)
        (d / "test_c.py").write_text(textwrap.dedent(CONCURRENT.format(ranks=ranks)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PTO_")}
        env.update(PTO_TEST_INNER="1", PTO_LOCK_DIR=str(lock_dir))
        env["AUDIT_LOG"] = str(tmp_path / "audit.log")
        if fault:
            env["PTO_SIM_DEVICE_FAULTS"] = fault
        args = ["-p", "no:cacheprovider", f"--pto-rounds={rounds}", "--junitxml=j.xml", *extra]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pytest", *args],
                cwd=d,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    q = DevicePool(range(8), lock_dir).quarantined()
    assert list(q) == [3] and q[3].code == 507899
    events = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    acquires = [e for e in events if e["ev"] == "acquire"]
    with_3 = [e for e in acquires if 3 in e["devices"]]
    assert with_3, "the faulty session's first round leases device 3"
    assert all(e["since"] < q[3].since for e in with_3), (q[3], with_3)
    assert any(e["since"] > q[3].since for e in acquires)  # leasing went on afterwards
    for name in ("faulty", "a", "b"):
        cases = junit_cases(tmp_path / name / "j.xml")
        assert len(cases) == rounds
        assert all(c["props"]["pto.outcome"] == "passed" for c in cases.values()), name
    faulty = junit_cases(tmp_path / "faulty" / "j.xml").values()
    firsts = [c["props"].get("pto.first_outcome") for c in faulty]
    assert firsts.count("device_error_code=507899") == 1  # once quarantined, never again
