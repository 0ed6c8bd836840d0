"""Builtin ops: ``op(chip, *args, **kwargs)``, run inside every chip worker.

``chip`` offers ``.rank``, ``.size``, ``.runtime`` (a :class:`libpto.Runtime` with the comm
window bound) and ``.comm`` (a :class:`libpto.CommWindow`).

The mesh allreduce is built as one task graph so its cross-rank wait is a RUNNING ``wait``
kernel on a simulated core -- exactly the situation that exposed the false scheduler latch,
and why an init-skewed peer shows up as a stream-sync timeout without the INIT_DONE barrier.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from libpto.errors import InvalidArgument
from libpto.runtime import comm_ref

__all__ = ["ALLREDUCE_SLOTS", "mesh_allreduce"]

#: comm slots used by mesh_allreduce (relative to its ``slot`` argument): data ready, data read
ALLREDUCE_SLOTS = 2

# calls per comm window: slot counters accumulate, so call k waits for k * (size - 1)
_epochs: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def mesh_allreduce(
    chip: Any, values: Sequence[float], *, slot: int = 0, timeout_ms: float | None = None
) -> list[float]:
    """Elementwise float32 sum of ``values`` over every rank of ``chip.comm``.

    Graph (one per call): copy the input into this rank's data window -> notify every peer
    (ADD 1 on ``slot``) -> wait until ``slot`` >= k * (size - 1) -> add each peer's slice into a
    local buffer -> notify every peer on ``slot + 1`` ("read done") -> wait for theirs, so no
    rank overwrites its window while a peer still reads it. Every rank must call it the same
    number of times with the same length.
    """
    rt, comm = chip.runtime, chip.comm
    rank, size = int(comm.rank), int(comm.size)
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return []
    if 4 * n > int(comm.data_bytes):
        raise InvalidArgument(
            f"mesh_allreduce: {n} float32 values need {4 * n} bytes but the comm window's data "
            f"window holds {comm.data_bytes}"
        )
    if slot < 0 or slot + ALLREDUCE_SLOTS > int(comm.slots):
        raise InvalidArgument(
            f"mesh_allreduce: slot={slot} needs slots {slot}..{slot + 1} of {comm.slots}"
        )
    epoch = _epochs.get(comm, 0) + 1
    _epochs[comm] = epoch
    inp = rt.buffer(n)
    out = rt.buffer(n)
    try:
        inp.write(vals)
        g = rt.graph()
        try:
            staged = g.copy(comm_ref(rank), inp, n)
            local = g.copy(out, inp, n)
            peers = [p for p in range(size) if p != rank]
            sent = [g.notify(p, slot, 1, add=True, deps=[staged]) for p in peers]
            ready = g.wait(slot, ">=", epoch * (size - 1), deps=[staged])
            last = local
            for p in peers:
                last = g.add(out, out, comm_ref(p), n, deps=[ready, last])
            done = [g.notify(p, slot + 1, 1, add=True, deps=[last]) for p in peers]
            g.wait(slot + 1, ">=", epoch * (size - 1), deps=[*done, *sent])
            rt.run(g, timeout_ms)
        finally:
            g.close()
        return out.read()
    finally:
        inp.free()
        out.free()
