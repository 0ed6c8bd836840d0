"""The git commit of a checkout: what a report and a run's JUnit file say they came from.

One function for both ``pto-report``'s provenance and the plugin's ``pto.commit`` testsuite
property (the history of runs in the HTML report is ordered and labelled by it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["git_commit"]


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """``git rev-parse HEAD`` in ``cwd`` (``-dirty`` appended when tracked files changed);
    else ``$GITHUB_SHA`` (a CI job without a git checkout); None when neither is known."""
    where = Path(cwd) if cwd is not None else None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            cwd=where,
        )
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("GITHUB_SHA") or None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return os.environ.get("GITHUB_SHA") or None
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            cwd=where,
        )
    except (OSError, subprocess.SubprocessError):
        return commit
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
