"""Mutation check: every curated mutant of ci/mutants.yaml must be killed by its tests.

Run through ``bash ci/mutants.sh [ID ...]`` (see there). How it works, and why:

* The tree (tracked and untracked-but-not-ignored files, uncommitted edits included) is
  copied to a scratch directory; mutants are applied there only, never to the working tree.
  The C extension is built once in the scratch copy and kept aside; a mutant of a .c/.h file
  rebuilds it, and the kept build is put back afterwards.
* Tests run from the scratch directory with it first on PYTHONPATH (like ci/sanitize.sh), so
  ``libpto``, ``pytest_pto`` and ``tests`` - and every subprocess the tests start - import the
  mutated copy. A check at start-up proves it.
* Every distinct test selection must pass on the unmutated copy first (else "killed" would
  mean nothing). Then each mutant: apply (its search string must occur exactly once), run
  its selection with ``-x``, restore. pytest exit 1 (tests failed) or a timeout = KILLED;
  exit 0 = SURVIVED; anything else (no tests collected, usage error) = ERROR.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300.0  # per test run; a mutant that makes a test hang this long is caught


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]
    why: str

    @property
    def is_c(self) -> bool:
        return self.file.endswith((".c", ".h"))


def load(path: Path) -> list[Mutant]:
    raw = yaml.safe_load(path.read_text())
    out: list[Mutant] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw or []):
        missing = {"id", "file", "find", "replace", "tests", "why"} - set(entry)
        if missing:
            sys.exit(f"{path}: entry {i + 1}: missing {', '.join(sorted(missing))}")
        if entry["id"] in seen:
            sys.exit(f"{path}: duplicate mutant id {entry['id']}")
        seen.add(entry["id"])
        out.append(
            Mutant(
                id=str(entry["id"]),
                file=str(entry["file"]),
                find=str(entry["find"]),
                replace=str(entry["replace"]),
                tests=tuple(shlex.split(str(entry["tests"]))),
                why=str(entry["why"]),
            )
        )
    return out


def copy_tree(dst: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (p.decode() for p in listed)):
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree but still in the index
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


class Scratch:
    def __init__(self, py: str, keep: bool) -> None:
        self.py = py
        self.dir = Path(tempfile.mkdtemp(prefix="pto-mutants."))
        self.keep = keep
        self.env = {**os.environ, "PYTHONPATH": str(self.dir)}
        self.env.pop("PTO_TEST_INNER", None)
        copy_tree(self.dir)
        self.build()
        self.kept_so = {p.name: p.read_bytes() for p in (self.dir / "libpto").glob("_pto*.so")}
        probe = subprocess.run(
            [
                py,
                "-c",
                "import libpto, pytest_pto, tests;"
                "print(libpto.__file__, pytest_pto.__file__, tests.__file__)",
            ],
            cwd=self.dir,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        outside = [f for f in probe if not f.startswith(str(self.dir))]
        if outside:
            sys.exit(f"mutants: the scratch copy is not what Python imports: {outside}")

    def build(self) -> None:
        for so in (self.dir / "libpto").glob("_pto*.so"):
            so.unlink()
        res = subprocess.run(
            [self.py, "libpto/_build.py"],
            cwd=self.dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"build failed:\n{res.stdout}\n{res.stderr}")

    def restore_build(self) -> None:
        for so in (self.dir / "libpto").glob("_pto*.so"):
            so.unlink()
        for name, data in self.kept_so.items():
            (self.dir / "libpto" / name).write_bytes(data)

    def pytest(self, args: tuple[str, ...]) -> tuple[int | None, str]:
        """Exit code (None on timeout) and the tail of the output."""
        cmd = [self.py, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
        try:
            res = subprocess.run(
                cmd,
                cwd=self.dir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                start_new_session=True,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else str(exc.stdout)
            return None, out[-2000:]
        return res.returncode, (res.stdout + res.stderr)[-2000:]

    def close(self) -> None:
        if self.keep:
            print(f"scratch copy kept: {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ci/mutants.sh", description=__doc__.splitlines()[0])
    ap.add_argument("ids", nargs="*", help="run only these mutants (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--file", default=str(ROOT / "ci" / "mutants.yaml"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = ap.parse_args(argv)
    mutants = load(Path(args.file))
    if args.list:
        for m in mutants:
            print(f"{m.id:32} {m.file:32} {m.why}")
        return 0
    unknown = set(args.ids) - {m.id for m in mutants}
    if unknown:
        print(f"mutants: unknown id(s) {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
        return 2
    chosen = [m for m in mutants if not args.ids or m.id in args.ids]
    stale = [
        f"{m.id}: the search string occurs {(ROOT / m.file).read_text().count(m.find)} times "
        f"in {m.file} (must be exactly once)"
        for m in chosen
        if (ROOT / m.file).read_text().count(m.find) != 1
    ]
    if stale:
        print("mutants: stale mutants, update ci/mutants.yaml:", *stale, sep="\n  ")
        return 2
    py = os.environ.get("PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    t0 = time.monotonic()
    scratch = Scratch(py, args.keep)
    try:
        print(f"== scratch copy {scratch.dir} (built in {time.monotonic() - t0:.1f} s)")
        for sel in dict.fromkeys(m.tests for m in chosen):  # baseline: every selection passes
            code, tail = scratch.pytest(sel)
            if code != 0:
                print(f"baseline FAILS (exit {code}) without any mutant: {' '.join(sel)}\n{tail}")
                return 2
        print(f"== baseline passes ({time.monotonic() - t0:.1f} s)")
        killed = 0
        for m in chosen:
            path = scratch.dir / m.file
            original = path.read_text()
            t1 = time.monotonic()
            path.write_text(original.replace(m.find, m.replace, 1))
            try:
                if m.is_c:
                    scratch.build()
                code, tail = scratch.pytest(m.tests)
            except RuntimeError as exc:  # a mutant that does not compile is a broken mutant
                code, tail = 99, str(exc)
            finally:
                path.write_text(original)
                if m.is_c:
                    scratch.restore_build()
            if code == 1 or code is None:
                verdict = "KILLED" if code == 1 else "KILLED (timeout)"
                killed += 1
            elif code == 0:
                verdict = "SURVIVED"
            else:
                verdict = f"ERROR (exit {code})"
            print(
                f"{verdict:17} {m.id:32} {time.monotonic() - t1:6.1f} s  {m.file}: {m.why}",
                flush=True,
            )
            failed = [ln for ln in tail.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
            if code == 1 and failed:  # by which test, and why: a kill for the wrong reason
                print(f"    {failed[0][:160]}")  # (an import error, say) shows here
            if verdict.startswith(("SURVIVED", "ERROR")):
                print("    " + "\n    ".join(tail.strip().splitlines()[-8:]))
        elapsed = time.monotonic() - t0
        print(f"killed {killed}/{len(chosen)} in {elapsed:.0f} s ({elapsed / 60:.1f} min)")
        return 0 if killed == len(chosen) else 1
    finally:
        scratch.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
