"""Runtime benchmarks: scheduler throughput (independent / chain / fan-out-fan-in noop tasks,
1k..1M), init + close time, thread persistence, and the idle-iterations calibration.

    python benchmarks/bench_runtime.py                 # everything
    python benchmarks/bench_runtime.py --quick         # up to 100k tasks
    python benchmarks/bench_runtime.py --calibrate-idle

Figures are medians of several runs on the default sim config (2 scheduler threads, 2 cores,
1 orchestrator). The graph is built once per size and re-run, so the figures are the runtime's
(submit + orchestrate + schedule + core handshake + sync), not Python's graph building.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable

import libpto

FANOUT_WIDTH = 64


def build(rt: libpto.Runtime, shape: str, n: int) -> libpto.Graph:
    g = rt.graph()
    if shape == "independent":
        g.noops(n)
    elif shape == "chain":
        g.noops(n, "chain")
    else:  # diamonds: root -> FANOUT_WIDTH children -> sink, chained
        prev: int | None = None
        while len(g) + FANOUT_WIDTH + 2 <= n:
            root = g.noop(deps=[prev] if prev is not None else None)
            kids = g.noops(FANOUT_WIDTH, "fanout", dep=root)
            prev = g.noop(deps=list(kids))
    return g


def timed(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


def throughput(max_n: int) -> None:
    print("== scheduler throughput (noop tasks, default sim config)")
    print(f"{'shape':<12} {'tasks':>9} {'median ms':>10} {'tasks/s':>12} {'ns/task':>9}")
    before = threads_now()
    with libpto.Runtime(stream_sync_timeout_ms=600000, scheduler_timeout_ms=60000) as rt:
        during = threads_now()
        for shape in ("independent", "chain", "fanout-fanin"):
            n = 1000
            while n <= max_n:
                g = build(rt, shape, n)
                real = len(g)
                rt.run(g)  # warm-up: run state allocated, pages touched
                reps = 7 if real <= 100_000 else 3
                t = timed(lambda g=g: rt.run(g), reps)
                rate, ns = real / t, t / real * 1e9
                print(f"{shape:<12} {real:>9} {t * 1e3:>10.2f} {rate:>12,.0f} {ns:>9.0f}")
                g.close()
                n *= 10
        st = rt.stats()
        print(
            f"threads: {st['threads']} runtime threads (process {before} -> {during}, "
            f"constant across {st['runs']} runs, {st['tasks_completed']:,} tasks)"
        )


def init_close() -> None:
    print("== runtime init + close")
    for label, kw in (
        ("default rings (4 x 256 MiB heap)", {}),
        ("PTO2_RING_HEAP=4294967296", {"heap": 4294967296}),
        (
            "4 GiB heap, window/pool 131072",
            {"heap": 4294967296, "task_window": 131072, "dep_pool": 131072},
        ),
    ):
        inits, totals = [], []
        for _ in range(20):
            t0 = time.perf_counter()
            rt = libpto.Runtime(**kw)  # type: ignore[arg-type]
            inits.append(rt.init_ms)
            rt.close()
            totals.append((time.perf_counter() - t0) * 1e3)
        print(
            f"{label:<36} init {statistics.median(inits):6.2f} ms (C), "
            f"create+close {statistics.median(totals):6.2f} ms median, max {max(totals):6.2f} ms"
        )


def calibrate_idle() -> None:
    """How long does the idle-iterations cap take? A hang task keeps one scheduler busy-idle;
    the old policy latches when an idle thread reaches the cap."""
    print("== idle-iterations calibration (time from submit to the false latch)")
    for cap in (500, 1000, 1500, 2000):
        ms = []
        for _ in range(5):
            with libpto.Runtime(
                latch_policy="idle-iterations",
                max_idle_iterations=cap,
                stream_sync_timeout_ms=60000,
                sched_threads=2,  # the incident's chip: an idle sibling beside the hang's owner
            ) as rt:
                g = rt.graph()
                g.hang()
                t0 = time.perf_counter()
                with contextlib.suppress(libpto.SchedulerTimeout):
                    rt.run(g)
                ms.append((time.perf_counter() - t0) * 1e3)
        med = statistics.median(ms)
        print(f"cap {cap:>5}: {med:7.1f} ms median ({med / cap * 1e3:.1f} us/iteration)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="sizes up to 100k only")
    ap.add_argument("--calibrate-idle", action="store_true", help="only the idle calibration")
    args = ap.parse_args()
    if args.calibrate_idle:
        calibrate_idle()
        return
    throughput(100_000 if args.quick else 1_000_000)
    init_close()
    calibrate_idle()


if __name__ == "__main__":
    main()
