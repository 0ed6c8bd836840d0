"""Whole-command cost of ``pytest --pto-ranks=2 --pto-rounds=30`` on a trivial op.

Prints the wall time of the whole command (target <= 1.5 s on the 2-core machine), the same
command with 1 round, and the per-round overhead derived from the two:
(wall(30 rounds) - wall(1 round)) / 29. Each figure is the median of several runs.

    python benchmarks/bench_plugin.py [--repeat N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST = """
def trivial(chip, x):
    return x + chip.rank


def test_trivial(pto_world):
    assert pto_world.run(trivial, 1) == [1 + r for r in range(pto_world.size)]
"""


def run(project: Path, rounds: int, env: dict[str, str]) -> float:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--pto-ranks=2",
        f"--pto-rounds={rounds}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"benchmark run failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pto-bench-") as tmp:
        project = Path(tmp)
        (project / "test_bench.py").write_text(TEST)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PTO_")}
        env["PTO_LOCK_DIR"] = str(project / "locks")
        run(project, 1, env)  # warm the file system cache and the bytecode
        one = [run(project, 1, env) for _ in range(args.repeat)]
        many = [run(project, args.rounds, env) for _ in range(args.repeat)]
    m1, mr = statistics.median(one), statistics.median(many)
    per_round = (mr - m1) / (args.rounds - 1)
    print(
        f"pytest --pto-ranks=2 --pto-rounds={args.rounds} (whole command, median of "
        f"{args.repeat}): {mr:.3f} s  [min {min(many):.3f} s, max {max(many):.3f} s]"
    )
    print(f"pytest --pto-ranks=2 --pto-rounds=1  (whole command, median): {m1:.3f} s")
    print(
        f"per-round overhead (lease + 2 chip workers + barrier + op + close + report): "
        f"{per_round * 1000:.1f} ms"
    )
    print(f"target whole command <= 1.5 s: {'met' if mr <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
