"""Timelines of failing rounds: init skew measured when a round fails, open slices in traces.

Real Worlds (chip-worker processes); margins: seconds of injected init delay or op sleep
against deadlines of 0.5 to 5 s.
"""

from __future__ import annotations

from typing import Any

import pytest

from libpto.errors import InitTimeout, RankHang
from libpto.world import World, WorldConfig
from pytest_pto.report._trace import TraceWriter
from tests.world import _ops

SLOW_RANK_1 = {"PTO_SIM_INIT_DELAY_MS": "1:20000"}


def _only(events: list[dict[str, Any]], rank: int, name: str) -> dict[str, Any]:
    (ev,) = [e for e in events if e["rank"] == rank and e["name"] == name]
    return ev


def _end(ev: dict[str, Any]) -> int:
    return int(ev["ts_us"] + ev["dur_us"])


def test_init_timeout_keeps_the_skew_lower_bound_and_the_open_init_span() -> None:
    # a 5 s deadline: the skew's lower bound (>= 500 ms asserted) fails only if rank 0 needs
    # 4.5 s for its own init, 10x what a loaded 2-core machine takes (1 s was flaky at load 17)
    config = WorldConfig(devices=(0, 1), env=SLOW_RANK_1, init_timeout=5.0)
    with pytest.raises(InitTimeout, match=r"^rank 1: no INIT_DONE within the 5 s") as info:
        World.start(config)
    world = info.value.pto_world  # type: ignore[attr-defined]
    assert world.closed
    # rank 0 ended init, rank 1 (20 s delay) was still initialising at the 5 s deadline: the
    # skew is at least "teardown - rank 0's init end", far above rank 0's own init time
    assert world.init_skew_partial
    assert world.init_skew_ms is not None and world.init_skew_ms >= 500
    assert 0 in world.init_ms and 1 not in world.init_ms
    events = world.events
    slow = _only(events, 1, "init")
    assert slow["open"] is True
    teardown = _only(events, 1, "teardown")
    assert _end(slow) == pytest.approx(_end(teardown), abs=2)  # µs rounding
    assert "open" not in _only(events, 0, "init")


def test_all_ranks_up_gives_an_exact_skew() -> None:
    with World.start(WorldConfig(devices=(0, 1))) as world:
        world.run(_ops.noop)
    assert world.init_skew_ms is not None and not world.init_skew_partial
    assert not any(e.get("open") for e in world.events)


def test_hang_trace_shows_the_open_op_slice_until_teardown(tmp_path: Any) -> None:
    world = World.start(WorldConfig(devices=(0, 1, 2), round_timeout=0.5))
    with pytest.raises(RankHang, match=r"^rank 1: hang: op"):
        world.run(_ops.sleep_on, 1, 60.0)
    events = world.events
    stuck = _only(events, 1, "op")
    assert stuck["open"] is True
    teardown = _only(events, 1, "teardown")
    assert _end(stuck) == pytest.approx(_end(teardown), abs=2)  # µs rounding
    assert stuck["dur_us"] >= 400_000  # it ran until the 0.5 s deadline, then was stopped
    for rank in (0, 2):
        assert "open" not in _only(events, rank, "op")
    # the trace file draws it as a complete slice on rank 1's row, marked open in its args
    with TraceWriter(tmp_path / "t.json") as writer:
        writer.add_round("t::x", 1, None, events, outcome="hang")
        trace = writer.to_dict()["traceEvents"]
    (op,) = [e for e in trace if e.get("name") == "op" and e.get("tid") == 2]
    assert op["ph"] == "X" and op["args"]["open"] is True
