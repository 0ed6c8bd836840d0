"""Finish pytest's ``--junitxml`` file for every consumer (controller only, at session end).

pytest writes each round's ``pto.*`` properties as testcase ``<properties>`` (Datadog,
junit2html and ``pto-report`` read them there). Two kinds of readers miss them:

- readers that drop testcase properties (xunitparser, many dashboards) but show the failure
  element: so the outcome class goes into the ``<failure>``/``<error>`` element's ``type``
  attribute, and its ``message`` starts with the class (``hang: rank 1: ...``);
- validators against the Jenkins ``junit-10.xsd``, which allows no ``<properties>`` inside a
  ``<testcase>``. With ``--pto-junit-strict`` each testcase's properties move into a
  ``<system-out>`` block of the testcase (which the schema allows), one ``name=value`` per
  line after the header line ``PROPS_HEADER`` (:mod:`pytest_pto._vocabulary` holds it and
  its reader); ``pto-report`` reads both forms.

Every file also gets the session's ``pto.seed``, ``pto.command`` (the pytest command line),
``pto.commit`` (the git commit of the checkout, when known) and ``pto.timestamp`` (the run's
start, UTC, ``YYYY-MM-DDTHH:MM:SSZ``) as testsuite properties (allowed by the schema), so a
report can say what produced it and order several runs into a history. The
file is rewritten through :func:`pytest_pto._atomic.write_text_atomic`, and only when it is a
regular file (a FIFO or a device that pytest already streamed into cannot be read back).
"""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from pytest_pto._atomic import write_text_atomic
from pytest_pto._vocabulary import PASSED, PROPS_HEADER

__all__ = ["finish_junit"]


def _cases(elem: ET.Element) -> Iterator[ET.Element]:
    for child in elem:
        if child.tag == "testcase":
            yield child
        elif child.tag in ("testsuite", "testsuites"):
            yield from _cases(child)


def _suites(root: ET.Element) -> Iterator[ET.Element]:
    if root.tag == "testsuite":
        yield root
    for child in root:
        if child.tag == "testsuite":
            yield from _suites(child)


def _mark_outcome(case: ET.Element, outcome: str) -> None:
    for res in case:
        if res.tag not in ("failure", "error"):
            continue
        res.set("type", outcome)
        message = res.get("message") or ""
        if not (message == outcome or message.startswith(f"{outcome}:")):
            res.set("message", f"{outcome}: {message}" if message else outcome)


def _to_system_out(case: ET.Element, props_elem: ET.Element) -> None:
    lines = [PROPS_HEADER]
    for prop in props_elem:
        name = (prop.get("name") or "").replace("\n", " ")
        value = (prop.get("value") or "").replace("\r", " ").replace("\n", " ")
        lines.append(f"{name}={value}")
    case.remove(props_elem)
    out = ET.SubElement(case, "system-out")
    out.text = "\n".join(lines) + "\n"


def _utc_stamp(started: str | None) -> str:
    """pytest's testsuite ``timestamp`` (the session's start, local time with offset) in UTC;
    now when it is missing or unreadable."""
    when = datetime.now(timezone.utc)
    if started:
        try:
            parsed = datetime.fromisoformat(started)
        except ValueError:
            parsed = None
        if parsed is not None:
            when = parsed if parsed.tzinfo is not None else parsed.astimezone()
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _add_suite_property(suite: ET.Element, name: str, value: str) -> None:
    props = suite.find("properties")
    if props is None:
        props = ET.Element("properties")
        suite.insert(0, props)
    for prop in props:
        if prop.get("name") == name:
            prop.set("value", value)
            return
    ET.SubElement(props, "property", {"name": name, "value": value})


def finish_junit(
    path: str | os.PathLike[str],
    *,
    strict: bool,
    seed: int | None,
    command: str | None = None,
    commit: str | None = None,
) -> bool:
    """Rewrite pytest's JUnit file at ``path`` as the module docstring says.

    Returns False (file untouched) when it holds no pto round or is not a regular file.
    Raises OSError (an unwritable path) or ET.ParseError (not pytest's XML).
    """
    p = Path(path)
    try:
        if not stat.S_ISREG(os.stat(p).st_mode):
            return False
    except FileNotFoundError:
        return False
    tree = ET.parse(p)  # our own file, just written by pytest
    root = tree.getroot()
    rounds = 0
    for case in _cases(root):
        props_elem = case.find("properties")
        if props_elem is None:
            continue
        props = {q.get("name"): q.get("value") or "" for q in props_elem}
        outcome = props.get("pto.outcome")
        if outcome is None:
            if strict:
                _to_system_out(case, props_elem)
            continue
        rounds += 1
        if outcome != PASSED:
            _mark_outcome(case, outcome)
        if strict:
            _to_system_out(case, props_elem)
    if not rounds:
        return False
    for suite in _suites(root):
        if seed is not None:
            _add_suite_property(suite, "pto.seed", str(seed))
        if command:
            _add_suite_property(suite, "pto.command", command)
        if commit:
            _add_suite_property(suite, "pto.commit", commit)
        _add_suite_property(suite, "pto.timestamp", _utc_stamp(suite.get("timestamp")))
    text = ET.tostring(root, encoding="unicode", xml_declaration=False)
    write_text_atomic(p, '<?xml version="1.0" encoding="utf-8"?>' + text)
    return True
