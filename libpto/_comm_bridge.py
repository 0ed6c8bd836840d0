"""A comm window that spans hosts: each host's shared-memory window, mirrored over TCP.

Why a mirror rather than a new transport: the simulated runtime's kernels (``notify``, ``wait``,
``copy`` from a peer's data window) act on the ``pto_comm`` segment in C, and ops such as
:func:`libpto.ops.mesh_allreduce` must not change when their ranks sit on two machines. So every
host keeps a full window of the global size in its own ``/dev/shm``; its ranks attach to it as
on one machine, and a :class:`CommMirror` (run by the host agent, an observer of the window)
ships what changed to the other hosts and applies what they ship.

What is mirrored, and the one ordering rule it keeps (local ranks are the host's own):
 - signal slots as *deltas* (``new - last synced``, mod 2**64), applied with an atomic ADD
   through the C API (so sleeping waiters wake). Concurrent ADDs from ranks on different hosts
   to one slot (every peer notifying rank r) therefore all count; a SET works when nobody else
   writes the slot at the same time, as on one host.
 - data windows, *every* rank's, as the byte runs that differ from the last synced copy. They
   are looked for whenever a slot changed, *after* the slots were read, and shipped *before*
   the slot deltas in one message, which the receiver applies in order. So a write followed by
   a release-notify is acquire-visible on every host once the notify is seen there, whoever's
   window it wrote: its own (a rank publishing) or another rank's (a remote put), as on one
   host. Byte runs, not whole chunks: ranks on two hosts may write disjoint bytes of one
   window at once (every peer putting its part into rank r's window), and applying a whole
   chunk would overwrite the other host's bytes with stale ones.
 - the barrier, as counters: the C barrier word is reset by compare-and-swap, which no delta
   can carry, so a mirrored window (made by :func:`libpto._comm.create_bridged`) has one hidden
   slot per rank counting barrier arrivals, and ``CommWindow.barrier`` waits on it (see
   ``CommWindow._bridged_barrier``). The hidden slots are read before the others and shipped
   after them, so a barrier releases every slot write made before it on every host.
 - peer death: every ``LIVENESS_S`` the mirror looks at its local ranks' pids (the pid rule
   of ``libpto._footprint.pid_alive``, as C applies it) *before* reading the slots, and ships
   "rank r died (pid, host)" after the data and deltas of the same message: every notify the
   rank made before dying arrives first. The receiver marks the rank dead in its window
   (``pto_comm_mark_remote_dead``), so a wait there fails with ``PeerDead`` "peer rank r (pid
   P on host h) died", as on one host. A host agent that drops off the mesh (its connection
   ends) gets all its ranks marked dead by the others (:meth:`CommMirror.mark_host_lost`).
The periodic sweep (every ``DATA_SWEEP_S``, every window, even without a slot change) stays
as a fallback only: it carries writes that no signal follows (data a peer learns of out of
band, e.g. between two ops), which have no order to keep; it promises nothing about timing.

The mirror polls the segment (``POLL_S`` while slots move, backing off to ``IDLE_POLL_S``):
a cross-host signal costs about one poll period plus one TCP hop.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from libpto._comm import CommWindow
from libpto._footprint import SHM_DIR, pid_alive

__all__ = ["CommMirror", "MirrorPump", "Update"]

CHUNK = 4096
POLL_S = 0.0002
IDLE_POLL_S = 0.001
IDLE_AFTER = 1000  # sweeps (about 0.3 s) without a change before it polls at IDLE_POLL_S
DATA_SWEEP_S = 0.05
LIVENESS_S = 0.01  # how often the local ranks' pids are checked (C checks every 10 ms too)
_MASK = (1 << 64) - 1
# struct comm_hdr (csrc/comm.c): magic u64, version u32, nranks i32, nslots u32, creator i32,
# data_bytes u64, total_bytes u64, ranks_off u64, slots_off u64, data_off u64, data_stride u64
_HDR = struct.Struct("<QIiIiQQQQQQ")
_SLOT_BYTES = 64  # one cache line per slot, the value (u64) first
_RANK_BYTES = 64  # struct comm_rank: the attached pid (i32) first
_CHANGED = re.compile(rb"[^\x00]+")  # runs of nonzero bytes of an XOR: the changed bytes


class Update(NamedTuple):
    """What changed on one host, applied elsewhere in this order (data, signals, deaths)."""

    #: changed byte runs of data windows: (rank, offset, bytes)
    chunks: list[tuple[int, int, bytes]]
    #: signal slot deltas: (rank, slot, delta mod 2**64)
    deltas: list[tuple[int, int, int]]
    #: local ranks found dead: (rank, how, e.g. "pid 42 on host b"), or (rank, None) once a
    #: live process holds the rank again
    deaths: Sequence[tuple[int, str | None]] = ()


def _changed_runs(cur: bytes, shadow: bytearray) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of every run of bytes where ``cur`` differs from ``shadow``."""
    for off in range(0, len(cur), CHUNK):
        piece = cur[off : off + CHUNK]
        old = shadow[off : off + CHUNK]
        if piece == old:
            continue
        n = len(piece)
        xor = (int.from_bytes(piece, "little") ^ int.from_bytes(old, "little")).to_bytes(
            n, "little"
        )
        for m in _CHANGED.finditer(xor):
            yield off + m.start(), piece[m.start() : m.end()]


class CommMirror:
    """One host's side of a mirrored window: ``collect`` what changed here, ``apply`` what
    changed elsewhere. Thread-safe: a poll thread collects while a receive thread applies."""

    def __init__(
        self,
        name: str,
        local_ranks: Iterable[int] | None = None,
        host: str = "",
        hosts: Sequence[str] | None = None,
    ) -> None:
        """``host``: this host's name, for the death texts; ``hosts``: every rank's host (by
        global rank), so a lost host's ranks can be named (None: every rank not local)."""
        self.name = name
        self.comm = CommWindow.attach(name, None)
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            self._mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        hdr = _HDR.unpack_from(self._mm, 0)
        self.nranks, self.nslots = hdr[2], hdr[3]
        self.data_bytes = hdr[5]
        self._ranks_off = hdr[7]
        self._slots_off, self._data_off, self._stride = hdr[8], hdr[9], hdr[10]
        self._slots_len = self.nranks * self.nslots * _SLOT_BYTES
        self._slots_shadow = bytearray(
            self._mm[self._slots_off : self._slots_off + self._slots_len]
        )
        self._data_shadow = [bytearray(self._window(r)) for r in range(self.nranks)]
        #: the ranks running on this host: their windows are the ones a seen signal releases
        self.local_ranks = sorted(range(self.nranks) if local_ranks is None else local_ranks)
        self.host = host
        self.hosts = list(hosts) if hosts is not None else None
        self._dead: dict[int, int] = {}  # local rank -> the dead pid already reported
        self._next_liveness = 0.0
        self.lock = threading.Lock()
        self.closed = False

    def _window(self, rank: int) -> bytes:
        start = self._data_off + rank * self._stride
        return self._mm[start : start + self.data_bytes]

    def _value(self, buf: Any, rank: int, slot: int) -> int:
        off = (rank * self.nslots + slot) * _SLOT_BYTES
        return int(struct.unpack_from("<Q", buf, off)[0])

    def _slots_now(self) -> bytes | bytearray:
        """A snapshot of every slot. The barrier slots are read first, so an arrival seen here
        implies every slot write its rank made before arriving is seen as well."""
        if not self.comm.bridged:
            return self._mm[self._slots_off : self._slots_off + self._slots_len]
        bar, base = self.comm._bar_slot, self._slots_off
        offs = [base + (r * self.nslots + bar) * _SLOT_BYTES for r in range(self.nranks)]
        arrivals = [struct.unpack_from("<Q", self._mm, off)[0] for off in offs]
        now = bytearray(self._mm[self._slots_off : self._slots_off + self._slots_len])
        for off, value in zip(offs, arrivals, strict=True):
            struct.pack_into("<Q", now, off - self._slots_off, value)
        return now

    def _deaths(self) -> list[tuple[int, str | None]]:
        """Local ranks that died (or live again) since the last look, every ``LIVENESS_S``."""
        now = time.monotonic()
        if now < self._next_liveness:
            return []
        self._next_liveness = now + LIVENESS_S
        out: list[tuple[int, str | None]] = []
        where = f" on host {self.host}" if self.host else ""
        for rank in self.local_ranks:
            pid = struct.unpack_from("<i", self._mm, self._ranks_off + rank * _RANK_BYTES)[0]
            if pid == 0:
                continue  # not attached yet, or detached cleanly: not dead
            if not pid_alive(pid):
                if self._dead.get(rank) != pid:
                    self._dead[rank] = pid
                    out.append((rank, f"pid {pid}{where}"))
            elif rank in self._dead:
                del self._dead[rank]
                out.append((rank, None))
        return out

    def collect(self, data_too: bool = False) -> Update | None:
        """What changed here since the last collect or apply, or None."""
        with self.lock:
            if self.closed:
                return None
            # deaths before the slots: every write a dead rank made is in what is read next
            deaths = self._deaths()
            now = self._slots_now()
            deltas: list[tuple[int, int, int]] = []
            if now != self._slots_shadow:
                for i in range(0, self._slots_len, _SLOT_BYTES):
                    if now[i : i + 8] != self._slots_shadow[i : i + 8]:
                        rank, slot = divmod(i // _SLOT_BYTES, self.nslots)
                        new = self._value(now, rank, slot)
                        old = self._value(self._slots_shadow, rank, slot)
                        deltas.append((rank, slot, (new - old) & _MASK))
                        self._slots_shadow[i : i + 8] = now[i : i + 8]
            if self.comm.bridged:  # barrier arrivals last: they release what came before
                deltas.sort(key=lambda d: d[1] == self.comm._bar_slot)
            chunks: list[tuple[int, int, bytes]] = []
            if deltas or deaths or data_too:  # after the slots: writes a seen notify releases
                for rank in range(self.nranks):  # every window: remote puts ride along too
                    cur, shadow = self._window(rank), self._data_shadow[rank]
                    if cur == shadow:
                        continue
                    for off, piece in _changed_runs(cur, shadow):
                        chunks.append((rank, off, piece))
                        shadow[off : off + len(piece)] = piece
            if not deltas and not chunks and not deaths:
                return None
            return Update(chunks, deltas, deaths)

    def apply(self, update: Update) -> None:
        """Another host's changes: data first, then the slot deltas (which wake waiters), then
        the deaths (a rank's last notifies count before it is seen dead)."""
        chunks, deltas, deaths = update
        with self.lock:
            if self.closed:
                return
            for rank, off, piece in chunks:
                self.comm.write(off, piece, rank=rank)
                self._data_shadow[rank][off : off + len(piece)] = piece
            for rank, slot, delta in deltas:
                if delta:
                    self.comm.notify(rank, slot, delta, add=True)
                i = (rank * self.nslots + slot) * _SLOT_BYTES
                old = self._value(self._slots_shadow, rank, slot)
                struct.pack_into("<Q", self._slots_shadow, i, (old + delta) & _MASK)
            for rank, how in deaths:
                self.comm._mark_remote_dead(rank, how)

    def mark_host_lost(self, host: str) -> list[int]:
        """``host``'s agent left the mesh (its connection ended): none of its ranks can signal
        here any more, so mark them dead; waits on them fail with ``PeerDead`` rather than
        time out. Returns the ranks marked."""
        with self.lock:
            if self.closed:
                return []
            local = set(self.local_ranks)
            ranks = [
                r
                for r in range(self.nranks)
                if r not in local and (self.hosts is None or self.hosts[r] == host)
            ]
            for rank in ranks:
                self.comm._mark_remote_dead(rank, f"host {host}: host agent gone")
            return ranks

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.comm.close()
            self._mm.close()


class MirrorPump(threading.Thread):
    """Collects a mirror's changes and hands them to ``send`` until stopped."""

    def __init__(self, mirror: CommMirror, send: Callable[[Update], None]) -> None:
        super().__init__(name=f"pto-mirror-{mirror.name}", daemon=True)
        self.mirror = mirror
        self.send = send
        self.stop = threading.Event()

    def run(self) -> None:
        idle = 0
        last_data = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            sweep = now - last_data > DATA_SWEEP_S
            if sweep:
                last_data = now
            try:
                update = self.mirror.collect(data_too=sweep)
            except (ValueError, OSError):  # closed under us
                return
            if update is not None:
                idle = 0
                self.send(update)
            else:
                idle += 1
            self.stop.wait(POLL_S if idle < IDLE_AFTER else IDLE_POLL_S)
