"""Device pool: all-or-none leases of device groups through cross-process file locks.

Layout of the lock directory (shared by every pytest session, xdist worker and CI job that
uses the same devices)::

    pool.lock            held only while one process decides and takes a group (microseconds;
                         a plain flock, see _PoolMutex; the device locks are filelock's)
    held.json            {device: pid} of the devices leased now, read and written under
                         pool.lock only: the free-map that makes a lease O(devices requested)
    device-<id>.lock     flock held for the whole lease; the kernel drops it when the holder dies
    device-<id>.holder   JSON {pid, host, test, since}: who holds the device (information only)
    queue/ticket-*       one per waiting process, flocked by it while it waits (fairness)
    quarantine/device-<id>.json   a device nobody may lease: its evidence (reason, code,
                         outcome, test, round, host, pid, time, optional expiry); written
                         atomically under pool.lock, read under pool.lock by every lease

Why this shape:

* **All or none, no deadlock.** A group is taken only under ``pool.lock`` with non-blocking
  tries on every device; a process never holds some devices while blocking on others, so two
  sessions that want overlapping groups can never wait on each other in a cycle.
* **No starvation.** A process that could not get its group leaves a ticket. Newer requests
  must leave older tickets what they can use now; a ticket older than :data:`AGING_S` that
  still cannot be served makes every newer request wait, so the pool drains for it.
* **No stale locks.** The truth is the flock, never the holder file nor the free-map: a dead
  holder's flock is gone, and whoever next finds its device free removes the stale holder file.
* **Cost independent of the pool size.** A lease does not try every device's lock (a 4096-device
  simulated pool would open 4098 files per lease): it picks candidates from ``held.json`` and
  tries only their flocks. The map is a hint checked against the flocks: a chosen device whose
  flock is busy is marked held and another is chosen; an entry whose holder pid is dead is
  checked against its flock and dropped on the next lease; when the map cannot serve a request
  (entries of a SIGKILLed session that never updated it, say), every entry is verified by its
  flock and stale ones are dropped -- at once, then at most every second while the request
  waits -- so the map always converges on the flocks.
* **Quarantine.** A device that failed with a poisoning code (or a failed health probe) gets
  a quarantine file; every lease, in every session sharing the lock dir, lists the quarantine
  directory under ``pool.lock`` and skips those devices, so once the file is written no new
  lease gets the device. The directory holds only quarantined devices, so this keeps a
  lease's cost independent of the pool size. When the healthy devices are fewer than a round
  needs, the lease fails at once (``device_unavailable`` naming the quarantined devices and
  why) instead of waiting for the lock timeout.
* **Adjacent groups.** The default choice prefers aligned blocks (0-1, 2-3, ...), then any
  contiguous run, then the lowest free ids; the ``pytest_pto_select_devices`` hook can override.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock

import libpto
from pytest_pto._platforms import (
    AscendPlatform,
    CudaPlatform,
    NoDevices,
    Platform,
    SimPlatform,
    get_platform,
    platform_names,
)

__all__ = [
    "AGING_S",
    "AscendPlatform",
    "CudaPlatform",
    "DevicePool",
    "DeviceState",
    "DeviceUnavailable",
    "Holder",
    "Lease",
    "NoDevices",
    "Platform",
    "Quarantine",
    "SimPlatform",
    "choose_group",
    "get_platform",
    "platform_names",
]

AGING_S = 1.0  # a waiter older than this that still cannot be served blocks newer requests
_POLL_MIN_S = 0.005
_POLL_MAX_S = 0.1
_VERIFY_ALL_S = 1.0  # a waiting request re-checks every held.json entry this often
_HELD_MAP = "held.json"

Chooser = Callable[[Sequence[int], frozenset[int], int], "tuple[int, ...] | None"]


class DeviceUnavailable(Exception):
    """A round could not lease its devices within the lock timeout; names the holders."""

    def __init__(self, message: str, *, holders: Sequence[Holder] = (), waited_s: float = 0.0):
        super().__init__(message)
        self.message = message
        self.holders = list(holders)
        self.waited_s = waited_s

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_unavailable, (self.message, self.holders, self.waited_s))


def _rebuild_unavailable(message: str, holders: list[Holder], waited: float) -> DeviceUnavailable:
    return DeviceUnavailable(message, holders=holders, waited_s=waited)


@dataclass(frozen=True)
class Holder:
    """Who holds a device, as written in its holder file."""

    device: int
    pid: int
    host: str
    test: str
    since: float  # time.time()

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        stamp = time.strftime("%H:%M:%S", time.localtime(self.since))
        return (
            f"device {self.device} held by pid {self.pid} on {self.host} "
            f"({self.test or '?'}) since {stamp} ({now - self.since:.1f} s)"
        )


@dataclass(frozen=True)
class Quarantine:
    """Why a device is quarantined, as written in its quarantine file (the evidence)."""

    device: int
    reason: str  # e.g. "device_error_code=507899" or "probe: npu-smi health of card 3: Alarm"
    outcome: str
    code: int | None
    test: str
    round: int | None
    host: str
    pid: int
    since: float  # time.time(), stamped under pool.lock
    until: float | None = None  # expiry (--pto-quarantine-ttl), None: until released

    def expired(self, now: float | None = None) -> bool:
        return self.until is not None and (time.time() if now is None else now) >= self.until

    def describe(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        where = f"{self.test or '?'}" + (f" round {self.round}" if self.round else "")
        return (
            f"device {self.device} quarantined: {self.reason} in {where} "
            f"(pid {self.pid} on {self.host}, {stamp})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "reason": self.reason,
            "outcome": self.outcome,
            "code": self.code,
            "test": self.test,
            "round": self.round,
            "host": self.host,
            "pid": self.pid,
            "since": self.since,
            "until": self.until,
        }


def _read_quarantine(path: Path, device: int) -> Quarantine | None:
    try:
        d = json.loads(path.read_text())
        return Quarantine(
            device=device,
            reason=str(d.get("reason", "?")),
            outcome=str(d.get("outcome", "")),
            code=int(d["code"]) if d.get("code") is not None else None,
            test=str(d.get("test", "")),
            round=int(d["round"]) if d.get("round") is not None else None,
            host=str(d.get("host", "?")),
            pid=int(d.get("pid", 0)),
            since=float(d.get("since", 0.0)),
            until=float(d["until"]) if d.get("until") is not None else None,
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        # unreadable evidence still quarantines: a device comes back only on purpose
        return Quarantine(device, "unreadable quarantine file", "", None, "", None, "?", 0, 0.0)


_QFILE = re.compile(r"device-([0-9]+)\.json")


@dataclass(frozen=True)
class DeviceState:
    """One line of ``pto-devices``: free, or held (by ``holder`` when its file says so)."""

    device: int
    held: bool
    holder: Holder | None = None
    stale_holder_removed: bool = False


def choose_group(pool: Sequence[int], free: frozenset[int], count: int) -> tuple[int, ...] | None:
    """Default group choice: aligned blocks, then contiguous runs, then the lowest free ids."""
    if count > len(free):
        return None
    order = list(pool)
    for start in range(0, len(order) - count + 1, count):  # aligned: 0-1, 2-3, ...
        block = order[start : start + count]
        if all(d in free for d in block) and _contiguous(block):
            return tuple(block)
    for start in range(len(order) - count + 1):  # any contiguous run
        block = order[start : start + count]
        if all(d in free for d in block) and _contiguous(block):
            return tuple(block)
    return tuple(sorted(free)[:count])


def _contiguous(block: Sequence[int]) -> bool:
    return all(b - a == 1 for a, b in itertools.pairwise(block))


@dataclass
class Lease:
    """Devices held by one round; :meth:`release` (idempotent) gives them back."""

    devices: tuple[int, ...]
    wait_ms: float
    test: str
    #: time.time() when the group was taken, under pool.lock (quarantines are stamped there
    #: too, so the two order exactly)
    since: float = 0.0
    _locks: list[filelock.BaseFileLock] = field(default_factory=list, repr=False)
    _holder_files: list[Path] = field(default_factory=list, repr=False)
    _pool: DevicePool | None = field(default=None, repr=False)
    released: bool = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        # holder file first: a holder file never outlives its lock except when the holder died
        for path in self._holder_files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self._pool is not None:
            # the flocks go while the free-map is updated under pool.lock, so nobody sees a
            # device free in the map and busy in its flock (or the reverse) because of us
            self._pool._give_back(self.devices, self._locks)
        for lock in self._locks:
            lock.release(force=True)
        self._locks.clear()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _device_lock(path: Path) -> filelock.BaseFileLock:
    return filelock.UnixFileLock(
        str(path), thread_local=False, fallback_to_soft=False, preserve_lock_file=True
    )


class _PoolMutex:
    """``pool.lock``: a plain flock on a descriptor of its own, held while one process decides
    and takes a group (tens of microseconds).

    Why not a filelock lock, as the device locks are: filelock's bookkeeping around the flock
    (fork tracking, its lock registry, a directory check) costs ~100 us per acquire and
    release, and this lock is taken twice in every round (lease and release), on the round's
    critical path, where the flock itself costs a few microseconds. It is the same flock on
    the same file as filelock's ``UnixFileLock``, so every session excludes every other,
    whichever of the two takes it. A descriptor per acquire: two threads of one process
    exclude each other too (a flock belongs to the open file, not the process)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._fd = -1

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock, waiting at most ``timeout`` seconds (None: as long as it takes);
        ``filelock.Timeout`` when it stays busy, as filelock raises."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                _flock_within(fd, timeout, self.path)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)  # even if a fork of ours shares the descriptor
            finally:
                os.close(fd)

    def __enter__(self) -> _PoolMutex:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flock_within(fd: int, timeout: float, path: str) -> None:
    """flock ``fd`` exclusively, polling (the lock is held for microseconds: the first
    retries come quickly) until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise filelock.Timeout(path)
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.005)


class DevicePool:
    """The devices of one platform/selection, leased through the locks in ``lock_dir``."""

    def __init__(
        self,
        devices: Sequence[int],
        lock_dir: Path,
        *,
        chooser: Chooser | None = None,
        host: str | None = None,
        honour_quarantine: bool = True,
    ) -> None:
        if not devices:
            raise ValueError("a device pool needs at least one device")
        self.devices = tuple(devices)
        self.lock_dir = Path(lock_dir)
        self.chooser = chooser or choose_group
        self.host = host or socket.gethostname()
        #: False (``--pto-quarantine off``): leases ignore quarantine files
        self.honour_quarantine = honour_quarantine
        self._ensure_dirs()

    def _ensure_dirs(self) -> None:
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.lock_dir / "queue").mkdir(exist_ok=True)
        except OSError as exc:
            raise ValueError(f"lock dir {self.lock_dir}: cannot create it ({exc})") from None
        if not os.access(self.lock_dir, os.W_OK | os.X_OK):
            raise ValueError(f"lock dir {self.lock_dir}: not writable by this user")

    # -- paths ---------------------------------------------------------------------------------
    def lock_path(self, device: int) -> Path:
        return self.lock_dir / f"device-{device}.lock"

    def holder_path(self, device: int) -> Path:
        return self.lock_dir / f"device-{device}.holder"

    def _pool_lock(self) -> _PoolMutex:
        return _PoolMutex(self.lock_dir / "pool.lock")

    # -- the free-map (held.json), under pool.lock only -----------------------------------------
    def _read_held(self) -> dict[int, int]:
        try:
            data = json.loads((self.lock_dir / _HELD_MAP).read_text())
            return {int(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError, TypeError):
            return {}  # missing or damaged: the flocks of chosen devices correct it

    def _write_held(self, held: dict[int, int]) -> None:
        _write_in_place(self.lock_dir / _HELD_MAP, {str(k): v for k, v in sorted(held.items())})

    def _verify_held(self, held: dict[int, int], everything: bool = True) -> bool:
        """Drop map entries whose flock is free (holder died, or released without updating
        the map); only entries with a dead or unknown pid unless ``everything``. True if any
        entry was dropped."""
        changed = False
        for device, pid in list(held.items()):
            if not everything and pid > 0 and libpto.pid_alive(pid):
                continue
            lock = _device_lock(self.lock_path(device))
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                continue
            try:
                with contextlib.suppress(FileNotFoundError):
                    self.holder_path(device).unlink()  # stale: its owner's flock is gone
                del held[device]
                changed = True
            finally:
                lock.release(force=True)
        return changed

    def _give_back(self, devices: Sequence[int], locks: Sequence[filelock.BaseFileLock]) -> None:
        """Release a lease's flocks and drop its devices from the map, under pool.lock. Without
        pool.lock within a few seconds, the flocks are released alone: the map entries are then
        found stale by the next request that needs them (their flocks are free)."""
        pool_lock = self._pool_lock()
        try:
            pool_lock.acquire(timeout=5.0)
        except filelock.Timeout:
            return
        try:
            held = self._read_held()
            for device in devices:
                held.pop(device, None)
            for lock in locks:
                lock.release(force=True)
            self._write_held(held)
        finally:
            pool_lock.release()

    def quarantine_path(self, device: int) -> Path:
        return self.lock_dir / "quarantine" / f"device-{device}.json"

    # -- quarantine ----------------------------------------------------------------------------
    def quarantine(
        self,
        device: int,
        *,
        reason: str,
        outcome: str = "",
        code: int | None = None,
        test: str = "",
        round: int | None = None,
        ttl: float | None = None,
    ) -> Quarantine:
        """Quarantine ``device`` with its evidence (atomic file, under pool.lock): from now
        on no lease of any session sharing the lock dir takes it."""
        with self._pool_lock():  # stamped under the lock, as leases are: they order exactly
            now = time.time()
            q = Quarantine(
                device=device,
                reason=reason,
                outcome=outcome,
                code=code,
                test=test,
                round=round,
                host=self.host,
                pid=os.getpid(),
                since=now,
                until=now + ttl if ttl is not None else None,
            )
            self.quarantine_path(device).parent.mkdir(exist_ok=True)  # made on first use
            _write_json(self.quarantine_path(device), q.to_json())
        return q

    def _quarantined_locked(self, now: float | None = None) -> dict[int, Quarantine]:
        """Quarantined devices (caller holds pool.lock; expired entries are removed)."""
        qdir = self.lock_dir / "quarantine"
        try:
            names = os.listdir(qdir)
        except FileNotFoundError:
            return {}
        out: dict[int, Quarantine] = {}
        now = time.time() if now is None else now
        for name in names:
            m = _QFILE.fullmatch(name)
            if m is None:
                continue
            device = int(m.group(1))
            q = _read_quarantine(qdir / name, device)
            if q is None:
                continue
            if q.expired(now):
                with contextlib.suppress(FileNotFoundError):
                    (qdir / name).unlink()
                continue
            out[device] = q
        return out

    def quarantined(self) -> dict[int, Quarantine]:
        """Every quarantined device of the lock dir (any pool), with its evidence."""
        with self._pool_lock():
            return self._quarantined_locked()

    def release_quarantine(self, devices: Iterable[int] | None = None) -> list[int]:
        """Bring ``devices`` (None: all) back into the pool; the ids actually released."""
        with self._pool_lock():
            current = self._quarantined_locked()
            wanted = set(current) if devices is None else set(devices) & set(current)
            for device in sorted(wanted):
                with contextlib.suppress(FileNotFoundError):
                    self.quarantine_path(device).unlink()
        return sorted(wanted)

    def _unusable(self, count: int, avoid: frozenset[int]) -> tuple[frozenset[int], str | None]:
        """Under pool.lock: the devices a lease must skip, and why it can never be served (too
        few healthy devices), or None. Costs a listing of the quarantine directory."""
        if not self.honour_quarantine:
            quarantined: dict[int, Quarantine] = {}
        else:
            mine = set(self.devices)
            quarantined = {d: q for d, q in self._quarantined_locked().items() if d in mine}
        healthy = len(self.devices) - len(quarantined)
        if healthy - len(avoid - set(quarantined)) >= count:
            return frozenset(quarantined) | avoid, None
        if healthy >= count:  # a retry's preference for other devices cannot be met: drop it
            return frozenset(quarantined), None
        why = "; ".join(q.describe() for _, q in sorted(quarantined.items()))
        return frozenset(quarantined), (
            f"device_unavailable: {count} devices needed, only {healthy} healthy of "
            f"devices {','.join(map(str, self.devices))} in {self.lock_dir} "
            f"({len(quarantined)} quarantined: {why}; release with pto-devices --release ID)"
        )

    # -- leasing -------------------------------------------------------------------------------
    def lease(
        self, count: int, test: str = "", timeout: float = 300.0, avoid: Iterable[int] = ()
    ) -> Lease:
        """Lease ``count`` devices, all or none; raise :class:`DeviceUnavailable` after timeout,
        or at once when fewer healthy (not quarantined) devices exist than ``count``.
        ``avoid``: devices to leave out if the pool has enough others (a retry's first
        attempt's devices)."""
        if not 1 <= count <= len(self.devices):
            raise ValueError(
                f"cannot lease {count} devices from a pool of {len(self.devices)} "
                f"({','.join(map(str, self.devices))})"
            )
        start = time.monotonic()
        deadline = start + timeout
        ticket: _Ticket | None = None
        delay = _POLL_MIN_S
        pool_lock = self._pool_lock()
        next_full_check = start  # the first attempt the map cannot serve re-checks every entry
        avoided = frozenset(avoid) & frozenset(self.devices)
        try:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    pool_lock.acquire(timeout=max(remaining, 0.0))
                except filelock.Timeout:
                    break
                try:
                    skip, never = self._unusable(count, avoided)
                    if never is not None:
                        raise DeviceUnavailable(never, waited_s=time.monotonic() - start)
                    may_check = time.monotonic() >= next_full_check
                    lease, checked = self._try_take(count, test, ticket, may_check, skip)
                    if checked:
                        next_full_check = time.monotonic() + _VERIFY_ALL_S
                    if lease is None and ticket is None:
                        ticket = _Ticket.create(self.lock_dir / "queue", count)
                finally:
                    pool_lock.release()
                if lease is not None:
                    lease.wait_ms = (time.monotonic() - start) * 1000.0
                    return lease
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
                delay = min(delay * 1.5, _POLL_MAX_S)
        finally:
            if ticket is not None:
                ticket.close()
        waited = time.monotonic() - start
        states = self.state()
        holders = [s.holder for s in states if s.holder is not None]
        held = [s.device for s in states if s.held]
        text = "; ".join(h.describe() for h in holders) or (
            f"held devices {','.join(map(str, held))} (no holder files)" if held else "none held"
        )
        raise DeviceUnavailable(
            f"device_unavailable: waited {waited:.1f} s (--pto-lock-timeout) for {count} of "
            f"devices {','.join(map(str, self.devices))} in {self.lock_dir}; {text}",
            holders=holders,
            waited_s=waited,
        )

    def _try_take(
        self,
        count: int,
        test: str,
        ticket: _Ticket | None,
        may_check: bool = True,
        skip: frozenset[int] = frozenset(),
    ) -> tuple[Lease | None, bool]:
        """Under pool.lock: take a group now if fairness allows; ``(lease or None, checked)``.

        Only the flocks of the chosen devices are tried, so a lease the map can serve costs the
        same for any pool size. When the map cannot serve the request and ``may_check``, every
        map entry is verified against its flock first (stale entries of dead holders go) and
        ``checked`` is True; the caller rate-limits that while it waits. ``skip``: quarantined
        (or avoided) devices, never taken."""
        held = self._read_held()
        # entries of dead pids (a SIGKILLed session): a kill(pid, 0) each, a flock only for the
        # dead ones, which then leave the map -- so a freed block is preferred again at once
        changed = self._verify_held(held, everything=False)
        checked = False
        for _attempt in range(len(self.devices) + 2):
            available = {d for d in self.devices if d not in held and d not in skip}
            now = time.time()
            for older in _Ticket.live_before(self.lock_dir / "queue", ticket):
                group = choose_group(self.devices, frozenset(available), older.count)
                if group is not None:
                    available -= set(group)  # left for the older waiter's next poll
                elif now - older.since > AGING_S:
                    available.clear()  # the head has waited long enough: drain for it
                    break
            group = self.chooser(self.devices, frozenset(available), count) or None
            if group is not None and (len(set(group)) != count or not set(group) <= available):
                raise ValueError(
                    f"device chooser returned {group!r}: must be {count} distinct free devices "
                    f"out of {sorted(available)} (or () to wait)"
                )
            if group is None:
                if may_check and not checked:
                    checked = True
                    if self._verify_held(held, everything=True):
                        changed = True
                        continue  # stale entries went: choose again
                if changed:
                    self._write_held(held)
                return None, checked
            locks: dict[int, filelock.BaseFileLock] = {}
            try:
                busy = []
                for device in group:
                    lock = _device_lock(self.lock_path(device))
                    try:
                        lock.acquire(timeout=0)
                    except filelock.Timeout:
                        busy.append(device)
                        continue
                    locks[device] = lock
                if busy:
                    # held by someone the map did not know (a damaged or missing map): record
                    # them (pid unknown: verified on every attempt) and choose again
                    for lock in locks.values():
                        lock.release(force=True)
                    locks.clear()
                    for device in busy:
                        held[device] = 0
                    changed = True
                    continue
                since = time.time()
                lease = Lease(devices=tuple(group), wait_ms=0.0, test=test, since=since, _pool=self)
                lease._locks = [locks[d] for d in group]
                for device in group:
                    path = self.holder_path(device)
                    _write_holder(
                        path,
                        {"pid": os.getpid(), "host": self.host, "test": test, "since": since},
                    )
                    lease._holder_files.append(path)
                    held[device] = os.getpid()
                self._write_held(held)
                locks.clear()
                return lease, checked
            except BaseException:
                for lock in locks.values():
                    lock.release(force=True)
                raise
        if changed:
            self._write_held(held)
        return None, checked

    # -- inspection ----------------------------------------------------------------------------
    def state(self, clean: bool = True) -> list[DeviceState]:
        """Every device's state; with ``clean``, holder files of dead holders are removed."""
        out: list[DeviceState] = []
        for device in self.devices:
            holder = _read_holder(self.holder_path(device), device)
            lock = _device_lock(self.lock_path(device))
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                out.append(DeviceState(device, True, holder))
                continue
            try:
                # re-read under the lock: the file we saw may belong to a holder that just left
                stale = self.holder_path(device).exists()
                if stale and clean:
                    with contextlib.suppress(FileNotFoundError):
                        self.holder_path(device).unlink()
                out.append(DeviceState(device, False, None, stale and clean))
            finally:
                lock.release(force=True)
        return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _write_in_place(path: Path, data: dict[str, Any]) -> None:
    """Overwrite ``path`` where it is (write, then cut to length): for a file read and
    written under one lock only (held.json, under pool.lock). Why not write-and-rename: ext4
    flushes the data of a file renamed over another (auto_da_alloc), about a millisecond per
    lease and release, tens on a busy disk. A write cut short by a crash leaves a damaged map,
    which readers already treat as empty and rebuild from the flocks."""
    raw = json.dumps(data).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.pwrite(fd, raw, 0)
        os.ftruncate(fd, len(raw))
    finally:
        os.close(fd)


def _write_holder(path: Path, data: dict[str, Any]) -> None:
    """A holder file, written in one write where it is (no temporary file and rename: two
    metadata operations less per device per lease). A reader that catches it half-written
    sees no holder (``_read_holder`` -> None): holder files are information, the flock is the
    truth."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps(data).encode())
    finally:
        os.close(fd)


def _read_holder(path: Path, device: int) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        return Holder(
            device=device,
            pid=int(data["pid"]),
            host=str(data.get("host", "?")),
            test=str(data.get("test", "")),
            since=float(data.get("since", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class _Ticket:
    """A waiting process's place in line: a file it keeps flocked while it waits."""

    path: Path
    fd: int
    count: int
    since: float

    @classmethod
    def create(cls, queue: Path, count: int) -> _Ticket:
        since = time.time()
        name = f"ticket-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        path = queue / name
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({"count": count, "since": since, "pid": os.getpid()}).encode())
        return cls(path, fd, count, since)

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)

    @staticmethod
    def live_before(queue: Path, mine: _Ticket | None) -> Iterable[_Ticket]:
        """Live tickets older than ``mine`` (all live tickets when ``mine`` is None), oldest
        first; tickets whose owner died (flock free) are removed on the way. Call under
        pool.lock only, so a ticket is never seen between its creation and its flock."""
        try:
            names = sorted(os.listdir(queue))
        except FileNotFoundError:
            return []
        out: list[_Ticket] = []
        for name in names:
            if mine is not None and name >= mine.path.name:
                break
            path = queue / name
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    data = json.loads(os.pread(fd, 4096, 0) or b"{}")
                    out.append(_Ticket(path, -1, int(data.get("count", 1)), float(data["since"])))
                else:  # nobody holds it: its owner died
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            except (ValueError, KeyError):
                continue
            finally:
                os.close(fd)
        return out
