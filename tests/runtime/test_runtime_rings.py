"""Ring limits: flow control works when a ring is full, and the real orchestrator codes latch
when a ring can never make room. Lazy heap reservation keeps a 4 GiB ring heap off RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import libpto

LONG = {"stream_sync_timeout_ms": 60000, "scheduler_timeout_ms": 30000}


def test_small_window_flow_control_completes() -> None:
    with libpto.Runtime(task_window=4, dep_pool=8, heap=4096, **LONG) as rt:
        g = rt.graph()
        g.noops(2000)
        g.noops(2000, "chain", heap_bytes=1000)
        for i in range(500):
            g.noop(deps=[len(g) - 1], ring=i % 4, heap_bytes=3000)
        assert rt.run(g).completed == 4500


def test_per_ring_limits_four_values() -> None:
    with libpto.Runtime(task_window="4,8,16,32", heap="1024,2048,4096,8192", **LONG) as rt:
        assert rt.config["PTO2_RING_TASK_WINDOW"] == (4, 8, 16, 32)
        assert rt.config["PTO2_RING_HEAP"] == (1024, 2048, 4096, 8192)
        g = rt.graph()
        for i in range(400):
            g.noop(ring=i % 4, heap_bytes=1024)
        assert rt.run(g).completed == 400


def test_dep_pool_overflow_latches_4() -> None:
    with libpto.Runtime(dep_pool=16, **LONG) as rt:
        g = rt.graph()
        ids = g.noops(17)
        g.noop(deps=list(ids))  # 17 fanin edges > 16 dep-pool nodes
        with pytest.raises(
            libpto.OrchestratorError, match="orch_error_code=4 DEP_POOL_OVERFLOW"
        ) as ei:
            rt.run(g)
    err = ei.value
    assert err.code == libpto.DEP_POOL_OVERFLOW == 4
    assert err.name == "DEP_POOL_OVERFLOW"
    assert err.stuck_task == 17 and err.ring == 0
    assert err.latch_thread_name == "orchestrator"
    assert "PTO2_RING_DEP_POOL" in str(err)


def test_heap_too_small_latches_2() -> None:
    with libpto.Runtime(heap=1024, **LONG) as rt:
        g = rt.graph()
        g.noop()
        g.noop(ring=2, heap_bytes=1025)
        with pytest.raises(
            libpto.OrchestratorError, match="orch_error_code=2 HEAP_RING_DEADLOCK"
        ) as ei:
            rt.run(g)
    assert ei.value.code == libpto.HEAP_RING_DEADLOCK == 2
    assert ei.value.ring == 2 and ei.value.stuck_task == 1


def test_window_that_can_never_make_room_latches_3() -> None:
    """Task 0's consumer comes after a full window: task 0 can never be CONSUMED."""
    with libpto.Runtime(task_window=8, **LONG) as rt:
        g = rt.graph()
        root = g.noop()
        g.noops(20)
        g.noop(deps=[root])
        with pytest.raises(
            libpto.OrchestratorError, match="orch_error_code=3 FLOW_CONTROL_DEADLOCK"
        ) as ei:
            rt.run(g)
        assert ei.value.code == libpto.FLOW_CONTROL_DEADLOCK == 3
        assert ei.value.stuck_task == 8
        # the same shape fits a larger window of another runtime; this one is still usable
        ok = rt.graph()
        ok.noops(100, "chain")
        assert rt.run(ok).completed == 100


def test_heap_ring_that_can_never_make_room_latches_2() -> None:
    with libpto.Runtime(heap=4096, **LONG) as rt:
        g = rt.graph()
        root = g.noop(heap_bytes=2048)
        g.noop(heap_bytes=2048)
        g.noop(heap_bytes=2048)  # needs root's heap, root waits for its consumer below
        g.noop(deps=[root])
        with pytest.raises(
            libpto.OrchestratorError, match="orch_error_code=2 HEAP_RING_DEADLOCK"
        ) as ei:
            rt.run(g)
    assert ei.value.code == 2


def test_dep_pool_that_can_never_make_room_latches_4() -> None:
    """Four consumers of task 0 fill the pool; task 0 (oldest, blocks in-order reclaim) has one
    more consumer after them, which needs a node: the pool can never drain."""
    with libpto.Runtime(dep_pool=4, **LONG) as rt:
        g = rt.graph()
        a = g.noop()
        for _ in range(5):
            g.noop(deps=[a])
        with pytest.raises(
            libpto.OrchestratorError, match="orch_error_code=4 DEP_POOL_OVERFLOW"
        ) as ei:
            rt.run(g)
    assert ei.value.code == libpto.DEP_POOL_OVERFLOW
    assert ei.value.stuck_task == 5


@pytest.mark.skipif(bool(os.environ.get("PTO_SANITIZER")), reason="sanitizer shadow memory")
def test_rss_with_4gib_ring_heap_stays_small() -> None:
    code = textwrap.dedent(
        """
        import libpto
        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        with libpto.Runtime(heap=4294967296, task_window=131072, dep_pool=131072) as rt:
            g = rt.graph()
            for r in range(4):
                g.noops(1000, ring=r, heap_bytes=1 << 20)
            rt.run(g, timeout_ms=60000)
            print(rss())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) < 64 * 1024 * 1024
