"""Device pool: all-or-none leases, adjacency, fairness, dead holders, pto-devices."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_pto.cli import devices_main
from pytest_pto.devices import DevicePool, DeviceUnavailable, choose_group

HOLD = """
import sys, time
from pathlib import Path
from pytest_pto.devices import DevicePool
pool = DevicePool(range(4), Path(sys.argv[1]))
lease = pool.lease(int(sys.argv[2]), "other::test_hold", timeout=10)
print(",".join(map(str, lease.devices)), flush=True)
time.sleep(120)
"""


def hold(tmp_path: Path, count: int) -> tuple[subprocess.Popen[str], str]:
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "locks"), str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_choose_group_prefers_aligned_then_contiguous_then_lowest() -> None:
    pool = tuple(range(8))
    assert choose_group(pool, frozenset(range(8)), 2) == (0, 1)
    assert choose_group(pool, frozenset({1, 2, 3, 5, 6, 7}), 2) == (2, 3)
    assert choose_group(pool, frozenset({1, 2, 5, 6}), 2) == (1, 2)
    assert choose_group(pool, frozenset({1, 3, 5}), 2) == (1, 3)
    assert choose_group(pool, frozenset({0, 1, 2, 3, 5}), 4) == (0, 1, 2, 3)
    assert choose_group(pool, frozenset({1}), 2) is None


def test_lease_is_all_or_none_and_released(tmp_path: Path) -> None:
    pool = DevicePool(range(4), tmp_path / "locks")
    a = pool.lease(2, "t::a", timeout=1)
    b = pool.lease(2, "t::b", timeout=1)
    assert (a.devices, b.devices) == ((0, 1), (2, 3))
    with pytest.raises(DeviceUnavailable, match=r"^device_unavailable: waited") as info:
        pool.lease(1, "t::c", timeout=0.3)
    assert "t::a" in str(info.value) and "t::b" in str(info.value)
    assert sorted(h.device for h in info.value.holders) == [0, 1, 2, 3]
    a.release()
    a.release()  # idempotent
    c = pool.lease(2, "t::c", timeout=1)
    assert c.devices == (0, 1)
    held = [s for s in pool.state() if s.held]
    assert [s.holder.test for s in held if s.holder] == ["t::c", "t::c", "t::b", "t::b"]
    b.release()
    c.release()
    assert not any(s.held for s in pool.state())
    assert not list((tmp_path / "locks").glob("*.holder"))


def test_dead_holder_is_released_and_its_file_cleaned(tmp_path: Path, capsys) -> None:
    proc, devices = hold(tmp_path, 2)
    assert devices == "0,1"
    assert devices_main(["--lock-dir", str(tmp_path / "locks"), "--devices", "0-3"]) == 0
    out = capsys.readouterr().out
    assert f"held   {proc.pid:>7}" in out and "other::test_hold" in out and "2 free, 2 held" in out
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "locks" / "device-0.holder").exists()  # stale until someone looks
    assert devices_main(["--lock-dir", str(tmp_path / "locks"), "--json", "--devices", "0-3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["state"] for d in data["devices"]] == ["free"] * 4
    assert data["devices"][0]["stale_holder_removed"] is True
    assert not (tmp_path / "locks" / "device-0.holder").exists()
    pool = DevicePool(range(4), tmp_path / "locks")
    with pool.lease(2, "t::after", timeout=1) as lease:
        assert lease.devices == (0, 1)


def test_pto_devices_rejects_bad_spec(tmp_path: Path, capsys) -> None:
    assert devices_main(["--lock-dir", str(tmp_path), "--devices", "3-1"]) == 2
    assert "--devices=3-1: range 3-1 runs backwards" in capsys.readouterr().err
    assert devices_main(["--lock-dir", str(tmp_path), "--devices", "0-99999999999"]) == 2
    assert "above the highest device id" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert devices_main(["--lock-dir", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pto-devices: --lock-dir={blocker}: lock dir"), err


def test_big_request_is_not_starved_by_a_stream_of_small_ones(tmp_path: Path) -> None:
    """Two threads keep re-leasing pairs back to back; a 4-device request still gets through
    (older waiters block newer requests after the aging period)."""
    pool = DevicePool(range(4), tmp_path / "locks")
    stop = threading.Event()
    got: list[float] = []

    def churn() -> None:
        while not stop.is_set():
            with pool.lease(2, "t::pair", timeout=30):
                time.sleep(0.02)

    threads = [threading.Thread(target=churn) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        t0 = time.monotonic()
        with pool.lease(4, "t::quad", timeout=20) as lease:
            got.append(time.monotonic() - t0)
            assert lease.devices == (0, 1, 2, 3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert got
    assert not list((tmp_path / "locks" / "queue").iterdir())


def test_lock_dir_errors_are_clear(tmp_path: Path, make_unwritable) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot create it"):
        DevicePool(range(2), blocker / "locks")
    with pytest.raises(ValueError, match="cannot create it"):  # queue/ cannot be made in it
        DevicePool(range(2), make_unwritable(tmp_path / "ro"))
    # every directory exists but none can take a lock file (as root too: a read-only mount)
    ro = make_unwritable(tmp_path / "ro2", subdirs=("queue",))
    with pytest.raises(ValueError, match=r"lock dir .*ro2: not writable by this user"):
        DevicePool(range(2), ro)


# A process that always holds at least one device: it takes its next device before giving the
# current one back (hand over hand), so the pool is never all free while it runs. When a
# handover cannot be had in 2 s (only aging makes that happen) it gives back and waits in line.
CHURN = """
import sys, time
from pathlib import Path
import pytest_pto.devices as devices
devices.AGING_S = float(sys.argv[2])
pool = devices.DevicePool(range(4), Path(sys.argv[1]))
cur = pool.lease(1, "other::churn", timeout=30)
print("ready", flush=True)
while True:  # killed by the test
    time.sleep(0.02)
    try:
        nxt = pool.lease(1, "other::churn", timeout=2.0)
    except devices.DeviceUnavailable:
        cur.release()
        cur = pool.lease(1, "other::churn", timeout=60)
        continue
    cur.release()
    cur = nxt
"""


def test_aging_lets_a_starving_large_lease_through(tmp_path: Path, monkeypatch) -> None:
    """Two other processes lease single devices hand over hand, so the 4 devices are never
    free at once: without aging a 4-device request waits forever. Once its ticket is older
    than AGING_S (0.3 s here, set in every process), the newer single-device requests must
    leave the pool to drain, and the quad gets all four well inside its 30 s timeout."""
    aging = 0.3
    monkeypatch.setattr("pytest_pto.devices.AGING_S", aging)
    script = tmp_path / "churn.py"
    script.write_text(CHURN)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "locks"), str(aging)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        pool = DevicePool(range(4), tmp_path / "locks")
        with pool.lease(4, "t::quad", timeout=30) as lease:
            assert lease.devices == (0, 1, 2, 3)
            # it really starved until its ticket aged: the churners never leave 4 free before
            assert lease.wait_ms >= aging * 1000
            assert all(p.poll() is None for p in procs)  # they waited, they did not give up
    finally:
        for p in procs:
            p.kill()
            p.wait()
            assert p.stdout is not None
            p.stdout.close()


FILELOCK_HOLD = """
import sys, filelock
lock = filelock.UnixFileLock(sys.argv[1], thread_local=False, fallback_to_soft=False)
lock.acquire(timeout=10)
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def test_pool_lock_is_the_same_flock_as_filelocks(tmp_path: Path) -> None:
    """pool.lock is taken with a plain flock (devices._PoolMutex, for speed) while other
    sessions, or other tools, may take it with filelock: each must exclude the other, and two
    holders in one process must exclude each other too."""
    from filelock import Timeout, UnixFileLock

    from pytest_pto.devices import _PoolMutex

    pool = DevicePool(range(4), tmp_path / "locks")
    path = tmp_path / "locks" / "pool.lock"
    script = tmp_path / "filelock_hold.py"
    script.write_text(FILELOCK_HOLD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
        with pytest.raises(Timeout):
            _PoolMutex(path).acquire(timeout=0.2)
        with pytest.raises(DeviceUnavailable, match=r"^device_unavailable: waited"):
            pool.lease(1, "t::a", timeout=0.3)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    lease = pool.lease(1, "t::a", timeout=1)  # its holder gone, the lock is free again
    lease.release()

    mine = _PoolMutex(path)
    mine.acquire(timeout=1)
    try:
        with pytest.raises(Timeout):
            UnixFileLock(str(path), thread_local=False, fallback_to_soft=False).acquire(timeout=0)
        with pytest.raises(Timeout):
            _PoolMutex(path).acquire(timeout=0)  # another holder in this process
    finally:
        mine.release()
    mine.release()  # idempotent
    with _PoolMutex(path):
        pass
    flock = UnixFileLock(str(path), thread_local=False, fallback_to_soft=False)
    flock.acquire(timeout=0)
    flock.release()
