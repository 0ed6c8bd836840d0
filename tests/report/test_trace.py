"""The --pto-trace file: valid trace-event JSON, one track per rank, init skew visible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_pto.report._trace import TraceWriter, merge_parts, merge_trace_files, part_path

T0 = 1_700_000_000_000_000  # wall-clock microseconds, like World.events


def _round_events(t0: int, ranks: int, slow_rank: int, skew_us: int) -> list[dict[str, Any]]:
    events = []
    for r in range(ranks):
        init = 20_000 + (skew_us if r == slow_rank else 0)
        events += [
            {"rank": r, "name": "spawn", "ts_us": t0, "dur_us": 1_000},
            {"rank": r, "name": "init", "ts_us": t0 + 1_000, "dur_us": init},
            {
                "rank": r,
                "name": "barrier_wait",
                "ts_us": t0 + 1_000 + init,
                "dur_us": 20_000 + skew_us - init,
            },
            {"rank": r, "name": "op", "ts_us": t0 + 21_000 + skew_us, "dur_us": 5_000},
            {"rank": r, "name": "teardown", "ts_us": t0 + 26_000 + skew_us, "dur_us": 2_000},
        ]
    return events


def _validate(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts of the trace-event format that viewers rely on."""
    assert isinstance(doc["traceEvents"], list)
    for ev in doc["traceEvents"]:
        assert ev["ph"] in ("X", "M", "i")
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        assert isinstance(ev["name"], str)
        if ev["ph"] == "X":
            assert isinstance(ev["ts"], (int, float)) and ev["dur"] >= 0
        if ev["ph"] == "M":
            assert ev["name"] in (
                "process_name",
                "process_sort_index",
                "thread_name",
                "thread_sort_index",
            )
    return doc["traceEvents"]


def _threads(events: list[dict[str, Any]]) -> dict[tuple[int, int], str]:
    return {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in events
        if e["ph"] == "M" and e["name"] == "thread_name"
    }


def test_trace_has_one_track_per_rank_and_shows_skew(tmp_path: Path) -> None:
    path = tmp_path / "out" / "trace.json"
    with TraceWriter(path) as tw:
        tw.add_round("t.py::test_a[2]", 1, "before-fixes", _round_events(T0, 2, 1, 300_000))
        tw.add_round(
            "t.py::test_a[4]", 1, "both-fixes", _round_events(T0 + 10**6, 4, 3, 50_000),
            outcome="passed",
        )  # fmt: skip
    doc = json.loads(path.read_text())
    events = _validate(doc)
    procs = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert procs == {
        1: "t.py::test_a[2] [before-fixes] round 1",
        2: "t.py::test_a[4] [both-fixes] round 1: passed",
    }
    threads = _threads(events)
    assert [threads[(1, r + 1)] for r in range(2)] == ["rank 0", "rank 1"]
    assert [threads[(2, r + 1)] for r in range(4)] == [f"rank {r}" for r in range(4)]
    # every rank's slices sit on that rank's own track
    for e in events:
        if e["ph"] == "X" and e["name"] != "init skew 300.0 ms" and "skew" not in e["name"]:
            assert threads[(e["pid"], e["tid"])] == f"rank {e['args']['rank']}"
    by_rank = {
        (e["pid"], e["args"]["rank"], e["name"]): e
        for e in events
        if e["ph"] == "X" and "rank" in e["args"]
    }
    assert {name for (_, _, name) in by_rank} == {"spawn", "init", "barrier_wait", "op", "teardown"}
    assert by_rank[(1, 1, "init")]["dur"] == 320_000
    skew = [e for e in events if e["ph"] == "X" and e["name"].startswith("init skew")]
    assert [(e["pid"], e["name"], e["dur"]) for e in skew] == [
        (1, "init skew 300.0 ms", 300_000),
        (2, "init skew 50.0 ms", 50_000),
    ]
    assert threads[(1, skew[0]["tid"])] == "init skew"


def test_instant_event_and_bad_event(tmp_path: Path) -> None:
    tw = TraceWriter(tmp_path / "t.json")
    tw.add_round("t", 2, None, [{"rank": 0, "name": "op", "ts_us": T0, "dur_us": None}])
    (ev,) = [e for e in tw.to_dict()["traceEvents"] if e["ph"] != "M"]
    assert ev["ph"] == "i" and ev["args"]["round"] == 2
    with pytest.raises(ValueError, match="ts_us must be a finite number"):
        tw.add_round("t", 3, None, [{"rank": 0, "name": "op", "ts_us": "x", "dur_us": 1}])
    with pytest.raises(ValueError, match="rank must be an int"):
        tw.add_round("t", 3, None, [{"rank": -1, "name": "op", "ts_us": 1, "dur_us": 1}])
    tw.close()
    with pytest.raises(ValueError, match="after close"):
        tw.add_round("t", 4, None, [])


def test_parts_from_workers_merge_without_pid_collisions(tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    # two xdist workers, each numbering its processes from 1; gw1 ran the earlier round
    with TraceWriter(part_path(out, "gw0")) as tw:
        tw.add_round("t[2]", 2, "v", _round_events(T0 + 2 * 10**6, 2, 0, 1_000))
        tw.add_round("t[2]", 3, "v", _round_events(T0 + 3 * 10**6, 2, 0, 1_000))
    with TraceWriter(part_path(out, "gw1")) as tw:
        tw.add_round("t[2]", 1, "v", _round_events(T0, 2, 1, 1_000))
    assert merge_parts(out) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.json"]  # parts removed
    events = _validate(json.loads(out.read_text()))
    procs = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert procs == {1: "t[2] [v] round 1", 2: "t[2] [v] round 2", 3: "t[2] [v] round 3"}
    sort_index = {
        e["pid"]: e["args"]["sort_index"] for e in events if e["name"] == "process_sort_index"
    }
    assert sort_index == {1: 1, 2: 2, 3: 3}
    threads = _threads(events)
    assert len(threads) == 3 * 3  # 2 ranks + init skew row, per round
    assert merge_parts(tmp_path / "none.json") is None


def test_merge_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.part"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.part: cannot read trace JSON"):
        merge_trace_files([bad], tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()
