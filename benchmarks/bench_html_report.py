"""Wall time of ``pto-report --format html`` over a CI history: 200 JUnit files (one per
run and commit) holding 100 000 rounds in all (the issue's target: under 10 s).

The input is generated, not run: files with pytest's structure and the plugin's properties
(``pto.outcome``, devices, host, init skew, failing rank, failure text; ``pto.commit`` and
``pto.timestamp`` per file), 5 tests x 2 variants x 50 rounds per file on 8 devices of 4
hosts, with a failure rate that changes at run 120 and a failure class concentrated on one
device. Prints the time of the whole command (reading, statistics and the page), the size of
the page, and the same for the text report; wall and CPU time (on a loaded machine the CPU
time is what the single-threaded command takes alone).

    python benchmarks/bench_html_report.py [--files 200] [--rounds-per-file 500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

TESTS = [f"tests/test_coll.py::test_allreduce[{n}]" for n in ("a", "b", "c", "d", "e")]
VARIANTS = ("before-fixes", "both-fixes")
DEVICES = 8
RANKS = 2


def _case(rng: random.Random, test: str, variant: str, k: int, *, run: int, files: int) -> str:
    module, name = test.split("::")
    head, params = name[:-1].split("[")
    devices = rng.sample(range(DEVICES), RANKS)
    host = f"node{devices[0] // 2}"
    late = run >= files * 3 // 5
    rate = (0.02 if variant == "both-fixes" else 0.1) + (0.08 if late else 0.0)
    props = {
        "pto.round": str(k),
        "pto.rounds": "50",
        "pto.ranks": str(RANKS),
        "pto.devices": ",".join(map(str, devices)),
        "pto.variant": variant,
        "pto.init_skew_ms": f"{rng.expovariate(1 / 40):.3f}",
        "pto.host": host,
        "pto.verdict": "product",
        "pto.seed": str(1000 * run + k),
    }
    failure = ""
    if 5 in devices and rng.random() < 0.15:
        outcome, rank = "hang", devices.index(5)
    elif rng.random() < rate:
        outcome, rank = (
            rng.choice(("sched_error_code=100", "stream_sync_timeout")),
            rng.randrange(2),
        )
        if late and rng.random() < 0.3:
            outcome = "device_error_code=507018"
    else:
        outcome, rank = "passed", None
    props["pto.outcome"] = outcome
    if rank is not None:
        props["pto.failed_rank"] = str(rank)
        text = f"{outcome}: rank {rank}: stand-in failure\n" + "  frame line\n" * 30
        failure = (
            f'<failure message={quoteattr(text.splitlines()[0])} type="{outcome}">{text}</failure>'
        )
    body = "".join(f'<property name="{n}" value={quoteattr(v)} />' for n, v in props.items())
    cls = module.removesuffix(".py").replace("/", ".")
    case_name = f"{head}[{params}-{variant}-round-{k}]"
    return (
        f'<testcase classname="{cls}" name="{case_name}" time="{rng.uniform(0.5, 3):.3f}">'
        f"<properties>{body}</properties>{failure}</testcase>"
    )


def generate(out: Path, files: int, per_file: int) -> int:
    rng = random.Random(7)
    rounds_per_key = max(1, per_file // (len(TESTS) * len(VARIANTS)))
    total = 0
    for run in range(files):
        cases = [
            _case(rng, t, v, k, run=run, files=files)
            for t in TESTS
            for v in VARIANTS
            for k in range(1, rounds_per_key + 1)
        ]
        total += len(cases)
        stamp = f"2026-{1 + run // 28 % 12:02d}-{1 + run % 28:02d}T03:00:00Z"
        suite_props = (
            f'<property name="pto.seed" value="{run}" />'
            f'<property name="pto.commit" value="{run:04x}{"ab" * 18}" />'
            f'<property name="pto.timestamp" value="{stamp}" />'
        )
        (out / f"run-{run:03d}.xml").write_text(
            '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
            f'tests="{len(cases)}"><properties>{suite_props}</properties>'
            + "".join(cases)
            + "</testsuite></testsuites>"
        )
    return total


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command): on a shared, loaded machine the CPU time
    is what the command would take alone on an idle one (it is single-threaded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds-per-file", type=int, default=500)
    parser.add_argument("--keep", metavar="DIR", help="write the input and the page here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pto-bench-html-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        inputs = base / "junit"
        inputs.mkdir(parents=True, exist_ok=True)
        total = generate(inputs, args.files, args.rounds_per_file)
        page = base / "report.html"
        report = [str(Path(sys.executable).with_name("pto-report"))]
        html = timed([*report, "--format", "html", "--output", str(page), str(inputs)])
        text = timed([*report, "--output", str(base / "report.txt"), str(inputs)])
        print(f"input: {args.files} files, {total} rounds; load average {os.getloadavg()[0]:.1f}")
        size = page.stat().st_size / 1e6
        print(
            f"pto-report --format html: wall {html[0]:.2f} s, CPU {html[1]:.2f} s, "
            f"page {size:.2f} MB"
        )
        print(f"pto-report (text):        wall {text[0]:.2f} s, CPU {text[1]:.2f} s")


if __name__ == "__main__":
    main()
