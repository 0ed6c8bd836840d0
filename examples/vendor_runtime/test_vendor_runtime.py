"""pytest-pto driving a vendor NPU runtime through its adapter (vendor_adapter.py).

    pytest examples/vendor_runtime --pto-rounds=10 --junitxml=out/vendor.xml
    VENDOR_DEMO_FAILURES=1 pytest examples/vendor_runtime --junitxml=out/vendor.xml

The runtime here is vendor_rt_double, a test double of a real NPU runtime's binding built on
libpto's simulator. ``test_allreduce`` passes although the runtime logs ``[ERROR]`` lines in
every run. With ``VENDOR_DEMO_FAILURES=1`` three more tests show how failures read: a peer that
skips the collective (the runtime latches ``SCHEDULER_TIMEOUT`` with ``sub_class=S1`` and raises
``finalize_native_run failed with code -100``: outcome ``sched_error_code=100``), a graph too big
for rank 1's dependency pool on "hardware" (``+4``: ``orch_error_code=4``), and an ordinary
assertion next to those harmless ``[ERROR]`` lines (``failed``).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

RUNTIME = "vendor_adapter:VendorRuntimeAdapter"
N = 16

demo_failure = pytest.mark.skipif(
    not os.environ.get("VENDOR_DEMO_FAILURES"),
    reason="demonstrates a failing outcome; set VENDOR_DEMO_FAILURES=1",
)


def allreduce_op(chip: Any, n: int) -> list[float]:
    """Runs in every rank: the binding's collective over (rank + 1) * [1] * n."""
    return list(chip.runtime.allreduce([float(chip.rank + 1)] * n))


def skipping_allreduce_op(chip: Any, n: int) -> list[float] | None:
    """Rank 1 never joins: rank 0's wait kernel stays RUNNING until the scheduler latches."""
    return allreduce_op(chip, n) if chip.rank == 0 else None


def fanin_op(chip: Any, width: int) -> int:
    """One task depending on ``width`` others: more edges than PTO2_RING_DEP_POOL holds."""

    def build(graph: Any) -> None:
        graph.noop(deps=[graph.noop() for _ in range(width)])

    return int(chip.runtime.launch(build))


@pytest.mark.pto(ranks=2, runtime=RUNTIME)
def test_allreduce(pto_world: Any) -> None:
    expected = [float(sum(r + 1 for r in range(pto_world.size)))] * N
    assert pto_world.run(allreduce_op, N) == [expected] * pto_world.size


@demo_failure
@pytest.mark.pto(ranks=2, runtime=RUNTIME, env={"PTO_SCHEDULER_TIMEOUT_MS": "300"})
def test_peer_skips_allreduce(pto_world: Any) -> None:
    pto_world.run(skipping_allreduce_op, N)


@demo_failure
@pytest.mark.pto(
    ranks=2,
    runtime=RUNTIME,
    rank_env={1: {"PTO2_RING_DEP_POOL": "16", "VENDOR_RT_TARGET": "hardware"}},
)
def test_graph_overflows_dep_pool(pto_world: Any) -> None:
    pto_world.run(fanin_op, 17)


@demo_failure
@pytest.mark.pto(ranks=2, runtime=RUNTIME)
def test_wrong_expectation(pto_world: Any) -> None:
    results = pto_world.run(fanin_op, 3)  # passes, and logs [ERROR] lines as always
    assert results == [-1, -1], "the runtime's [ERROR] lines are not what fails this round"
