"""A torch.distributed test under pytest-pto: 2 ranks, a gloo all_reduce inside an op.

    pytest examples/test_torch_allreduce.py --pto-rounds=30

Each round forks two fresh chip workers from a process that imported torch once; the ``torch``
runtime (``runtime="torch"`` below, or ``--pto-runtime=torch`` for every test) puts each in a
new ``torch.distributed`` process group before INIT_DONE, so the op just uses the default group.
``chip.runtime`` is a ``TorchRuntime`` (``backend``, ``device``, ``store``, ``timeout``).
Needs ``pip install 'pytest-pto[torch]'``.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")


def allreduce_op(chip: Any, n: int) -> list[float]:
    """Runs in every rank: rank r contributes (r + 1) * [0, 1, ..., n-1]."""
    t = torch.arange(n, dtype=torch.float32, device=chip.runtime.device) * (chip.rank + 1)
    dist.all_reduce(t)
    return t.tolist()


@pytest.mark.pto(ranks=2, runtime="torch")
def test_allreduce(pto_world: Any) -> None:
    n = 8
    results = pto_world.run(allreduce_op, n)
    scale = sum(r + 1 for r in range(pto_world.size))
    expected = [float(i * scale) for i in range(n)]
    assert results == [expected] * pto_world.size
