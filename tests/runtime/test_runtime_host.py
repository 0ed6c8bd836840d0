"""Host side: stream-sync timeout (outer failure) with a hang kernel, abort, reuse after
failures, dump_state, the crash kernel, and exceptions that pickle with their details."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import libpto


def _wait_until_running(rt: libpto.Runtime, what: str = "run running") -> str:
    """Poll ``dump_state`` until it shows ``what`` (at most 30 s): a fixed sleep is a race on a
    loaded CI runner, where the run's threads may start hundreds of ms late."""
    deadline = time.monotonic() + 30.0
    while True:
        text = rt.dump_state()
        if what in text or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


def test_stream_sync_timeout_with_hang_kernel_then_reuse() -> None:
    with libpto.Runtime(scheduler_timeout_ms=60000, stream_sync_timeout_ms=300) as rt:
        g = rt.graph()
        a = g.noop()
        g.hang(deps=[a])
        t0 = time.monotonic()
        with pytest.raises(
            libpto.StreamSyncTimeout, match="stream sync timed out after 300 ms"
        ) as ei:
            rt.run(g)
        assert time.monotonic() - t0 < 10.0  # 300 ms budget, prompt abort
        err = ei.value
        assert err.code == 0 and err.status == "PTO_E_STREAM_SYNC_TIMEOUT"
        assert err.completed == 1 and err.total == 2
        assert "stream sync timed out after 300 ms" in str(err)
        # explicit per-run timeout overrides the config
        with pytest.raises(libpto.StreamSyncTimeout, match="after 150 ms"):
            rt.run(g, timeout_ms=150)
        ok = rt.graph()
        ok.noops(1000, "chain")
        # reusable after the abort; its own budget: the config's 300 ms is the hang's, and a
        # loaded runner was seen to need more than that for 1000 noops (they take ~10 ms)
        assert rt.run(ok, timeout_ms=60_000).completed == 1000


def test_abort_from_another_thread() -> None:
    with libpto.Runtime(scheduler_timeout_ms=60000) as rt:
        g = rt.graph()
        g.hang()
        timer = threading.Timer(0.3, rt.abort)
        timer.start()
        with pytest.raises(libpto.PtoError, match="aborted") as ei:
            rt.run(g, timeout_ms=float("inf"))
        timer.join()
        assert ei.value.status == "PTO_E_ABORTED"


def test_close_while_running_is_prompt() -> None:
    rt = libpto.Runtime(scheduler_timeout_ms=60000)
    g = rt.graph()
    g.spin(60_000_000)
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            rt.run(g, timeout_ms=float("inf"))
        except libpto.PtoError as e:
            errors.append(e)

    th = threading.Thread(target=runner)
    th.start()
    _wait_until_running(rt)  # not a fixed sleep: a loaded host may start the run late
    t0 = time.monotonic()
    rt.close()
    th.join(10)
    assert not th.is_alive() and time.monotonic() - t0 < 10.0
    assert errors and "aborted" in str(errors[0])


def test_dump_state_names_every_thread_and_the_running_task() -> None:
    with libpto.Runtime(scheduler_timeout_ms=60000, sched_threads=2, cores=2) as rt:
        g = rt.graph()
        g.hang()
        rt.submit(g)
        text = _wait_until_running(rt, "running task 0 (hang)")
        rt.abort()
        with pytest.raises(libpto.PtoError, match="the run was aborted"):
            rt.sync()
    assert "orchestrator:" in text and "sched0:" in text and "sched1:" in text
    assert "running task 0 (hang)" in text
    assert "run running" in text


@pytest.mark.skipif(
    bool(os.environ.get("PTO_SANITIZER")), reason="the sanitizer runtime intercepts the fault"
)
@pytest.mark.parametrize("mode,signal", [("segv", 11), ("abort", 6)])
def test_crash_kernel_kills_the_process(mode: str, signal: int) -> None:
    code = textwrap.dedent(
        f"""
        import libpto
        rt = libpto.Runtime()
        g = rt.graph()
        g.crash(mode={mode!r})
        rt.run(g)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, timeout=60
    )
    assert proc.returncode == -signal


def test_exceptions_pickle_with_details() -> None:
    with libpto.Runtime(scheduler_timeout_ms=100, stream_sync_timeout_ms=30000) as rt:
        g = rt.graph()
        ev = g.event()
        g.noop(deps=[ev])
        with pytest.raises(libpto.SchedulerTimeout, match="SCHEDULER_TIMEOUT") as ei:
            rt.run(g)
        with libpto.Runtime(stream_sync_timeout_ms=100, scheduler_timeout_ms=60000) as rt2:
            h = rt2.graph()
            h.hang()
            with pytest.raises(
                libpto.StreamSyncTimeout, match="stream sync timed out after 100 ms"
            ) as ej:
                rt2.run(h)
        with libpto.Runtime(dep_pool=4) as rt3:
            k = rt3.graph()
            ids = k.noops(5)
            k.noop(deps=list(ids))
            with pytest.raises(libpto.OrchestratorError, match="DEP_POOL_OVERFLOW") as ek:
                rt3.run(k)
    for err in (ei.value, ej.value, ek.value):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err)
        assert str(copy) == str(err) and copy.code == err.code and copy.name == err.name
        assert copy.details == err.details
    assert ei.value.sub_class == "S4" and ek.value.code == 4
