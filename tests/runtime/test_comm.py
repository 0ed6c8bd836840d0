"""Comm window across real processes: signals, data windows, the barrier, timeouts, dead peers,
argument validation and stale-segment cleanup.

Ranks are separate processes started with the ``spawn`` context (never fork a test process
that may run threads). Timing: timeouts are hundreds of ms against waits that never complete,
and "prompt" means well under a 10 s budget, so a loaded 2-CPU machine cannot flip a result.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

import libpto
from libpto import (
    CommError,
    CommTimeout,
    CommWindow,
    InvalidArgument,
    PeerDead,
    RuntimeStateError,
    cleanup_stale,
    new_name,
    parse_name,
)

CTX = mp.get_context("spawn")
# Deadline for a spawned rank process to report back: only reached when something hangs. A
# rank normally reports in ~1 s; under TSan (5-10x slower) with 8 spawned interpreters on a
# loaded 2-CPU runner, 20 s was seen to run out; 120 s keeps >= 10x over the slowest case.
JOIN_S = 120.0


# ---------------------------------------------------------------------------------- harness


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result: tuple[str, Any] = ("ok", fn(*args))
    except BaseException as exc:
        result = ("err", exc)
    try:
        conn.send(result)
    except Exception as exc:  # an unpicklable result: say so instead of hanging the parent
        conn.send(("err", RuntimeError(f"cannot send result: {exc!r}")))
    conn.close()


def run_ranks(jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    """Run each ``fn(*args)`` in its own spawned process; return results in order, re-raising
    the first child exception."""
    procs, conns = [], []
    try:
        for fn, args in jobs:
            parent, child = CTX.Pipe(duplex=False)
            p = CTX.Process(target=_child, args=(child, fn, args))
            p.start()
            child.close()
            procs.append(p)
            conns.append(parent)
        results = []
        deadline = time.monotonic() + JOIN_S
        for i, conn in enumerate(conns):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"job {i} did not finish within {JOIN_S} s")
            results.append(conn.recv())
        for status, value in results:
            if status == "err":
                raise value
        return [value for _, value in results]
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        for conn in conns:
            conn.close()


@pytest.fixture
def window() -> Iterator[Callable[..., CommWindow]]:
    """Factory of observer windows owned by the test; all closed and unlinked afterwards."""
    made: list[CommWindow] = []

    def make(size: int = 2, **kw: Any) -> CommWindow:
        w = CommWindow.create(None, size, None, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
        CommWindow.unlink(w.name, missing_ok=True)


# ---------------------------------------------------------------------------------- rank bodies


def ping_pong(name: str, rank: int, rounds: int) -> int:
    """Rank 0 sends round k to rank 1's slot 0, rank 1 answers into rank 0's slot 0."""
    with CommWindow.attach(name, rank) as w:
        peer = 1 - rank
        for k in range(1, rounds + 1):
            if rank == 0:
                w.notify(peer, 0, k)
                w.wait(0, ">=", k, timeout_ms=10_000)
            else:
                w.wait(0, ">=", k, timeout_ms=10_000)
                w.notify(peer, 0, k)
        return w.load(rank, 0)


def add_into_rank0(name: str, rank: int, times: int) -> int:
    with CommWindow.attach(name, rank) as w:
        if rank == 0:
            total = sum(r for r in range(1, w.size)) * times
            return w.wait(1, ">=", total, timeout_ms=10_000)
        for _ in range(times):
            w.notify(0, 1, rank, add=True)
        return 0


def data_exchange(name: str, rank: int) -> list[float]:
    """Rank 0 stages floats and signals; rank 1 reads them, writes doubled values straight into
    rank 0's window (a remote write) and signals back."""
    with CommWindow.attach(name, rank) as w:
        if rank == 0:
            w.write_floats(0, [1.5, 2.5, 3.5, 4.5])
            w.notify(1, 0, 1)
            w.wait(0, "==", 1, timeout_ms=10_000)
            return list(w.read_floats(64, 4))
        w.wait(0, "==", 1, timeout_ms=10_000)
        values = w.read_floats(0, 4, rank=0)
        w.write_floats(64, [2 * v for v in values], rank=0)
        w.write(0, b"rank1 was here")
        w.notify(0, 0, 1)
        return list(values)


def barrier_rounds(name: str, rank: int, rounds: int) -> int:
    """Each round: publish the round number, pass the barrier, check every rank published it.
    A barrier that let a rank through early would show a peer still at the previous round."""
    with CommWindow.attach(name, rank) as w:
        for k in range(1, rounds + 1):
            w.notify(rank, 0, k)
            w.barrier(timeout_ms=10_000)
            seen = [w.load(r, 0) for r in range(w.size)]
            if min(seen) < k:
                raise AssertionError(f"rank {rank} round {k}: passed the barrier early: {seen}")
            w.barrier(timeout_ms=10_000)
        return k


def attach_and_hold(name: str, rank: int, conn: Connection) -> None:
    """Attach, report ready, then wait (never notifying) until killed or told to go."""
    w = CommWindow.attach(name, rank)
    conn.send("ready")
    conn.poll(30)
    w.close()


def wait_forever_then_report(name: str, conn: Connection) -> None:
    """Wait with no deadline in the main thread; Ctrl-C must still get through."""
    with CommWindow.attach(name, 0) as w:
        try:
            # "ready" inside the try: a SIGINT that arrives before the wait starts (a loaded
            # runner may take longer than the parent's 0.2 s to get there) is caught too
            conn.send("ready")
            w.wait(0, ">=", 1, timeout_ms=None)
        except KeyboardInterrupt:
            conn.send("interrupted")
            return
        conn.send("returned")


def create_and_hold(conn: Connection) -> None:
    """Create a window under this process's pid and stay alive until killed."""
    w = CommWindow.create(new_name("comm"), 2, 0)
    conn.send(w.name)
    time.sleep(60)


def _start_holder(target: Callable[..., None], *args: Any) -> tuple[Any, Connection, Any]:
    parent, child = CTX.Pipe()
    p = CTX.Process(target=target, args=(*args, child))
    p.start()
    child.close()
    assert parent.poll(JOIN_S), "holder process did not start"
    return p, parent, parent.recv()


# ---------------------------------------------------------------------------------- tests


def test_notify_wait_both_directions(window: Callable[..., CommWindow]) -> None:
    w = window(2)
    assert run_ranks([(ping_pong, (w.name, 0, 50)), (ping_pong, (w.name, 1, 50))]) == [50, 50]
    assert w.load(0, 0) == 50 and w.load(1, 0) == 50  # the observer sees the final values


def test_add_accumulates_from_several_ranks(window: Callable[..., CommWindow]) -> None:
    w = window(4)
    jobs = [(add_into_rank0, (w.name, r, 200)) for r in range(4)]
    results = run_ranks(jobs)
    assert results[0] == (1 + 2 + 3) * 200
    assert w.load(0, 1) == (1 + 2 + 3) * 200


def test_data_window_across_processes(window: Callable[..., CommWindow]) -> None:
    w = window(2, data_bytes=4096)
    r0, r1 = run_ranks([(data_exchange, (w.name, 0)), (data_exchange, (w.name, 1))])
    assert r1 == [1.5, 2.5, 3.5, 4.5]
    assert r0 == [3.0, 5.0, 7.0, 9.0]
    assert w.read(0, 14, rank=1) == b"rank1 was here"
    assert list(w.read_floats(64, 4, rank=0)) == r0


@pytest.mark.parametrize("size", [2, 4, 8])
def test_barrier_many_rounds(window: Callable[..., CommWindow], size: int) -> None:
    w = window(size)
    rounds = 100
    assert (
        run_ranks([(barrier_rounds, (w.name, r, rounds)) for r in range(size)]) == [rounds] * size
    )


def test_missing_peer_times_out_and_barrier_stays_sound(window: Callable[..., CommWindow]) -> None:
    w = window(2)
    with CommWindow.attach(w.name, 0) as me:
        with pytest.raises(
            CommTimeout, match=r"comm wait: slot 3 >= 1 not reached in 300 ms"
        ) as exc:
            me.wait(3, ">=", 1, timeout_ms=300)
        assert "comm wait: slot 3 >= 1 not reached in 300 ms (value 0)" in str(exc.value)
        assert exc.value.last == 0 and exc.value.slot == 3
        with pytest.raises(
            CommTimeout, match="comm barrier: 1 of 2 ranks arrived in 300 ms"
        ) as exc:
            me.barrier(timeout_ms=300)
        assert "comm barrier: 1 of 2 ranks arrived in 300 ms, missing ranks: 1" in str(exc.value)
        # a timed-out rank withdrew its arrival: it does not count toward the next barrier
        with (
            CommWindow.attach(w.name, 1) as peer,
            pytest.raises(CommTimeout, match="missing ranks: 0"),
        ):
            peer.barrier(timeout_ms=300)
    # ... and the window is still good for real barriers between processes
    assert run_ranks([(barrier_rounds, (w.name, r, 20)) for r in range(2)]) == [20, 20]


def test_missing_peer_times_out_in_another_process(window: Callable[..., CommWindow]) -> None:
    """Rank 1 is attached and alive but never arrives: rank 0 times out, not PeerDead."""
    w = window(2)
    holder, conn, _ = _start_holder(attach_and_hold, w.name, 1)
    try:
        with CommWindow.attach(w.name, 0) as me:
            assert me.peer_alive(1) and me.rank_pid(1) == holder.pid
            with pytest.raises(CommTimeout, match=r"missing ranks: 1$"):
                me.barrier(timeout_ms=300)
            with pytest.raises(CommTimeout, match="not reached in 300 ms"):
                me.wait(0, "!=", 0, timeout_ms=300)
    finally:
        conn.send("go")
        holder.join(JOIN_S)
        conn.close()


def test_dead_peer_fails_wait_and_barrier_promptly(window: Callable[..., CommWindow]) -> None:
    w = window(2)
    holder, conn, _ = _start_holder(attach_and_hold, w.name, 1)
    try:
        with CommWindow.attach(w.name, 0) as me:
            os.kill(holder.pid, signal.SIGKILL)  # not reaped yet: a zombie is dead too
            t0 = time.monotonic()
            with pytest.raises(PeerDead, match=rf"peer rank 1 \(pid {holder.pid}\) died"):
                me.wait(0, ">=", 1, timeout_ms=10_000)
            with pytest.raises(PeerDead, match=rf"rank 1 \(pid {holder.pid}\) died"):
                me.barrier(timeout_ms=10_000)
            assert time.monotonic() - t0 < 8.0  # detected, not timed out
            assert not me.peer_alive(1)
            holder.join(JOIN_S)
            # the dead rank's entry can be taken over by a new process
            with CommWindow.attach(w.name, 1) as again:
                assert again.rank_pid(1) == os.getpid()
    finally:
        holder.join(JOIN_S)
        conn.close()


def test_a_rank_marked_dead_on_another_host_fails_waits_here(
    window: Callable[..., CommWindow],
) -> None:
    """A mirrored window's rank that runs on another host has no pid here: the mirror's mark
    (``pto_comm_mark_remote_dead``) makes waits fail with PeerDead naming it by the mark's
    text; clearing it, or a process attaching as that rank here, undoes it."""
    w = window(3)
    with CommWindow.attach(w.name, 0) as me:
        w._mark_remote_dead(2, "pid 77 on host b")
        w._mark_remote_dead(2, "a second word is ignored")
        with pytest.raises(PeerDead, match=r"peer rank 2 \(pid 77 on host b\) died \(value 0\)"):
            me.wait(0, ">=", 1, timeout_ms=10_000)
        assert not me.peer_alive(2) and me.rank_pid(2) == 0
        w._mark_remote_dead(2, None)
        with pytest.raises(CommTimeout):
            me.wait(0, ">=", 1, timeout_ms=50)
        w._mark_remote_dead(1, "x" * 200)  # cut to the entry's room, still a clear text
        with pytest.raises(PeerDead, match=r"peer rank 1 \(x{51}\) died"):
            me.wait(0, ">=", 1, timeout_ms=10_000)
        # attached here now: the mark no longer holds
        with CommWindow.attach(w.name, 1), pytest.raises(CommTimeout):
            me.wait(0, ">=", 1, timeout_ms=50)
        with pytest.raises(RuntimeStateError, match=r"rank 0 .* is attached on this host"):
            w._mark_remote_dead(0, "pid 1 on host b")


def test_attach_rank_held_by_live_process_fails(window: Callable[..., CommWindow]) -> None:
    w = window(2)
    holder, conn, _ = _start_holder(attach_and_hold, w.name, 1)
    try:
        with pytest.raises(
            CommError, match=rf"rank 1 of '{w.name}' is already attached by live pid {holder.pid}"
        ):
            CommWindow.attach(w.name, 1)
    finally:
        conn.send("go")
        holder.join(JOIN_S)
        conn.close()
    with CommWindow.attach(w.name, 1) as again:  # released by the holder's close
        assert again.rank == 1


def test_ctrl_c_interrupts_a_wait_without_deadline(window: Callable[..., CommWindow]) -> None:
    w = window(2)
    proc, conn, ready = _start_holder(wait_forever_then_report, w.name)
    try:
        assert ready == "ready"
        time.sleep(0.2)  # let it enter the wait; an earlier signal is handled just the same
        os.kill(proc.pid, signal.SIGINT)
        assert conn.poll(JOIN_S), "the wait ignored SIGINT"
        assert conn.recv() == "interrupted"
    finally:
        proc.join(JOIN_S)
        conn.close()
    assert w.rank_pid(0) == 0  # the interrupted rank detached cleanly


def test_c_api_rejects_null_and_bad_arguments() -> None:
    """The C entry points validate on their own (the runtime's kernels call them directly)."""
    from libpto._ffi import ffi, lib

    null = ffi.NULL
    out_i = ffi.new("int *")
    out_u = ffi.new("uint64_t *")
    out_p = ffi.new("void **")
    assert lib.pto_comm_close(null) == 0
    for st in (
        lib.pto_comm_notify(null, 0, 0, 1, 0),
        lib.pto_comm_test(null, 0, 0, 1, out_i),
        lib.pto_comm_load(null, 0, 0, out_u),
        lib.pto_comm_wait(null, 0, 0, 1, 1),
        lib.pto_comm_data(null, 0, 0, 1, out_p),
        lib.pto_comm_barrier(null, 1),
        lib.pto_comm_rank(null, out_i),
        lib.pto_comm_size(null, out_i),
        lib.pto_comm_create(null, 2, 0, 1, 0, ffi.new("pto_comm **")),
        lib.pto_comm_attach(null, 0, ffi.new("pto_comm **")),
        lib.pto_comm_unlink(null),
        lib.pto_comm_create(b"pto-x", 2, 0, 1, 0, null),
    ):
        assert st == lib.PTO_E_INVALID_ARG
        assert "NULL" in ffi.string(lib.pto_last_error()).decode()
    name = new_name("comm")
    pp = ffi.new("pto_comm **")
    assert lib.pto_comm_create(name.encode(), 2, 0, 4, 64, pp) == 0
    c = pp[0]
    try:
        assert lib.pto_comm_test(c, 0, 0, 1, null) == lib.PTO_E_INVALID_ARG
        assert lib.pto_comm_test(c, 4, 0, 1, out_i) == lib.PTO_E_INVALID_ARG
        assert lib.pto_comm_test(c, 0, 6, 1, out_i) == lib.PTO_E_INVALID_ARG
        assert lib.pto_comm_test(c, 0, -1, 1, out_i) == lib.PTO_E_INVALID_ARG
        assert lib.pto_comm_notify(c, 1, 0, 1, 2) == lib.PTO_E_INVALID_ARG
        assert "op=2" in ffi.string(lib.pto_last_error()).decode()
        assert lib.pto_comm_data(c, 0, 60, 8, out_p) == lib.PTO_E_RANGE
        assert lib.pto_comm_data(c, 0, 2**64 - 1, 2, out_p) == lib.PTO_E_RANGE
        assert lib.pto_comm_data(c, 0, 64, 0, out_p) == 0  # the empty range at the end is fine
        assert lib.pto_comm_test(c, 3, lib.PTO_CMP_EQ, 0, out_i) == 0 and out_i[0] == 1
    finally:
        lib.pto_comm_close(c)
        assert lib.pto_comm_unlink(name.encode()) == 0


def test_c_waits_with_budgets_past_the_end_of_the_clock() -> None:
    """now + timeout_ms * 1e6 and the message's timeout + elapsed used to overflow (undefined
    behaviour; UBSan aborts): the largest budgets are no deadline, the message saturates."""
    from libpto._ffi import ffi, lib

    name = new_name("comm")
    pp = ffi.new("pto_comm **")
    assert lib.pto_comm_create(name.encode(), 1, 0, 2, 0, pp) == 0
    c = pp[0]
    try:
        i64 = (1 << 63) - 1
        timer = threading.Timer(0.1, lambda: lib.pto_comm_notify(c, 0, 0, 1, lib.PTO_NOTIFY_SET))
        timer.start()
        assert lib.pto_comm_wait(c, 0, lib.PTO_CMP_GE, 1, i64 // 1_000_000) == 0
        timer.join()
        assert lib.pto_comm_barrier(c, i64 // 1_000_000) == 0
        st = lib.pto_comm_wait_value(c, 1, lib.PTO_CMP_EQ, 5, 1, i64, ffi.NULL)
        assert st == lib.PTO_E_TIMEOUT
        assert f"not reached in {i64} ms" in ffi.string(lib.pto_last_error()).decode()
    finally:
        lib.pto_comm_close(c)
        lib.pto_comm_unlink(name.encode())


def test_attach_missing_name_is_a_clear_error() -> None:
    name = new_name("comm")
    with pytest.raises(CommError, match=f"no comm window named '{name}'") as exc:
        CommWindow.attach(name, 0)
    assert exc.value.status == "PTO_E_NOT_FOUND"
    with pytest.raises(CommError, match="no comm window named"):
        CommWindow.unlink(name)
    CommWindow.unlink(name, missing_ok=True)


def test_create_existing_name_fails(window: Callable[..., CommWindow]) -> None:
    w = window(2)
    with pytest.raises(CommError, match="already exists"):
        CommWindow.create(w.name, 2)


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        (lambda w, me: me.notify(-1, 0), "peer"),
        (lambda w, me: me.notify(2, 0), "peer"),
        (lambda w, me: me.notify(1, 8), "slot"),
        (lambda w, me: me.notify(1, -1), "slot"),
        (lambda w, me: me.notify(1, 0, -1), "value"),
        (lambda w, me: me.notify(1, 0, 1 << 64), "value"),
        (lambda w, me: me.notify(1, "0"), "slot"),
        (lambda w, me: me.load(5, 0), "rank"),
        (lambda w, me: me.load(0, 1 << 40), "slot"),
        (lambda w, me: me.test(0, "~", 1), "cmp"),
        (lambda w, me: me.wait(0, 9, 1, timeout_ms=1), "cmp"),
        (lambda w, me: me.wait(0, ">=", 1, timeout_ms=-5), "timeout_ms"),
        (lambda w, me: me.wait(0, ">=", 1, timeout_ms="1"), "timeout_ms"),
        (lambda w, me: me.barrier(timeout_ms=float("nan")), "timeout_ms"),
        (lambda w, me: me.write(4090, b"1234567"), "offset"),
        (lambda w, me: me.write(1 << 63, b"x"), "offset"),
        (lambda w, me: me.write(0, b"x", rank=3), "rank"),
        (lambda w, me: me.write(0, 12), "data"),
        (lambda w, me: me.read(0, 4097), "nbytes"),
        (lambda w, me: me.read(-1, 1), "offset"),
        (lambda w, me: me.read_into(0, b"immutable"), "buffer"),
        (lambda w, me: w.read(0, 4), "rank"),
        (lambda w, me: CommWindow.create(new_name("comm"), 0), "size"),
        (lambda w, me: CommWindow.create(new_name("comm"), 2, 2), "rank"),
        (lambda w, me: CommWindow.create(new_name("comm"), 2, slots=0), "slots"),
        (lambda w, me: CommWindow.create(new_name("comm"), 2, data_bytes=1 << 40), "data_bytes"),
        (lambda w, me: CommWindow.create("comm-without-prefix", 2), "name"),
        (lambda w, me: CommWindow.create("pto-a/b", 2), "name"),
        (lambda w, me: CommWindow.create(12, 2), "name"),  # type: ignore[arg-type]
        (lambda w, me: CommWindow.attach(w.name, 2), "rank"),
        (lambda w, me: CommWindow.attach(w.name, -2), "rank"),
        (lambda w, me: new_name("bad kind"), "kind"),
        (lambda w, me: cleanup_stale(3), "prefix"),  # type: ignore[arg-type]
    ],
)
def test_invalid_arguments_name_the_argument(
    window: Callable[..., CommWindow], call: Callable[[CommWindow, CommWindow], Any], arg: str
) -> None:
    w = window(2, slots=8, data_bytes=4096)
    with (
        CommWindow.attach(w.name, 0) as me,
        pytest.raises(InvalidArgument, match=rf"\b{arg}\b") as exc,
    ):
        call(w, me)
    assert f"{arg}=" in str(exc.value) or f"{arg} " in str(exc.value), str(exc.value)
    # nothing was half-done: the window still works
    me2 = CommWindow.attach(w.name, 1)
    me2.close()


def test_observer_has_no_local_slots(window: Callable[..., CommWindow]) -> None:
    w = window(2)
    assert w.rank == -1 and w.size == 2 and w.creator_pid == os.getpid()
    with pytest.raises(RuntimeStateError, match="observer"):
        w.wait(0, ">=", 1, timeout_ms=1)
    with pytest.raises(RuntimeStateError, match="observer"):
        w.barrier(timeout_ms=1)
    w.notify(1, 0, 7)  # but it may signal and read any rank
    assert w.load(1, 0) == 7


def test_closed_window_and_context_manager() -> None:
    with CommWindow.create(None, 1, 0, slots=2, data_bytes=64) as w:
        w.barrier(timeout_ms=1000)  # a single rank passes its own barrier
        name = w.name
        assert parse_name(name) == ("comm", os.getpid())
        with pytest.raises(TypeError, match="attach in the other process"):
            pickle.dumps(w)
    assert w.closed
    w.close()  # idempotent
    with pytest.raises(RuntimeStateError, match="closed"):
        w.notify(0, 0)
    with pytest.raises(CommError, match="no comm window named"):  # the owner's exit unlinked it
        CommWindow.attach(name, 0)


def test_close_during_wait_in_another_thread_is_safe(window: Callable[..., CommWindow]) -> None:
    """The mapping outlives the in-flight C call; the wait then ends with a clear error long
    before its 10 s deadline instead of touching unmapped memory."""
    w = window(2)
    me = CommWindow.attach(w.name, 0)
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            me.wait(0, ">=", 1, timeout_ms=10_000)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    me.close()
    t.join(JOIN_S)
    assert time.monotonic() - t0 < 8.0
    assert len(errors) == 1 and isinstance(errors[0], RuntimeStateError), errors
    assert "closed" in str(errors[0])
    with CommWindow.attach(w.name, 0):  # the rank was released by the deferred close
        pass


def test_float_helpers_roundtrip(window: Callable[..., CommWindow]) -> None:
    w = window(1, data_bytes=1024)
    w.write_floats(8, array("f", [0.5, -1.25]), rank=0)
    assert w.read_floats(8, 2, rank=0) == array("f", [0.5, -1.25])
    buf = bytearray(8)
    assert w.read_into(8, buf, rank=0) == 8
    assert array("f", bytes(buf)) == array("f", [0.5, -1.25])


def test_attach_env_uses_the_chip_worker_variables(window: Callable[..., CommWindow]) -> None:
    w = window(2)
    with CommWindow.attach_env({"PTO_COMM_NAME": w.name, "PTO_RANK": "1"}) as me:
        assert me.rank == 1 and me.name == w.name and not me.owner
    with pytest.raises(InvalidArgument, match="PTO_COMM_NAME is not set"):
        CommWindow.attach_env({"PTO_RANK": "0"})
    with pytest.raises(InvalidArgument, match="PTO_RANK='x' must be an integer"):
        CommWindow.attach_env({"PTO_COMM_NAME": w.name, "PTO_RANK": "x"})
    with pytest.raises(InvalidArgument, match="rank=5 out of range"):
        CommWindow.attach_env({"PTO_COMM_NAME": w.name, "PTO_RANK": "5"})


def test_new_name_scheme() -> None:
    a, b = new_name("comm"), new_name("mbox-x")
    assert a != b and a.startswith(f"pto-comm-{os.getpid()}-")
    assert parse_name(b) == ("mbox-x", os.getpid())
    assert parse_name("pto-comm-notapid-ab") is None and parse_name("other-comm-1-ab") is None


def test_cleanup_stale_removes_only_dead_owners(window: Callable[..., CommWindow]) -> None:
    live = window(2)  # owned by this (live) process
    holder, conn, dead_name = _start_holder(create_and_hold)
    holder.kill()
    holder.join(JOIN_S)
    conn.close()
    dead_pid = holder.pid
    # names outside the scheme, even with a dead pid in them, are never touched
    foreign = [f"pto-comm-{dead_pid}-nothex", f"ptox-comm-{dead_pid}-ab", f"pto-{dead_pid}-ab"]
    for n in foreign:
        with open(f"/dev/shm/{n}", "wb"):
            pass
    try:
        assert os.path.exists(f"/dev/shm/{dead_name}")
        assert cleanup_stale(prefix="pto-nomatch-") == []
        removed = cleanup_stale()
        assert dead_name in removed
        assert live.name not in removed and not set(foreign) & set(removed)
        assert not os.path.exists(f"/dev/shm/{dead_name}")
        assert os.path.exists(f"/dev/shm/{live.name}")
        assert all(os.path.exists(f"/dev/shm/{n}") for n in foreign)
        assert dead_name not in cleanup_stale()
    finally:
        for n in foreign:
            os.unlink(f"/dev/shm/{n}")
        CommWindow.unlink(dead_name, missing_ok=True)


def test_public_api_is_exported() -> None:
    for name in ("CommWindow", "new_name", "cleanup_stale"):
        assert name in libpto.__all__


def test_ctrl_c_right_after_a_call_entered_still_lets_close_detach(
    window: Callable[..., CommWindow], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C can land between the bytecodes of a call, also right after the call took the
    mapping and before it got the pointer back. The rank must still detach at close: its slot
    is free again (rank_pid 0), so the rank can attach anew. Fault injection: the interrupt is
    raised at exactly that point instead of waiting for a signal to hit the window."""
    w = window(2)
    rank = CommWindow.attach(w.name, 0)
    real_enter = CommWindow._enter

    def enter_then_interrupt(self: CommWindow, *args: Any) -> Any:
        real_enter(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(CommWindow, "_enter", enter_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        rank.notify(1, 0, 1)
    monkeypatch.undo()
    assert w.rank_pid(0) == os.getpid()
    rank.close()
    assert w.rank_pid(0) == 0  # detached: the interrupted call gave the mapping back
    again = CommWindow.attach(w.name, 0)
    again.close()
