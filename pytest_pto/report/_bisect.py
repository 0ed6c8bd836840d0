"""``pto-bisect``: the first commit at which a flaky failure's rate changes.

``git bisect`` with one run per commit cannot find a 1-in-3 failure: a single pass says almost
nothing. Here every commit gets as many rounds as its decision needs and no more: it is checked
out into a throwaway ``git worktree``, the *current* environment's pytest runs the given
arguments there with ``--pto-rounds=auto`` (the worktree first on ``PYTHONPATH``, nothing is
installed), and the sequential rule decides the commit:

- ``bad``: some test's failure rate (of ``--outcome``, default any failure) is above
  ``--target-fail-rate``; ``good``: every test's rate is below it;
- each decision is wrong with probability at most 5 % (the anytime-valid confidence sequence of
  ``--pto-rounds=auto``), so a bisection over k decided commits is right with probability at
  least ``1 - 0.05 k`` (union bound); a deterministic failure is decided in 2 rounds.

Binary search over the first-parent path ``good..bad``; both ends are decided first, so a range
in which nothing changes is said as such. Exit status: 0 the first bad commit was found; 1
nothing changes across the range (both ends good, or both bad); 2 bad usage (not a git
repository, unknown revision, ``--good`` not an ancestor of ``--bad``); 3 a commit could not be
decided (no pto rounds, or ``undecided`` at ``--max-rounds``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_pto.report._aggregate import SummaryRow, summarize
from pytest_pto.report._junit_read import ReportInputError, read_junit
from pytest_pto.report._render import statement

__all__ = ["CommitResult", "main"]

PROG = "pto-bisect"
EXIT_FOUND, EXIT_NO_CHANGE, EXIT_USAGE, EXIT_UNDECIDED = 0, 1, 2, 3


class BisectError(Exception):
    """A problem that ends the bisection; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class CommitResult:
    """The decision at one commit and the rows (per test and variant) behind it."""

    commit: str
    subject: str
    verdict: str  # good / bad / undecided
    rows: list[SummaryRow] = field(default_factory=list)
    pytest_exit: int = 0

    @property
    def rounds(self) -> int:
        return sum(r.rounds for r in self.rows)

    def evidence(self) -> list[str]:
        return [
            f"    {r.test}{f' [{r.variant}]' if r.variant else ''}: {statement(r)}"
            for r in self.rows
        ]


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BisectError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout.strip()


def _resolve(repo: Path, rev: str, option: str) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except BisectError:
        raise BisectError(f"{option} {rev}: not a commit of {repo}") from None


def _verdict(rows: Sequence[SummaryRow]) -> str:
    decisions = [r.decision for r in rows]
    if any(d == "flaky" for d in decisions):
        return "bad"
    if rows and all(d == "passes" for d in decisions):
        return "good"
    return "undecided"


class Bisector:
    """Runs the rounds at each commit (in a throwaway worktree) and remembers the results."""

    def __init__(
        self, repo: Path, pytest_args: Sequence[str], options: Sequence[str], log: bool = True
    ) -> None:
        self.repo = repo
        self.pytest_args = list(pytest_args)
        self.options = list(options)
        self.results: dict[str, CommitResult] = {}
        self.log = log

    def say(self, text: str) -> None:
        if self.log:
            print(f"{PROG}: {text}", flush=True)

    def evaluate(self, commit: str) -> CommitResult:
        if commit in self.results:
            return self.results[commit]
        subject = _git(self.repo, "log", "-1", "--format=%s", commit)
        tmp = Path(tempfile.mkdtemp(prefix=f"pto-bisect-{os.getpid()}-"))
        tree = tmp / "tree"
        junit = tmp / "junit.xml"
        try:
            _git(self.repo, "worktree", "add", "--detach", "--quiet", str(tree), commit)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                [str(tree), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
            )
            cmd = [
                sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                f"--rootdir={tree}", f"--junitxml={junit}", "--pto-rounds=auto",
                *self.options, *self.pytest_args,
            ]  # fmt: skip
            proc = subprocess.run(
                cmd, cwd=tree, env=env, capture_output=True, text=True, check=False
            )
            try:
                rows = summarize(read_junit(junit).records) if junit.exists() else []
            except ReportInputError as exc:
                raise BisectError(f"commit {commit[:12]}: {exc}", EXIT_UNDECIDED) from None
            if not rows:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
                raise BisectError(
                    f"commit {commit[:12]} ({subject}): no pto rounds ran (pytest exit "
                    f"{proc.returncode}); its output ends:\n{tail}",
                    EXIT_UNDECIDED,
                )
            result = CommitResult(commit, subject, _verdict(rows), rows, proc.returncode)
        finally:
            subprocess.run(
                ["git", "-C", str(self.repo), "worktree", "remove", "--force", str(tree)],
                capture_output=True,
                check=False,
            )
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(
                ["git", "-C", str(self.repo), "worktree", "prune"], capture_output=True, check=False
            )
        self.results[commit] = result
        self.say(f"{commit[:12]} {subject}: {result.verdict} ({result.rounds} rounds)")
        for line in result.evidence():
            self.say(line.strip())
        return result

    @property
    def total_rounds(self) -> int:
        return sum(r.rounds for r in self.results.values())


def _undecided(result: CommitResult) -> BisectError:
    return BisectError(
        f"commit {result.commit[:12]} ({result.subject}) is undecided: its failure rate is too "
        "close to --target-fail-rate for --max-rounds rounds; raise --max-rounds or move the "
        "target",
        EXIT_UNDECIDED,
    )


def bisect(bisector: Bisector, good: str, bad: str) -> int:
    repo = bisector.repo
    path = _git(
        repo, "rev-list", "--first-parent", "--ancestry-path", "--reverse", f"{good}..{bad}"
    )
    commits = [good, *path.split()]
    bisector.say(f"{len(commits) - 1} commit(s) after {good[:12]} up to {bad[:12]}")
    at_bad = bisector.evaluate(bad)
    if at_bad.verdict == "undecided":
        raise _undecided(at_bad)
    at_good = bisector.evaluate(good)
    if at_good.verdict == "undecided":
        raise _undecided(at_good)
    if at_good.verdict == at_bad.verdict:
        print(
            f"nothing changes across {good[:12]}..{bad[:12]}: both ends are {at_bad.verdict} "
            f"({'every failure rate below' if at_bad.verdict == 'good' else 'a failure rate above'}"
            f" the target); {bisector.total_rounds} rounds spent"
        )
        return EXIT_NO_CHANGE
    if at_good.verdict == "bad":
        print(
            f"nothing to bisect: --good {good[:12]} is bad and --bad {bad[:12]} is good (the "
            f"failure went away in the range); {bisector.total_rounds} rounds spent"
        )
        return EXIT_NO_CHANGE
    lo, hi = 0, len(commits) - 1  # commits[lo] good, commits[hi] bad
    while hi - lo > 1:
        mid = (lo + hi) // 2
        result = bisector.evaluate(commits[mid])
        if result.verdict == "undecided":
            raise _undecided(result)
        if result.verdict == "good":
            lo = mid
        else:
            hi = mid
    first, parent = bisector.results[commits[hi]], bisector.results[commits[lo]]
    print(f"first bad commit: {first.commit} {first.subject}")
    print(f"  at it ({first.verdict}, {first.rounds} rounds):")
    print("\n".join(first.evidence()))
    print(f"  at its parent {parent.commit[:12]} ({parent.verdict}, {parent.rounds} rounds):")
    print("\n".join(parent.evidence()))
    print(
        f"{len(bisector.results)} commits decided, {bisector.total_rounds} rounds spent; each "
        "decision is wrong with probability at most 5 % (anytime-valid confidence sequence)"
    )
    return EXIT_FOUND


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} --good REV --bad REV [options] -- <pytest arguments>",
        description=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--good", required=True, metavar="REV", help="a commit decided good")
    parser.add_argument("--bad", required=True, metavar="REV", help="a later commit, bad")
    parser.add_argument(
        "--outcome",
        default="any",
        metavar="CLASS",
        help="the failure class whose rate is decided, e.g. sched_error_code=100 or "
        "sched_error_code (the family); default any: every product failure",
    )
    parser.add_argument(
        "--target-fail-rate",
        default="0.05",
        metavar="RATE",
        help="bad = failure rate above RATE, good = below (0.05 or 5%%; default 5%%)",
    )
    parser.add_argument(
        "--max-rounds",
        default="200",
        metavar="N",
        help="rounds at most per test and commit before it is undecided (default 200)",
    )
    parser.add_argument(
        "--repo", default=".", metavar="DIR", help="the git repository (default: the current one)"
    )
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest (after --)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``pto-bisect``; returns the exit status (module docstring)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    options = [
        f"--pto-target-fail-rate={args.target_fail_rate}",
        f"--pto-max-rounds={args.max_rounds}",
        f"--pto-target-outcome={args.outcome}",
    ]
    try:
        repo = Path(
            _git(Path(args.repo), "rev-parse", "--show-toplevel")
            if Path(args.repo).is_dir()
            else ""
        )
        if not str(repo) or not Path(args.repo).is_dir():
            raise BisectError(f"--repo {args.repo}: not a directory")
        good = _resolve(repo, args.good, "--good")
        bad = _resolve(repo, args.bad, "--bad")
        if good == bad:
            raise BisectError(f"--good {args.good} and --bad {args.bad} are the same commit")
        ancestor = subprocess.run(
            ["git", "-C", str(repo), "merge-base", "--is-ancestor", good, bad], check=False
        )
        if ancestor.returncode != 0:
            raise BisectError(f"--good {args.good} is not an ancestor of --bad {args.bad}")
        return bisect(Bisector(repo, args.pytest_args, options), good, bad)
    except BisectError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
