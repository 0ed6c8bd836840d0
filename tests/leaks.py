"""Leak accounting used by every test: child processes, /dev/shm segments and device locks.

The test process makes itself a child subreaper, so a process leaked by anything we start
(even a grandchild whose parent died) is re-parented to us and shows up as our descendant.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
SHM_PREFIXES = ("pto-", "pto_")
# A session-lived process that forks chip workers is not a leak while its session lives; only
# the zygote itself is exempt, its children (the chip workers) are still counted.
ZYGOTE_MARKERS = ("pto-zygote", "multiprocessing.forkserver", "multiprocessing.resource_tracker")


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def descendants(root: int | None = None) -> set[int]:
    """Live (non-zombie) descendants of ``root`` (default: this process)."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        state, ppid = rest[0], int(rest[1])
        if state == "Z":
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def is_zygote(pid: int) -> bool:
    return any(marker in describe(pid) for marker in ZYGOTE_MARKERS)


def reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def owner_pid(name: str) -> int | None:
    """Owner pid embedded in a segment name ``pto-<kind>-<pid>-<random>``."""
    parts = name.split("-")
    if len(parts) >= 3 and parts[2].isdigit():
        return int(parts[2])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def shm_segments(ours: set[int] | None = None) -> set[str]:
    """``/dev/shm`` entries of our naming scheme.

    With ``ours`` (pids of this test process and its descendants), only segments owned by one
    of them, or by a pid that is dead, count: a concurrent session's live segments are not ours
    to judge, let alone remove.
    """
    try:
        names = {n for n in os.listdir("/dev/shm") if n.startswith(SHM_PREFIXES)}
    except FileNotFoundError:  # pragma: no cover
        return set()
    if ours is None:
        return names
    out = set()
    for name in names:
        pid = owner_pid(name)
        if pid is None or pid in ours or not _alive(pid):
            out.add(name)
    return out


def describe(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def wait_for_no_leaks(
    before_procs: set[int], before_shm: set[str], grace: float = 5.0
) -> tuple[set[int], set[str]]:
    """Wait up to ``grace`` seconds for new processes/segments to go; return what remains.

    The grace covers a process that has been told to exit but is still unwinding; anything
    still there afterwards is a leak.
    """
    deadline = time.monotonic() + grace
    seen = {os.getpid(), *before_procs}
    while True:
        reap_zombies()
        tree = descendants()
        seen |= tree
        procs = {p for p in tree - before_procs if not is_zygote(p)}
        shm = shm_segments(seen) - before_shm
        if (not procs and not shm) or time.monotonic() > deadline:
            return procs, shm
        time.sleep(0.05)
