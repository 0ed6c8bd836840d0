"""Recalibrate PTO_MAX_IDLE_ITERATIONS for this machine: how many idle scheduler iterations
take ~92 ms (the idle cap of the incident)?

    .venv/bin/python benchmarks/calibrate_idle.py [--target-ms 92] [--repeats 7]

The cap is an iteration count, so its wall-clock length depends on the machine (timer slack,
load, CPU). This runs the old policy (idle-iterations) on a hang task at two caps, takes the
median time from submit to the latch, fits time = fixed + cap * per_iteration, and prints the
cap whose latch comes after --target-ms, plus who latched (an idle sibling, as upstream).
Put the printed value into examples/variants.yaml's env (PTO_MAX_IDLE_ITERATIONS: "N") or the
environment. The default, 850, was measured this way on the 2-CPU sim box (~110 us/iteration).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import libpto

CAPS = (400, 1600)


def latch_ms(cap: int, counts: collections.Counter[str]) -> float:
    """Submit -> latch of a hang task under idle-iterations with ``cap``, in ms."""
    with libpto.Runtime(
        latch_policy="idle-iterations",
        max_idle_iterations=cap,
        stream_sync_timeout_ms=60000,
        sched_threads=2,
        cores=2,
    ) as rt:
        g = rt.graph()
        g.hang()
        t0 = time.perf_counter()
        try:
            rt.run(g)
        except libpto.SchedulerTimeout as e:
            counts[str(e.latched_by)] += 1
        else:  # pragma: no cover - a hang cannot complete
            raise SystemExit("calibrate_idle: the hang task completed?")
        return (time.perf_counter() - t0) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target-ms", type=float, default=92.0, help="idle cap in ms (default 92)")
    ap.add_argument("--repeats", type=int, default=7, help="runs per cap (default 7)")
    args = ap.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    med = {}
    for cap in CAPS:
        ms = [latch_ms(cap, counts) for _ in range(args.repeats)]
        med[cap] = statistics.median(ms)
        print(f"cap {cap:>5}: latch after {med[cap]:7.1f} ms median of {len(ms)}")
    lo, hi = CAPS
    per_iter = (med[hi] - med[lo]) / (hi - lo)
    fixed = med[lo] - lo * per_iter
    cap = max(1, round((args.target_ms - fixed) / per_iter))
    print(f"per idle iteration: {per_iter * 1e3:.1f} us, fixed part {fixed:.1f} ms")
    print(f"latched by: {dict(counts)}")
    print(f"PTO_MAX_IDLE_ITERATIONS={cap}  # ~{args.target_ms:g} ms of idle looping here")


if __name__ == "__main__":
    main()
