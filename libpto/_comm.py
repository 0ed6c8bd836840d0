"""Comm window: signal slots and data windows in POSIX shared memory, shared by a group of ranks.

One process per rank attaches to one named segment (see ``csrc/pto_comm.h`` for the layout and
the memory order). The usual shape: the parent creates the window as an *observer* (``rank``
``None``), hands its name to every rank (``PTO_COMM_NAME``), and each rank attaches by name with
its own rank number. The parent unlinks the name when the group is done.

Why a Python class around the C handle instead of raw cffi calls: a closed or unmapped handle
would crash the process, so every call goes through :meth:`CommWindow._call`, which keeps the
mapping alive while a call is in flight (even a long ``wait`` in another thread) and turns a
closed window into a clear :class:`~libpto.errors.RuntimeStateError`. Every C status becomes an
exception only through :func:`libpto.errors.check`.

Shared-memory names follow ``pto-<kind>-<ownerpid>-<random>``
(:func:`libpto._footprint.new_name`), so that :func:`~libpto._footprint.cleanup_stale` can
remove what a killed owner left behind, and nothing else.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from array import array
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from libpto._args import (
    I32,
    I64,
    U32,
    U64,
    cmp_arg,
    int_arg,
    invalid,
)
from libpto._checks import name_problem
from libpto._ffi import ffi, lib
from libpto._footprint import new_name, parse_name
from libpto.errors import CommTimeout, RuntimeStateError, check

__all__ = [
    "CommWindow",
]

SLICE_MS = 100  # longest time a wait stays in C before Python handles pending signals
#: name kind of a window mirrored across hosts (``libpto._comm_bridge``): it has one more slot
#: than it shows, the hidden last slot of every rank being that rank's barrier arrival counter
BRIDGED_KIND = "comm-bridged"


def create_bridged(size: int, slots: int | None = None) -> str:
    """Create (and leave, as an observer) a window for ``size`` ranks that a host agent mirrors
    to other hosts; returns its name. Its barrier is the counter barrier of
    :meth:`CommWindow.barrier`, because the C barrier word is reset by compare-and-swap and a
    reset cannot be mirrored as a delta."""
    shown = CommWindow.DEFAULT_SLOTS if slots is None else slots
    window = CommWindow.create(new_name(BRIDGED_KIND), size, None, slots=shown + 1)
    window.close()
    return window.name


# ---------------------------------------------------------------------------------- arguments


def _check_name(context: str, name: Any) -> None:
    """A NUL would cut the name short in C: another segment than the one named, which no
    cleanup recognises as ours."""
    problem = name_problem(name)
    if problem is not None:
        raise invalid(context, f"name={name!r} {problem}")


def _timeout_arg(context: str, timeout_ms: Any) -> int:
    """Milliseconds as the C int64 (``-1``: no deadline for ``None``)."""
    if timeout_ms is None:
        return -1
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)):
        raise invalid(context, f"timeout_ms={timeout_ms!r} must be a number of ms or None")
    if math.isnan(timeout_ms) or timeout_ms < 0:
        raise invalid(context, f"timeout_ms={timeout_ms!r} must be >= 0 (None: no deadline)")
    if math.isinf(timeout_ms):
        return -1
    return min(math.ceil(timeout_ms), I64 // 1_000_000)


def _rank_arg(context: str, rank: int | None) -> int:
    """``None`` (or -1) is an observer: a process that is not one of the ranks."""
    if rank is None:
        return -1
    return int_arg(context, "rank", rank, -1, I32)


# ---------------------------------------------------------------------------------- window


class _Handle:
    """The C handle plus in-flight accounting, kept apart from CommWindow for the finalizer.

    ``close`` only marks the handle closed; the mapping is released when the last in-flight
    call or pin ends, so a wait blocked in another thread never touches unmapped memory.

    Each call holds the mapping under a token of its own, added and discarded by one set
    operation: a Ctrl-C (a Python signal handler runs between bytecodes) can land before or
    after it, never half-way, so an interrupted call cannot leave a count behind that would
    keep ``close`` from detaching the rank for good.
    """

    def __init__(self, ptr: Any) -> None:
        self.ptr = ptr
        self.lock = threading.Lock()
        self.active: set[object] = set()
        self.pins: list[object] = []
        self.closed = False

    def enter(self, token: object) -> Any:
        with self.lock:
            if self.closed:
                return None
            self.active.add(token)
            return self.ptr

    def exit(self, token: object) -> None:
        """Give ``token``'s hold back (idempotent: a second call for the same token finds it
        gone and releases only what is due)."""
        self.active.discard(token)  # first, one operation: an interrupt lands before or after
        with self.lock:
            release = self.closed and not self.active
        if release:
            self._release()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            release = not self.active
        if release:
            self._release()

    def _release(self) -> None:
        with self.lock:  # close() and a last exit() may both get here: one of them closes
            ptr, self.ptr = self.ptr, None
        if ptr is not None:
            lib.pto_comm_close(ptr)


class CommWindow:
    """A rank's (or an observer's) view of one comm window.

    Create with :meth:`create` (the owner) and :meth:`attach` (everyone else, by name). Use as a
    context manager: leaving it closes the handle, and a window created here is also unlinked.
    """

    DEFAULT_SLOTS = 64
    DEFAULT_DATA_BYTES = 1 << 20

    def __init__(self, ptr: Any, name: str, *, owner: bool) -> None:
        """Internal: use :meth:`create` or :meth:`attach`."""
        self._h = _Handle(ptr)
        self._finalizer = weakref.finalize(self, self._h.close)
        self.name = name
        self.owner = owner
        out = ffi.new("int *")
        u32 = ffi.new("uint32_t *")
        u64 = ffi.new("uint64_t *")
        lib.pto_comm_rank(ptr, out)
        self.rank: int = int(out[0])
        lib.pto_comm_size(ptr, out)
        self.size: int = int(out[0])
        lib.pto_comm_creator_pid(ptr, out)
        self.creator_pid: int = int(out[0])
        lib.pto_comm_nslots(ptr, u32)
        self.slots: int = int(u32[0])
        lib.pto_comm_data_bytes(ptr, u64)
        self.data_bytes: int = int(u64[0])
        parsed = parse_name(name)
        #: mirrored across hosts: the last slot is hidden, the barrier counts arrivals in it
        self.bridged = parsed is not None and parsed[0] == BRIDGED_KIND and self.slots > 1
        self._bar_slot = self.slots - 1
        self._bar_target: int | None = None  # a timed-out bridged barrier still waiting for this
        if self.bridged:
            self.slots -= 1

    # ---- lifecycle

    @classmethod
    def create(
        cls,
        name: str | None,
        size: int,
        rank: int | None = None,
        *,
        slots: int = DEFAULT_SLOTS,
        data_bytes: int = DEFAULT_DATA_BYTES,
    ) -> CommWindow:
        """Create the segment ``name`` (``None``: :func:`new_name` ``("comm")``) for ``size``
        ranks, each with ``slots`` signal slots and ``data_bytes`` of data window, and attach as
        ``rank`` (``None``: observer, the usual choice for a parent)."""
        ctx = "CommWindow.create"
        if name is None:
            name = new_name("comm")
        _check_name(ctx, name)
        size_ = int_arg(ctx, "size", size, 1, int(lib.PTO_COMM_MAX_RANKS))
        rank_ = _rank_arg(ctx, rank)
        if rank_ >= size_:
            raise invalid(ctx, f"rank={rank_} out of range [0, {size_}) (or None for an observer)")
        slots_ = int_arg(ctx, "slots", slots, 1, int(lib.PTO_COMM_MAX_SLOTS))
        data_ = int_arg(ctx, "data_bytes", data_bytes, 0, U64)
        out = ffi.new("pto_comm **")
        st = lib.pto_comm_create(os.fsencode(name), size_, rank_, slots_, data_, out)
        check(st, ctx, window=name)
        return cls(out[0], name.lstrip("/"), owner=True)

    @classmethod
    def attach(cls, name: str, rank: int | None = None) -> CommWindow:
        """Attach to the existing window ``name`` as ``rank`` (``None``: observer)."""
        ctx = "CommWindow.attach"
        _check_name(ctx, name)
        rank_ = _rank_arg(ctx, rank)
        out = ffi.new("pto_comm **")
        st = lib.pto_comm_attach(os.fsencode(name), rank_, out)
        check(st, ctx, window=name)
        return cls(out[0], name.lstrip("/"), owner=False)

    @classmethod
    def attach_env(cls, env: Mapping[str, str] | None = None) -> CommWindow:
        """Attach as a chip worker does: window ``PTO_COMM_NAME``, rank ``PTO_RANK`` (from
        ``env``, default ``os.environ``)."""
        env = os.environ if env is None else env
        name = env.get("PTO_COMM_NAME", "")
        if not name:
            raise invalid("CommWindow.attach_env", "environment variable PTO_COMM_NAME is not set")
        raw = env.get("PTO_RANK", "")
        try:
            rank = int(raw)
        except ValueError:
            raise invalid(
                "CommWindow.attach_env", f"PTO_RANK={raw!r} must be an integer rank >= 0"
            ) from None
        if rank < 0:
            raise invalid("CommWindow.attach_env", f"PTO_RANK={raw!r} must be an integer rank >= 0")
        return cls.attach(name, rank)

    @staticmethod
    def unlink(name: str, *, missing_ok: bool = False) -> None:
        """Remove the name (mappings stay valid until every process closes its handle)."""
        _check_name("CommWindow.unlink", name)
        st = lib.pto_comm_unlink(os.fsencode(name))
        if missing_ok and st == lib.PTO_E_NOT_FOUND:
            return
        check(st, "CommWindow.unlink", window=name)

    def close(self) -> None:
        """Detach (idempotent). The rank entry is released so the rank can attach again."""
        self._h.close()
        self._finalizer.detach()

    @property
    def closed(self) -> bool:
        return self._h.closed

    def __enter__(self) -> CommWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self.owner:
            CommWindow.unlink(self.name, missing_ok=True)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"rank={self.rank} size={self.size}"
        return f"<CommWindow {self.name} {state}>"

    def __reduce__(self) -> Any:
        raise TypeError(
            "a CommWindow cannot be pickled: pass its name and attach in the other process"
        )

    # ---- handle plumbing

    def _ctx(self, op: str) -> str:
        """Context of an error: which window, which rank, which call."""
        who = "observer" if self.rank < 0 else f"rank {self.rank}"
        return f"comm window {self.name} ({who}) {op}"

    def _enter(self, op: str, token: object) -> Any:
        ptr = self._h.enter(token)
        if ptr is None:
            raise RuntimeStateError(f"{self._ctx(op)}: the window is closed", name="PTO_E_STATE")
        return ptr

    def _call(self, op: str, fn: Callable[..., int], *args: Any) -> int:
        """``fn(ptr, *args)`` with the mapping held: close() waits until the call is back."""
        # the token is discarded whatever happened (a Ctrl-C anywhere in here included): a
        # call that never entered discards nothing, one that did gives the mapping back
        token = object()
        try:
            return int(fn(self._enter(op, token), *args))
        finally:
            try:
                self._h.exit(token)
            except BaseException:
                # a Ctrl-C that landed inside exit() itself (its handler runs at the first
                # bytecode after the C call, which may be in there): finish the exit, which is
                # idempotent, then let the interrupt go on; a token left behind would keep
                # close() from ever detaching the rank
                self._h.exit(token)
                raise

    def pin(self) -> Any:
        """The raw ``pto_comm *`` for C code (``Runtime.bind_comm``); the mapping stays valid,
        even across :meth:`close`, until the matching :meth:`unpin`."""
        token = object()
        ptr = self._enter("pin", token)
        self._h.pins.append(token)
        return ptr

    def unpin(self) -> None:
        if self._h.pins:
            self._h.exit(self._h.pins.pop())

    def _sliced(self, op: str, timeout_ms: int, call: Callable[[Any, int, int], int]) -> int:
        """Run a blocking C wait in slices of at most ``SLICE_MS`` so this thread returns to
        the interpreter regularly: Ctrl-C and SIGTERM handlers run even during a wait with no
        deadline. The last slice reports the whole wait's duration in its timeout message."""
        start = time.monotonic()
        while True:
            elapsed = int((time.monotonic() - start) * 1000)
            if timeout_ms < 0:
                ms, final = SLICE_MS, False
            else:
                remaining = max(0, timeout_ms - elapsed)
                final = remaining <= SLICE_MS
                ms = remaining if final else SLICE_MS
            st = self._call(op, call, ms, timeout_ms - ms if final else 0)
            if st != lib.PTO_E_TIMEOUT or final:
                return int(st)

    # ---- signals

    def notify(self, peer: int, slot: int, value: int = 1, add: bool = False) -> None:
        """Store (or with ``add``, atomically add) ``value`` into ``peer``'s ``slot`` (release)."""
        ctx = self._ctx("notify")
        peer_ = int_arg(ctx, "peer", peer, -(1 << 31), I32)
        slot_ = int_arg(ctx, "slot", slot, 0, U32)
        value_ = int_arg(ctx, "value", value, 0, U64)
        op = lib.PTO_NOTIFY_ADD if add else lib.PTO_NOTIFY_SET
        st = self._call("notify", lib.pto_comm_notify, peer_, slot_, value_, op)
        check(st, ctx, window=self.name, peer=peer_, slot=slot_)

    def load(self, rank: int, slot: int) -> int:
        """Current value of ``rank``'s ``slot`` (acquire)."""
        ctx = self._ctx("load")
        rank_ = int_arg(ctx, "rank", rank, -(1 << 31), I32)
        slot_ = int_arg(ctx, "slot", slot, 0, U32)
        out = ffi.new("uint64_t *")
        st = self._call("load", lib.pto_comm_load, rank_, slot_, out)
        check(st, ctx, window=self.name, slot=slot_)
        return int(out[0])

    def test(self, slot: int, cmp: str | int, value: int) -> bool:
        """Does this rank's ``slot`` satisfy ``slot <cmp> value`` now? (no waiting)"""
        ctx = self._ctx("test")
        slot_ = int_arg(ctx, "slot", slot, 0, U32)
        cmp_ = cmp_arg(ctx, cmp)
        value_ = int_arg(ctx, "value", value, 0, U64)
        ok = ffi.new("int *")
        st = self._call("test", lib.pto_comm_test, slot_, cmp_, value_, ok)
        check(st, ctx, window=self.name, slot=slot_)
        return bool(ok[0])

    def wait(self, slot: int, cmp: str | int, value: int, timeout_ms: float | None = None) -> int:
        """Block until this rank's ``slot <cmp> value`` holds; return the value seen.

        Raises :class:`~libpto.errors.CommTimeout` after ``timeout_ms`` (``None``: no deadline)
        and :class:`~libpto.errors.PeerDead` when an attached peer process died meanwhile.
        The GIL is released while waiting.
        """
        ctx = self._ctx("wait")
        slot_ = int_arg(ctx, "slot", slot, 0, U32)
        cmp_ = cmp_arg(ctx, cmp)
        value_ = int_arg(ctx, "value", value, 0, U64)
        timeout_ = _timeout_arg(ctx, timeout_ms)
        last = ffi.new("uint64_t *")
        st = self._sliced(
            "wait",
            timeout_,
            lambda ptr, ms, elapsed: lib.pto_comm_wait_value(
                ptr, slot_, cmp_, value_, ms, elapsed, last
            ),
        )
        check(
            st,
            ctx,
            window=self.name,
            slot=slot_,
            cmp=cmp_,
            value=value_,
            timeout_ms=timeout_,
            last=int(last[0]),
        )
        return int(last[0])

    def barrier(self, timeout_ms: float | None = None) -> None:
        """Wait until every rank has called ``barrier`` (reusable, any number of rounds).

        On :class:`~libpto.errors.CommTimeout` this rank's arrival is withdrawn, so the window
        stays consistent and the barrier can be retried.
        """
        ctx = self._ctx("barrier")
        timeout_ = _timeout_arg(ctx, timeout_ms)
        if self.bridged and self.rank >= 0:
            self._bridged_barrier(ctx, timeout_)
            return
        st = self._sliced("barrier", timeout_, lib.pto_comm_barrier_ex)
        check(st, ctx, window=self.name, timeout_ms=timeout_)

    def _bridged_barrier(self, ctx: str, timeout_ms: int) -> None:
        """The barrier of a window mirrored across hosts: counters that only grow.

        Every rank's hidden slot counts all arrivals (an arrival ADDs 1 to every rank's slot;
        the mirror ships ADDs as deltas, so arrivals from all hosts count). Barrier ``k`` is
        complete for a rank once its own slot reaches ``k * size``; ``k`` follows from the slot
        before arriving (no rank can arrive at ``k + 1`` before this one arrived at ``k``).
        A timeout cannot withdraw an arrival that may already have crossed to another host,
        so it is kept: calling ``barrier`` again waits on for the same barrier.
        """
        slot, size = self._bar_slot, self.size
        target = self._bar_target
        if target is None:
            seen = self.load(self.rank, slot)
            target = (seen // size + 1) * size
            self._bar_target = target
            for peer in range(size):
                self.notify(peer, slot, 1, add=True)
        last = ffi.new("uint64_t *")
        st = self._sliced(
            "barrier",
            timeout_ms,
            lambda ptr, ms, elapsed: lib.pto_comm_wait_value(
                ptr, slot, lib.PTO_CMP_GE, target, ms, elapsed, last
            ),
        )
        if st == lib.PTO_E_TIMEOUT:
            arrived = int(last[0]) - (target - size)
            raise CommTimeout(
                f"{ctx}: {arrived} of {size} ranks arrived in {timeout_ms} ms (window mirrored"
                " across hosts: this rank's arrival stays; calling barrier again waits on)",
                name="PTO_E_TIMEOUT",
                status="PTO_E_TIMEOUT",
                window=self.name,
                timeout_ms=timeout_ms,
            )
        if st == 0:
            self._bar_target = None
        check(st, ctx, window=self.name, timeout_ms=timeout_ms)

    def rank_pid(self, rank: int) -> int:
        """Pid attached as ``rank`` (0: none)."""
        return self._rank_query("rank_pid", lib.pto_comm_rank_pid, rank)

    def peer_alive(self, rank: int) -> bool:
        """Is ``rank`` attached by a live process?"""
        return bool(self._rank_query("peer_alive", lib.pto_comm_peer_alive, rank))

    def _mark_remote_dead(self, rank: int, how: str | None) -> None:
        """Mark ``rank`` (running on another host, not attached here) dead there, so waits fail
        with :class:`~libpto.errors.PeerDead` "peer rank R (<how>) died"; ``None`` clears the
        mark. Only the comm mirror calls this (:mod:`libpto._comm_bridge`): on one host a dead
        rank is seen by its pid."""
        ctx = self._ctx("mark_remote_dead")
        rank_ = int_arg(ctx, "rank", rank, -(1 << 31), I32)
        text = ffi.NULL if not how else how.encode("utf-8", "replace")
        st = self._call("mark_remote_dead", lib.pto_comm_mark_remote_dead, rank_, text)
        check(st, ctx, window=self.name, rank=rank_)

    def _rank_query(self, op: str, fn: Callable[..., int], rank: int) -> int:
        """One int fact about ``rank`` from C (``fn(handle, rank, int *out)``)."""
        ctx = self._ctx(op)
        rank_ = int_arg(ctx, "rank", rank, -(1 << 31), I32)
        out = ffi.new("int *")
        st = self._call(op, fn, rank_, out)
        check(st, ctx, window=self.name)
        return int(out[0])

    # ---- data windows

    def _data_rank(self, ctx: str, rank: int | None) -> int:
        if rank is None:
            if self.rank < 0:
                raise invalid(ctx, "rank=None needs a rank handle; an observer must name the rank")
            return self.rank
        return int_arg(ctx, "rank", rank, -(1 << 31), I32)

    def write(self, offset: int, data: Any, rank: int | None = None) -> None:
        """Copy ``data`` (bytes, bytearray, memoryview, ``array``: any contiguous buffer) into
        ``rank``'s data window (default: this rank's) at byte ``offset``."""
        ctx = self._ctx("write")
        rank_ = self._data_rank(ctx, rank)
        offset_ = int_arg(ctx, "offset", offset, 0, U64)
        try:
            view = memoryview(data)
        except TypeError:
            raise invalid(ctx, f"data of type {type(data).__name__} is not a buffer") from None
        if not view.c_contiguous:
            raise invalid(ctx, "data must be a contiguous buffer")
        nbytes = view.nbytes
        src = ffi.from_buffer(view) if nbytes else ffi.NULL
        st = self._call("write", lib.pto_comm_write, rank_, offset_, src, nbytes)
        check(st, ctx, window=self.name, rank=rank_, offset=offset_, nbytes=nbytes)

    def read_into(self, offset: int, buffer: Any, rank: int | None = None) -> int:
        """Fill the writable ``buffer`` from ``rank``'s data window at ``offset``; returns bytes."""
        ctx = self._ctx("read_into")
        rank_ = self._data_rank(ctx, rank)
        offset_ = int_arg(ctx, "offset", offset, 0, U64)
        try:
            view = memoryview(buffer)
        except TypeError:
            raise invalid(ctx, f"buffer of type {type(buffer).__name__} is not a buffer") from None
        if view.readonly or not view.c_contiguous:
            raise invalid(ctx, "buffer must be writable and contiguous")
        nbytes = view.nbytes
        dst = ffi.from_buffer(view) if nbytes else ffi.NULL
        st = self._call("read", lib.pto_comm_read, rank_, offset_, dst, nbytes)
        check(st, ctx, window=self.name, rank=rank_, offset=offset_, nbytes=nbytes)
        return nbytes

    def read(self, offset: int, nbytes: int, rank: int | None = None) -> bytes:
        """``nbytes`` bytes of ``rank``'s data window (default: this rank's) from ``offset``."""
        ctx = self._ctx("read")
        n = int_arg(ctx, "nbytes", nbytes, 0, U64)
        if n > self.data_bytes:
            # checked before allocating: a huge nbytes must not exhaust memory first
            raise invalid(ctx, f"nbytes={n} exceeds the data window of {self.data_bytes} bytes")
        buf = bytearray(n)
        self.read_into(offset, buf, rank)
        return bytes(buf)

    def write_floats(self, offset: int, values: Iterable[float], rank: int | None = None) -> None:
        """Store ``values`` as float32 at byte ``offset``."""
        if isinstance(values, array) and values.typecode == "f":
            arr = values
        else:
            try:
                arr = array("f", values)
            except (TypeError, ValueError, OverflowError) as e:
                raise invalid(self._ctx("write_floats"), f"values must be numbers ({e})") from None
        self.write(offset, arr, rank)

    def read_floats(self, offset: int, count: int, rank: int | None = None) -> array[float]:
        """``count`` float32 values from byte ``offset``, as ``array('f')``."""
        ctx = self._ctx("read_floats")
        n = int_arg(ctx, "count", count, 0, U64 // 4)
        out = array("f")
        out.frombytes(self.read(offset, 4 * n, rank))
        return out
