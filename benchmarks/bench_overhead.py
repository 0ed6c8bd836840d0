"""What pytest-pto costs a session that has no pto test (issue 13, goal 1).

The plugin is a ``pytest11`` entry point: every pytest session of an environment where it is
installed loads it. Reference: the same command with ``-p no:pto``, which makes pytest skip
the entry point (the module is never imported), so the difference is exactly what being
installed costs. Commands, run alternately (ours, reference, ours, ...) in one run:

    pytest --co -q test_plain.py          vs  the same with -p no:pto
    pytest --version                      vs  the same with -p no:pto
    python -c "import pytest_pto.plugin"  vs  python -c "import pytest"

Also lists which heavy modules importing the plugin drags in (the C extension, yaml,
junitparser should be none of them). Target: <= 20 ms more than the reference.

    .venv/bin/python benchmarks/bench_overhead.py [--repeat 21]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import clean_env, machine, median, run_timed

TARGET_MS = 20.0
HEAVY = ("libpto._pto", "yaml", "junitparser", "filelock", "libpto", "cffi")
PLAIN_TEST = "def test_plain():\n    assert 1 + 1 == 2\n"


def heavy_modules(env: dict[str, str], cwd: Path) -> list[str]:
    code = (
        f"import sys, pytest_pto.plugin; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    py = sys.executable
    pairs = {
        "pytest --co -q test_plain.py": (
            [py, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", "test_plain.py"],
            [
                py,
                "-m",
                "pytest",
                "--co",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:pto",
                "test_plain.py",
            ],
        ),
        "pytest --version": (
            [py, "-m", "pytest", "--version"],
            [py, "-m", "pytest", "--version", "-p", "no:pto"],
        ),
        "import pytest_pto.plugin (vs import pytest)": (
            [py, "-c", "import pytest_pto.plugin"],
            [py, "-c", "import pytest"],
        ),
    }
    print(machine())
    with tempfile.TemporaryDirectory(prefix="pto-bench-") as tmp:
        project = Path(tmp)
        (project / "test_plain.py").write_text(PLAIN_TEST)
        env = clean_env(PTO_LOCK_DIR=str(project / "locks"))
        print(
            f"modules imported by `import pytest_pto.plugin`: "
            f"{' '.join(heavy_modules(env, project)) or '(none of ' + ', '.join(HEAVY) + ')'}"
        )
        for ours, ref in pairs.values():  # warm the page cache and the bytecode
            run_timed(ours, project, env)
            run_timed(ref, project, env)
        times: dict[str, tuple[list[float], list[float], list[float]]] = {
            k: ([], [], []) for k in pairs
        }
        for _ in range(args.repeat):
            for label, (ours, ref) in pairs.items():
                a = run_timed(ours, project, env)
                b = run_timed(ref, project, env)
                o, r, d = times[label]
                o.append(a)
                r.append(b)
                d.append(a - b)
    print(f"{'command':<46} {'ours ms':>8} {'ref ms':>8} {'extra ms':>9} {'ratio':>6}")
    for label, (o, r, d) in times.items():
        mo, mr, md = median(o) * 1e3, median(r) * 1e3, median(d) * 1e3
        print(f"{label:<46} {mo:>8.1f} {mr:>8.1f} {md:>9.1f} {mo / mr:>6.2f}")
    extra = median(times["pytest --co -q test_plain.py"][2]) * 1e3
    verdict = "met" if extra <= TARGET_MS else "NOT met"
    print(
        f"target: a session without pto tests pays <= {TARGET_MS:g} ms more: {verdict} "
        f"({extra:.1f} ms, paired median of {args.repeat})"
    )


if __name__ == "__main__":
    main()
