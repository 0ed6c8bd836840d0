"""pto-bisect on small git repositories built here: a commit that turns a clean test into a
~50 % failure, one that makes it fail every round, and a history where nothing changes.

The test of the built repository fails when a draw from its round's seed is below ``RATE``
(real rounds, real chip workers); every commit is decided by real ``--pto-rounds=auto`` runs
in throwaway worktrees, which must all be gone afterwards.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from pytest_pto._settings import OPTIONS
from pytest_pto.report._bisect import main

TEST_FILE = """
import random
import pytest

RATE = {rate}

@pytest.mark.pto(ranks=1)
def test_rate(pto_world):
    seed = int(pto_world.env["PTO_SIM_MALLOC_SEED"])
    assert random.Random(seed).random() >= RATE
"""


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def build_repo(root: Path, rates: list[float | None]) -> tuple[Path, list[str]]:
    """One commit per entry: a new RATE in test_rate.py, or (None) an unrelated change."""
    repo = root / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.invalid")
    _git(repo, "config", "user.name", "t")
    commits = []
    for i, rate in enumerate(rates):
        if rate is None:
            (repo / "NOTES.txt").write_text(f"note {i}\n")
            message = f"c{i}: notes"
        else:
            (repo / "test_rate.py").write_text(TEST_FILE.format(rate=rate))
            message = f"c{i}: RATE={rate}"
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", message)
        commits.append(_git(repo, "rev-parse", "HEAD"))
    return repo, commits


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for opt in OPTIONS:
        if opt.env:
            monkeypatch.delenv(opt.env, raising=False)
    monkeypatch.setenv("PTO_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("PTO_TEST_INNER", "1")


def _bisect(repo: Path, good: str, bad: str, *extra: str) -> int:
    return main(
        ["--repo", str(repo), "--good", good, "--bad", bad, "--target-fail-rate", "20%",
         *extra, "--", "test_rate.py"]
    )  # fmt: skip


def _no_leftovers(repo: Path) -> None:
    assert _git(repo, "worktree", "list").count("\n") == 0  # only the main work tree
    prefix = f"pto-bisect-{os.getpid()}-"
    mine = [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(prefix)]
    assert mine == []


@pytest.mark.slow
def test_finds_the_commit_that_makes_the_test_flaky(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = build_repo(tmp_path, [0.0, None, None, 0.5, None, None])
    assert _bisect(repo, commits[0], commits[-1]) == 0
    out = capsys.readouterr().out
    assert f"first bad commit: {commits[3]} c3: RATE=0.5" in out
    assert f"at its parent {commits[2][:12]} (good" in out
    assert "auto: flaky after" in out and "auto: passes after 29 rounds" in out
    assert "rounds spent" in out
    _no_leftovers(repo)


@pytest.mark.slow
def test_deterministic_failure_is_found_in_a_few_rounds_per_bad_commit(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = build_repo(tmp_path, [0.0, None, 1.1, None])
    assert _bisect(repo, commits[0], commits[-1]) == 0
    out = capsys.readouterr().out
    assert f"first bad commit: {commits[2]} c2: RATE=1.1" in out
    # at a 20 % target 3 rounds (at the default 5 %: 2)
    assert "3/3 rounds failed" in out and "auto: flaky after 3 rounds" in out
    _no_leftovers(repo)


@pytest.mark.slow
def test_says_so_when_nothing_changes(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = build_repo(tmp_path, [0.0, None, None])
    assert _bisect(repo, commits[0], commits[-1]) == 1
    out = capsys.readouterr().out
    span = f"{commits[0][:12]}..{commits[-1][:12]}"
    assert f"nothing changes across {span}: both ends are good" in out
    _no_leftovers(repo)


def test_bad_revisions_are_usage_errors(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = build_repo(tmp_path, [0.0, None])
    assert _bisect(repo, "nosuchrev", commits[-1]) == 2
    assert "--good nosuchrev: not a commit of" in capsys.readouterr().err
    assert _bisect(repo, commits[1], commits[0]) == 2
    assert "is not an ancestor of --bad" in capsys.readouterr().err
    assert _bisect(tmp_path / "nowhere", commits[0], commits[1]) == 2
    assert "not a directory" in capsys.readouterr().err
