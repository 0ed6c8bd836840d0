"""Scheduler throughput while a neighbour keeps one core busy (issue 13, goal 4).

Ten runs; each run is a fresh ``libpto.Runtime`` (the default config unless ``--config``),
one warm-up ``run`` of the graph, then the median of ``--reps`` timed runs, for a chain and
for independent noop tasks. Meanwhile a second process spins (``while True: pass``) for the
whole measurement: the machine has 2 cores, so the runtime's threads share one core with
each other. Reference, measured in the same run: the same runs without the busy process.

Targets: chain >= 250 k tasks/s and independent >= 1 M tasks/s, each in >= 9 of 10 runs.

    .venv/bin/python benchmarks/bench_sched_load.py [--runs 10] [--tasks 10000]
    .venv/bin/python benchmarks/bench_sched_load.py --config sched_threads=2  # the incident chip
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _bench import machine, median

import libpto

TARGETS = {"chain": 250_000.0, "independent": 1_000_000.0}


def one_run(shape: str, n: int, reps: int, overrides: dict[str, Any]) -> float:
    """tasks/s of one fresh runtime (median of ``reps`` runs after a warm-up)."""
    # stall reports off: a starved run would print them to stderr between the figures
    with libpto.Runtime(stream_sync_timeout_ms=600000, stall_report_ms=600000, **overrides) as rt:
        g = rt.graph()
        if shape == "chain":
            g.noops(n, "chain")
        else:
            g.noops(n)
        rt.run(g)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            rt.run(g)
            times.append(time.perf_counter() - t0)
        g.close()
    return n / median(times)


def series(runs: int, n: int, reps: int, overrides: dict[str, Any]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {shape: [] for shape in TARGETS}
    for _ in range(runs):
        for shape in TARGETS:
            out[shape].append(one_run(shape, n, reps, overrides))
    return out


def parse_config(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--config", default="", help="Runtime overrides, e.g. sched_threads=1")
    parser.add_argument("--no-reference", action="store_true", help="skip the unloaded runs")
    args = parser.parse_args()
    overrides = parse_config(args.config)
    print(machine())
    print(f"config: {overrides or 'default'}; {args.tasks} noop tasks; {args.runs} runs")
    ref = None if args.no_reference else series(args.runs, args.tasks, args.reps, overrides)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let it get going
        loaded = series(args.runs, args.tasks, args.reps, overrides)
    finally:
        busy.kill()
        busy.wait()
    for shape, target in TARGETS.items():
        rates = loaded[shape]
        hits = sum(r >= target for r in rates)
        line = (
            f"{shape:<12} one core busy: median {median(rates) / 1e3:8.0f} k/s, "
            f"min {min(rates) / 1e3:6.0f} k/s, runs >= {target / 1e3:.0f} k/s: "
            f"{hits}/{len(rates)} ({'met' if hits >= 0.9 * len(rates) else 'NOT met'})"
        )
        if ref is not None:
            line += f"   [no busy process: median {median(ref[shape]) / 1e3:.0f} k/s]"
        print(line)
        print("    runs k/s: " + " ".join(f"{r / 1e3:.0f}" for r in rates))


if __name__ == "__main__":
    main()
