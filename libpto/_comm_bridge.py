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
 - data windows, as the 4 KiB chunks that differ from the last synced copy, looked for only
   when a slot changed (the local ranks' windows) or every ``DATA_SWEEP_S`` (every window): a
   consumer learns of data only through a signal, and the data diff is taken *after* the slot
   change was seen and shipped *before* the slot delta in one message, which the receiver
   applies in order. A release-notify after a write into one's own window on one host is thus
   an acquire-visible write on every host. A rank's write into *another* rank's window is
   shipped by the periodic sweep only, without that ordering.
 - the barrier, as counters: the C barrier word is reset by compare-and-swap, which no delta
   can carry, so a mirrored window (made by :func:`libpto._comm.create_bridged`) has one hidden
   slot per rank counting barrier arrivals, and ``CommWindow.barrier`` waits on it (see
   ``CommWindow._bridged_barrier``). The hidden slots are read before the others and shipped
   after them, so a barrier releases every slot write made before it on every host.
Not mirrored: peer liveness (a remote rank is never "dead" locally; the launcher ends the
round when any rank fails).

The mirror polls the segment (``POLL_S`` while slots move, backing off to ``IDLE_POLL_S``):
a cross-host signal costs about one poll period plus one TCP hop.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any

from libpto._comm import CommWindow
from libpto._footprint import SHM_DIR

__all__ = ["CommMirror", "Update"]

CHUNK = 4096
POLL_S = 0.0002
IDLE_POLL_S = 0.001
IDLE_AFTER = 1000  # sweeps (about 0.3 s) without a change before it polls at IDLE_POLL_S
DATA_SWEEP_S = 0.05
_MASK = (1 << 64) - 1
# struct comm_hdr (csrc/comm.c): magic u64, version u32, nranks i32, nslots u32, creator i32,
# data_bytes u64, total_bytes u64, ranks_off u64, slots_off u64, data_off u64, data_stride u64
_HDR = struct.Struct("<QIiIiQQQQQQ")
_SLOT_BYTES = 64  # one cache line per slot, the value (u64) first

#: (data chunks [(rank, offset, bytes)], slot deltas [(rank, slot, delta)])
Update = tuple[list[tuple[int, int, bytes]], list[tuple[int, int, int]]]


class CommMirror:
    """One host's side of a mirrored window: ``collect`` what changed here, ``apply`` what
    changed elsewhere. Thread-safe: a poll thread collects while a receive thread applies."""

    def __init__(self, name: str, local_ranks: Iterable[int] | None = None) -> None:
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
        self._slots_off, self._data_off, self._stride = hdr[8], hdr[9], hdr[10]
        self._slots_len = self.nranks * self.nslots * _SLOT_BYTES
        self._slots_shadow = bytearray(
            self._mm[self._slots_off : self._slots_off + self._slots_len]
        )
        self._data_shadow = [bytearray(self._window(r)) for r in range(self.nranks)]
        #: the ranks running on this host: their windows are the ones a seen signal releases
        self.local_ranks = sorted(range(self.nranks) if local_ranks is None else local_ranks)
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

    def collect(self, data_too: bool = False) -> Update | None:
        """What changed here since the last collect or apply, or None."""
        with self.lock:
            if self.closed:
                return None
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
            if deltas or data_too:  # after the slots: a write released by a seen notify
                ranks = range(self.nranks) if data_too else self.local_ranks
                for rank in ranks:
                    cur, shadow = self._window(rank), self._data_shadow[rank]
                    if cur == shadow:
                        continue
                    for off in range(0, self.data_bytes, CHUNK):
                        piece = cur[off : off + CHUNK]
                        if piece != shadow[off : off + CHUNK]:
                            chunks.append((rank, off, piece))
                            shadow[off : off + len(piece)] = piece
            if not deltas and not chunks:
                return None
            return chunks, deltas

    def apply(self, update: Update) -> None:
        """Another host's changes: data first, then the slot deltas (which wake waiters)."""
        chunks, deltas = update
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
        import time

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
