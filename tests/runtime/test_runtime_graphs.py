"""Graphs of thousands of tasks (chains, fan-out, fan-in, mixed rings) complete correctly, buffer
kernels compute the right values, and threads persist across runs."""

from __future__ import annotations

import os
import random

import pytest

import libpto


@pytest.fixture
def rt():
    with libpto.Runtime(stream_sync_timeout_ms=60000, scheduler_timeout_ms=30000) as r:
        yield r


def test_independent_chain_and_fanout_fanin(rt: libpto.Runtime) -> None:
    g = rt.graph()
    ind = g.noops(3000)
    chain = g.noops(3000, "chain")
    root = g.noop()
    fan = g.noops(2000, "fanout", dep=root)
    sink = g.noop(deps=list(fan)[:1000])
    sink2 = g.noop(deps=[*list(fan)[1000:], sink, chain[-1], ind[-1]])
    assert sink2 == len(g) - 1
    info = rt.run(g)
    assert info.completed == info.total == len(g) == 3000 + 3000 + 1 + 2000 + 2


def test_random_dag_over_four_rings(rt: libpto.Runtime) -> None:
    rnd = random.Random(7)
    g = rt.graph()
    ids: list[int] = []
    for i in range(4000):
        deps = rnd.sample(ids, k=min(len(ids), rnd.randint(0, 4))) if ids else []
        ids.append(g.noop(deps=deps, ring=i % 4, heap_bytes=rnd.choice([0, 64, 4096])))
    assert rt.run(g).completed == 4000


def test_buffer_kernels_compute(rt: libpto.Runtime) -> None:
    a, b, c = rt.buffer(1000), rt.buffer(1000), rt.buffer(1000)
    g = rt.graph()
    fa = g.fill(a, 1000, 1.5)
    fb = g.fill(b, 1000, 2.25)
    s = g.add(c, a, b, 1000, deps=[fa, fb])
    # a chain of adds: c += a, 100 times
    last = s
    for _ in range(100):
        last = g.add(c, c, a, 1000, deps=[last])
    g.copy(b.ref(10), c, 990, deps=[last])
    rt.run(g)
    assert c.read(3) == [3.75 + 150.0] * 3
    assert b.read(12) == [2.25] * 10 + [153.75] * 2
    b.write([9.0, 8.0], index=5)
    assert b.read(2, index=5) == [9.0, 8.0]


def test_graph_reruns_and_threads_persist(rt: libpto.Runtime) -> None:
    g = rt.graph()
    g.noops(500, "chain")
    for _ in range(20):
        assert rt.run(g).completed == 500
    st = rt.stats()
    assert st["runs"] == 20 and st["tasks_completed"] == 10000
    assert st["threads"] == 1 + st["sched_threads"] + st["cores"]


def test_empty_graph_and_submit_sync(rt: libpto.Runtime) -> None:
    assert rt.run(rt.graph()).total == 0
    g = rt.graph()
    g.noops(1000)
    rt.submit(g)
    assert rt.sync().completed == 1000


def test_event_fired_from_host_releases_dependants(rt: libpto.Runtime) -> None:
    g = rt.graph()
    ev = g.event()
    g.noops(100, "fanout", dep=ev)
    rt.submit(g)
    rt.fire(ev)
    with pytest.raises(libpto.RuntimeStateError, match=r"already fired|no run"):
        rt.fire(ev)
    assert rt.sync().completed == 101


@pytest.mark.parametrize("threads,cores", [(1, 1), (1, 4), (3, 2), (4, 8)])
def test_thread_and_core_counts(threads: int, cores: int) -> None:
    with libpto.Runtime(sched_threads=threads, cores=cores) as r:
        g = r.graph()
        root = g.noop()
        fan = g.noops(1000, "fanout", dep=root)
        g.noop(deps=list(fan))
        assert r.run(g, timeout_ms=60000).completed == 1002


def _task_count() -> int:
    return len(os.listdir("/proc/self/task"))


def test_threads_start_at_the_first_run_with_tasks_and_only_once() -> None:
    """A chip opened and closed without a run (a round whose op runs no graph) creates no
    thread; the first run with tasks starts them all, later runs reuse them, close joins them."""
    before = _task_count()
    with libpto.Runtime() as r:
        assert _task_count() == before
        assert r.run(r.graph()).total == 0  # an empty graph needs no thread either
        assert _task_count() == before
        g = r.graph()
        g.noops(200)
        assert r.run(g).completed == 200
        started = _task_count() - before
        assert started == r.stats()["threads"] == 1 + 1 + 8
        assert r.run(g).completed == 200
        assert _task_count() - before == started
    assert _task_count() == before


def test_the_default_chip_has_eight_cores_and_one_scheduler() -> None:
    """Eight cores by default: independent tasks beside a busy CPU (issue 13). The incident's
    variants pin its own chip (tests/plugin/test_incident_demo.py)."""
    with libpto.Runtime() as r:
        assert r.stats()["cores"] == 8 and r.stats()["sched_threads"] == 1
