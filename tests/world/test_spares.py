"""Spares: the zygote forks the next round's workers while the owner is busy between rounds,
and a spawn hands each rank to one of them (libpto/_zygote.py, "Spares"). What must hold: a
round's workers come from spares when current ones exist, a spare forked before a preload is
never used (it would import after the fork), and spares die with their session (the owner-death
tests count them: tests/world/_parent.py leaves one idle)."""

from __future__ import annotations

import importlib
import os
import time
import uuid
from pathlib import Path

import pytest

from libpto.world import World, WorldConfig
from tests.world import _ops
from tests.world._spares import spares_of, wait_for_spares


def _zygote_of(world: World) -> int:
    assert world._zygote is not None
    return world._zygote.pid


def _current_spares(config: WorldConfig) -> tuple[int, set[int]]:
    """The zygote and its spares for ``config``'s next world, forked after it preloaded the
    ops' module (so they are current and will be used)."""
    with World.start(config) as world:  # the zygote preloads the ops' module from now on
        world.run(_ops.noop)
        zygote = _zygote_of(world)
    with World.start(config) as world:  # forked after that preload: its spares are current
        pass
    return zygote, wait_for_spares(zygote, len(config.devices))


def test_a_round_takes_its_workers_from_the_spares() -> None:
    config = WorldConfig(devices=(0, 1))
    _, spares = _current_spares(config)
    with World.start(config) as world:
        assert set(world._pids) == spares
        assert world.run(_ops.modules_since_fork) == [[], []]
        assert [r["rank"] for r in world.run(_ops.identity, 0)] == [0, 1]


def test_a_spare_forked_before_a_preload_is_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"pto_spare_mod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def op(chip):\n    return chip.rank\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module(name)
    config = WorldConfig(devices=(0, 1))
    with World.start(config) as world:
        world.run(_ops.noop)
    with World.start(config) as world:
        assert world.run(mod.op) == [0, 1]  # the ranks import it; the zygote will preload it
        zygote = _zygote_of(world)
    stale = wait_for_spares(zygote, 2)  # forked before the zygote preloaded the new module
    with World.start(config) as world:
        assert not set(world._pids) & stale
        assert world.run(_ops.modules_since_fork) == [[], []]
        assert world.run(mod.op) == [0, 1]
    assert not stale & spares_of(zygote)


def _policy(pid: int) -> int | None:
    try:
        return os.sched_getscheduler(pid)
    except OSError:
        return None


def test_spares_are_forked_and_wait_as_batch_tasks_and_run_their_rank_as_normal_ones() -> None:
    """Batch while idle: the zygote's spec writes then do not hand its CPU to the first spare
    woken (libpto._zygote._set_policy); normal again for the rank's own work."""
    config = WorldConfig(devices=(0, 1))
    zygote, spares = _current_spares(config)
    deadline = time.monotonic() + 30.0  # the zygote sets the policy just before it forks them
    while any(_policy(p) != os.SCHED_BATCH for p in spares) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [_policy(p) for p in sorted(spares)] == [os.SCHED_BATCH] * 2
    while _policy(zygote) != os.SCHED_OTHER and time.monotonic() < deadline:
        time.sleep(0.01)  # a batch task only while it forks them
    assert _policy(zygote) == os.SCHED_OTHER
    with World.start(config) as world:
        assert set(world._pids) == spares
        assert world.run(_ops.sched_policy) == [os.SCHED_OTHER] * 2
