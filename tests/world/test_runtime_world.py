"""Chip workers with the real libpto runtime: allreduce, runtime init failures, runtime errors
and native hang state travelling back to the parent."""

from __future__ import annotations

import pytest

from libpto.errors import ConfigError, InitFailed, RankHang, RankOpFailed, SchedulerTimeout
from libpto.ops import mesh_allreduce
from libpto.world import World, WorldConfig
from tests.world import _ops


@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_mesh_allreduce_gives_the_exact_sum(ranks: int) -> None:
    n = 256
    expected = [float(sum(r * 1000 + i for r in range(ranks))) for i in range(n)]
    with World.start(WorldConfig(devices=tuple(range(ranks)))) as world:
        results = world.run(_ops.allreduce_ranked, n)
        again = world.run(mesh_allreduce, [1.5, -2.0])  # the builtin, by reference
    assert results == [expected] * ranks
    assert again == [[1.5 * ranks, -2.0 * ranks]] * ranks


def test_invalid_ring_env_fails_init_naming_the_variable() -> None:
    config = WorldConfig(devices=(0, 1), rank_env={1: {"PTO2_RING_HEAP": "12"}})
    with pytest.raises(InitFailed, match=r"^rank 1: INIT_FAILED: .*PTO2_RING_HEAP=12") as info:
        World.start(config)
    err = info.value
    assert err.rank == 1
    assert str(err).startswith("rank 1: INIT_FAILED: ")
    assert "PTO2_RING_HEAP=12: must be" in str(err)
    assert isinstance(err.details["error"], ConfigError)


def test_init_delay_is_charged_to_the_slow_ranks_init() -> None:
    env = {"PTO_SIM_INIT_DELAY_MS": "1:300"}
    with World.start(WorldConfig(devices=(0, 1), env=env)) as world:
        world.run(_ops.noop)
    assert world.init_ms[1] >= 300 > world.init_ms[0]
    assert world.init_skew_ms is not None and world.init_skew_ms >= 200


def test_scheduler_timeout_in_op_arrives_with_code_and_locator() -> None:
    # 2 s budget: S1 needs the wait published and RUNNING first; an orchestrator descheduled
    # for > 200 ms (seen under load) would latch S5 instead
    env = {"PTO_SCHEDULER_TIMEOUT_MS": "2000", "PTO_STREAM_SYNC_TIMEOUT_MS": "30000"}
    config = WorldConfig(devices=(0, 1), env=env)
    with (
        World.start(config) as world,
        pytest.raises(RankOpFailed, match=r"^rank 1: SCHEDULER_TIMEOUT \(code 100, S1") as info,
    ):
        world.run(_ops.runtime_wait_forever_on, 1, timeout=60)
    err = info.value
    assert err.rank == 1 and err.code == 100
    # the headline says who latched (the owner of the RUNNING wait: owned-wallclock)
    assert str(err).startswith(
        "rank 1: SCHEDULER_TIMEOUT (code 100, S1, stuck task 0, latched by owner thread "
    )
    assert err.details["sub_class"] == "S1" and err.details["stuck_task"] == 0
    assert isinstance(err.details["error"], SchedulerTimeout)


def test_hang_in_runtime_reports_native_thread_state() -> None:
    env = {"PTO_SCHEDULER_TIMEOUT_MS": "60000", "PTO_STREAM_SYNC_TIMEOUT_MS": "60000"}
    config = WorldConfig(devices=(0, 1), env=env, round_timeout=0.5)
    with World.start(config) as world, pytest.raises(RankHang, match=r"^rank 0: hang: op") as info:
        world.run(_ops.runtime_hang_on, 0)
    stacks = info.value.details["stacks"]
    assert "runtime_hang_on" in stacks[0]
    assert "running task 0 (hang)" in stacks[0]  # pto_rt_dump_state: what each thread does
    assert "runtime rank 1" in stacks[1]


def test_chip_runtime_is_bound_to_the_comm_window() -> None:
    with World.start(WorldConfig(devices=(0, 1))) as world:
        assert world.run(_ops.runtime_facts) == [
            {"rank": 0, "bound": True, "comm_rank": 0, "comm_size": 2},
            {"rank": 1, "bound": True, "comm_rank": 1, "comm_size": 2},
        ]
