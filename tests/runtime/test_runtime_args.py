"""Every invalid argument gets one clear error (never a crash), at the Python layer and at the
C API directly (NULLs, ranges, unknown kernels, deps on tasks not yet added, ...)."""

from __future__ import annotations

import pytest

import libpto
from libpto._ffi import ffi, lib
from libpto.errors import check


@pytest.fixture
def rt():
    with libpto.Runtime() as r:
        yield r


def test_graph_builder_rejects(rt: libpto.Runtime) -> None:
    g = rt.graph()
    t = g.noop()
    cases = [
        (lambda: g.noop(deps=[t + 1]), "not a task of this graph"),
        (lambda: g.noop(deps=[-1]), "not a task of this graph"),
        (lambda: g.noop(deps=["a"]), "deps\\[0\\]"),
        (lambda: g.noop(ring=4), "ring=4"),
        (lambda: g.noop(heap_bytes=-1), "heap_bytes"),
        (lambda: g.kernel("bogus"), "unknown kernel"),
        (lambda: g.kernel(3), "must be a string"),
        (lambda: g.kernel("noop", count=3), "unexpected parameter"),
        (lambda: g.spin(-5), "duration_us"),
        (lambda: g.crash(mode="boom"), "mode"),
        (lambda: g.event(deps=[t]), "takes no deps"),
        (lambda: g.fill(rt.buffer(4), 5, 1.0), "fill dst: .*outside buffer"),
        (lambda: g.fill(rt.buffer(4), 0, 1.0), "count"),
        (lambda: g.fill("buf", 1, 1.0), "must be a Buffer or a MemRef"),
        (lambda: g.fill(libpto.MemRef(1, 999), 1, 1.0), "buffer id 999 is not allocated"),
        (lambda: g.fill(libpto.MemRef(1, 0, 2), 1, 1.0), "multiple of 4"),
        (lambda: g.fill(libpto.MemRef(7, 0), 1, 1.0), "space=7"),
        (lambda: g.fill(rt.buffer(4), 1, "x"), "value"),
        (lambda: g.add(rt.buffer(4), rt.buffer(2), rt.buffer(4), 4), "src0"),
        (lambda: g.wait(0, "~", 1), "cmp"),
        (lambda: g.notify(-1, 0), "peer"),
        (lambda: g.noops(0), "n=0"),
        (lambda: g.noops(5, "star"), "mode"),
        (lambda: g.noops(5, "fanout"), "dep="),
        (lambda: g.noops(5, "fanout", dep=99), "not a task"),
    ]
    for fn, pattern in cases:
        with pytest.raises(libpto.InvalidArgument, match=pattern):
            fn()
    assert len(g) == 1  # nothing half-added


def test_runtime_call_rejects(rt: libpto.Runtime) -> None:
    g = rt.graph()
    g.noop()
    with pytest.raises(libpto.InvalidArgument, match="timeout_ms"):
        rt.run(g, timeout_ms=0)
    with pytest.raises(libpto.InvalidArgument, match="timeout_ms"):
        rt.run(g, timeout_ms=-3)
    with pytest.raises(libpto.InvalidArgument, match="expected a Graph"):
        rt.run("g")  # type: ignore[arg-type]
    with libpto.Runtime() as other, pytest.raises(libpto.InvalidArgument, match="another"):
        other.run(g)
    with pytest.raises(libpto.RuntimeStateError, match="nothing submitted"):
        rt.sync()
    with pytest.raises(libpto.RuntimeStateError, match="no run in flight"):
        rt.fire(0)
    with pytest.raises(libpto.InvalidArgument, match="count"):
        rt.buffer(0)
    b = rt.buffer(4)
    with pytest.raises(libpto.InvalidArgument, match="outside buffer"):
        b.write([1.0] * 5)
    with pytest.raises(libpto.InvalidArgument, match="index"):
        b.read(index=9)
    b.free()
    with pytest.raises(libpto.InvalidArgument, match="not allocated"):
        rt.graph().fill(b, 1, 1.0)


def test_comm_graph_without_comm_bound(rt: libpto.Runtime) -> None:
    g = rt.graph()
    g.wait(0, ">=", 1)
    with pytest.raises(libpto.RuntimeStateError, match="no comm window is bound"):
        rt.run(g)


def test_comm_operands_checked_against_bound_window(rt: libpto.Runtime, comm_pair) -> None:
    w0, _ = comm_pair
    rt.bind_comm(w0)
    g = rt.graph()
    with pytest.raises(libpto.InvalidArgument, match="peer=2"):
        g.notify(2, 0)
    with pytest.raises(libpto.InvalidArgument, match="slot=8"):
        g.wait(8, ">=", 1)
    with pytest.raises(libpto.InvalidArgument, match="outside the bound comm window"):
        g.fill(libpto.comm_ref(5), 1, 1.0)
    with pytest.raises(libpto.InvalidArgument, match="outside the bound comm window"):
        g.fill(libpto.comm_ref(0, 1 << 16), 1, 1.0)
    rt.bind_comm(None)


def test_closed_runtime_and_graph(rt: libpto.Runtime) -> None:
    r = libpto.Runtime()
    g = r.graph()
    r.close()
    r.close()  # idempotent
    for fn in (r.graph, lambda: r.buffer(1), lambda: r.run(g), r.stats):
        with pytest.raises(libpto.RuntimeStateError, match="closed"):
            fn()
    with pytest.raises(libpto.RuntimeStateError, match="closed"):
        g.noop()
    assert "closed" in r.dump_state()


def test_c_api_null_and_range_arguments() -> None:
    """Raw C calls with NULLs and out-of-range values return statuses, never crash."""
    NULL = ffi.NULL
    cfg = ffi.new("pto_rt_config *")
    assert lib.pto_rt_config_default(NULL) == lib.PTO_E_INVALID_ARG
    assert lib.pto_rt_config_default(cfg) == 0
    assert lib.pto_rt_config_set(NULL, b"PTO_SIM_CORES", b"1") == lib.PTO_E_INVALID_ARG
    assert lib.pto_rt_config_set(cfg, NULL, b"1") == lib.PTO_E_INVALID_ARG
    assert lib.pto_rt_config_set(cfg, b"PTO_SIM_CORES", NULL) == lib.PTO_E_INVALID_ARG
    assert lib.pto_rt_config_set(cfg, b"NOPE", b"1") == lib.PTO_E_INVALID_ARG
    assert lib.pto_rt_config_from_env(NULL) == lib.PTO_E_INVALID_ARG
    assert lib.pto_rt_config_check(cfg, NULL, 5) == lib.PTO_E_INVALID_ARG
    assert lib.pto_rt_config_key(-1) == NULL and lib.pto_rt_config_key(1000) == NULL
    out = ffi.new("pto_rt **")
    assert lib.pto_rt_create(NULL, out) == lib.PTO_E_INVALID_ARG
    assert lib.pto_rt_create(cfg, NULL) == lib.PTO_E_INVALID_ARG
    bad = ffi.new("pto_rt_config *", cfg[0])
    bad.task_window[2] = 12
    assert lib.pto_rt_create(bad, out) == lib.PTO_E_CONFIG
    bad = ffi.new("pto_rt_config *", cfg[0])
    bad.cores = 0
    assert lib.pto_rt_create(bad, out) == lib.PTO_E_CONFIG
    bad = ffi.new("pto_rt_config *", cfg[0])
    bad.latch_policy = 9
    assert lib.pto_rt_create(bad, out) == lib.PTO_E_CONFIG
    assert lib.pto_rt_destroy(NULL) == 0
    for fn, args in [
        (lib.pto_rt_bind_comm, (NULL, NULL)),
        (lib.pto_rt_submit, (NULL, NULL)),
        (lib.pto_rt_sync, (NULL, -1, NULL)),
        (lib.pto_rt_fire_event, (NULL, 0)),
        (lib.pto_rt_abort, (NULL,)),
        (lib.pto_rt_dump_state, (NULL, NULL, 0)),
        (lib.pto_rt_get_config, (NULL, NULL)),
        (lib.pto_rt_stats_get, (NULL, NULL)),
        (lib.pto_rt_buffer_alloc, (NULL, 4, NULL)),
        (lib.pto_rt_buffer_free, (NULL, 0)),
        (lib.pto_rt_buffer_write, (NULL, 0, 0, NULL, 4)),
        (lib.pto_rt_buffer_read, (NULL, 0, 0, NULL, 4)),
        (lib.pto_graph_create, (NULL, NULL)),
        (lib.pto_graph_add, (NULL, NULL, NULL, 0, NULL)),
        (lib.pto_graph_add_many, (NULL, NULL, 1, 0, 0, NULL)),
        (lib.pto_graph_size, (NULL, NULL)),
    ]:
        assert fn(*args) == lib.PTO_E_INVALID_ARG, fn
    assert lib.pto_graph_destroy(NULL) == 0
    assert lib.pto_kernel_id(NULL) == -1 and lib.pto_kernel_id(b"nope") == -1
    assert ffi.string(lib.pto_kernel_name(99)) == b"?"

    assert lib.pto_rt_create(cfg, out) == 0
    rt = out[0]
    try:
        gp = ffi.new("pto_graph **")
        assert lib.pto_graph_create(rt, gp) == 0
        g = gp[0]
        d = ffi.new("pto_task_desc *")
        tid = ffi.new("int64_t *")
        assert lib.pto_graph_add(g, d, NULL, 2, tid) == lib.PTO_E_INVALID_ARG  # ndeps, NULL
        assert lib.pto_graph_add(g, d, NULL, -1, tid) == lib.PTO_E_INVALID_ARG
        d.kernel = 42
        assert lib.pto_graph_add(g, d, NULL, 0, tid) == lib.PTO_E_INVALID_ARG
        assert "unknown kernel 42" in ffi.string(lib.pto_last_error()).decode()
        d.kernel = -1
        assert lib.pto_graph_add(g, d, NULL, 0, tid) == lib.PTO_E_INVALID_ARG
        d.kernel = lib.PTO_K_NOOP
        assert lib.pto_graph_add_many(g, d, 3, 7, 0, tid) == lib.PTO_E_INVALID_ARG
        d.kernel = lib.PTO_K_EVENT
        assert lib.pto_graph_add_many(g, d, 3, 0, 0, tid) == lib.PTO_E_INVALID_ARG
        assert lib.pto_rt_sync(rt, 0, NULL) == lib.PTO_E_INVALID_ARG
        assert lib.pto_rt_sync(rt, -7, NULL) == lib.PTO_E_INVALID_ARG
        buf = ffi.new("char[]", 4)
        assert lib.pto_rt_dump_state(rt, buf, 4) == 0 and len(ffi.string(buf)) == 3
        assert lib.pto_rt_buffer_alloc(rt, 6, ffi.new("int32_t *")) == lib.PTO_E_INVALID_ARG
        assert lib.pto_rt_buffer_free(rt, 77) == lib.PTO_E_INVALID_ARG
        with pytest.raises(libpto.InvalidArgument, match="not allocated"):
            check(lib.pto_rt_buffer_free(rt, -1), "free")
        # a graph of another runtime
        gp2 = ffi.new("pto_graph **")
        assert lib.pto_rt_create(cfg, out) == 0
        rt2 = out[0]
        assert lib.pto_graph_create(rt2, gp2) == 0
        assert lib.pto_rt_submit(rt, gp2[0]) == lib.PTO_E_INVALID_ARG
        assert lib.pto_rt_destroy(rt2) == 0  # frees its graph too
    finally:
        assert lib.pto_rt_destroy(rt) == 0
