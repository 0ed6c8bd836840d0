"""Audit regressions: no input from Python crashes the process or escapes the libpto.errors
hierarchy -- calls racing ``Runtime.close()`` in other threads, hand-filled configurations,
timeouts past the end of the clock, sizes that would exhaust host memory before C sees them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

import libpto
from libpto._ffi import ffi, lib

_I64 = (1 << 63) - 1


def test_calls_racing_close_in_other_threads_never_crash() -> None:
    """Buffer, graph, fire, stats, dump_state and abort calls in two threads while the main
    thread closes the runtime: each call either works or raises RuntimeStateError (it used to
    touch the freed runtime: SIGSEGV, or a hang on a freed mutex). In a subprocess, so a crash
    is a failed assertion rather than a dead test run."""
    code = textwrap.dedent(
        """
        import threading, time, libpto
        for it in range(300):
            rt = libpto.Runtime(sched_threads=1, cores=1)
            g = rt.graph()
            b = rt.buffer(16)
            stop = threading.Event()
            def hammer(k):
                calls = [lambda: b.write([1.0]), lambda: b.read(1), lambda: g.noop(),
                         lambda: len(g), rt.dump_state, rt.abort, lambda: rt.fire(0), rt.stats]
                i = k
                while not stop.is_set() and not rt.closed:
                    try:
                        calls[i % len(calls)]()
                    except libpto.RuntimeStateError:
                        pass
                    i += 1
            ts = [threading.Thread(target=hammer, args=(k,)) for k in range(2)]
            for t in ts:
                t.start()
            time.sleep(0.002)
            rt.close()
            stop.set()
            for t in ts:
                t.join()
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_graph_in_use_by_a_run_refuses_close_and_close_waits_for_calls() -> None:
    rt = libpto.Runtime(scheduler_timeout_ms=60000, stream_sync_timeout_ms=60000)
    g = rt.graph()
    g.hang()
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            rt.run(g, timeout_ms=float("inf"))
        except libpto.PtoError as e:
            errors.append(e)

    th = threading.Thread(target=runner)
    th.start()
    deadline = time.monotonic() + 10
    while "running task" not in rt.dump_state() and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(libpto.RuntimeStateError, match="in use"):
        g.close()  # the run in the other thread holds it
    rt.close()  # aborts the run and waits for it to return
    th.join(10)
    assert not th.is_alive() and errors and "aborted" in str(errors[0])
    assert rt.closed
    g.close()  # freed with the runtime: a no-op
    with pytest.raises(libpto.RuntimeStateError, match="closed"):
        g.noop()


def test_close_waits_for_a_call_in_flight_in_another_thread() -> None:
    """The deterministic core of the race above: the runtime stays allocated until a call that
    started before close() returns, and no call starts after it."""
    rt = libpto.Runtime()
    entered, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def caller() -> None:
        with rt._use("test") as ptr:
            entered.set()
            release.wait(10)
            buf = ffi.new("char[]", 256)
            seen.append(lib.pto_rt_dump_state(ptr, buf, 256) == 0 and rt._h.ptr is not None)

    th = threading.Thread(target=caller)
    th.start()
    assert entered.wait(10)
    threading.Timer(0.3, release.set).start()
    rt.close()  # returns only once the caller's call is over
    assert seen == [True] and rt._h.ptr is None
    th.join(10)
    assert "closed" in rt.dump_state()


def test_close_from_a_thread_using_the_runtime_is_deferred_to_its_last_call() -> None:
    """A close while this very thread is inside a call (a signal handler) must not wait for
    itself: the runtime is destroyed when that call returns."""
    rt = libpto.Runtime()
    with rt._use("test"):
        rt.close()
        assert rt.closed and rt._h.ptr is not None
    assert rt._h.ptr is None
    with pytest.raises(libpto.RuntimeStateError, match="closed"):
        rt.graph()


def test_hand_filled_config_is_validated_like_the_environment() -> None:
    """pto_rt_create re-validates every field with the ranges of pto_rt_config_set: a budget
    past 86400000 ms used to overflow the cycle budget (an instant false SCHEDULER_TIMEOUT), a
    NaN malloc scale gave an init delay of INT64_MIN."""
    base = ffi.new("pto_rt_config *")
    assert lib.pto_rt_config_default(base) == 0
    out = ffi.new("pto_rt **")
    cases = [
        ("sched_timeout_ms", 1 << 62, "PTO_SCHEDULER_TIMEOUT_MS"),
        ("stream_sync_timeout_ms", 86400001, "PTO_STREAM_SYNC_TIMEOUT_MS"),
        ("stall_report_ms", 1 << 62, "PTO_STALL_REPORT_MS"),
        ("max_idle_iterations", 1 << 62, "PTO_MAX_IDLE_ITERATIONS"),
        ("malloc_model", 7, "PTO_SIM_MALLOC_MODEL"),
        ("malloc_ms_per_gib", float("nan"), "PTO_SIM_MALLOC_MS_PER_GIB"),
        ("malloc_ms_per_gib", -1.0, "PTO_SIM_MALLOC_MS_PER_GIB"),
        ("malloc_sigma", float("inf"), "PTO_SIM_MALLOC_SIGMA"),
    ]
    for field, value, key in cases:
        cfg = ffi.new("pto_rt_config *", base[0])
        setattr(cfg, field, value)
        assert lib.pto_rt_create(cfg, out) == lib.PTO_E_CONFIG, field
        assert key in ffi.string(lib.pto_last_error()).decode()
        assert out[0] == ffi.NULL


def test_sync_budget_past_the_end_of_the_clock_is_no_deadline() -> None:
    """submit_ns + timeout_ms * 1e6 overflowed into a deadline in the past: an immediate
    StreamSyncTimeout for the largest budgets."""
    with libpto.Runtime() as rt:
        g = rt.graph()
        g.spin(100_000)
        assert rt.run(g, timeout_ms=_I64 // 1_000_000).completed == 1
        info = ffi.new("pto_rt_error_info *")
        with rt._use("test") as ptr, g._use("test") as gp:
            assert lib.pto_rt_run(ptr, gp, _I64, info) == 0, ffi.string(lib.pto_last_error())
        assert info.completed == 1


def test_python_arguments_fail_in_the_hierarchy_before_c_or_allocation() -> None:
    with libpto.Runtime() as rt:
        b = rt.buffer(4)
        g = rt.graph()
        cases = [
            (lambda: b.read(1 << 40), "count"),  # allocated 4 TiB before C said no
            (lambda: b.read(5), "count"),
            (lambda: b.write(["x"]), "values must be numbers"),
            (lambda: b.write(b"abc"), "values must be numbers"),
            (lambda: g.fill(libpto.MemRef(1, 1 << 40), 1, 1.0), "dst id"),
            (lambda: g.fill(libpto.MemRef(1 << 40, 0), 1, 1.0), "dst space"),
            (lambda: g.fill(libpto.MemRef(1, 0, -4), 1, 1.0), "dst offset"),
            (lambda: b.ref().at("1"), "index"),  # type: ignore[arg-type]
            (lambda: g.wait(0, [">="], 1), "cmp"),  # type: ignore[arg-type]
            (lambda: g.noops(2, ["chain"]), "mode"),  # type: ignore[arg-type]
            (lambda: rt.bind_comm(5), "expected a CommWindow"),
        ]
        for fn, pattern in cases:
            with pytest.raises(libpto.InvalidArgument, match=pattern):
                fn()
        assert len(g) == 0
