"""The 2-rank (and 4-rank) mesh allreduce of the incident, as a pytest-pto test.

Run it with the variants of ``examples/variants.yaml`` to regenerate the incident's table:

    pytest examples/test_incident.py --pto-variants examples/variants.yaml \\
        --pto-ranks=2 --pto-rounds=30

Each round starts fresh chip workers (so init skew is resampled), each rank stages 256 float32
values, notifies every peer, waits until all peers have notified, adds the peers' slices and
stores the result, which must equal the elementwise sum over all ranks.
"""

from __future__ import annotations

from typing import Any

import pytest

from libpto.ops import mesh_allreduce

N_VALUES = 256


def rank_input(rank: int, n: int = N_VALUES) -> list[float]:
    """Rank ``rank``'s input: small integers, so float32 sums are exact."""
    return [float((rank + 1) * (i % 17 + 1)) for i in range(n)]


def allreduce_op(chip: Any, n: int) -> list[float]:
    """Runs in every chip worker: this rank's input through the mesh allreduce."""
    return mesh_allreduce(chip, rank_input(chip.rank, n))


@pytest.mark.pto(ranks=[2, 4])
def test_mesh_allreduce(pto_world: Any) -> None:
    results = pto_world.run(allreduce_op, N_VALUES)
    inputs = [rank_input(r) for r in range(pto_world.size)]
    expected = [sum(col) for col in zip(*inputs, strict=True)]
    for rank, got in enumerate(results):
        assert got == expected, f"rank {rank}: allreduce result differs from the sum of inputs"
