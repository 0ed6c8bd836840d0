"""The C pid-liveness rule (pto_sys.h), checked on real processes: a live child, an unreaped
zombie, a reaped pid, pid 1 (alive whether kill(2) answers 0 or EPERM), and pids <= 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from libpto._ffi import lib


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_pid_liveness_rule() -> None:
    assert lib.pto_sys_pid_alive(os.getpid()) == 1
    assert lib.pto_sys_pid_alive(1) == 1  # exists; kill(1, 0) may say EPERM: still alive
    assert lib.pto_sys_pid_alive(0) == 0
    assert lib.pto_sys_pid_alive(-1) == 0
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert lib.pto_sys_pid_alive(child.pid) == 1
        child.kill()
        deadline = time.monotonic() + 30  # the zombie appears within ms; 30 s is the margin
        while _state(child.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(child.pid) == "Z"
        assert lib.pto_sys_pid_alive(child.pid) == 0  # a zombie will never notify again
    finally:
        child.kill()
        child.wait()
    assert lib.pto_sys_pid_alive(child.pid) == 0  # reaped: gone
