"""A World whose ranks bring their runtime up through a runtime adapter (WorldConfig.runtime),
as pytest-pto starts them: init/ops/close on one thread, close failures reaching the owner,
preload checked in the zygote, several devices per rank and a caller-given device binding."""

from __future__ import annotations

from pathlib import Path

import pytest

from libpto.errors import InvalidArgument, RankCloseFailed, RuntimeAdapterError
from libpto.world import World, WorldConfig
from tests.world import _adapters

PLAIN = f"{_adapters.__name__}:Plain"


def test_adapter_runtime_ops_and_binding(tmp_path: Path) -> None:
    config = WorldConfig(
        devices=(0, 1, 2, 3),
        devices_per_rank=2,
        runtime=PLAIN,
        round_dir=tmp_path,
        platform="cuda",
        device_env={
            0: {"CUDA_VISIBLE_DEVICES": "0,1"},
            1: {"CUDA_VISIBLE_DEVICES": "2,3"},
        },
        local_device_ids={0: 0, 1: 0},
    )
    with World.start(config) as world:
        assert world.size == 2
        got = world.run(_adapters.describe)
    for rank, r in enumerate(got):
        ids = [2 * rank, 2 * rank + 1]
        assert r["runtime"] == "Handle" and r["same_thread"]
        assert r["device_ids"] == ids and r["local"] == 0
        assert r["round_dir"] == str(tmp_path)
        assert r["state"] is None  # no libpto runtime, no libpto state
        env = r["env"]
        assert env["PTO_DEVICE_IDS"] == env["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, ids))
        assert env["ASCEND_RT_VISIBLE_DEVICES"] is None  # the caller's binding replaces libpto's
        assert (env["RANK"], env["WORLD_SIZE"]) == (str(rank), "2")
        assert env["PTO_ROUND_DIR"] == str(tmp_path) and env["PTO_LOCAL_DEVICE_ID"] == "0"


def test_without_an_adapter_the_chip_runs_libpto() -> None:
    with World.start(WorldConfig(devices=(4,))) as world:
        got = world.run(_adapters.describe)
    assert got[0]["runtime"] == "Runtime" and got[0]["state"]
    assert got[0]["env"]["ASCEND_RT_VISIBLE_DEVICES"] == "4" and got[0]["local"] == 4


def test_a_close_failure_reaches_the_owner() -> None:
    config = WorldConfig(devices=(0, 1), runtime=PLAIN, rank_env={1: {"HIER_FAIL_CLOSE": "1"}})
    world = World.start(config)
    world.run(_adapters.describe)
    with pytest.raises(RankCloseFailed) as info:
        world.close()
    err = info.value
    assert err.rank == 1 and err.phase == "close"
    assert err.exc_type == "builtins.RuntimeError"
    assert "finalize failed with code -3 on rank 1" in err.message
    world.close()  # closed: nothing more to say


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("ThreadedPreload", r"preload\(\) left 1 thread\(s\) running in the forking process"),
        ("BrokenPreload", "preload failed: OSError: libvendor.so"),
    ],
)
def test_an_unusable_adapter_is_refused_before_any_fork(name: str, match: str) -> None:
    config = WorldConfig(devices=(0, 1), runtime=f"{_adapters.__name__}:{name}")
    with pytest.raises(RuntimeAdapterError, match=match):
        World.start(config)
    # the zygote that ran the thread was retired; the next world gets a clean one
    with World.start(WorldConfig(devices=(0,))) as world:
        assert world.run(_adapters.describe)[0]["runtime"] == "Runtime"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"devices": (0, 1, 2), "devices_per_rank": 2}, "devices_per_rank=2: must be an int"),
        ({"devices": (0,), "devices_per_rank": 0}, "devices_per_rank=0"),
        ({"devices": (0,), "runtime": "no colon"}, "must be 'module:attribute'"),
        ({"devices": (0, 1), "devices_per_rank": 2, "device_env": {1: {}}}, "device_env: rank 1"),
        ({"devices": (0,), "local_device_ids": {0: -1}}, r"local_device_ids\[0\]=-1"),
    ],
)
def test_adapter_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        WorldConfig(**kwargs)  # type: ignore[arg-type]


def test_platform_labels_of_the_plugin_are_accepted() -> None:
    for name in ("sim", "ascend", "cuda"):
        assert WorldConfig(devices=(0,), platform=name).platform == name
