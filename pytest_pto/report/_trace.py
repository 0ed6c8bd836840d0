"""Chrome trace-event JSON timeline of rounds (``--pto-trace FILE``), for Perfetto / chrome://tracing.

Layout, chosen so init skew is visible at a glance:

- one *process* (pid) per round, named ``<test> [<variant>] round K`` and ordered by start
  time. Per round rather than per test because under xdist rounds of one test run at the
  same time on different workers, and overlapping slices on one track do not render;
- one *thread* (tid) per rank inside it, named ``rank K``, so Perfetto draws ranks as rows
  one above the other: each rank's ``spawn``, ``init``, ``barrier_wait``, ``op`` and
  ``teardown`` are complete (``"ph": "X"``) slices on its row;
- a slice a rank never ended (the op of a hung rank, the init of a rank still initialising
  when its round was stopped) ends where that rank's teardown ends and has ``args.open``
  true, so a hang's trace shows what every rank was doing;
- one extra row ``init skew`` with a slice from the first rank's init end to the last one's
  (the window a fast rank spends waiting, or, without the barrier, running its op early).

Timestamps are the events' wall-clock microseconds (``time.time_ns() // 1000``), so rounds
from several processes line up on one time axis.

xdist: each worker writes ``part_path(path, worker_id)`` with its own :class:`TraceWriter`
and the controller calls :func:`merge_parts` (or :func:`merge_trace_files`), which renumbers
pids so parts never collide. Alternatively the controller alone owns a writer and feeds it
events that travel with the reports; both produce the same file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pytest_pto._atomic import write_text_atomic
from pytest_pto._vocabulary import RoundRecord, round_label

__all__ = ["TraceWriter", "merge_parts", "merge_trace_files", "part_path", "write_json_atomic"]

SKEW_TID = 1_000_000
_EVENT_KEYS = ("rank", "name", "ts_us", "dur_us")


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON to ``path`` via a temp file + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(payload, separators=(",", ":")) + "\n")


def _number(event: Mapping[str, Any], key: str, where: str) -> float | None:
    value = event.get(key)
    if value is None and key == "dur_us":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: event {dict(event)!r}: {key} must be a finite number")
    return float(value)


@dataclass
class _Round:
    name: str
    start: float
    events: list[dict[str, Any]] = field(default_factory=list)  # pid filled in at write time
    ranks: set[int] = field(default_factory=set)
    has_skew: bool = False


class TraceWriter:
    """Collects rounds and writes one trace-event JSON file on :meth:`close`.

    ``TraceWriter(path).add_round(test_id, round, variant, events)`` for every round, then
    ``.close()``; also a context manager. ``events`` are World.events dicts
    ``{"rank", "name", "ts_us", "dur_us"}`` (extra keys go to the slice's args; a ``dur_us``
    of None becomes an instant event, e.g. an op cut short by a hang).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._rounds: list[_Round] = []
        self._closed = False

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def rounds(self) -> int:
        return len(self._rounds)

    def add_record(self, record: RoundRecord, events: Iterable[Mapping[str, Any]]) -> None:
        """Add the round ``record`` describes (the terminal summary's and JUnit's record)."""
        self.add_round(record.test, record.round, record.variant, events, outcome=record.outcome)

    def add_round(
        self,
        test_id: str,
        round: int,
        variant: str | None,
        events: Iterable[Mapping[str, Any]],
        *,
        outcome: str | None = None,
    ) -> None:
        """Add one round's timeline (its own process row group; ranks as threads)."""
        if self._closed:
            raise ValueError(f"trace {self.path}: add_round after close")
        label = round_label(test_id, variant, round)
        if outcome:
            label += f": {outcome}"
        where = f"trace {self.path}: {label}"
        slices: list[dict[str, Any]] = []
        ranks: set[int] = set()
        init_ends: list[float] = []
        for ev in events:
            rank = ev.get("rank")
            if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
                raise ValueError(f"{where}: event {dict(ev)!r}: rank must be an int >= 0")
            ts = _number(ev, "ts_us", where)
            dur = _number(ev, "dur_us", where)
            assert ts is not None
            name = str(ev.get("name", "?"))
            args = {k: v for k, v in ev.items() if k not in _EVENT_KEYS}
            args.update({"test": test_id, "variant": variant, "round": round, "rank": rank})
            sl: dict[str, Any] = {"name": name, "cat": "pto", "ts": ts, "tid": rank + 1}
            if dur is None:
                sl.update(ph="i", s="t")
            else:
                sl.update(ph="X", dur=max(0.0, dur))
                if name == "init":
                    init_ends.append(ts + max(0.0, dur))
            sl["args"] = args
            slices.append(sl)
            ranks.add(rank)
        start = min((s["ts"] for s in slices), default=0.0)
        rnd = _Round(name=label, start=start, events=slices, ranks=ranks)
        if len(init_ends) >= 2:
            first, last = min(init_ends), max(init_ends)
            skew_ms = (last - first) / 1000.0
            rnd.events.append(
                {
                    "name": f"init skew {skew_ms:.1f} ms",
                    "cat": "pto",
                    "ph": "X",
                    "ts": first,
                    "dur": last - first,
                    "tid": SKEW_TID,
                    "args": {"init_skew_ms": skew_ms, "test": test_id, "round": round},
                }
            )
            rnd.has_skew = True
        self._rounds.append(rnd)

    def to_dict(self) -> dict[str, Any]:
        """The trace as a JSON-ready dict (``{"traceEvents": [...], ...}``)."""
        events: list[dict[str, Any]] = []
        ordered = sorted(enumerate(self._rounds), key=lambda ir: (ir[1].start, ir[0]))
        for pid, (_, rnd) in enumerate(ordered, start=1):
            events += _process_metadata(pid, rnd.name, rnd.ranks, rnd.has_skew)
            events += [{**ev, "pid": pid} for ev in rnd.events]
        return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": _OTHER}

    def flush(self) -> Path:
        """Write what has been collected so far (atomically); the writer stays open."""
        write_json_atomic(self.path, self.to_dict())
        return self.path

    def close(self) -> Path:
        """Write the file (idempotent)."""
        if not self._closed:
            self.flush()
            self._closed = True
        return self.path


_OTHER = {"generator": "pytest-pto", "layout": "process per round, thread per rank"}


def _meta(kind: str, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": args}


def _process_metadata(
    pid: int, name: str, ranks: Iterable[int], skew: bool
) -> list[dict[str, Any]]:
    meta = [
        _meta("process_name", pid, 0, name=name),
        _meta("process_sort_index", pid, 0, sort_index=pid),
    ]
    for rank in sorted(ranks):
        meta.append(_meta("thread_name", pid, rank + 1, name=f"rank {rank}"))
        meta.append(_meta("thread_sort_index", pid, rank + 1, sort_index=rank))
    if skew:
        meta.append(_meta("thread_name", pid, SKEW_TID, name="init skew"))
        meta.append(_meta("thread_sort_index", pid, SKEW_TID, sort_index=SKEW_TID))
    return meta


def part_path(path: str | os.PathLike[str], worker_id: str) -> Path:
    """Where xdist worker ``worker_id`` (``gw0`` ...) writes its part of trace ``path``."""
    p = Path(path)
    return p.with_name(f"{p.name}.{worker_id}.part")


def _load_events(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"trace part {path}: cannot read trace JSON: {exc}") from None
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise ValueError(f"trace part {path}: expected a traceEvents list")
    return [e for e in events if isinstance(e, dict)]


def merge_trace_files(parts: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Merge trace files into ``out``, renumbering pids so processes of different parts differ.

    Rounds are renumbered in order of their first timestamp, so the merged file reads like one
    session's trace.
    """
    groups: list[tuple[float, int, list[dict[str, Any]]]] = []
    for index, part in enumerate(parts):
        by_pid: dict[Any, list[dict[str, Any]]] = {}
        for ev in _load_events(Path(part)):
            by_pid.setdefault(ev.get("pid"), []).append(ev)
        for evs in by_pid.values():
            start = min((e["ts"] for e in evs if isinstance(e.get("ts"), (int, float))), default=0)
            groups.append((float(start), index, evs))
    groups.sort(key=lambda g: (g[0], g[1]))
    merged: list[dict[str, Any]] = []
    for pid, (_, _, evs) in enumerate(groups, start=1):
        for ev in evs:
            new = {**ev, "pid": pid}
            if ev.get("name") == "process_sort_index" and ev.get("ph") == "M":
                new["args"] = {"sort_index": pid}
            merged.append(new)
    target = Path(out)
    write_json_atomic(target, {"traceEvents": merged, "displayTimeUnit": "ms", "otherData": _OTHER})
    return target


def merge_parts(path: str | os.PathLike[str], remove: bool = True) -> Path | None:
    """Merge every ``part_path(path, *)`` file into ``path`` (controller, at session end).

    Returns None when there are no parts. Part files are removed after a successful merge.
    """
    p = Path(path)
    parts = sorted(p.parent.glob(f"{p.name}.*.part")) if p.parent.is_dir() else []
    if not parts:
        return None
    merge_trace_files(parts, p)
    if remove:
        for part in parts:
            part.unlink(missing_ok=True)
    return p
