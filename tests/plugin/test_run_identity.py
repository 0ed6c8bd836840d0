"""The run's identity in its JUnit file: ``pto.commit`` (git, when the tests run in a
checkout) and ``pto.timestamp`` (the session's start, UTC), testsuite properties that
pto-report's history orders runs by. Real inner sessions with real chip workers."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

INNER = """
def ident(chip):
    return chip.rank


def test_passes(pto_world):
    assert pto_world.run(ident) == [0, 1]
"""


def _suite_props(path: Path) -> dict[str, str]:
    props = ET.parse(path).getroot().find("testsuite/properties")
    assert props is not None
    return {str(p.get("name")): str(p.get("value")) for p in props}


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_commit_and_timestamp_written(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    ptester.makepyfile(test_one=INNER)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    # not a checkout: no commit, a timestamp all the same
    out = ptester.path / "plain.xml"
    res = ptester.runpytest_subprocess(f"--junitxml={out}", "-p", "no:cacheprovider", timeout=120)
    assert res.ret == 0, res.stdout.str()
    props = _suite_props(out)
    assert "pto.commit" not in props
    stamp = props["pto.timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before - timedelta(seconds=1) <= when <= datetime.now(timezone.utc)

    # a checkout: its HEAD, "-dirty" once a tracked file changes
    _git(ptester.path, "init", "-q")
    _git(ptester.path, "add", "test_one.py")
    _git(ptester.path, "commit", "-q", "-m", "one")
    head = _git(ptester.path, "rev-parse", "HEAD")
    out = ptester.path / "git.xml"
    res = ptester.runpytest_subprocess(f"--junitxml={out}", "-p", "no:cacheprovider", timeout=120)
    assert res.ret == 0, res.stdout.str()
    assert _suite_props(out)["pto.commit"] == head
    (ptester.path / "test_one.py").write_text(INNER + "\n# changed\n")
    res = ptester.runpytest_subprocess(f"--junitxml={out}", "-p", "no:cacheprovider", timeout=120)
    assert res.ret == 0, res.stdout.str()
    assert _suite_props(out)["pto.commit"] == head + "-dirty"
