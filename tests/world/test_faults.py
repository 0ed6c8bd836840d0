"""Every fault of a world names the rank and the cause, and leaves nothing behind (the root
conftest's leak check runs after each test). Margins: seconds of injected delay against
fractions of a second of deadline."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from libpto.errors import (
    InitFailed,
    InitTimeout,
    RankCrashed,
    RankHang,
    RankOpFailed,
    RuntimeStateError,
    SchedulerTimeout,
)
from libpto.world import INIT_HOOK_ENV, World, WorldConfig, start_zygote
from tests.world import _ops

HOOK = f"{_ops.__name__}:"


def hooked(rank: int, hook: str, size: int = 2, **kw: Any) -> WorldConfig:
    return WorldConfig(
        devices=tuple(range(size)), rank_env={rank: {INIT_HOOK_ENV: HOOK + hook}}, **kw
    )


# -- startup ---------------------------------------------------------------------------------------
def test_init_failed_carries_the_rank_and_its_text() -> None:
    with pytest.raises(InitFailed, match=r"^rank 1: INIT_FAILED: PTO2_RING_HEAP=12") as info:
        World.start(hooked(1, "init_fail"))
    err = info.value
    assert err.rank == 1
    assert str(err).startswith("rank 1: INIT_FAILED: PTO2_RING_HEAP=12: must be an integer")
    assert "ValueError" in err.details["traceback"]


def test_death_before_init_done_with_exit_code() -> None:
    with pytest.raises(
        RankCrashed, match=r"^rank 0: died before INIT_DONE \(exit code 7\)$"
    ) as info:
        World.start(hooked(0, "init_exit", size=3))
    err = info.value
    assert err.rank == 0 and err.details["exitcode"] == 7 and err.details["signal"] is None
    assert str(err) == "rank 0: died before INIT_DONE (exit code 7)"


def test_death_before_init_done_with_signal() -> None:
    with pytest.raises(
        RankCrashed, match=r"^rank 1: died before INIT_DONE \(signal 9 \(SIGKILL\)\)$"
    ) as info:
        World.start(hooked(1, "init_sigkill"))
    err = info.value
    assert err.rank == 1 and err.details["signal"] == signal.SIGKILL
    assert str(err) == "rank 1: died before INIT_DONE (signal 9 (SIGKILL))"


def test_init_deadline_names_the_missing_rank_with_its_stack() -> None:
    # the 0.5 s budget is for the ranks' init: a cold zygote start alone takes ~0.4 s on a
    # loaded machine (this test run alone, as ci/mutants.sh does, failed 1 in 5 without this)
    start_zygote()
    t0 = time.monotonic()
    with pytest.raises(
        InitTimeout, match=r"^rank 1: no INIT_DONE within the 0.5 s startup deadline"
    ) as info:
        World.start(hooked(1, "init_sleep", size=3, init_timeout=0.5))
    assert time.monotonic() - t0 < 20  # the rank sleeps 30 s: we did not wait for it
    err = info.value
    assert err.rank == 1 and err.details["missing"] == [1]
    assert str(err).startswith("rank 1: no INIT_DONE within the 0.5 s startup deadline")
    assert "init_sleep" in err.details["stacks"][1]


# -- ops -------------------------------------------------------------------------------------------
def test_op_raising_names_rank_and_exception() -> None:
    world = World.start(WorldConfig(devices=(0, 1, 2)))
    with pytest.raises(
        RankOpFailed, match=r"^rank 2: op .*raise_on raised ValueError: boom"
    ) as info:
        world.run(_ops.raise_on, 2)
    err = info.value
    assert err.rank == 2 and err.details["error"] is None
    assert str(err).startswith(f"rank 2: op {_ops.__name__}.raise_on raised ValueError: boom")
    assert "Traceback" in err.details["traceback"]
    assert world.closed  # a broken world is not reused
    with pytest.raises(RuntimeStateError, match="closed"):
        world.run(_ops.noop)


def test_op_raising_an_exception_that_cannot_be_shown_or_rebuilt_is_still_a_failure() -> None:
    # its __str__ raises and its rebuild raises a BaseException: the rank reports it as text
    with (
        World.start(WorldConfig(devices=(0, 1))) as world,
        pytest.raises(
            RankOpFailed, match=r"^rank 1: op .*raise_unshowable_on raised Unshowable"
        ) as info,
    ):
        world.run(_ops.raise_unshowable_on, 1)
    err = info.value
    assert err.rank == 1 and err.details["error"] is None
    assert str(err).startswith(
        f"rank 1: op {_ops.__name__}.raise_unshowable_on raised Unshowable: "
        "<str() of the exception failed: RuntimeError: no text"
    )


def test_libpto_error_in_op_keeps_code_and_subclass() -> None:
    with (
        World.start(WorldConfig(devices=(0, 1))) as world,
        pytest.raises(
            RankOpFailed, match=r"^rank 1: SCHEDULER_TIMEOUT \(code 100, S1, stuck task 3\)"
        ) as info,
    ):
        world.run(_ops.sched_timeout_on, 1)
    err = info.value
    assert str(err).startswith("rank 1: SCHEDULER_TIMEOUT (code 100, S1, stuck task 3)")
    assert err.rank == 1 and err.code == 100
    assert err.details["error_code"] == 100 and err.details["error_name"] == "SCHEDULER_TIMEOUT"
    assert err.details["sub_class"] == "S1" and err.details["stuck_task"] == 3
    assert isinstance(err.details["error"], SchedulerTimeout)


@pytest.mark.parametrize("signame", ["SIGKILL", "SIGSEGV"])
def test_crash_in_op_names_rank_and_signal(signame: str) -> None:
    with (
        World.start(WorldConfig(devices=(0, 1))) as world,
        pytest.raises(
            RankCrashed, match=r"^rank 1: crashed with signal \d+ \(SIG(KILL|SEGV)\) during op"
        ) as info,
    ):
        world.run(_ops.kill_self_on, 1, signame, timeout=60)
    err = info.value
    signum = getattr(signal, signame)
    assert err.rank == 1 and err.details["signal"] == signum
    assert str(err).startswith(f"rank 1: crashed with signal {signum} ({signame}) during op")
    assert "MainThread" in err.details["stacks"][0]  # the survivor's stack was collected
    assert "not running" in err.details["stacks"][1]


def test_a_rank_killed_by_sigsegv_leaves_its_python_stack_in_its_log() -> None:
    """faulthandler is armed in every worker (by the zygote, inherited at the fork): a rank
    that dies of a signal leaves the Python stack it died in, in its own log."""
    with (
        World.start(WorldConfig(devices=(0, 1))) as world,
        pytest.raises(RankCrashed) as info,
    ):
        world.run(_ops.kill_self_on, 1, "SIGSEGV", timeout=60)
    log = Path(info.value.details["log"]).read_text()
    assert "Fatal Python error: Segmentation fault" in log
    assert "kill_self_on" in log  # the op's own frame


def test_exit_in_op_is_a_crash_with_exit_code() -> None:
    with (
        World.start(WorldConfig(devices=(0,))) as world,
        pytest.raises(RankCrashed, match=r"^rank 0: crashed with exit code 5 during op") as info,
    ):
        world.run(_ops.exit_in_op, 5)
    assert info.value.details["exitcode"] == 5
    assert str(info.value).startswith("rank 0: crashed with exit code 5 during op")


def test_hang_past_round_deadline_dumps_every_rank() -> None:
    t0 = time.monotonic()
    world = World.start(WorldConfig(devices=(0, 1, 2), round_timeout=0.5))
    with pytest.raises(RankHang, match=r"^rank 1: hang: op") as info:
        world.run(_ops.sleep_on, 1, 60.0)
    assert time.monotonic() - t0 < 30
    err = info.value
    assert err.rank == 1 and err.details["stuck_ranks"] == [1]
    assert str(err).startswith("rank 1: hang: op")
    stacks = err.details["stacks"]
    assert set(stacks) == {0, 1, 2}
    assert "hang_here" in stacks[1] and "hang_here" in str(err)
    assert "runtime state" in stacks[0]
    assert world.closed


def test_run_timeout_argument_overrides_the_config() -> None:
    with (
        World.start(WorldConfig(devices=(0, 1))) as world,
        pytest.raises(
            RankHang, match=r"^rank 0: hang: op .* after the 0.3 s round deadline"
        ) as info,
    ):
        world.run(_ops.sleep_on, 0, 60.0, timeout=0.3)
    assert info.value.rank == 0


def test_stacks_of_a_live_world() -> None:
    with World.start(WorldConfig(devices=(0, 1))) as world:
        stacks = world.stacks()
        assert set(stacks) == {0, 1}
        assert "MainThread" in stacks[0]
        assert world.run(_ops.noop) == [None, None]  # asking for stacks disturbs nothing


# -- barrier on vs off -----------------------------------------------------------------------------
SLOW = {"PTO_SIM_INIT_DELAY_MS": "1:1500"}


def _init_end_us(world: World, rank: int) -> int:
    ev = next(e for e in world.events if e["rank"] == rank and e["name"] == "init")
    return int(ev["ts_us"] + ev["dur_us"])


def _op_start_us(world: World, rank: int) -> int:
    return int(next(e for e in world.events if e["rank"] == rank and e["name"] == "op")["ts_us"])


def test_barrier_on_no_op_starts_before_the_slow_rank_is_up() -> None:
    with World.start(WorldConfig(devices=(0, 1), env=SLOW)) as world:
        starts = world.run(_ops.start_time)
    slow_done = _init_end_us(world, 1)
    for rank in (0, 1):
        assert _op_start_us(world, rank) >= slow_done
        assert starts[rank] // 1000 >= slow_done
    assert world.init_ms[1] >= 1500 > world.init_ms[0]
    assert world.init_skew_ms is not None and world.init_skew_ms >= 1000


# Margin: World.start of 2 ranks takes ~0.3 s, so a 6 s init delay is 20x what start takes; a
# start that waited for the slow rank would take >= 6 s, twice the 3 s limit.
VERY_SLOW = {"PTO_SIM_INIT_DELAY_MS": "1:6000"}


def test_barrier_off_fast_rank_starts_while_slow_peer_initialises() -> None:
    config = WorldConfig(devices=(0, 1), env=VERY_SLOW, init_barrier=False)
    t0 = time.monotonic()
    with World.start(config) as world:
        assert time.monotonic() - t0 < 3.0  # start does not wait for the slow rank
        starts = world.run(_ops.start_time)
    slow_done = _init_end_us(world, 1)
    assert starts[0] // 1000 < slow_done - 3_000_000  # rank 0 ran its op well before
    assert _op_start_us(world, 1) >= slow_done
    assert not any(e["name"] == "barrier_wait" for e in world.events)
    assert world.init_ms[1] >= 6000


def test_barrier_off_init_failure_surfaces_in_run() -> None:
    world = World.start(hooked(1, "init_fail", init_barrier=False))
    with pytest.raises(InitFailed, match="PTO2_RING_HEAP=12") as info:
        world.run(_ops.noop)
    assert info.value.rank == 1 and "PTO2_RING_HEAP=12" in str(info.value)


def test_barrier_off_init_deadline_surfaces_in_run() -> None:
    world = World.start(hooked(1, "init_sleep", init_barrier=False, init_timeout=0.5))
    with pytest.raises(InitTimeout, match=r"^rank 1: no INIT_DONE within the 0.5 s") as info:
        world.run(_ops.noop)
    assert info.value.rank == 1 and info.value.details["missing"] == [1]
