"""A host slice of a larger world (``WorldConfig.rank_base``/``world_size``/``host``) names
its ranks by global number and its host in everything it reports: pytest-pto's host agents
pass these texts on unchanged. The slice here is ranks 2 and 3 of 4 on "host b"; its second
rank (local index 1) must be "rank 3 (host b)" everywhere, and no text may name a local index.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from libpto.errors import (
    InitFailed,
    InitTimeout,
    PtoError,
    RankCloseFailed,
    RankCrashed,
    RankHang,
    RankOpFailed,
)
from libpto.world import INIT_HOOK_ENV, World, WorldConfig, start_zygote
from tests.world import _adapters, _ops

HOOK = f"{_ops.__name__}:"
WHO = "rank 3 (host b)"


def slice_config(rank_env: dict[int, dict[str, str]] | None = None, **kw: Any) -> WorldConfig:
    return WorldConfig(
        devices=(0, 1), rank_base=2, world_size=4, host="b", rank_env=rank_env or {}, **kw
    )


def hooked(hook: str, **kw: Any) -> WorldConfig:
    return slice_config({1: {INIT_HOOK_ENV: HOOK + hook}}, **kw)


def no_local_names(text: str) -> None:
    """No "rank 0"/"rank 1" (the local indexes) anywhere in a World's own text."""
    assert not re.search(r"\branks? [01]\b(?!\d)", text), text


def check_failure(err: PtoError, *, stacks: bool = True) -> None:
    assert str(err).startswith(f"{WHO}: "), str(err)[:200]
    no_local_names(str(err))
    d = err.details
    assert d["rank"] == 3 and d["host"] == "b"
    if stacks:
        assert set(d["stacks"]) <= {2, 3} and 3 in d["stacks"]
        for text in d["stacks"].values():
            no_local_names(text)


# -- start: init failure, death, missed deadline ---------------------------------------------------
def test_init_failure_names_the_global_rank_and_host() -> None:
    with pytest.raises(InitFailed) as info:
        World.start(hooked("init_fail"))
    err = info.value
    check_failure(err, stacks=False)
    assert str(err).startswith(f"{WHO}: INIT_FAILED: PTO2_RING_HEAP=12")
    assert err.details["log"].endswith("rank3.log")
    world = err.pto_world  # its timeline, in global ranks too
    assert {e["rank"] for e in world.events} <= {2, 3} and 3 in {e["rank"] for e in world.events}
    assert set(world.logs) == {2, 3}


def test_death_before_init_done_names_the_global_rank_and_host() -> None:
    with pytest.raises(RankCrashed) as info:
        World.start(hooked("init_exit"))
    check_failure(info.value, stacks=False)
    assert str(info.value) == f"{WHO}: died before INIT_DONE (exit code 7)"


def test_missed_deadline_names_the_global_rank_and_host_with_its_stack() -> None:
    start_zygote()  # a cold zygote start is not the ranks' init (see test_faults.py)
    with pytest.raises(InitTimeout) as info:
        World.start(hooked("init_sleep", init_timeout=0.5))
    err = info.value
    check_failure(err)
    assert str(err).startswith(f"{WHO}: no INIT_DONE within the 0.5 s startup deadline")
    assert err.details["missing"] == [3]
    assert "init_sleep" in err.details["stacks"][3]


# -- ops: failure, crash, hang; stacks, timeline, logs ---------------------------------------------
def test_op_failure_names_the_global_rank_and_host() -> None:
    world = World.start(slice_config())
    with pytest.raises(RankOpFailed) as info:
        world.run(_ops.raise_on, 3)  # chip.rank is the global rank
    err = info.value
    check_failure(err)
    assert str(err).startswith(f"{WHO}: op {_ops.__name__}.raise_on raised ValueError")
    assert err.details["log"].endswith("rank3.log")
    assert err.details["still_running"] == [] and set(err.details["stacks"]) == {2, 3}


def test_crash_in_op_names_the_global_rank_and_host() -> None:
    world = World.start(slice_config())
    with pytest.raises(RankCrashed) as info:
        world.run(_ops.kill_self_on, 3, "SIGKILL", timeout=60)
    check_failure(info.value)
    assert str(info.value).startswith(f"{WHO}: crashed with signal 9 (SIGKILL) during op")
    assert info.value.details["stacks"][3] == f"--- {WHO}: not running (signal 9 (SIGKILL)) ---"


def test_hang_names_the_global_rank_and_host() -> None:
    world = World.start(slice_config(round_timeout=0.5))
    t0 = time.monotonic()
    with pytest.raises(RankHang) as info:
        world.run(_ops.sleep_on, 3, 60.0)
    assert time.monotonic() - t0 < 30
    err = info.value
    check_failure(err)
    assert str(err).startswith(f"{WHO}: hang: op")
    assert err.details["stuck_ranks"] == [3]
    assert "hang_here" in err.details["stacks"][3]


def test_stacks_timeline_and_logs_of_a_live_slice_are_by_global_rank() -> None:
    with World.start(slice_config()) as world:
        assert world.run(_ops.identity, None)[1]["rank"] == 3
        world.run(_ops.log_line, "hello")
        stacks = world.stacks()
        assert set(stacks) == {2, 3} and "MainThread" in stacks[3]
        assert set(world.init_ms) == {2, 3}
        assert set(world.logs) == {2, 3} and world.logs[3].name == "rank3.log"
        assert "stdout of rank 3" in world.logs[3].read_text()
    assert {e["rank"] for e in world.events} == {2, 3}


def test_close_failure_names_the_global_rank_and_host() -> None:
    config = slice_config({1: {"HIER_FAIL_CLOSE": "3"}}, runtime=f"{_adapters.__name__}:Plain")
    world = World.start(config)
    world.run(_adapters.describe)
    with pytest.raises(RankCloseFailed) as info:
        world.close()
    check_failure(info.value, stacks=False)
    assert str(info.value).startswith(f"{WHO}: closing its runtime failed: RuntimeError")
    assert set(world.close_failures) == {3}
