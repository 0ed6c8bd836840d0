"""The two latch policies, by mechanism, with wide deterministic margins.

- owned-wallclock: a never-notified RUNNING wait latches 100/S1 by the owning thread within the
  budget plus a wide margin; a wait notified seconds later (many idle caps) does not latch.
- idle-iterations: the same late-notified wait latches 100 falsely (the incident's bug).
- deadlock branch: nothing RUNNING, a dependency on an event that never fires -> 100/S4.
"""

from __future__ import annotations

import threading
import time

import pytest

import libpto


def _late_notify(window: libpto.CommWindow, delay_s: float) -> threading.Thread:
    """Notify rank 0's slot 0 from rank 1 after ``delay_s`` (a peer that is slow)."""

    def go() -> None:
        time.sleep(delay_s)
        window.notify(0, 0, 1)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_never_notified_wait_latches_s1_by_owner(comm_pair) -> None:
    w0, _ = comm_pair
    # budget 2 s: an orchestrator descheduled before it publishes (seen > 200 ms at load 17)
    # would latch S5 by no owner instead; 2 s is 10x that, and 15x under the stream sync
    with libpto.Runtime(
        latch_policy="owned-wallclock",
        scheduler_timeout_ms=2000,
        stream_sync_timeout_ms=30000,
        sched_threads=2,
        cores=2,
    ) as rt:
        rt.bind_comm(w0)
        g = rt.graph()
        first = g.noop()
        waiter = g.wait(0, ">=", 1, deps=[first])
        g.noop(deps=[waiter])
        t0 = time.monotonic()
        with pytest.raises(
            libpto.SchedulerTimeout,
            match=r"owned-wallclock: latched by owner thread \d: sched\d owns RUNNING task",
        ) as ei:
            rt.run(g)
        elapsed = time.monotonic() - t0
    err = ei.value
    assert err.code == libpto.SCHEDULER_TIMEOUT == 100
    assert err.sub_class == "S1"
    assert err.stuck_task == waiter
    assert err.completed == 1 and err.total == 3
    # the latching thread is the one that owns the core running the wait, and the only one that
    # tried (test_latch_first_writer.py holds the owner to prove the sibling never tries)
    assert err.latch_thread == err.core % 2
    assert err.latch_attempts == 1 << err.latch_thread
    assert 2.0 <= elapsed < 20.0  # budget 2 s, latched long before the 30 s stream sync


def test_late_notify_false_latch_under_idle_iterations(comm_pair) -> None:
    """A RUNNING wait whose peer answers after ~1.5 s (more than 10 idle caps of ~100 ms)."""
    w0, w1 = comm_pair
    with libpto.Runtime(
        latch_policy="idle-iterations",
        max_idle_iterations=1000,
        sched_threads=2,
        cores=2,
        stream_sync_timeout_ms=30000,
    ) as rt:
        rt.bind_comm(w0)
        g = rt.graph()
        g.wait(0, ">=", 1)
        notifier = _late_notify(w1, 1.5)
        t0 = time.monotonic()
        with pytest.raises(
            libpto.SchedulerTimeout,
            match=r"idle-iterations: latched by sibling thread \d: "
            r"sched\d reached PTO_MAX_IDLE_ITERATIONS",
        ) as ei:
            rt.run(g)
        assert time.monotonic() - t0 < 1.5  # latched before the peer answered: falsely
        notifier.join()
    assert ei.value.code == 100
    assert ei.value.sub_class == "S1"  # a task was RUNNING and making correct progress


def test_late_notify_no_latch_under_owned_wallclock(comm_pair) -> None:
    w0, w1 = comm_pair
    with libpto.Runtime(
        latch_policy="owned-wallclock",
        scheduler_timeout_ms=30000,  # the peer answers after 1.5 s: a 20x margin
        max_idle_iterations=1000,
        sched_threads=2,
        cores=2,
        stream_sync_timeout_ms=60000,
    ) as rt:
        rt.bind_comm(w0)
        g = rt.graph()
        w = g.wait(0, ">=", 1)
        g.noop(deps=[w])
        notifier = _late_notify(w1, 1.5)
        info = rt.run(g)
        notifier.join()
    assert info.completed == 2


def test_deadlock_branch_with_nothing_running() -> None:
    # budget 2 s: with 200 ms a fresh-clone CI run at load 10+ latched S5 at completed 0 (the
    # orchestrator descheduled before publishing: the budget working as specified, not S4)
    with libpto.Runtime(
        latch_policy="owned-wallclock", scheduler_timeout_ms=2000, stream_sync_timeout_ms=30000
    ) as rt:
        g = rt.graph()
        g.noops(10)
        ev = g.event()  # an external event that never fires
        blocked = g.noop(deps=[ev])
        g.noops(5, "chain")
        t0 = time.monotonic()
        with pytest.raises(libpto.SchedulerTimeout, match="owned-wallclock deadlock branch") as ei:
            rt.run(g)
        assert time.monotonic() - t0 < 20.0  # long before the 30 s stream sync
        err = ei.value
        assert err.code == 100 and err.sub_class == "S4"
        assert err.stuck_task in (ev, blocked)
        assert err.completed == 15 and err.total == 17
        assert err.core == -1
        # the runtime is reusable after a latch
        g2 = rt.graph()
        g2.noops(100, "chain")
        assert rt.run(g2).completed == 100


def test_stall_lines_go_to_stderr_without_latching(comm_pair, capfd) -> None:
    w0, w1 = comm_pair
    with libpto.Runtime(
        scheduler_timeout_ms=20000, stall_report_ms=200, stream_sync_timeout_ms=30000
    ) as rt:
        rt.bind_comm(w0)
        g = rt.graph()
        g.wait(0, ">=", 1)
        notifier = _late_notify(w1, 2.0)  # 10x the 200 ms stall-report period; 10x under budget
        rt.run(g)
        notifier.join()
    err = capfd.readouterr().err
    assert "STALL sched" in err and "running=1" in err
    assert "LATCH" not in err


def test_idle_iterations_latches_even_with_many_threads_idle(comm_pair) -> None:
    """Old policy with a hang kernel: an idle sibling latches; its bit is in the bitmap.

    The order is forced (runtime test hook): every thread's attempt is held until all three
    have tried, then sched2, which owns no core, is released first and must be the writer."""
    with libpto.Runtime(
        latch_policy="idle-iterations",
        max_idle_iterations=20_000,  # ~1 s of idleness: sched0 dispatches the hang long before
        sched_threads=3,
        cores=1,
        stream_sync_timeout_ms=30000,
    ) as rt:
        g = rt.graph()
        g.hang()
        rt._test_hold_latch(0b111)
        rt.submit(g)
        deadline = time.monotonic() + 30
        while rt._test_latch_attempts() != 0b111 and time.monotonic() < deadline:
            time.sleep(0.005)
        rt._test_hold_latch(0b011)
        with pytest.raises(libpto.SchedulerTimeout, match="sched2 reached") as ei:
            rt.sync()
        rt._test_hold_latch(0)
    assert ei.value.latch_attempts == 0b111  # every thread, idle siblings included, tried
    assert ei.value.latch_thread == 2  # the idle sibling latched, and nobody overwrote it
    assert ei.value.core == 0  # the stuck task is on sched0's core, not the latcher's


def test_deadlock_branch_needs_a_budget_without_any_completion() -> None:
    """Seven scheduler threads own no core and re-check the deadlock branch every budget while
    sched0 runs a long chain. Between sched0's completion of task k and its pop of task k + 1
    nothing is RUNNING and k + 1 is ready; the branch used to latch that instant as S3 (or S4
    when its counters straddled the pop) in most runs. Evidence must cover the whole budget.

    Margin: the instant the bug latched lasts microseconds; the budget is 50 ms (>= 10^4x). A
    latch that needs a *whole* budget without progress is the budget working as specified on
    a loaded host (a 2-CPU CI runner under TSan, ~10x slower, can stall a thread for more than
    the 5 ms this test used to use): S1 by the core's owner (sched0 descheduled mid-task) and
    S5 (the orchestrator descheduled before publishing the chain) are tolerated; S3/S4 -- the
    deadlock-branch false latch this test is about -- are not. A 50 ms budget still gives
    ~7 threads x (run time / 50 ms) >= 150 checks per run, 6 runs."""
    with libpto.Runtime(
        latch_policy="owned-wallclock",
        scheduler_timeout_ms=50,
        stream_sync_timeout_ms=60000,
        stall_report_ms=600000,
        sched_threads=8,
        cores=1,
        task_window=131072,  # the orchestrator publishes the whole chain up front
        dep_pool=131072,
    ) as rt:
        g = rt.graph()
        g.noops(100_000, "chain")
        # what is checked is every completion -> pop transition the runs went through: they
        # must add up to at least one whole chain (runs that all latched at once check nothing)
        transitions = 0
        for _ in range(6):
            try:
                info = rt.run(g)
                assert info.completed == 100_000
                transitions += info.completed
            except libpto.SchedulerTimeout as e:
                assert (e.sub_class == "S1" and e.latch_thread == 0) or e.sub_class == "S5", str(e)
                transitions += e.completed
        assert transitions >= 100_000
