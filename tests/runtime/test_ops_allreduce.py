"""libpto.ops.mesh_allreduce: exact float32 sums across ranks, in threads of one process and in
separate processes (spawn) attached to one comm window; a missing peer latches S1."""

from __future__ import annotations

import multiprocessing as mp
import struct
import threading
from types import SimpleNamespace
from typing import Any

import pytest

import libpto
from libpto import ops


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _expected(inputs: list[list[float]]) -> list[float]:
    out = [_f32(v) for v in inputs[0]]
    for vals in inputs[1:]:
        out = [_f32(a + _f32(b)) for a, b in zip(out, vals, strict=True)]
    return out


def _inputs(size: int, n: int) -> list[list[float]]:
    return [[_f32(r * 1000.0 + i * 0.5) for i in range(n)] for r in range(size)]


def _chip(rank: int, window: libpto.CommWindow, rt: libpto.Runtime) -> Any:
    return SimpleNamespace(
        rank=rank, size=window.size, runtime=rt, comm=window, device_id=rank, env={}, log=print
    )


def test_allreduce_threads_in_one_process(comm_pair) -> None:
    windows = comm_pair
    inputs = _inputs(2, 257)
    results: dict[int, list[list[float]]] = {}
    errors: list[BaseException] = []

    def rank_main(rank: int) -> None:
        try:
            with libpto.Runtime(rank=rank, stream_sync_timeout_ms=30000) as rt:
                rt.bind_comm(windows[rank])
                chip = _chip(rank, windows[rank], rt)
                results[rank] = [ops.mesh_allreduce(chip, inputs[rank]) for _ in range(3)]
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    want = _expected(inputs)
    for r in range(2):
        assert results[r] == [want, want, want]


def _proc_main(name: str, rank: int, values: list[float], q: Any) -> None:
    try:
        with (
            libpto.CommWindow.attach(name, rank) as w,
            libpto.Runtime(rank=rank, stream_sync_timeout_ms=30000) as rt,
        ):
            rt.bind_comm(w)
            chip = _chip(rank, w, rt)
            q.put((rank, ops.mesh_allreduce(chip, values), ops.mesh_allreduce(chip, values)))
    except BaseException as e:
        q.put((rank, repr(e), None))


@pytest.mark.parametrize("size", [2, 4])
def test_allreduce_separate_processes(size: int) -> None:
    name = libpto.new_name("comm")
    inputs = _inputs(size, 100)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with libpto.CommWindow.create(name, size, None, slots=4, data_bytes=4096):
        procs = [ctx.Process(target=_proc_main, args=(name, r, inputs[r], q)) for r in range(size)]
        for p in procs:
            p.start()
        try:
            got = {}
            for _ in range(size):
                rank, first, second = q.get(timeout=120)
                got[rank] = (first, second)
        finally:
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()
                    p.join()
        q.close()
        q.join_thread()
    want = _expected(inputs)
    for r in range(size):
        assert got[r] == (want, want), got[r]


def test_missing_peer_latches_s1(comm_pair) -> None:
    w0, _ = comm_pair
    with libpto.Runtime(rank=0, scheduler_timeout_ms=200, stream_sync_timeout_ms=30000) as rt:
        rt.bind_comm(w0)
        with pytest.raises(libpto.SchedulerTimeout, match="SCHEDULER_TIMEOUT") as ei:
            ops.mesh_allreduce(_chip(0, w0, rt), [1.0, 2.0])
    assert ei.value.sub_class == "S1"


def test_allreduce_rejects_oversized_input(comm_pair) -> None:
    w0, _ = comm_pair
    with libpto.Runtime() as rt:
        rt.bind_comm(w0)
        with pytest.raises(libpto.InvalidArgument, match="data window"):
            ops.mesh_allreduce(_chip(0, w0, rt), [0.0] * (1 << 15))
        with pytest.raises(libpto.InvalidArgument, match="slot"):
            ops.mesh_allreduce(_chip(0, w0, rt), [0.0], slot=7)
