"""Comm window latency between real processes: notify->wait ping-pong and the barrier.

    python benchmarks/bench_comm.py [--pings 5000] [--barriers 1000] [--ranks 2,4,8]

Each rank is a spawned process attached to one window (the parent is an observer, as a chip
worker group's parent is). Figures are measured through the Python API, so they include the
cffi call overhead a Python op pays; rank 0 times every iteration and reports the median and
the 99th percentile. With more ranks than CPUs the barrier falls back to futex sleeps, which is
the point of the 4/8-rank rows on a 2-CPU machine: they must stay bounded, not spin.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from libpto import CommWindow

CTX = mp.get_context("spawn")


def _pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def ping_rank(name: str, rank: int, pings: int, conn: Connection) -> None:
    with CommWindow.attach(name, rank) as w:
        w.barrier(timeout_ms=30_000)
        peer = 1 - rank
        samples: list[float] = []
        for k in range(1, pings + 1):
            if rank == 0:
                t0 = time.perf_counter_ns()
                w.notify(peer, 0, k)
                w.wait(0, ">=", k, timeout_ms=30_000)
                samples.append((time.perf_counter_ns() - t0) / 1000.0)
            else:
                w.wait(0, ">=", k, timeout_ms=30_000)
                w.notify(peer, 0, k)
        conn.send(samples)


def barrier_rank(name: str, rank: int, rounds: int, conn: Connection) -> None:
    with CommWindow.attach(name, rank) as w:
        w.barrier(timeout_ms=30_000)
        samples: list[float] = []
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            w.barrier(timeout_ms=30_000)
            samples.append((time.perf_counter_ns() - t0) / 1000.0)
        conn.send(samples)


def _run(target: Callable[..., None], size: int, iters: int) -> list[float]:
    with CommWindow.create(None, size, None) as w:
        procs, conns = [], []
        for r in range(size):
            parent, child = CTX.Pipe(duplex=False)
            p = CTX.Process(target=target, args=(w.name, r, iters, child))
            p.start()
            child.close()
            procs.append(p)
            conns.append(parent)
        results = [c.recv() for c in conns]
        for p in procs:
            p.join()
        return results[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, default=5000)
    ap.add_argument("--barriers", type=int, default=1000)
    ap.add_argument("--ranks", default="2,4,8")
    args = ap.parse_args()

    rt = _run(ping_rank, 2, args.pings)
    print(f"notify->wait ping-pong, 2 processes, {args.pings} round trips")
    print(
        f"  round trip  median {statistics.median(rt):8.1f} us   p99 {_pct(rt, 99):8.1f} us"
        f"   (one way ~{statistics.median(rt) / 2:.1f} us)"
    )
    print(f"barrier, {args.barriers} rounds per size")
    for size in (int(x) for x in args.ranks.split(",")):
        b = _run(barrier_rank, size, args.barriers)
        print(
            f"  {size} ranks     median {statistics.median(b):8.1f} us   p99 {_pct(b, 99):8.1f} us"
        )


if __name__ == "__main__":
    main()
