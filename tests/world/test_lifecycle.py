"""Life-cycle edges: an op's daemon, a zygote that does not answer, and the owner interrupted
(a timeout signal) while it talks to the zygote or waits for ranks to leave. Nothing may leak
(the root conftest's leak check runs after each test) and the next world must work.
Margins: seconds of injected delay against fractions of a second of deadline."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from libpto import _procs
from libpto.errors import InitTimeout
from libpto.world import INIT_HOOK_ENV, World, WorldConfig, start_zygote
from tests.world import _ops
from tests.world.test_owner_death import wait_gone


class Interrupted(Exception):
    pass


@pytest.fixture
def alarm() -> Iterator[None]:
    """SIGALRM raises :class:`Interrupted` wherever the main thread is (like a test timeout)."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Interrupted("SIGALRM")

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def slow_preload_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float) -> Any:
    """An op module whose import takes ``seconds`` in the zygote only (not here, not in ranks)."""
    name = f"hier_slow_preload_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "import os, sys, time\n"
        "if 'pto-zygote' in sys.argv and 'PTO_RANK' not in os.environ:\n"
        f"    time.sleep({seconds})\n"
        "def op(chip):\n"
        "    return chip.rank\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    monkeypatch.setitem(sys.modules, name, module)
    with World.start(WorldConfig(devices=(0,))) as world:  # the zygote now wants to preload it
        assert world.run(module.op) == [0]
    return module


def assert_world_works() -> None:
    with World.start(WorldConfig(devices=(0, 1))) as world:
        mbox = world._mbox
        assert mbox is not None
        assert world._pids == [mbox.pid(0), mbox.pid(1)]  # the answer to *this* spawn
        assert world.run(_ops.noop) == [None, None]


def test_daemon_an_op_started_in_its_own_session_dies_with_the_world() -> None:
    with World.start(WorldConfig(devices=(0, 1))) as world:
        daemons = world.run(_ops.start_daemon)
        # a helper that outlives its op serves the world's next op...
        assert world.run(_ops.pids_alive, daemons) == [[True, True]] * 2
    # ...but not the world: escaping the worker's process group does not make it immortal
    assert wait_gone(daemons) == []


def test_interrupted_spawn_keeps_the_zygote_in_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alarm: None
) -> None:
    slow_preload_module(tmp_path, monkeypatch, 1.0)
    first = start_zygote()
    monkeypatch.setattr(_procs, "RESYNC_WAIT", 10.0)
    signal.setitimer(signal.ITIMER_REAL, 0.2)  # while the zygote preloads, before it answers
    with pytest.raises(Interrupted, match="SIGALRM"):
        World.start(WorldConfig(devices=(0, 1)))
    # its late answer was read and its workers killed: the next spawn gets its own answer
    assert start_zygote() == first
    assert_world_works()


def test_interrupted_spawn_whose_answer_does_not_come_retires_the_zygote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alarm: None
) -> None:
    slow_preload_module(tmp_path, monkeypatch, 30.0)
    first = start_zygote()
    monkeypatch.setattr(_procs, "RESYNC_WAIT", 0.2)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    with pytest.raises(Interrupted, match="SIGALRM"):
        World.start(WorldConfig(devices=(0, 1)))
    assert wait_gone([first]) == []
    assert start_zygote() != first
    assert_world_works()


def test_a_zygote_that_does_not_answer_is_an_init_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_preload_module(tmp_path, monkeypatch, 30.0)
    first = start_zygote()
    with pytest.raises(InitTimeout, match=r"ranks 0, 1: not started within the 0\.5 s") as info:
        World.start(WorldConfig(devices=(0, 1), init_timeout=0.5))
    assert "did not answer 'spawn'" in str(info.value)
    assert info.value.details["missing"] == [0, 1]
    assert wait_gone([first]) == []
    assert_world_works()


def test_close_interrupted_while_waiting_for_ranks_still_kills_them(alarm: None) -> None:
    # with the barrier off a rank still in its (30 s) init cannot answer SHUTDOWN, so close()
    # waits its grace for it; a timeout signal lands in that wait
    world = World.start(
        WorldConfig(
            devices=(0, 1),
            init_barrier=False,
            rank_env={1: {INIT_HOOK_ENV: f"{_ops.__name__}:init_sleep"}},
        )
    )
    pids = list(world._pids)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    with pytest.raises(Interrupted, match="SIGALRM"):
        world.close()
    assert world.closed
    assert wait_gone(pids) == []
