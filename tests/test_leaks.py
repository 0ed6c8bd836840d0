"""The leak checker (tests/leaks.py) finds what every "nothing leaks" claim rests on.

Real leaks, made on purpose and cleaned up by each test: a grandchild process two levels down
(with its parent alive, and orphaned onto our subreaper), a ``/dev/shm`` segment named with
our pid, and a device lock held by a process of ours (ourselves, a child, a grandchild).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from libpto import pid_alive
from pytest_pto.devices import DevicePool
from tests import leaks

# A child that starts a grandchild (sleep), prints the grandchild's pid, then either waits
# (argv[1] == "stay") or exits at once, orphaning the grandchild onto our subreaper.
PARENT = """
import subprocess, sys, time
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(g.pid, flush=True)
if sys.argv[1] == "stay":
    time.sleep(120)
"""

# A child that starts a grandchild holding device 0 of the pool in argv[1]; both wait.
LOCK_GRANDCHILD = """
import subprocess, sys, time
code = (
    "import sys, time; from pathlib import Path; from pytest_pto.devices import DevicePool; "
    "lease = DevicePool(range(2), Path(sys.argv[1])).lease(1, 'leak::grandchild', timeout=30); "
    "print(lease.devices[0], flush=True); time.sleep(120)"
)
g = subprocess.Popen([sys.executable, "-c", code, sys.argv[1]], stdout=subprocess.PIPE, text=True)
print(g.pid, g.stdout.readline().strip(), flush=True)
time.sleep(120)
"""


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:  # our children and orphans re-parented to us are ours to reap
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    leaks.reap_zombies()
    # an orphan that init reaps is not ours to wait for: poll until the kernel has finished its
    # exit (files and flocks are released before it turns zombie); SIGKILL takes ms, 30 s is
    # the margin for a loaded runner (asserting right after waitpid failed 1 in 3 at load 15)
    deadline = time.monotonic() + 30.0
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def spawned() -> Iterator[set[int]]:
    """Pids a test started (directly or two levels down); killed and reaped afterwards."""
    pids: set[int] = set()
    yield pids
    kill_all(pids)


def test_finds_a_grandchild_under_a_live_child(spawned: set[int]) -> None:
    before = leaks.descendants()
    child = subprocess.Popen([sys.executable, "-c", PARENT, "stay"], stdout=subprocess.PIPE)
    spawned.add(child.pid)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    spawned.add(grandchild)
    child.stdout.close()
    tree = leaks.descendants()
    assert {child.pid, grandchild} <= tree
    assert grandchild not in leaks.descendants(grandchild)  # a process is not its own
    assert leaks.descendants(child.pid) == {grandchild}
    procs, _ = leaks.wait_for_no_leaks(before, set(), grace=0.2)
    assert procs == {child.pid, grandchild}
    child.kill()
    child.wait()


def test_finds_an_orphaned_grandchild_reparented_to_us(spawned: set[int]) -> None:
    before = leaks.descendants()
    child = subprocess.Popen([sys.executable, "-c", PARENT, "exit"], stdout=subprocess.PIPE)
    spawned.add(child.pid)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    spawned.add(grandchild)
    child.stdout.close()
    assert child.wait(timeout=30) == 0
    procs, _ = leaks.wait_for_no_leaks(before, set(), grace=0.2)
    assert procs == {grandchild}  # the exited child is gone; its child is still ours


def test_a_clean_run_reports_nothing(spawned: set[int]) -> None:
    before = leaks.descendants()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    spawned.add(child.pid)
    assert child.wait(timeout=30) == 0
    assert leaks.wait_for_no_leaks(before, leaks.shm_segments(), grace=0.2) == (set(), set())


def test_finds_a_leaked_segment_named_with_our_pid() -> None:
    before = leaks.shm_segments()
    ours = f"pto-leaktest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    foreign = f"pto-leaktest-1-{uuid.uuid4().hex[:8]}"  # pid 1 is alive and not ours
    made = []
    try:
        for name in (ours, foreign):
            os.close(os.open(f"/dev/shm/{name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
            made.append(name)
        assert leaks.owner_pid(ours) == os.getpid()
        mine = leaks.shm_segments({os.getpid()})
        assert ours in mine and foreign not in mine
        _, shm = leaks.wait_for_no_leaks(leaks.descendants(), before, grace=0.2)
        assert ours in shm and foreign not in shm
    finally:
        for name in made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"/dev/shm/{name}")
    assert ours not in leaks.shm_segments({os.getpid()})


def test_finds_a_device_lock_held_by_this_process(tmp_path: Path) -> None:
    pool = DevicePool(range(2), tmp_path / "locks")
    lock = str(tmp_path / "locks" / "device-0.lock")
    assert lock not in leaks.held_device_locks()
    with pool.lease(1, "leak::self", timeout=10) as lease:
        assert lease.devices == (0,)
        assert lock in leaks.held_device_locks()
        assert str(tmp_path / "locks" / "device-1.lock") not in leaks.held_device_locks()
    assert lock not in leaks.held_device_locks()


def test_finds_a_device_lock_held_by_a_grandchild(tmp_path: Path, spawned: set[int]) -> None:
    locks = tmp_path / "locks"
    child = subprocess.Popen(
        [sys.executable, "-c", LOCK_GRANDCHILD, str(locks)], stdout=subprocess.PIPE, text=True
    )
    spawned.add(child.pid)
    assert child.stdout is not None
    grandchild, device = map(int, child.stdout.readline().split())
    spawned.add(grandchild)
    child.stdout.close()
    path = str(locks / f"device-{device}.lock")
    assert path in leaks.held_device_locks()  # default: this process and its descendants
    assert path in leaks.held_device_locks({grandchild})
    assert path not in leaks.held_device_locks({os.getpid(), child.pid})  # not theirs
    kill_all({child.pid, grandchild})
    assert path not in leaks.held_device_locks()  # the kernel dropped it with its holder
