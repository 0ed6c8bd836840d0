"""Cost of one device lease (lease + release of 2 devices) against the pool size.

A lease must cost the same for a pool of 8 devices and of 4096 (a large simulated pool): it
touches the locks of the devices it takes, not every device's. Prints the median lease time
per pool size, with a quarter of the pool held by another lease (so a lease cannot just take
the first block) and with the pool empty.

    python benchmarks/bench_pool.py [--sizes 8,4096] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pytest_pto.devices import DevicePool


def lease_ms(pool: DevicePool, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        pool.lease(2, "bench::lease", timeout=30).release()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,4096")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"{'devices':>8}  {'empty pool ms':>14}  {'1/4 held ms':>12}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="pto-bench-pool-") as tmp:
            pool = DevicePool(range(size), Path(tmp) / "locks")
            pool.lease(2, "bench::warm", timeout=30).release()
            empty = lease_ms(pool, args.repeat)
            held = pool.lease(max(size // 4, 2), "bench::other", timeout=30)
            try:
                busy = lease_ms(pool, args.repeat)
            finally:
                held.release()
        print(f"{size:>8}  {empty:>14.2f}  {busy:>12.2f}")


if __name__ == "__main__":
    main()
