"""What the issue-13 benchmarks share: timed commands, medians, and the machine's load.

Why interleaved and paired: the machine these run on is shared (2 cores, several other jobs);
its speed changes from second to second. Ours and the reference are therefore run alternately
in the same process, and the figure is the ratio (or difference) of medians taken in the same
run, never an absolute time compared with yesterday's.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["clean_env", "cpu_children", "machine", "median", "pct", "run_timed"]


def machine() -> str:
    """One line: CPU count, model, load averages, Python -- printed before every figure."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), load {load}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without PTO_* settings (a developer's shell must not change figures)
    and with bytecode caching on, as in a normal install: a shell that sets
    ``PYTHONDONTWRITEBYTECODE`` would charge compiling every module to every command."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PTO_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(extra)
    return env


def cpu_children() -> float:
    """CPU seconds (user + sys) of every reaped descendant so far: a command's whole process
    tree (pytest, the zygote, every chip worker) once it has exited. Much less sensitive to
    the neighbours' load than wall time."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_timed(cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of ``cmd`` (stdout/stderr captured); exits with its output if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(
            f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return wall
