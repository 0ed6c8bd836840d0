"""Several pytest processes at once: lock contention with an audit log, xdist, and nothing
left behind after SIGINT, SIGTERM or SIGKILL of the pytest process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_pto.devices import DevicePool
from tests import leaks
from tests.plugin.conftest import junit_cases

AUDIT_CONFTEST = """
import json, os, time

def _log(item, lease, ev):
    with open(os.environ["AUDIT_LOG"], "a") as f:
        f.write(json.dumps({"ev": ev, "t": time.time(), "pid": os.getpid(),
                            "test": item.nodeid, "devices": list(lease.devices)}) + "\\n")

def pytest_pto_lease_acquired(item, lease):
    _log(item, lease, "acquire")

def pytest_pto_lease_released(item, lease):
    _log(item, lease, "release")
"""

CONTENDED = """
import time
import pytest


def nap(chip, seconds):
    time.sleep(seconds)
    return chip.device_id


def test_pair(pto_world):
    assert pto_world.run(nap, 0.05) == list(pto_world.devices)


@pytest.mark.pto(ranks=4)
def test_quad(pto_world):
    assert pto_world.run(nap, 0.05) == list(pto_world.devices)
"""


def _inner_env(tmp: Path, lock_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("PTO_"):
            del env[key]
    env.update(PTO_TEST_INNER="1", PTO_LOCK_DIR=str(lock_dir), AUDIT_LOG=str(tmp / "audit.log"))
    return env


def _pytest(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _check_audit(path: Path) -> int:
    """No device in two leases at once; returns the number of leases."""
    open_: dict[tuple[int, str], tuple[float, list[int]]] = {}
    intervals: list[tuple[float, float, list[int], str]] = []
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        key = (ev["pid"], ev["test"])
        if ev["ev"] == "acquire":
            open_[key] = (ev["t"], ev["devices"])
        else:
            start, devices = open_.pop(key)
            intervals.append((start, ev["t"], devices, ev["test"]))
    assert not open_, f"leases never released: {open_}"
    for i, (a0, a1, ad, at) in enumerate(intervals):
        for b0, b1, bd, bt in intervals[i + 1 :]:
            if set(ad) & set(bd):
                assert a1 <= b0 or b1 <= a0, f"{at} {ad} and {bt} {bd} overlapped"
    return len(intervals)


def test_concurrent_sessions_share_the_pool_without_overlap(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "conftest.py").write_text(AUDIT_CONFTEST)
    (project / "test_contended.py").write_text(textwrap.dedent(CONTENDED))
    lock_dir = tmp_path / "locks"
    env = _inner_env(tmp_path, lock_dir)
    # 3 sessions want 2 and 4 of 4 devices, 3 rounds each: far more than the pool at once
    procs = [
        _pytest(["--pto-devices=0-3", "--pto-rounds=3", "-q", f"--junitxml=s{i}.xml"], project, env)
        for i in range(3)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    assert _check_audit(tmp_path / "audit.log") == 3 * 2 * 3
    waits = [
        float(case["props"]["pto.lock_wait_ms"])  # type: ignore[index]
        for i in range(3)
        for case in junit_cases(project / f"s{i}.xml").values()
    ]
    assert max(waits) > 0
    assert not any(s.held for s in DevicePool(range(4), lock_dir).state())


def test_xdist_spreads_rounds_and_the_controller_writes_junit(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "conftest.py").write_text(AUDIT_CONFTEST)
    (project / "test_contended.py").write_text(textwrap.dedent(CONTENDED))
    env = _inner_env(tmp_path, tmp_path / "locks")
    proc = _pytest(
        ["-n", "2", "--pto-rounds=3", "--pto-devices=0-5", "--junitxml=out.xml"], project, env
    )
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    cases = junit_cases(project / "out.xml")
    assert len(cases) == 6
    for name, case in cases.items():
        props = case["props"]
        assert props["pto.outcome"] == "passed", name  # type: ignore[index]
        assert props["pto.round"] == name.rsplit("round-", 1)[1].rstrip("]")  # type: ignore[index]
    pids = {json.loads(line)["pid"] for line in (tmp_path / "audit.log").read_text().splitlines()}
    assert len(pids) == 2  # both workers leased devices
    _check_audit(tmp_path / "audit.log")
    assert out.count("== pto rounds ==") == 1
    assert "test_contended.py::test_pair" in out and "test_contended.py::test_quad" in out


STUCK = """
import os, time
from pathlib import Path

def stuck(chip, marker):
    if chip.rank == 0:
        Path(marker).write_text("running")
    time.sleep(120)

def test_stuck(pto_world):
    pto_world.run(stuck, os.environ["STUCK_MARKER"])
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_nothing_leaks_when_pytest_is_interrupted(tmp_path: Path, sig: signal.Signals) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "test_stuck.py").write_text(textwrap.dedent(STUCK))
    lock_dir = tmp_path / "locks"
    env = _inner_env(tmp_path, lock_dir)
    env["STUCK_MARKER"] = str(tmp_path / "running")
    # a private temp dir: another pytest-pto session on this machine sweeps dead sessions'
    # logs from the shared one, and would race the assertions on the killed session's logs
    inner_tmp = tmp_path / "tmp"
    inner_tmp.mkdir()
    env["TMPDIR"] = str(inner_tmp)
    before_shm = leaks.shm_segments()
    before_procs = leaks.descendants()  # e.g. this session's own zygote from earlier tests
    proc = _pytest(["-q", "--pto-devices=0-1"], project, env)
    deadline = time.monotonic() + 60
    while not (tmp_path / "running").exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert any(s.held for s in DevicePool(range(2), lock_dir).state())
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0]
    if sig != signal.SIGKILL:
        assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    # every chip worker (and the session's zygote) goes with the session
    deadline = time.monotonic() + 10
    while True:
        leaks.reap_zombies()
        left = leaks.descendants() - before_procs
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, [leaks.describe(p) for p in left]
    assert not any(s.held for s in DevicePool(range(2), lock_dir).state())
    reruns: list[int] = []
    killed_logs = inner_tmp.glob(f"pto-logs-{proc.pid}-*")
    if sig == signal.SIGKILL:
        assert list(killed_logs)  # the round's temporary logs, named after their session
        # segments of a killed session are removed by the next session (their owner is dead)
        rerun = _pytest(["-q", "--pto-devices=0-1", "-k", "nothing"], project, env)
        rerun.communicate(timeout=60)
        project.joinpath("test_ok.py").write_text("def test_ok(pto_world):\n    pto_world.size\n")
        rerun = _pytest(["-q", "--pto-devices=0-1", "test_ok.py"], project, env)
        reruns.append(rerun.pid)
        rerun_out = rerun.communicate(timeout=60)[0]
        assert rerun.returncode == 0, rerun_out
    # and so are its temporary logs
    assert list(inner_tmp.glob(f"pto-logs-{proc.pid}-*")) == []
    # other people's tests may run on this machine: look at the segments of our sessions only
    ours = {str(proc.pid), *(str(p) for p in reruns)}
    left_shm = {n for n in leaks.shm_segments() - before_shm if n.split("-")[2] in ours}
    assert left_shm == set()


SECOND_INTERRUPT = """
import os
from pathlib import Path

import libpto.world

_close = libpto.world.World.close


def close(self):
    _close(self)
    raise KeyboardInterrupt("a second Ctrl-C while the World closes")


libpto.world.World.close = close


def pytest_pto_lease_released(item, lease):
    Path(os.environ["RELEASED_MARKER"]).write_text(",".join(map(str, lease.devices)))
"""


def test_interrupted_teardown_still_releases_the_devices(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "conftest.py").write_text(SECOND_INTERRUPT)
    (project / "test_ok.py").write_text("def test_ok(pto_world):\n    pto_world.size\n")
    lock_dir = tmp_path / "locks"
    env = _inner_env(tmp_path, lock_dir)
    env["RELEASED_MARKER"] = str(tmp_path / "released")
    proc = _pytest(["-q", "--pto-devices=0-1"], project, env)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert (tmp_path / "released").read_text() == "0,1", out
    assert list(lock_dir.glob("*.holder")) == []
