"""The one liveness rule and the owner-named temporary folders (:mod:`libpto._footprint`).

Real processes only: a zombie is a child that exited and was not reaped yet, a dead pid is one
of a child that was reaped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libpto
from libpto._footprint import DEAD_STATES, pid_alive


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_live_dead_and_non_pids() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)
    assert not pid_alive(_dead_pid())
    assert libpto.pid_alive is pid_alive


def test_a_zombie_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:  # exited but not reaped: state Z
            state = Path(f"/proc/{proc.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            if state in DEAD_STATES:
                break
            time.sleep(0.01)
        assert state in DEAD_STATES
        os.kill(proc.pid, 0)  # kill(pid, 0) alone would call it alive
        assert not pid_alive(proc.pid)
    finally:
        proc.wait()


def test_someone_elses_process_is_alive() -> None:
    assert pid_alive(1)  # init: EPERM for an unprivileged user, still alive


def test_owner_temp_dir_sweeps_dead_owners_only() -> None:
    kind = f"t{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.gettempdir())
    dead = Path(tempfile.mkdtemp(prefix=f"pto-{kind}-{_dead_pid()}-", dir=tmp))
    live = Path(tempfile.mkdtemp(prefix=f"pto-{kind}-1-", dir=tmp))
    mine = again = live
    try:
        mine = libpto.owner_temp_dir(kind)
        assert mine.is_dir() and mine.name.startswith(f"pto-{kind}-{os.getpid()}-")
        assert not dead.exists() and live.exists()
        again = libpto.owner_temp_dir(kind)
        assert again != mine and again.is_dir()
    finally:
        for path in {dead, live, mine, again}:
            if path.exists():
                path.rmdir()


def test_sigterm_cleanup_is_recognised() -> None:
    assert not libpto.is_sigterm_cleanup(signal.SIG_DFL)
    assert not libpto.is_sigterm_cleanup(lambda signum, frame: None)


def test_python_and_c_share_the_rule() -> None:
    """The same verdict as C's ``pto_sys_pid_alive`` (the comm window's and mailboxes' rule)."""
    from libpto._ffi import lib

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 60.0
        while pid_alive(zombie.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # until it exited (unreaped: a zombie)
        for pid in (os.getpid(), 1, 0, -1, zombie.pid, _dead_pid()):
            assert pid_alive(pid) == bool(lib.pto_sys_pid_alive(pid)), pid
    finally:
        zombie.wait()
