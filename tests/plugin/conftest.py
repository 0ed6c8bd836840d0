"""Fixtures for the plugin's acceptance tests: an isolated inner pytest session."""

from __future__ import annotations

import pytest

from pytest_pto._settings import OPTIONS


@pytest.fixture
def ptester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester with a private lock dir and none of the caller's PTO_* settings leaking in."""
    monkeypatch.setenv("PTO_TEST_INNER", "1")
    for opt in OPTIONS:
        if opt.env:
            monkeypatch.delenv(opt.env, raising=False)
    monkeypatch.setenv("PTO_LOCK_DIR", str(pytester.path / "locks"))
    return pytester


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
