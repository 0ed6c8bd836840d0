"""Leak accounting used by every test: child processes, /dev/shm segments and device locks.

The test process makes itself a child subreaper, so a process leaked by anything we start
(even a grandchild whose parent died) is re-parented to us and shows up as our descendant.

Only what *this* test created is judged: the machine may run other pytest-pto sessions (other
CI jobs, other copies of this suite) at the same time, and their processes and segments are
none of our business. Processes are judged from our own process tree; a segment
``pto-<kind>-<pid>-<hex>`` is ours only when ``<pid>`` is this process or a process seen in
its tree during the test (:class:`TreeWatch` samples the tree while the test runs, so a
pytester subprocess or chip worker that created a segment and has since exited still counts).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path
from types import TracebackType

from libpto._footprint import DEAD_STATES, SHM_DIR, unlink_segment

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
        if state.encode() in DEAD_STATES:  # libpto's liveness rule: a zombie is no process
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
    return any(marker in describe(pid) for marker in ZYGOTE_MARKERS) or is_session_launch(pid)


def is_session_launch(pid: int) -> bool:
    """A process of this session's live ``--pto-launcher=mpirun`` launch: mpirun, its daemons,
    the host agents and their zygotes live for the session, as the zygote does (the
    multi-host tests check that they go with the session). Ranks (``pto-chip``) still count."""
    from pytest_pto._launcher import live_tokens

    tokens = live_tokens()
    if not tokens or "pto-chip" in describe(pid):
        return False
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(f"PTO_LAUNCH_TOKEN={t}".encode() in env for t in tokens)


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


def shm_segments(ours: set[int] | None = None) -> set[str]:
    """``/dev/shm`` entries of our naming scheme.

    With ``ours`` (pids of this test process and every descendant seen during the test), only
    segments whose name carries one of those pids count. A segment of a dead owner is *not*
    ours by default: on a shared machine it is usually another session's (a killed worker of
    another CI job), and judging or removing it would fail or break that session.
    """
    try:
        names = {n for n in os.listdir(SHM_DIR) if n.startswith(SHM_PREFIXES)}
    except FileNotFoundError:  # pragma: no cover
        return set()
    if ours is None:
        return names
    return {name for name in names if owner_pid(name) in ours}


class TreeWatch:
    """Collect every pid seen in this process's tree while a test runs.

    A segment's owner pid is usually gone by teardown (a pytester subprocess, a killed chip
    worker), and the tree at teardown no longer shows it; sampling the tree every ``period``
    seconds during the test records it. A process that lives shorter than ``period`` and
    creates a segment could be missed: none of ours does (creators are World owners, which
    live for a whole round, and Python start-up alone outlasts the period).
    """

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.seen: set[int] = {os.getpid()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leaks-tree-watch", daemon=True)

    def sample(self) -> set[int]:
        tree = descendants()
        self.seen |= tree
        return tree

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def __enter__(self) -> TreeWatch:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def remove_segment(name: str) -> None:
    """Unlink a leaked segment so one leak does not cascade into every later test."""
    unlink_segment(name)


def describe(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def wait_for_no_leaks(
    before_procs: set[int],
    before_shm: set[str],
    grace: float = 5.0,
    seen: set[int] | None = None,
) -> tuple[set[int], set[str]]:
    """Wait up to ``grace`` seconds for new processes/segments to go; return what remains.

    The grace covers a process that has been told to exit but is still unwinding; anything
    still there afterwards is a leak. ``seen``: pids of our tree observed during the test
    (:class:`TreeWatch`); segments named after any other pid belong to someone else.
    """
    deadline = time.monotonic() + grace
    seen = {os.getpid(), *before_procs, *(seen or ())}
    while True:
        reap_zombies()
        tree = descendants()
        seen |= tree
        procs = {p for p in tree - before_procs if not is_zygote(p)}
        shm = shm_segments(seen) - before_shm
        if (not procs and not shm) or time.monotonic() > deadline:
            return procs, shm
        time.sleep(0.05)


DEVICE_LOCK_NAME = "device-"  # device-<id>.lock in any lock dir (pytest_pto.devices layout)


def _flocked_inodes() -> dict[tuple[int, int, int], set[int]]:
    """(major, minor, inode) of every file with a FLOCK lock held -> the pids that took it,
    from ``/proc/locks``."""
    out: dict[tuple[int, int, int], set[int]] = {}
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:  # pragma: no cover - no procfs
        return out
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            out.setdefault(key, set()).add(int(fields[4]))
        except ValueError:
            continue
    return out


def held_device_locks(pids: set[int] | None = None) -> set[str]:
    """Device lock files (``device-<id>.lock``, any lock dir) flocked through an open file of
    one of ``pids`` (default: this process and its descendants).

    Only our own process tree is judged: other sessions on the machine hold their devices
    legitimately. The truth is the kernel's lock table, matched against the files our processes
    have open, so a lock held by a leaked grandchild counts as well as one of our own.
    """
    pids = {os.getpid(), *descendants()} if pids is None else pids
    flocked = _flocked_inodes()
    out: set[str] = set()
    if not flocked:
        return out
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            name = os.path.basename(target)
            if not (name.startswith(DEVICE_LOCK_NAME) and name.endswith(".lock")):
                continue
            try:
                st = os.stat(fd)
            except OSError:
                continue
            key = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
            if flocked.get(key, set()) & pids:  # taken by one of ours, not a concurrent probe
                out.add(target)
    return out
