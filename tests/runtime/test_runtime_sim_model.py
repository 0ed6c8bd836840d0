"""The simulator's fidelity to upstream (issue 15), by mechanism, with wide deterministic margins.

- who latches: polling a RUNNING core's COND register costs time, so under idle-iterations the
  idle sibling reaches the cap first; the header says who latched (owner / sibling / no-owner);
- op-time waiting: a seeded or injected delay before the first notify of a run;
- deadlock detection: upstream's instant snapshot as an option, and its false window;
- ring-full deadlock by time: a full ring with no reclaim for PTO_RING_DEADLOCK_MS latches;
- codes: upstream's numbers keep upstream's meanings, the simulator's own have sim-only codes.
"""

from __future__ import annotations

import threading
import time

import pytest

import libpto
from libpto import _runtime_codes, errors
from libpto._ffi import ffi, lib
from libpto.errors import ERROR_CODES, lib_str
from libpto.runtime import _error_details

LONG = {"stream_sync_timeout_ms": 60000}


# ---------------------------------------------------------------- who latches


def test_idle_sibling_latches_first_when_cond_polls_cost_time() -> None:
    """A hang task on one core; its owner pays 20 ms per idle iteration (in the sleep stage) for
    polling the RUNNING core, the sibling ~0.1 ms. Cap 200: the sibling needs ~20-50 ms, the
    owner more than (200 - 80) x 20 ms = 2.4 s, a 50x margin."""
    with libpto.Runtime(
        latch_policy="idle-iterations",
        max_idle_iterations=200,
        cond_poll_us=20000,
        sched_threads=2,
        cores=2,
        **LONG,
    ) as rt:
        g = rt.graph()
        g.hang()
        with pytest.raises(libpto.SchedulerTimeout) as ei:
            rt.run(g)
    err = ei.value
    assert err.latched_by == "sibling"
    owner = err.core % 2  # the thread that owns the core running the hang
    assert err.latch_thread == 1 - owner
    assert err.sub_class == "S1"  # a task was RUNNING
    assert "latched by sibling thread" in str(err)


def test_only_thread_latches_as_owner() -> None:
    with libpto.Runtime(
        latch_policy="idle-iterations", max_idle_iterations=200, sched_threads=1, cores=1, **LONG
    ) as rt:
        g = rt.graph()
        g.hang()
        with pytest.raises(libpto.SchedulerTimeout) as ei:
            rt.run(g)
    assert ei.value.latched_by == "owner"
    assert ei.value.latch_thread == 0
    assert "latched by owner thread 0" in str(ei.value)


def test_owned_wallclock_latch_is_by_owner_and_deadlock_branch_by_no_owner() -> None:
    # 2 s budget: an orchestrator starved before publishing latches S5 instead (seen > 200 ms
    # under load); the budget is 10x that and 30x under the stream sync
    with libpto.Runtime(latch_policy="owned-wallclock", scheduler_timeout_ms=2000, **LONG) as rt:
        g = rt.graph()
        g.hang()
        with pytest.raises(libpto.SchedulerTimeout) as ei:
            rt.run(g)
        assert ei.value.latched_by == "owner"
        g2 = rt.graph()
        ev = g2.event()  # never fired: nothing RUNNING anywhere
        g2.noop(deps=[ev])
        with pytest.raises(libpto.SchedulerTimeout) as ei2:
            rt.run(g2)
    assert ei2.value.latched_by == "no-owner"
    assert ei2.value.sub_class == "S4"


def test_non_timeout_latches_carry_no_latched_by() -> None:
    with libpto.Runtime(dep_pool=16, **LONG) as rt:
        g = rt.graph()
        g.noop(deps=list(g.noops(17)))
        with pytest.raises(libpto.OrchestratorError) as ei:
            rt.run(g)
    assert ei.value.latched_by == ""


# ---------------------------------------------------------------- op-time waiting


def test_injected_notify_delay_holds_the_first_notify(comm_pair) -> None:
    """PTO_SIM_NOTIFY_DELAY_MS=RANK:MS: the first notify of rank 0's run waits 600 ms; the
    wait on the notified slot cannot complete earlier. Rank 1 is not delayed."""
    w0, _ = comm_pair
    with libpto.Runtime(rank=0, notify_delay_ms={0: 600, 1: 0}, **LONG) as rt:
        assert rt.config["PTO_SIM_NOTIFY_DELAY_MS"] == "0:600,1:0"
        rt.bind_comm(w0)
        g = rt.graph()
        n = g.notify(0, 0, 1)  # to itself
        g.wait(0, ">=", 1, deps=[n])
        t0 = time.monotonic()
        rt.run(g)
        assert time.monotonic() - t0 >= 0.6
    with libpto.Runtime(rank=1, notify_delay_ms={0: 600000}, **LONG) as rt1:
        rt1.bind_comm(w0)  # rank 1's config, rank 0's window: the delay is rank 0's only
        g = rt1.graph()
        g.notify(0, 1, 1)
        t0 = time.monotonic()
        rt1.run(g)
        assert time.monotonic() - t0 < 60.0


def test_abort_ends_a_delayed_notify_promptly(comm_pair) -> None:
    w0, _ = comm_pair
    with libpto.Runtime(notify_delay_ms=600000, **LONG) as rt:
        rt.bind_comm(w0)
        g = rt.graph()
        g.notify(0, 0, 1)
        threading.Timer(0.2, rt.abort).start()
        t0 = time.monotonic()
        with pytest.raises(libpto.PtoError):
            rt.run(g)
        assert time.monotonic() - t0 < 30.0  # the delay is 600 s


def test_op_time_false_latch_under_idle_iterations(comm_pair) -> None:
    """The barrier-fix residual in one process: no init skew, but the notify comes 1.5 s late
    (a long notify kernel on core 0 or 1, the wait RUNNING on the other). Under idle-iterations
    the core-less sibling sched2 latches falsely (~92 ms; the owners pay 20 ms per polled
    RUNNING core per idle iteration); under owned-wallclock the same run completes. The
    aborted notify never fired, so the slot is still 0 for the second run."""
    w0, _ = comm_pair
    for policy in ("idle-iterations", "owned-wallclock"):
        with libpto.Runtime(
            latch_policy=policy,
            notify_delay_ms=1500,
            cond_poll_us=20000,
            sched_threads=3,
            cores=2,
            **LONG,
        ) as rt:
            rt.bind_comm(w0)
            g = rt.graph()
            n = g.notify(0, 2, 1)
            g.wait(2, ">=", 1)
            g.noop(deps=[n])
            if policy == "idle-iterations":
                with pytest.raises(libpto.SchedulerTimeout) as ei:
                    rt.run(g)
                assert ei.value.latched_by == "sibling"
                assert ei.value.latch_thread == 2
            else:
                assert rt.run(g).completed == 3


def test_notify_jitter_model(comm_pair) -> None:
    """Sigma 0 makes the log-normal a constant: the median itself (400 ms) before the first
    notify of every run."""
    w0, _ = comm_pair
    with libpto.Runtime(notify_median_ms=400.0, notify_sigma=0.0, malloc_seed=7, **LONG) as rt:
        assert rt.config["PTO_SIM_NOTIFY_MEDIAN_MS"] == 400.0
        rt.bind_comm(w0)
        for _ in range(2):
            g = rt.graph()
            g.notify(0, 3, 1, add=True)
            t0 = time.monotonic()
            rt.run(g)
            assert time.monotonic() - t0 >= 0.4
    with pytest.raises(libpto.ConfigError):
        libpto.Runtime(notify_sigma=7)


# ---------------------------------------------------------------- deadlock detection


def _fire_steadily(rt: libpto.Runtime, events: list[int], every_s: float) -> threading.Thread:
    def go() -> None:
        for ev in events:
            time.sleep(every_s)
            try:
                rt.fire(ev)
            except libpto.PtoError:
                return  # the run ended (latched)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("check", ["snapshot", "no-progress"])
def test_snapshot_deadlock_check_fires_while_work_progresses(check: str) -> None:
    """The window of upstream's instant snapshot: work completes without any scheduler thread's
    own progress (here host-fired events, one every 10 ms; upstream: a sibling's completion ->
    pop gap, or a slow orchestrator). At each 2 s budget nothing is RUNNING and completed <
    total, so the snapshot latches 100/S4 although ~200 events completed in that budget; the
    no-progress check sees the completions and lets the run finish. Margin: the firing thread
    would have to stall for 2 s (200x its period) to starve the no-progress check; a 500 ms
    budget was starved once under TSan on a 2-core machine at load 17. The firing lasts 6 s,
    three budgets, so a no-progress check blind to these completions still latches."""
    with libpto.Runtime(
        latch_policy="owned-wallclock",
        scheduler_timeout_ms=2000,
        deadlock_check=check,
        stall_report_ms=600000,
        **LONG,
    ) as rt:
        assert rt.config["PTO_DEADLOCK_CHECK"] == check
        g = rt.graph()
        events = [g.event() for _ in range(600)]  # ~6 s of firing
        rt.submit(g)
        firer = _fire_steadily(rt, events, 0.010)
        if check == "snapshot":
            with pytest.raises(libpto.SchedulerTimeout) as ei:
                rt.sync()
            firer.join()
            err = ei.value
            assert err.sub_class == "S4" and err.latched_by == "no-owner"
            assert 0 < err.completed < 600  # it was progressing: a false latch
            assert "deadlock branch (snapshot)" in str(err)
        else:
            assert rt.sync().completed == 600
            firer.join()


# ---------------------------------------------------------------- ring-full by time


def test_ring_full_behind_a_running_task_latches_3_by_time() -> None:
    """Window 4 on ring 0, a hang task first: the ring never reclaims, but the structural check
    cannot prove it (the oldest task is RUNNING, not completed). After PTO_RING_DEADLOCK_MS
    (200) with no reclaim the orchestrator latches FLOW_CONTROL_DEADLOCK; the scheduler budget
    is 60 s, so nothing else can latch first."""
    with libpto.Runtime(
        task_window=4, ring_deadlock_ms=200, scheduler_timeout_ms=60000, **LONG
    ) as rt:
        g = rt.graph()
        g.hang()
        g.noops(8)
        t0 = time.monotonic()
        with pytest.raises(libpto.OrchestratorError) as ei:
            rt.run(g)
        assert time.monotonic() - t0 < 30.0
    err = ei.value
    assert err.code == libpto.FLOW_CONTROL_DEADLOCK == 3
    assert err.ring == 0 and err.latch_thread_name == "orchestrator"
    assert "PTO_RING_DEADLOCK_MS=200" in str(err)


def test_heap_full_behind_a_running_task_latches_2_by_time() -> None:
    with libpto.Runtime(heap=4096, ring_deadlock_ms=200, scheduler_timeout_ms=60000, **LONG) as rt:
        g = rt.graph()
        g.hang(heap_bytes=3000)
        g.noop(heap_bytes=2000)
        with pytest.raises(libpto.OrchestratorError) as ei:
            rt.run(g)
    assert ei.value.code == libpto.HEAP_RING_DEADLOCK == 2


def test_slow_reclaim_is_backpressure_not_deadlock() -> None:
    """Every 10 ms a task of the chain completes and the ring reclaims: the 2 s bound (200x)
    is re-armed by each reclaim and never reached."""
    with libpto.Runtime(task_window=4, ring_deadlock_ms=2000, **LONG) as rt:
        g = rt.graph()
        prev = g.spin(10_000)
        for _ in range(40):
            prev = g.spin(10_000, deps=[prev])
        assert rt.run(g).completed == 41


# ---------------------------------------------------------------- codes


def test_python_codes_match_the_c_names() -> None:
    for name, code in ERROR_CODES.items():
        assert lib_str(lib.pto_error_name(code)) == name
    assert libpto.SIM_KERNEL_FAILED == 190
    assert libpto.SIM_HEAP_COMMIT_FAILED == 90
    # upstream's numbers keep upstream's meanings
    assert ERROR_CODES["ASYNC_COMPLETION_INVALID"] == 101
    assert ERROR_CODES["EXPLICIT_ORCH_FATAL"] == 9


# The public numbers: read from C's one list (pto_status.h), pinned here so that an edit of
# that list which renumbers a code fails a test instead of silently changing a contract.
PINNED_ERROR_CODES = {
    "NONE": 0,
    "SCOPE_DEADLOCK": 1,
    "HEAP_RING_DEADLOCK": 2,
    "FLOW_CONTROL_DEADLOCK": 3,
    "DEP_POOL_OVERFLOW": 4,
    "INVALID_ARGS": 5,
    "REQUIRE_SYNC_START_INVALID": 7,
    "TENSOR_WAIT_TIMEOUT": 8,
    "EXPLICIT_ORCH_FATAL": 9,
    "SCOPE_TASKS_OVERFLOW": 10,
    "TENSORMAP_OVERFLOW": 11,
    "SCHEDULER_TIMEOUT": 100,
    "ASYNC_COMPLETION_INVALID": 101,
    "ASYNC_WAIT_OVERFLOW": 102,
    "ASYNC_REGISTRATION_FAILED": 103,
    "READY_QUEUE_OVERFLOW": 104,
    "SIM_HEAP_COMMIT_FAILED": 90,
    "SIM_KERNEL_FAILED": 190,
}


def test_code_tables_come_from_c_and_keep_their_numbers() -> None:
    assert ERROR_CODES == PINNED_ERROR_CODES
    for name, code in ERROR_CODES.items():
        if name != "NONE":
            assert getattr(libpto, name) == code and name in libpto.__all__
    stalls = _runtime_codes.STALL_CLASSES
    assert stalls == {"NONE": 0, "S1": 1, "S3": 3, "S4": 4, "S5": 5, "UNKNOWN": 99}
    for short, value in stalls.items():
        assert lib_str(lib.pto_stall_name(value)) == short
        if short != "NONE":
            assert getattr(libpto, f"STALL_{short}") == value
    statuses = _runtime_codes.STATUS_CODES
    assert statuses["PTO_OK"] == 0 and statuses["PTO_E_RANGE"] == -14 and len(statuses) == 15
    for name, value in statuses.items():
        assert lib_str(lib.pto_strerror(value)) == name and getattr(lib, name) == value
    # unknown numbers have a name too, never NULL
    assert lib_str(lib.pto_error_name(6)) == "UNKNOWN"
    assert lib_str(lib.pto_stall_name(2)) == "UNKNOWN"
    assert lib_str(lib.pto_strerror(-99)) == "UNKNOWN"


def test_every_c_status_has_one_exception_class() -> None:
    """errors.py's one mapping is keyed by the C names: no status without a class, no stale key."""
    failing = set(_runtime_codes.STATUS_CODES) - {"PTO_OK"}
    assert set(errors._STATUS_CLASSES) == failing
    for name, value in _runtime_codes.STATUS_CODES.items():
        if name == "PTO_OK":
            continue
        with pytest.raises(errors._STATUS_CLASSES[name]) as info:
            errors.check(value, "test")
        assert info.value.details["status"] == name


def test_header_with_both_codes_gives_an_error_carrying_both() -> None:
    """The header can hold an orchestrator and a scheduler code at once (as upstream's); the
    Python error carries both and its class is the orchestrator's (the primary code)."""
    info = ffi.new("pto_rt_error_info *")
    info.orch_error_code = 3
    info.sched_error_code = 100
    info.latch_thread = lib.PTO_LATCH_THREAD_ORCH
    info.latched_by = lib.PTO_LATCHED_BY_NONE
    details = _error_details(info, 0)
    assert details["code"] == 3
    assert details["orch_error_code"] == 3 and details["sched_error_code"] == 100


def test_operand_freed_after_add_latches_invalid_args_5() -> None:
    """An orchestration-time argument error, as upstream's orchestrator reports a bad argument:
    the buffer of task 3 was freed after the task was added. Submit accepts the graph; the
    orchestrator latches INVALID_ARGS when it reaches task 3 (a tensor_wait makes the two tasks
    before it complete first; the completed counter is bumped just after a task's state turns
    COMPLETED, so the header's snapshot may lag by that one task)."""
    with libpto.Runtime(**LONG) as rt:
        keep, gone = rt.buffer(4), rt.buffer(4)
        g = rt.graph()
        first = g.fill(keep, 4, 1.0)
        second = g.noop(deps=[first])
        g.tensor_wait(deps=[second])
        bad = g.fill(gone, 4, 2.0)
        g.noop(deps=[bad])
        gone.free()
        with pytest.raises(libpto.OrchestratorError) as ei:
            rt.run(g)
        err = ei.value
        assert err.code == libpto.INVALID_ARGS == 5
        assert err.stuck_task == bad and err.completed in (1, 2)
        assert "not allocated" in str(err)
        assert keep.read() == [1.0] * 4  # the tasks before it ran
        # the runtime is reusable, and a valid graph runs
        g2 = rt.graph()
        g2.fill(keep, 4, 3.0)
        assert rt.run(g2).completed == 1


def test_tensor_wait_on_a_hung_producer_latches_8() -> None:
    """Orchestration reads a hang task's output (upstream's get_tensor_data on a while(true)
    kernel): after PTO_TENSOR_WAIT_TIMEOUT_MS (200) the orchestrator latches
    TENSOR_WAIT_TIMEOUT; the scheduler budget (60 s) cannot latch first."""
    with libpto.Runtime(tensor_wait_timeout_ms=200, scheduler_timeout_ms=60000, **LONG) as rt:
        g = rt.graph()
        producer = g.hang()
        g.tensor_wait(deps=[producer])
        g.noop()
        with pytest.raises(libpto.OrchestratorError) as ei:
            rt.run(g)
    err = ei.value
    assert err.code == libpto.TENSOR_WAIT_TIMEOUT == 8
    assert err.stuck_task == producer
    assert "PTO_TENSOR_WAIT_TIMEOUT_MS=200" in str(err)


def test_tensor_wait_holds_the_orchestrator_until_the_producer_completes() -> None:
    """A 300 ms producer and a 60 s wait bound: the run completes, and the task after the
    tensor_wait was not published before the producer completed (its buffer write comes
    after)."""
    with libpto.Runtime(**LONG) as rt:
        buf = rt.buffer(1)
        g = rt.graph()
        producer = g.spin(300_000)
        g.tensor_wait(deps=[producer])
        g.fill(buf, 1, 5.0)  # no dependency edge: only the orchestrator orders it
        t0 = time.monotonic()
        assert rt.run(g).completed == 3
        assert time.monotonic() - t0 >= 0.3
        assert buf.read() == [5.0]
