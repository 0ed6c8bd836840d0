"""Typed wrapper over the C mailboxes (``csrc/mailbox.c``): one shared-memory segment per world,
one mailbox per rank.

All memory ordering lives in C (acquire/release atomics, futex waits); this module only turns
statuses into exceptions and bytes in and out of the payload channels.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from typing import Any

from libpto._args import I32, I64, U32, U64, int_arg
from libpto._checks import name_problem
from libpto._ffi import ffi, lib
from libpto.errors import InvalidArgument, RuntimeStateError, check

__all__ = [
    "DEFAULT_PAYLOAD_BYTES",
    "Channel",
    "Mailbox",
    "Stamp",
    "State",
    "mask",
    "now_ns",
    "set_proctitle",
]

DEFAULT_PAYLOAD_BYTES = 1 << 20


class State(enum.IntEnum):
    """Mailbox states of a chip worker (docs/design.md section 5); the numbers are the contract."""

    IDLE = 0
    TASK_READY = 1
    TASK_DONE = 2
    SHUTDOWN = 3
    CONTROL_REQUEST = 4
    CONTROL_DONE = 5
    INIT_DONE = 6
    INIT_FAILED = 7


class Stamp(enum.IntEnum):
    """Per-rank timestamps kept in the mailbox (ns, CLOCK_REALTIME)."""

    SPAWN = 0
    START = 1
    INIT_START = 2
    INIT_END = 3
    RELEASE = 4
    DISPATCH = 5
    OP_START = 6
    OP_END = 7
    EXIT = 8


class Channel(enum.IntEnum):
    TASK = 0
    CONTROL = 1
    INIT = 2


def mask(*states: State) -> int:
    out = 0
    for s in states:
        out |= 1 << int(s)
    return out


def now_ns() -> int:
    """CLOCK_REALTIME in ns, the clock of every mailbox timestamp (same as ``time.time_ns``)."""
    out = ffi.new("int64_t *")
    check(lib.pto_mbox_now(out), "pto_mbox_now")
    return int(out[0])


class Mailbox:
    """A mapped mailbox segment. ``create`` makes a new one; ``attach`` maps an existing one.

    Calls from several threads are fine; :meth:`close` unmaps, so it must not race a call in
    another thread (the owner closes only after its wait loops ended; a worker never closes).
    """

    def __init__(self, handle: Any, name: str) -> None:
        self._h = handle
        self.name = name
        n = ffi.new("int *")
        check(lib.pto_mbox_size(handle, n), f"mailbox {name}")
        self.size = int(n[0])
        cap = ffi.new("uint64_t *")
        check(lib.pto_mbox_capacity(handle, cap), f"mailbox {name}")
        self.capacity = int(cap[0])
        self._cell = ffi.new("uint32_t *")

    @classmethod
    def create(cls, name: str, size: int, payload_bytes: int = DEFAULT_PAYLOAD_BYTES) -> Mailbox:
        ctx = f"mailbox {name}"
        size_ = int_arg(ctx, "nranks", size, -(1 << 31), I32)
        payload_ = int_arg(ctx, "payload_bytes", payload_bytes, 0, U64)
        out = ffi.new("pto_mbox **")
        check(lib.pto_mbox_create(_name(name), size_, payload_, out), ctx)
        return cls(out[0], name)

    @classmethod
    def attach(cls, name: str) -> Mailbox:
        out = ffi.new("pto_mbox **")
        check(lib.pto_mbox_attach(_name(name), out), f"mailbox {name}")
        return cls(out[0], name)

    @staticmethod
    def unlink(name: str) -> bool:
        """Remove the segment name; False if it was already gone."""
        status = lib.pto_mbox_unlink(_name(name))
        if status == lib.PTO_E_NOT_FOUND:
            return False
        check(status, f"mailbox {name}")
        return True

    def close(self) -> None:
        if self._h is not None:
            lib.pto_mbox_close(self._h)
            self._h = None

    @property
    def closed(self) -> bool:
        return self._h is None

    def _handle(self) -> Any:
        if self._h is None:
            raise RuntimeStateError(f"mailbox {self.name}: used after close", name="PTO_E_STATE")
        return self._h

    def _rank(self, rank: Any) -> int:
        return int_arg(f"mailbox {self.name}", "rank", rank, -(1 << 31), I32)

    def _u32(self, arg: str, value: Any) -> int:
        return int_arg(f"mailbox {self.name}", arg, value, 0, U32)

    def _ms(self, timeout_ms: Any) -> int:
        return int_arg(f"mailbox {self.name}", "timeout_ms", timeout_ms, -(1 << 63), I64)

    # -- state word ---------------------------------------------------------------------------
    def load(self, rank: int) -> State:
        check(
            lib.pto_mbox_load(self._handle(), self._rank(rank), self._cell), f"mailbox {self.name}"
        )
        return State(self._cell[0])

    def store(self, rank: int, state: State) -> None:
        st = lib.pto_mbox_store(self._handle(), self._rank(rank), self._u32("state", state))
        check(st, f"mailbox {self.name}")

    def cas(self, rank: int, expected: State, desired: State) -> bool:
        ok = ffi.new("int *")
        check(
            lib.pto_mbox_cas(
                self._handle(),
                self._rank(rank),
                self._u32("expected", expected),
                self._u32("desired", desired),
                ok,
            ),
            f"mailbox {self.name}",
        )
        return bool(ok[0])

    def wait(self, rank: int, states: int, timeout_ms: int) -> State | None:
        """Block until the state is in the ``states`` mask; None on timeout or a signal."""
        status = lib.pto_mbox_wait(
            self._handle(),
            self._rank(rank),
            self._u32("states", states),
            self._ms(timeout_ms),
            self._cell,
        )
        if status in (lib.PTO_E_TIMEOUT, lib.PTO_E_ABORTED):
            return None
        check(status, f"mailbox {self.name}")
        return State(self._cell[0])

    # -- control word -------------------------------------------------------------------------
    def ctrl_load(self, rank: int) -> int:
        st = lib.pto_mbox_ctrl_load(self._handle(), self._rank(rank), self._cell)
        check(st, f"mailbox {self.name}")
        return int(self._cell[0])

    def ctrl_store(self, rank: int, value: State) -> None:
        st = lib.pto_mbox_ctrl_store(self._handle(), self._rank(rank), self._u32("value", value))
        check(st, f"mailbox {self.name}")

    def ctrl_wait(self, rank: int, values: int, timeout_ms: int) -> int | None:
        out = ffi.new("uint32_t *")  # own cell: the watcher thread calls this concurrently
        status = lib.pto_mbox_ctrl_wait(
            self._handle(), self._rank(rank), self._u32("values", values), self._ms(timeout_ms), out
        )
        if status in (lib.PTO_E_TIMEOUT, lib.PTO_E_ABORTED):
            return None
        check(status, f"mailbox {self.name}")
        return int(out[0])

    # -- doorbell -----------------------------------------------------------------------------
    def doorbell(self) -> int:
        check(lib.pto_mbox_doorbell(self._handle(), self._cell), f"mailbox {self.name}")
        return int(self._cell[0])

    def doorbell_wait(self, seen: int, timeout_ms: int) -> None:
        status = lib.pto_mbox_doorbell_wait(
            self._handle(), self._u32("seen", seen), self._ms(timeout_ms)
        )
        if status not in (lib.PTO_E_TIMEOUT, lib.PTO_E_ABORTED):
            check(status, f"mailbox {self.name}")

    # -- timestamps, pid, exit record -----------------------------------------------------------
    def stamp(self, rank: int, which: Stamp, ns: int = 0) -> None:
        ctx = f"mailbox {self.name}"
        which_ = int_arg(ctx, "which", which, -(1 << 31), I32)
        ns_ = int_arg(ctx, "ns", ns, -(1 << 63), I64)
        check(lib.pto_mbox_set_time(self._handle(), self._rank(rank), which_, ns_), ctx)

    def time(self, rank: int, which: Stamp) -> int:
        which_ = int_arg(f"mailbox {self.name}", "which", which, -(1 << 31), I32)
        return self._times(rank, (which_,))[0]

    def times(self, rank: int) -> dict[Stamp, int]:
        """Every stamp of ``rank`` (read three times a round: checked once, not per stamp)."""
        return dict(zip(Stamp, self._times(rank, [int(s) for s in Stamp]), strict=True))

    def _times(self, rank: int, which: Iterable[int]) -> list[int]:
        """The stamps ``which`` (already checked) of ``rank``: the one place they are read."""
        ctx = f"mailbox {self.name}"
        handle, rank_, out = self._handle(), self._rank(rank), ffi.new("int64_t *")
        got = []
        for w in which:
            check(lib.pto_mbox_get_time(handle, rank_, w, out), ctx)
            got.append(int(out[0]))
        return got

    def set_pid(self, rank: int, pid: int) -> None:
        ctx = f"mailbox {self.name}"
        pid_ = int_arg(ctx, "pid", pid, -(1 << 31), I32)
        check(lib.pto_mbox_set_pid(self._handle(), self._rank(rank), pid_), ctx)

    def pid(self, rank: int) -> int:
        out = ffi.new("int32_t *")
        check(lib.pto_mbox_get_pid(self._handle(), self._rank(rank), out), f"mailbox {self.name}")
        return int(out[0])

    def set_exit(self, rank: int, wait_status: int) -> None:
        ctx = f"mailbox {self.name}"
        ws = int_arg(ctx, "wait_status", wait_status, -(1 << 31), I32)
        check(lib.pto_mbox_set_exit(self._handle(), self._rank(rank), ws), ctx)

    def exit_status(self, rank: int) -> int | None:
        """The reaped worker's wait status, or None while it has not been reaped."""
        exited = ffi.new("int *")
        status = ffi.new("int32_t *")
        st = lib.pto_mbox_get_exit(self._handle(), self._rank(rank), exited, status)
        check(st, f"mailbox {self.name}")
        return int(status[0]) if exited[0] else None

    # -- payload --------------------------------------------------------------------------------
    def write(self, rank: int, channel: Channel, data: bytes) -> None:
        ctx = f"mailbox {self.name} rank {rank}"
        if not isinstance(data, bytes):
            raise InvalidArgument(f"{ctx}: data must be bytes, got {type(data).__name__}")
        ch = int_arg(ctx, "channel", channel, -(1 << 31), I32)
        check(lib.pto_mbox_write(self._handle(), self._rank(rank), ch, data, len(data)), ctx)

    def read(self, rank: int, channel: Channel) -> bytes:
        ptr = ffi.new("void **")
        n = ffi.new("uint64_t *")
        ctx = f"mailbox {self.name}"
        ch = int_arg(ctx, "channel", channel, -(1 << 31), I32)
        check(lib.pto_mbox_payload(self._handle(), self._rank(rank), ch, ptr, n), ctx)
        return bytes(ffi.buffer(ptr[0], n[0])) if n[0] else b""


def _name(name: Any) -> bytes:
    problem = name_problem(name)  # a NUL would name another segment in C
    if problem is not None:
        raise InvalidArgument(f"mailbox name {name!r}: {problem}", name="PTO_E_INVALID_ARG")
    return os.fsencode(name)


def set_proctitle(title: str) -> None:
    """Rename this process as ``ps`` and ``/proc/<pid>/cmdline`` show it."""
    problem = name_problem(title)
    if problem is not None:
        raise InvalidArgument(f"set_proctitle: title={title!r} {problem}")
    check(lib.pto_set_proctitle(os.fsencode(title)), "pto_set_proctitle")
