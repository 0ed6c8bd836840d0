"""The latch header has exactly one writer; every other thread that tried sees it and stops.

Who reaches a latch condition first is a race, so these tests do not hope for an order: the
runtime's test hook (``Runtime._test_hold_latch``) holds chosen threads after their attempt is
recorded in the bitmap and before the first-writer-wins compare-and-swap. The test waits until
every thread has tried, then releases one; the others are let go when the run ends and must
find the latch taken. An unconditional write (exchange instead of compare-and-swap) makes a
released-later thread overwrite the header, which these tests see every time.
"""

from __future__ import annotations

import time

import pytest

import libpto

ALL3 = 0b111
# Idle iterations before an idle-iterations thread latches. The owner dispatches the hang task
# within milliseconds of the submit (under a sanitizer, tens); the idle siblings need this many
# backed-off iterations (about a second, 50 us sleeps) to reach the latch, so they always
# classify a RUNNING task (S1 on core 0) -- the 200 of the old test raced the dispatch.
IDLE_CAP = 20_000


def wait_for_attempts(rt: libpto.Runtime, want: int, timeout_s: float = 30.0) -> int:
    """Poll the live attempt bitmap until every bit of ``want`` is set (seconds of margin
    against a latch condition reached in milliseconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = rt._test_latch_attempts()
        if seen & want == want or time.monotonic() > deadline:
            return seen
        time.sleep(0.005)


@pytest.mark.parametrize("winner", [2, 1, 0])
def test_first_released_thread_is_the_only_writer(winner: int) -> None:
    """idle-iterations, 3 scheduler threads, 1 core running a hang: all three threads reach the
    latch condition (sched0 owns the hang, sched1/2 own nothing). Released first, ``winner``
    writes the header; the other two, released by the end of the run, see it and stop."""
    with libpto.Runtime(
        latch_policy="idle-iterations",
        max_idle_iterations=IDLE_CAP,
        sched_threads=3,
        cores=1,
        stream_sync_timeout_ms=60000,
    ) as rt:
        g = rt.graph()
        hung = g.hang()
        rt._test_hold_latch(ALL3)
        rt.submit(g)
        seen = wait_for_attempts(rt, ALL3)
        assert seen == ALL3, f"attempt bitmap {seen:#b}: every thread must reach the latch"
        rt._test_hold_latch(ALL3 & ~(1 << winner))  # release the winner only
        with pytest.raises(libpto.SchedulerTimeout, match="SCHEDULER_TIMEOUT") as ei:
            rt.sync()
        rt._test_hold_latch(0)
    err = ei.value
    assert err.latch_thread == winner  # the first writer, not the last
    assert err.latch_attempts == ALL3  # the others tried and saw the latch
    assert err.code == 100 and err.sub_class == "S1"
    assert err.stuck_task == hung and err.core == 0
    assert f"sched{winner} reached PTO_MAX_IDLE_ITERATIONS=20000" in str(err)


def test_idle_sibling_wins_over_the_owner() -> None:
    """2 threads, 1 core running a hang: the idle sibling (sched1) released first latches; the
    owner, released when the run ends, does not overwrite it."""
    with libpto.Runtime(
        latch_policy="idle-iterations",
        max_idle_iterations=IDLE_CAP,
        sched_threads=2,
        cores=1,
        stream_sync_timeout_ms=60000,
    ) as rt:
        g = rt.graph()
        g.hang()
        rt._test_hold_latch(0b11)
        rt.submit(g)
        assert wait_for_attempts(rt, 0b11) == 0b11
        rt._test_hold_latch(0b01)  # sched1 (idle sibling) first
        with pytest.raises(libpto.SchedulerTimeout, match="sched1 reached") as ei:
            rt.sync()
        rt._test_hold_latch(0)
    assert ei.value.latch_thread == 1 and ei.value.latch_attempts == 0b11


def test_owned_wallclock_only_the_owner_attempts() -> None:
    """owned-wallclock, 2 threads, 2 cores, one hang task: only the thread owning
    its core may even try to latch. The owner is held after its attempt for 10 budgets, long
    enough for the idle sibling to try many times if it wrongly could; its bit stays clear."""
    budget_ms = 100
    with libpto.Runtime(
        latch_policy="owned-wallclock",
        scheduler_timeout_ms=budget_ms,
        stall_report_ms=600000,
        sched_threads=2,
        cores=2,
        stream_sync_timeout_ms=60000,
    ) as rt:
        g = rt.graph()
        hung = g.hang()
        rt._test_hold_latch(0b11)
        rt.submit(g)
        deadline = time.monotonic() + 30
        while rt._test_latch_attempts() == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        first = rt._test_latch_attempts()
        time.sleep(10 * budget_ms / 1000)  # the sibling re-checks every budget
        after = rt._test_latch_attempts()
        rt._test_hold_latch(0)
        with pytest.raises(
            libpto.SchedulerTimeout, match=r"owned-wallclock: latched by owner thread \d: sched\d"
        ) as ei:
            rt.sync()
    err = ei.value
    owner = err.core % 2
    assert err.stuck_task == hung and err.sub_class == "S1"
    assert first == after == 1 << owner, f"attempts {first:#b} then {after:#b}"
    assert err.latch_thread == owner and err.latch_attempts == 1 << owner


def test_hold_mask_is_validated() -> None:
    with libpto.Runtime() as rt, pytest.raises(libpto.InvalidArgument, match=r"mask=-1 out of"):
        rt._test_hold_latch(-1)
