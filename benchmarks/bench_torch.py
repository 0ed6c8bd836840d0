"""Cost of one 2-rank gloo ``all_reduce`` round: pytest-pto's torch runtime against two baselines.

Prints, in one run:

1. ``pytest --pto-runtime=torch``: per-round cost in the loop (from the ``--pto-trace``: median
   time from one round's spawn request to the next's, first round excluded: it pays the
   session's zygote start and torch import), the same from whole-command walls
   ((wall(R rounds) - wall(1 round)) / (R - 1), median of --repeat runs), and the per-round
   phases (spawn, init = rendezvous + init_process_group, op, teardown = close + exit);
2. PyTorch's ``MultiProcessTestCase`` style (torch.testing._internal.common_distributed's
   mechanics: spawn start method, a FileStore, ``init_process_group``, barrier,
   ``all_reduce``, ``destroy_process_group``) -- per test (= round), from --mptc-rounds tests;
3. a hand-written loop that forks two ranks per round from a parent that already imported
   torch (env:// rendezvous on a fresh port, init_process_group, all_reduce,
   destroy_process_group), per round from R rounds.

Goals (issue 11): (2) / (1) >= 20 and (1) / (3) <= 1.5.

    python benchmarks/bench_torch.py [--rounds 30] [--repeat 3] [--mptc-rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

TEST = """
import pytest
import torch
import torch.distributed as dist


def allreduce_op(chip):
    t = torch.ones(4) * (chip.rank + 1)
    dist.all_reduce(t)
    return t.tolist()


@pytest.mark.pto(ranks=2)
def test_allreduce(pto_world):
    assert pto_world.run(allreduce_op) == [[3.0] * 4] * 2
"""


# -- 1. pytest-pto -----------------------------------------------------------------------------
def _pytest(project: Path, rounds: int, env: dict[str, str], trace: Path | None = None) -> float:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--pto-runtime=torch",
        f"--pto-rounds={rounds}",
    ]
    if trace is not None:
        cmd.append(f"--pto-trace={trace}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"pytest run failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def _phases(trace: Path) -> dict[str, float]:
    """Medians (ms) over the rounds but the first (which pays the zygote's start and torch
    import) of: each traced phase (slowest rank), the round's wall from its spawn request to
    the last rank's exit, and the controller's gap between one round's end and the next."""
    data = json.loads(trace.read_text())
    events = data["traceEvents"] if isinstance(data, dict) else data
    spans = sorted(
        (e for e in events if e.get("ph") == "X" and e.get("name") in _PHASES),
        key=lambda e: e["ts"],
    )
    rounds: list[dict[str, Any]] = []
    for e in spans:
        if e["name"] == "spawn" and (not rounds or e["ts"] > rounds[-1]["end"]):
            rounds.append({"start": e["ts"], "end": e["ts"], "phases": {}})
        last = rounds[-1]
        last["end"] = max(last["end"], e["ts"] + e["dur"])
        last["phases"][e["name"]] = max(last["phases"].get(e["name"], 0.0), e["dur"] / 1000)
    later = rounds[1:]
    out = {n: statistics.median(r["phases"].get(n, 0.0) for r in later) for n in _PHASES}
    out["round wall"] = statistics.median((r["end"] - r["start"]) / 1000 for r in later)
    out["round to round"] = statistics.median(
        (b["start"] - a["start"]) / 1000 for a, b in itertools.pairwise(later)
    )
    out["controller gap"] = statistics.median(
        (b["start"] - a["end"]) / 1000 for a, b in itertools.pairwise(later)
    )
    return out


_PHASES = ("spawn", "init", "barrier_wait", "op", "teardown")


def bench_plugin(rounds: int, repeat: int) -> tuple[float, float, dict[str, float]]:
    """(in-loop per-round cost, whole-command difference per round, traced phases)."""
    with tempfile.TemporaryDirectory(prefix="pto-bench-torch-") as tmp:
        project = Path(tmp)
        (project / "test_bench_torch.py").write_text(TEST)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PTO_")}
        env["PTO_LOCK_DIR"] = str(project / "locks")
        _pytest(project, 1, env)  # warm caches and bytecode
        ones = [_pytest(project, 1, env) for _ in range(repeat)]
        many = [_pytest(project, rounds, env) for _ in range(repeat)]
        per_round = (statistics.median(many) - statistics.median(ones)) / (rounds - 1)
        trace = project / "trace.json"
        _pytest(project, rounds, env, trace)
        phases = _phases(trace)
        return phases["round to round"], per_round * 1000.0, phases


# -- 2. MultiProcessTestCase ---------------------------------------------------------------------
def _mptc_rank(rank: int, file_name: str) -> None:
    """What each spawned rank of a MultiProcessTestCase test does (a fresh interpreter that
    imports torch, then: store, init_process_group, barrier, the collective, destroy)."""
    store = dist.FileStore(file_name, 2)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    dist.barrier()
    t = torch.ones(4) * (rank + 1)
    dist.all_reduce(t)
    if t.tolist() != [3.0] * 4:
        raise SystemExit(1)
    dist.destroy_process_group()


def bench_mptc(rounds: int) -> float:
    """MultiProcessTestCase's mechanics (torch.testing._internal needs test-only packages, so
    they are reproduced): per test a temporary store file, ``world_size`` processes started with
    the spawn method, joined, exit codes checked."""
    ctx = multiprocessing.get_context("spawn")
    t0 = time.perf_counter()
    for _ in range(rounds):
        with tempfile.NamedTemporaryFile(delete=False) as f:
            file_name = f.name
        try:
            procs = [ctx.Process(target=_mptc_rank, args=(r, file_name)) for r in range(2)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            if any(p.exitcode != 0 for p in procs):
                sys.exit("MultiProcessTestCase-style round failed")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(file_name)
    return (time.perf_counter() - t0) / rounds * 1000.0


# -- 3. hand-written fork loop -------------------------------------------------------------------
def _rank(rank: int, port: int, t_fork: float, out: int) -> None:
    t_start = time.perf_counter()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    t_init = time.perf_counter()
    t = torch.ones(4) * (rank + 1)
    dist.all_reduce(t)
    ok = t.tolist() == [3.0] * 4
    t_op = time.perf_counter()
    dist.destroy_process_group()
    t_end = time.perf_counter()
    phases = (t_start - t_fork, t_init - t_start, t_op - t_init, t_end - t_op)
    os.write(out, (" ".join(f"{1000 * x:.3f}" for x in phases) + "\n").encode())
    os._exit(0 if ok else 1)


def bench_fork(rounds: int) -> tuple[float, dict[str, float]]:
    """torch is imported at module level: the parent paid for it once."""
    read, write = os.pipe()
    t0 = time.perf_counter()
    for _ in range(rounds):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        pids = []
        for rank in range(2):
            t_fork = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                try:
                    _rank(rank, port, t_fork, write)
                finally:
                    os._exit(70)
            pids.append(pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                sys.exit("hand-written fork round failed")
    per_round = (time.perf_counter() - t0) / rounds * 1000.0
    os.close(write)
    with os.fdopen(read) as f:
        rows = [[float(x) for x in line.split()] for line in f.read().splitlines()]
    names = ("fork->start", "init", "op", "destroy")
    return per_round, {n: statistics.median(r[i] for r in rows) for i, n in enumerate(names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mptc-rounds", type=int, default=3)
    args = parser.parse_args()
    plugin, whole, phases = bench_plugin(args.rounds, args.repeat)
    fork, fork_phases = bench_fork(args.rounds)
    mptc = bench_mptc(args.mptc_rounds)
    print(f"2-rank gloo all_reduce round, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(
        f"  pytest --pto-runtime=torch        {plugin:8.1f} ms/round  (in-loop: median time "
        f"from one round's spawn to the next's, rounds 2..{args.rounds})"
    )
    print(
        f"    whole command: (wall({args.rounds} rounds) - wall(1)) / {args.rounds - 1} = "
        f"{whole:.1f} ms (median of {args.repeat}; noisy: wall(1) carries the session's "
        "zygote start and torch import)"
    )
    print(
        "    traced (median ms, slowest rank): "
        + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
    )
    print(f"  MultiProcessTestCase (spawn)      {mptc:8.1f} ms/round  ({args.mptc_rounds} tests)")
    print(f"  hand-written fork loop            {fork:8.1f} ms/round  ({args.rounds} rounds)")
    print(
        "    phases per rank (median ms): "
        + ", ".join(f"{k} {v:.1f}" for k, v in fork_phases.items())
    )
    speedup = mptc / plugin
    ratio = plugin / fork
    print(
        f"  MultiProcessTestCase / pytest-pto = {speedup:.1f}x  (goal >= 20x: "
        f"{'met' if speedup >= 20 else 'NOT met'})"
    )
    print(
        f"  pytest-pto / fork loop            = {ratio:.2f}x  (goal <= 1.5x: "
        f"{'met' if ratio <= 1.5 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
