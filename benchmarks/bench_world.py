"""Chip-worker rounds: start N ranks, init, barrier, one trivial op, shutdown.

Prints the median (and p90) round time for 2, 4 and 8 ranks with default rings, and the
barrier release latency (last INIT_DONE -> barrier released, and -> first dispatch) at
p50/p99. Targets (issue 3): 2-rank round median <= 20 ms; release latency p99 <= 1 ms.

    .venv/bin/python benchmarks/bench_world.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from libpto._mailbox import Stamp
from libpto.world import World, WorldConfig, start_zygote


def trivial(chip: Any) -> int:
    return int(chip.rank)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench(ranks: int, rounds: int, op: Any) -> tuple[list[float], list[float], list[float]]:
    config = WorldConfig(devices=tuple(range(ranks)))
    times, release, dispatch = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        with World.start(config) as world:
            world.run(op)
        times.append((time.perf_counter() - t0) * 1e3)
        stamps = world._stamps
        last_init = max(s[Stamp.INIT_END] for s in stamps.values())
        release.append((min(s[Stamp.RELEASE] for s in stamps.values()) - last_init) / 1e6)
        dispatch.append((min(s[Stamp.DISPATCH] for s in stamps.values()) - last_init) / 1e6)
    return times, release, dispatch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    import bench_world  # by module name, so ops travel like a test module's ops do

    op = bench_world.trivial
    t0 = time.perf_counter()
    start_zygote()
    print(f"zygote start (once per session): {(time.perf_counter() - t0) * 1e3:.1f} ms")
    bench(2, 5, op)  # warm-up: the zygote preloads the op's module after the first run
    all_release: list[float] = []
    all_dispatch: list[float] = []
    print(f"{'ranks':>5} {'median ms':>10} {'p90 ms':>8} {'per rank ms':>12}")
    for ranks in (2, 4, 8):
        times, release, dispatch = bench(ranks, args.rounds, op)
        all_release += release
        all_dispatch += dispatch
        med = statistics.median(times)
        print(f"{ranks:>5} {med:>10.2f} {pct(times, 0.9):>8.2f} {med / ranks:>12.2f}")
    print(
        "barrier release latency (last INIT_DONE -> released): "
        f"p50 {pct(all_release, 0.5):.3f} ms, p99 {pct(all_release, 0.99):.3f} ms"
    )
    print(
        "last INIT_DONE -> first dispatch:                     "
        f"p50 {pct(all_dispatch, 0.5):.3f} ms, p99 {pct(all_dispatch, 0.99):.3f} ms"
    )


if __name__ == "__main__":
    main()
