"""The C mailboxes through their Python wrapper: states, waits, payloads, argument checks."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from libpto import new_name
from libpto._ffi import ffi, lib
from libpto._mailbox import Channel, Mailbox, Stamp, State, mask, now_ns
from libpto.errors import CommError, InvalidArgument, PtoError, RuntimeStateError


@pytest.fixture
def mbox() -> Iterator[Mailbox]:
    name = new_name("mbox")
    box = Mailbox.create(name, 3, 4096)
    try:
        yield box
    finally:
        box.close()
        Mailbox.unlink(name)


def test_state_numbers_are_the_contract() -> None:
    assert [s.value for s in State] == list(range(8))
    assert (State.INIT_DONE, State.INIT_FAILED) == (6, 7)
    assert lib.PTO_MBOX_INIT_DONE == 6 and lib.PTO_MBOX_CONTROL_REQUEST == 4


def test_new_mailbox_is_idle_and_attachable(mbox: Mailbox) -> None:
    other = Mailbox.attach(mbox.name)
    try:
        assert other.size == 3 and other.capacity == 4096
        assert [other.load(r) for r in range(3)] == [State.IDLE] * 3
        mbox.store(1, State.TASK_READY)
        assert other.load(1) == State.TASK_READY
        assert other.exit_status(1) is None
        mbox.set_exit(1, 9)
        assert other.exit_status(1) == 9
        assert other.time(1, Stamp.EXIT) > 0
    finally:
        other.close()


def test_cas_only_swaps_the_expected_state(mbox: Mailbox) -> None:
    assert mbox.cas(0, State.IDLE, State.INIT_DONE)
    assert not mbox.cas(0, State.IDLE, State.TASK_READY)
    assert mbox.load(0) == State.INIT_DONE


def test_wait_wakes_on_store_and_times_out(mbox: Mailbox) -> None:
    assert mbox.wait(2, mask(State.TASK_DONE), 30) is None  # timeout
    timer = threading.Timer(0.05, mbox.store, (2, State.TASK_DONE))
    timer.start()
    try:
        assert mbox.wait(2, mask(State.TASK_DONE, State.SHUTDOWN), 10_000) == State.TASK_DONE
    finally:
        timer.join()  # the store may still be ringing the doorbell: never unmap under it


def test_doorbell_moves_on_every_change(mbox: Mailbox) -> None:
    bell = mbox.doorbell()
    mbox.stamp(0, Stamp.START)  # timestamps alone do not ring
    assert mbox.doorbell() == bell
    t0 = time.monotonic()
    mbox.doorbell_wait(bell, 50)
    assert time.monotonic() - t0 >= 0.04
    mbox.store(0, State.INIT_DONE)
    assert mbox.doorbell() != bell
    mbox.doorbell_wait(bell, 10_000)  # returns at once: already moved


def test_payload_round_trip_and_limit(mbox: Mailbox) -> None:
    mbox.write(0, Channel.TASK, b"frame")
    mbox.write(0, Channel.CONTROL, b"stacks")
    mbox.write(0, Channel.INIT, b"")
    assert mbox.read(0, Channel.TASK) == b"frame"
    assert mbox.read(0, Channel.CONTROL) == b"stacks"
    assert mbox.read(0, Channel.INIT) == b""
    with pytest.raises(InvalidArgument, match=r"payload of 4097 bytes exceeds the limit of 4096"):
        mbox.write(0, Channel.TASK, b"x" * 4097)


def test_timestamps_use_the_wall_clock(mbox: Mailbox) -> None:
    before = time.time_ns()
    mbox.stamp(1, Stamp.OP_START)
    assert before <= mbox.time(1, Stamp.OP_START) <= time.time_ns()
    mbox.stamp(1, Stamp.OP_END, 12345)
    assert mbox.times(1)[Stamp.OP_END] == 12345
    assert abs(now_ns() - time.time_ns()) < 1e9


def test_pid_and_control_word(mbox: Mailbox) -> None:
    mbox.set_pid(2, os.getpid())
    assert mbox.pid(2) == os.getpid()
    mbox.ctrl_store(2, State.CONTROL_REQUEST)
    assert mbox.load(2) == State.IDLE  # the control word never touches the state word
    assert mbox.ctrl_wait(2, mask(State.CONTROL_REQUEST), 0) == State.CONTROL_REQUEST


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda m: m.load(3), InvalidArgument, r"rank 3: must be in \[0, 3\)"),
        (lambda m: m.load(-1), InvalidArgument, r"rank -1"),
        (lambda m: m.store(0, 8), InvalidArgument, r"state 8: must be in \[0, 7\]"),
        (lambda m: m.wait(0, 0, 1), InvalidArgument, "mask must name at least one state"),
        (lambda m: m.stamp(0, 99), InvalidArgument, "timestamp index 99"),
        (lambda m: m.set_pid(0, 0), InvalidArgument, "pid 0: must be > 0"),
        (lambda m: m.write(0, 5, b""), InvalidArgument, "channel 5"),
    ],
)
def test_bad_arguments_get_clear_errors(mbox: Mailbox, call: object, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        call(mbox)  # type: ignore[operator]


def test_create_and_attach_errors() -> None:
    with pytest.raises(InvalidArgument, match="nranks=0"):
        Mailbox.create(new_name("mbox"), 0)
    with pytest.raises(InvalidArgument, match="payload_bytes=10"):
        Mailbox.create(new_name("mbox"), 1, 10)
    with pytest.raises(InvalidArgument, match="one path component"):
        Mailbox.create("pto-a/b", 1)
    with pytest.raises(CommError, match="no such segment"):
        Mailbox.attach(new_name("mbox"))
    assert Mailbox.unlink(new_name("mbox")) is False
    name = new_name("mbox")
    box = Mailbox.create(name, 1, 4096)
    try:
        with pytest.raises(CommError, match="already exists"):
            Mailbox.create(name, 1, 4096)
    finally:
        box.close()
        Mailbox.unlink(name)
    with pytest.raises(PtoError, match="used after close"):
        box.load(0)


def test_attach_rejects_a_foreign_segment() -> None:
    name = new_name("mbox")
    path = f"/dev/shm/{name}"
    with open(path, "wb") as f:
        f.write(b"\0" * 8192)
    try:
        with pytest.raises(RuntimeStateError, match="not an initialised"):
            Mailbox.attach(name)
    finally:
        os.unlink(path)


def test_c_functions_validate_null_handles() -> None:
    out = ffi.new("uint32_t *")
    assert lib.pto_mbox_load(ffi.NULL, 0, out) == lib.PTO_E_INVALID_ARG
    assert lib.pto_mbox_doorbell_wait(ffi.NULL, 0, 0) == lib.PTO_E_INVALID_ARG
    assert lib.pto_mbox_close(ffi.NULL) == lib.PTO_OK


def test_attach_rejects_sizes_that_do_not_fit_the_segment() -> None:
    """A header whose payload size does not match its slot stride (a peer scribbled on it) is
    refused at attach; the payload bound used to come from the shared header, so a write could
    run past the mapping (SIGSEGV)."""
    name = new_name("mbox")
    box = Mailbox.create(name, 2, 4096)
    try:
        with open(f"/dev/shm/{name}", "r+b") as f:
            f.seek(16)  # struct mbox_hdr: magic u64, version u32, nranks u32, payload_bytes u64
            f.write((1 << 40).to_bytes(8, "little"))
        with pytest.raises(RuntimeStateError, match="not an initialised"):
            Mailbox.attach(name)
        assert box.capacity == 4096
        with pytest.raises(InvalidArgument, match="exceeds the limit of 4096"):
            box.write(1, Channel.INIT, b"x" * 8192)  # the handle's own copy of the size
    finally:
        box.close()
        Mailbox.unlink(name)


def test_wait_budget_past_the_end_of_the_clock_is_no_deadline(mbox: Mailbox) -> None:
    """now + timeout_ms * 1e6 overflowed into a deadline in the past: an instant timeout."""
    first = threading.Timer(0.2, lambda: mbox.store(0, State.TASK_DONE))
    first.start()
    assert mbox.wait(0, mask(State.TASK_DONE), (1 << 63) - 1) == State.TASK_DONE
    first.join()  # the fixture's close must not race the store still ringing the doorbell
    bell = mbox.doorbell()
    second = threading.Timer(0.2, lambda: mbox.store(1, State.TASK_DONE))
    second.start()
    t0 = time.monotonic()
    mbox.doorbell_wait(bell, (1 << 63) - 1)
    second.join()
    assert mbox.doorbell() != bell and time.monotonic() - t0 > 0.05


def test_python_arguments_out_of_c_range_are_invalid_arguments(mbox: Mailbox) -> None:
    for call, names in (
        (lambda: mbox.load(1 << 40), "rank=1099511627776 out of range"),
        (lambda: mbox.store(0, 1 << 40), "state=1099511627776 out of range"),  # type: ignore[arg-type]
        (lambda: mbox.wait(0, 1 << 40, 1), "states=1099511627776 out of range"),
        (lambda: mbox.wait(0, 1, 1 << 70), "timeout_ms=1180591620717411303424 out of range"),
        (lambda: mbox.stamp(0, Stamp.START, 1 << 70), "ns=1180591620717411303424 out of range"),
        (lambda: mbox.set_pid(0, 1 << 40), "pid=1099511627776 out of range"),
        (lambda: mbox.write(0, Channel.TASK, "text"), "data must be bytes, got str"),  # type: ignore[arg-type]
        (lambda: mbox.doorbell_wait(-1, 1), "seen=-1 out of range"),
        (lambda: Mailbox.create(new_name("mbox"), 1 << 40), "nranks=1099511627776 out of range"),
    ):
        with pytest.raises(InvalidArgument, match=names):
            call()
    name = new_name("mbox")
    box = Mailbox.create(name, 1, 4096)
    box.close()
    Mailbox.unlink(name)
    with pytest.raises(RuntimeStateError, match="used after close"):
        box.load(0)
