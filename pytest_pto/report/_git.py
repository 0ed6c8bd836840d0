"""The git commit of a checkout: what a report and a run's JUnit file say they came from.

One function for both ``pto-report``'s provenance and the plugin's ``pto.commit`` testsuite
property (the history of runs in the HTML report is ordered and labelled by it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["git_commit"]


def _git(args: list[str], cwd: Path | None) -> subprocess.CompletedProcess[str] | None:
    """One git command's output, or None when git could not be run at all."""
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=False, cwd=cwd
        )
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """``git rev-parse HEAD`` in ``cwd`` (``-dirty`` appended when tracked files changed);
    else ``$GITHUB_SHA`` (a CI job without a git checkout); None when neither is known."""
    where = Path(cwd) if cwd is not None else None
    out = _git(["rev-parse", "HEAD"], where)
    commit = out.stdout.strip() if out is not None and out.returncode == 0 else ""
    if not commit:
        return os.environ.get("GITHUB_SHA") or None
    dirty = _git(["status", "--porcelain", "--untracked-files=no"], where)
    if dirty is None:
        return commit
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
