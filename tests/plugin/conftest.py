"""Fixtures for the plugin's acceptance tests: an isolated inner pytest session."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_pto._rounds import RoundPlan
from pytest_pto._settings import OPTIONS


def round_plan(**overrides: Any) -> RoundPlan:
    """A RoundPlan for unit tests of what is written per round: round 2 of 5 of a 4-rank
    ``t.py::test_x`` in variant ``latch-fix``; ``overrides`` replace fields."""
    plan = RoundPlan(
        nodeid="t.py::test_x[latch-fix-round-2]",
        base_id="t.py::test_x",
        round=2,
        rounds=5,
        variant="latch-fix",
        ranks=4,
        env={},
        rank_env={},
        init_barrier=True,
        latch_policy="owned-wallclock",
        init_timeout=60.0,
        round_timeout=None,
        seed=0,
        log_dir=None,
        platform="sim",
    )
    return dataclasses.replace(plan, **overrides)


@pytest.fixture
def ptester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester with a private lock dir and none of the caller's PTO_* settings leaking in."""
    monkeypatch.setenv("PTO_TEST_INNER", "1")
    for opt in OPTIONS:
        if opt.env:
            monkeypatch.delenv(opt.env, raising=False)
    monkeypatch.setenv("PTO_LOCK_DIR", str(pytester.path / "locks"))
    return pytester


@pytest.fixture
def make_unwritable() -> Iterator[Callable[..., Path]]:
    """Make a new directory this process really cannot write to, root included.

    A normal user gets mode 0500. Root ignores modes (CI runs as root), so for root the
    directory becomes the mount point of a read-only tmpfs: writes fail with EROFS and
    ``os.access(W_OK)`` is false for root too. Only if root cannot mount (no CAP_SYS_ADMIN)
    is the test skipped, with that reason shown."""
    mounted: list[Path] = []
    chmodded: list[Path] = []

    def mount(*args: str) -> None:
        res = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            pytest.skip(f"running as root and cannot mount a read-only tmpfs: {res.stderr}")

    def make(path: Path, subdirs: tuple[str, ...] = ()) -> Path:
        """``path`` (created) read-only, holding the empty directories ``subdirs``."""
        path.mkdir()
        if os.getuid() != 0:
            for sub in subdirs:
                (path / sub).mkdir()
            path.chmod(0o500)
            chmodded.append(path)
        else:
            mount("-t", "tmpfs", "-o", "size=64k", "pto-test-ro", str(path))
            mounted.append(path)
            for sub in subdirs:
                (path / sub).mkdir()
            mount("-o", "remount,ro", str(path))
        assert not os.access(path, os.W_OK)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", str(path)], check=True)
    for path in chmodded:
        path.chmod(0o700)


def junit_cases(path: object) -> dict[str, dict[str, object]]:
    """``{testcase name: {"props": {...}, "failure": message or None, "text": str}}``."""
    from junitparser import Error, Failure, JUnitXml, Properties

    out: dict[str, dict[str, object]] = {}
    xml = JUnitXml.fromfile(str(path))
    suites = [xml] if xml._tag == "testsuite" else list(xml)
    for suite in suites:
        for case in suite:
            props = case.child(Properties)
            failure = None
            text = ""
            for res in case.result:
                if isinstance(res, (Failure, Error)):
                    failure = res.message
                    text = res.text or ""
            out[case.name] = {
                "props": {p.name: p.value for p in props} if props is not None else {},
                "failure": failure,
                "text": text,
            }
    return out
