"""World basics: start, environment, logs, dispatch, results, timeline, validation."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

import libpto
from libpto.errors import InvalidArgument, RankOpFailed, RuntimeStateError
from libpto.world import World, WorldConfig, start_zygote
from tests.world import _ops


def test_run_returns_per_rank_results_in_rank_order(tmp_path: Path) -> None:
    config = WorldConfig(
        devices=(3, 5),
        env={"HIER_COMMON": "1"},
        rank_env={1: {"HIER_ONLY_ONE": "yes"}},
        log_dir=tmp_path,
        name="basic",
    )
    with World.start(config) as world:
        assert world.size == 2 and world.devices == (3, 5)
        results = world.run(_ops.identity, "v")
        again = world.run(_ops.identity, value=7)
    assert [r["rank"] for r in results] == [0, 1]
    assert [r["device_id"] for r in results] == [3, 5]
    assert [a["value"] for a in again] == [7, 7]
    for rank, res in enumerate(results):
        env = res["env"]
        assert env["PTO_RANK"] == str(rank)
        assert env["PTO_WORLD_SIZE"] == "2"
        assert env["PTO_DEVICE_ID"] == env["ASCEND_RT_VISIBLE_DEVICES"] == str((3, 5)[rank])
        assert env["PTO_COMM_NAME"].startswith("pto-comm-")
        assert env["HIER_COMMON"] == "1"
        assert res["has_comm"]
    assert "HIER_ONLY_ONE" not in results[0]["env"]
    assert results[1]["env"]["HIER_ONLY_ONE"] == "yes"
    assert results[0]["pid"] != results[1]["pid"]
    assert world.logs == {0: tmp_path / "rank0.log", 1: tmp_path / "rank1.log"}
    assert world.closed


def test_logs_receive_chip_log_and_stdout(tmp_path: Path) -> None:
    with World.start(WorldConfig(devices=(0, 1), log_dir=tmp_path)) as world:
        world.run(_ops.log_line, "hello log")
    for rank in (0, 1):
        text = (tmp_path / f"rank{rank}.log").read_text()
        assert f"rank {rank}] hello log" in text
        assert f"stdout of rank {rank}" in text


def test_init_stats_and_timeline() -> None:
    with World.start(WorldConfig(devices=(0, 1, 2))) as world:
        world.run(_ops.noop)
        assert set(world.init_ms) == {0, 1, 2}
        assert all(0 < ms < 60_000 for ms in world.init_ms.values())  # really measured
        skew = world.init_skew_ms
        assert skew is not None and 0 <= skew < 60_000
    events = world.events
    # the skew is the spread of the ranks' INIT_END stamps (µs rounding of the events: 3 µs)
    ends = [e["ts_us"] + e["dur_us"] for e in events if e["name"] == "init"]
    assert abs(skew * 1000 - (max(ends) - min(ends))) <= 3
    names = {(e["rank"], e["name"]) for e in events}
    for rank in range(3):
        for name in ("spawn", "init", "barrier_wait", "op", "teardown"):
            assert (rank, name) in names, (rank, name)
    for e in events:
        assert set(e) >= {"rank", "name", "ts_us", "dur_us"}
        assert 0 <= e["dur_us"] < 60_000_000 and e["ts_us"] > 1_600_000_000_000_000
    by = {(e["rank"], e["name"]): e for e in events}
    for rank in range(3):  # phases follow each other per rank
        assert by[rank, "init"]["ts_us"] <= by[rank, "op"]["ts_us"] <= by[rank, "teardown"]["ts_us"]


def test_eight_ranks_rendezvous_on_two_cpus() -> None:
    with World.start(WorldConfig(devices=tuple(range(8)), init_timeout=60)) as world:
        assert world.run(_ops.rendezvous) == list(range(8))
        assert world.run(_ops.rendezvous) == list(range(8))


def test_op_must_be_module_level() -> None:
    def local_op(chip: libpto.Chip) -> None:
        return None

    with World.start(WorldConfig(devices=(0,))) as world:
        with pytest.raises(InvalidArgument, match="module-level function"):
            world.run(local_op)
        with pytest.raises(InvalidArgument, match="module-level function"):
            world.run(lambda chip: None)
        with pytest.raises(InvalidArgument, match="cannot be pickled"):
            world.run(_ops.identity, lambda: None)
        assert world.run(_ops.noop) == [None]  # a rejected call leaves the world usable


def test_oversize_payloads_name_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTO_MBOX_PAYLOAD_BYTES", "8192")
    with World.start(WorldConfig(devices=(0,))) as world:
        with pytest.raises(InvalidArgument, match=r"limit of 8192 bytes.*PTO_MBOX_PAYLOAD_BYTES"):
            world.run(_ops.identity, "x" * 20000)
        with pytest.raises(RankOpFailed, match=r"rank 0: .*limit of 8192 bytes"):
            world.run(_ops.big_result, 20000)
    monkeypatch.setenv("PTO_MBOX_PAYLOAD_BYTES", "12")
    with pytest.raises(libpto.ConfigError, match=r"PTO_MBOX_PAYLOAD_BYTES=12: must be"):
        World.start(WorldConfig(devices=(0,)))


def test_closed_world_is_not_reused() -> None:
    world = World.start(WorldConfig(devices=(0,)))
    world.close()
    world.close()  # idempotent
    with pytest.raises(RuntimeStateError, match="closed"):
        world.run(_ops.noop)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"devices": ()}, "at least one device"),
        ({"devices": (0, 0)}, "names a device twice"),
        ({"devices": (-1,)}, "not a device id"),
        ({"devices": (0,), "init_timeout": 0}, "init_timeout=0: must be a number of seconds > 0"),
        ({"devices": (0,), "round_timeout": -1.0}, "round_timeout=-1.0"),
        ({"devices": (0,), "platform": "npu9"}, "unknown platform"),
        ({"devices": (0,), "rank_env": {3: {}}}, r"rank_env: rank 3 is not in \[0, 1\)"),
        ({"devices": (0,), "env": {"A": 1}}, r"WorldConfig.env: A=1: the value must be a string"),
    ],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        WorldConfig(**kwargs)  # type: ignore[arg-type]


def test_config_accepts_a_list_of_devices() -> None:
    assert WorldConfig(devices=[1, 2]).devices == (1, 2)  # type: ignore[arg-type]


def test_worker_is_not_exempt_from_leak_checks() -> None:
    # the zygote's argv carries "pto-zygote"; a forked worker must not look like it
    with World.start(WorldConfig(devices=(0,))) as world:
        pid = world.run(_ops.identity, 0)[0]["pid"]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert "pto-zygote" not in cmdline
        assert "pto-chip rank=0/1" in cmdline


def test_dropped_world_is_cleaned_up_by_its_finalizer() -> None:
    world = World.start(WorldConfig(devices=(0, 1)))
    segments = [world._mbox_name, world._comm_name]
    del world
    gc.collect()
    for name in segments:
        assert not Path("/dev/shm", name).exists()
    # the processes: the conftest leak check fails this test if any rank survived


def test_op_module_that_starts_a_thread_never_taints_forks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = tmp_path / "hier_threaded_mod.py"
    mod.write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
        "def op(chip):\n"
        "    return chip.rank\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import hier_threaded_mod  # type: ignore[import-not-found]

    first = start_zygote()
    with World.start(WorldConfig(devices=(0, 1))) as world:
        assert world.run(hier_threaded_mod.op) == [0, 1]  # the ranks import it themselves
    # the next start asks the zygote to preload the module: it notices the thread, refuses to
    # fork, and a fresh zygote (which will never preload that module) takes over
    with World.start(WorldConfig(devices=(0, 1))) as world:
        assert world.run(hier_threaded_mod.op) == [0, 1]
    assert start_zygote() != first
    with World.start(WorldConfig(devices=(0,))) as world:
        assert world.run(hier_threaded_mod.op) == [0]


def test_a_chip_worker_imports_nothing_after_the_fork() -> None:
    """The zygote preloads what a worker needs on libpto's default path: a module a worker
    imported itself would be loaded (and executed) again by every rank of every round."""
    config = WorldConfig(devices=(0, 1))
    with World.start(config) as world:  # the zygote preloads the ops' module from now on
        world.run(_ops.noop)
    with World.start(config) as world:
        fresh = world.run(_ops.modules_since_fork)
    assert fresh == [[], []]


#: modules only the owner needs (temp folders, cleanup, random names, op files loaded by path):
#: a zygote that imports them makes every fork and every worker exit dearer (libcrypto alone
#: adds a dozen mappings), for nothing
OWNER_ONLY = ("hashlib", "secrets", "shutil", "tempfile", "_hashlib")


def test_the_zygote_and_its_workers_carry_no_owner_only_module() -> None:
    with World.start(WorldConfig(devices=(0, 1))) as world:
        loaded = world.run(_ops.loaded_modules, OWNER_ONLY)
    assert loaded == [[], []]
