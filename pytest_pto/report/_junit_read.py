"""Read JUnit XML files (from many runs, xdist sessions and CI jobs) back into RoundRecords.

Parsing goes through junitparser; testcases are collected from any nesting of
``<testsuites>``/``<testsuite>`` elements, so files from pytest (one suite), other runners
(several suites) and merge tools (nested suites) all work. Rounds of the same test in several
files accumulate. A testcase without a ``pto.outcome`` property is not a pto round: it is
skipped and only counted (``JUnitData.non_pto``).

Every problem with an input becomes one :class:`ReportInputError` naming the file (and the
testcase/property where it applies) and the rule, never a traceback from the XML library.

Reading is defensive, whatever XML library junitparser picked (lxml when installed):

- only regular files are read. A FIFO or device named ``*.xml`` is refused (it is opened
  with ``O_NONBLOCK`` and checked with ``fstat``, so naming one never hangs);
- a file named twice, or reached again through a symlink or a directory walk, is read once
  (files are identified by ``(st_dev, st_ino)``); :attr:`JUnitData.duplicates` lists the rest;
- the XML is parsed by the standard library's expat with every DTD refused: JUnit never
  needs one, and without it neither entity expansion ("billion laughs") nor external
  entities can happen. expat has no text-node size limit, so a valid file with a 10 MB
  ``system-out`` reads fine (lxml's default parser refuses text nodes over 10 MB).
"""

from __future__ import annotations

import functools
import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers import expat

from junitparser import JUnitXml, JUnitXmlError

from pytest_pto._vocabulary import (
    PASSED,
    PROP_PREFIX,
    PropertyError,
    RoundRecord,
    parse_props_block,
    round_record,
)

__all__ = ["JUnitData", "ReportInputError", "expand_inputs", "read_junit", "read_junit_files"]


class ReportInputError(Exception):
    """An input file is missing, unreadable, not JUnit XML, or carries an invalid pto property."""


@dataclass
class JUnitData:
    """Records read from one or more files, plus what was not a pto round."""

    records: list[RoundRecord] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    testcases: int = 0
    non_pto: int = 0
    duplicates: list[Path] = field(default_factory=list)
    #: testsuite-level ``pto.*`` properties (e.g. ``pto.seed``), every distinct value per name
    suite_props: dict[str, list[str]] = field(default_factory=dict)

    def extend(self, other: JUnitData) -> None:
        self.records += other.records
        self.files += other.files
        self.testcases += other.testcases
        self.non_pto += other.non_pto
        self.duplicates += other.duplicates
        for name, values in other.suite_props.items():
            mine = self.suite_props.setdefault(name, [])
            mine += [v for v in values if v not in mine]


def expand_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; directories searched recursively for ``*.xml`` (sorted, for stable order).

    A missing path is an error (a CI glob that matched nothing arrives here literally).
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.xml") if q.is_file())
        elif p.exists():
            out.append(p)
        else:
            raise ReportInputError(f"{p}: no such file or directory")
    return out


def _walk_cases(elem: Any) -> Iterator[Any]:
    for child in elem:
        tag = child.tag
        if tag == "testcase":
            yield child
        elif tag in ("testsuite", "testsuites"):
            yield from _walk_cases(child)


def _props(case: ET.Element) -> dict[str, str]:
    """``pto.*`` properties: testcase ``<properties>``, or the strict-mode ``<system-out>``
    block of ``--pto-junit-strict`` files (the vocabulary's ``parse_props_block``).

    Read from the raw elements (not junitparser's wrappers, which cost most of the time of
    a 100 000-round history)."""
    out: dict[str, str] = {}
    blocks: list[ET.Element] = []
    for elem in case:
        if elem.tag == "system-out":
            block = parse_props_block(elem.text)
            if block is not None:
                out.update((k, v) for k, v in block.items() if k.startswith(PROP_PREFIX))
        elif elem.tag == "properties":
            blocks.append(elem)
    for props in blocks:
        for prop in props:
            name = prop.get("name")
            if prop.tag == "property" and name is not None and name.startswith(PROP_PREFIX):
                out[name] = prop.get("value") or ""
    return out


#: Bounds of what a record keeps of a failing round's text (the HTML report's failing-round
#: list shows it): the head of the failure text and the tail of the captured output.
TEXT_LIMIT = 4000
LOG_LINES = 30


def _failure(case: ET.Element) -> tuple[str, str]:
    """(first line of the failure message, the failure text bounded to TEXT_LIMIT)."""
    for res in case:
        if res.tag in ("failure", "error"):
            message = (res.get("message") or "").strip()
            text = (res.text or "").strip()
            first = (message or text).splitlines()[0] if (message or text) else ""
            body = text or message
            if len(body) > TEXT_LIMIT:
                body = body[:TEXT_LIMIT] + f"\n... ({len(body) - TEXT_LIMIT} more characters)"
            return first, body
    return "", ""


def _log_excerpt(case: ET.Element) -> str:
    """The last LOG_LINES lines of the testcase's captured output (system-out, then
    system-err; a strict-mode properties block is not output)."""
    lines: list[str] = []
    for elem in case:
        if elem.tag in ("system-out", "system-err") and elem.text:
            if parse_props_block(elem.text) is not None:
                continue
            lines += elem.text.rstrip("\n").splitlines()
    return "\n".join(line[:300] for line in lines[-LOG_LINES:])


@functools.lru_cache(maxsize=4096)
def _guess_file_in(classname: str, cwd: str) -> tuple[str | None, tuple[str, ...]]:
    """:func:`_guess_file` once per class name and working directory (a history of 100 000
    rounds has a handful of class names: one stat each, not one per round)."""
    file, rest = _guess_file(classname)
    return file, tuple(rest)


def _guess_file(classname: str) -> tuple[str | None, list[str]]:
    """pytest writes ``classname = 'tests.test_x.TestCls'``; find the module file it came from.

    Returns the relative path and the remaining class parts. A module file that exists under
    the working directory (where CI checks the repository out) wins; otherwise leading parts
    up to the first capitalised one (a ``Test*`` class) are taken as the module path.
    """
    parts = [p for p in classname.split(".") if p]
    for k in range(len(parts), 0, -1):
        candidate = "/".join(parts[:k]) + ".py"
        if Path(candidate).is_file():
            return candidate, parts[k:]
    # Not checked out here: pytest collects classes named Test*, modules are rarely so named.
    k = len(parts)
    while k > 1 and parts[k - 1][:1].isupper():
        k -= 1
    if k == 0:
        return None, parts
    return "/".join(parts[:k]) + ".py", parts[k:]


def _duration(case: ET.Element) -> float | None:
    raw = case.get("time")
    if not raw:
        return None
    try:
        return float(raw.replace(",", ""))
    except ValueError:
        return None


def _record(path: Path, case: ET.Element, props: dict[str, str], cwd: str) -> RoundRecord:
    """The vocabulary's one reader of round properties, strict, with the testcase's name
    qualified by its module file and its location; an invalid property names the file."""
    classname = case.get("classname") or ""
    name = case.get("name") or ""

    def locate(base: str) -> tuple[str, str | None]:
        attr_file = case.get("file")  # xunit1 files carry file= and line=
        file, rest = _guess_file_in(classname, cwd)
        if attr_file:
            file = attr_file
        if file is not None:
            return "::".join([file, *rest, base]), file
        return (f"{classname}::{base}" if classname else base), None

    line = None
    raw_line = case.get("line")
    if raw_line and raw_line.isdigit():
        line = int(raw_line) + 1  # pytest writes the 0-based line of the test function
    message, text = _failure(case)
    failed = (props.get("pto.outcome") or "").strip() != PASSED
    try:
        return round_record(
            props,
            name,
            locate=locate,
            duration_s=_duration(case),
            message=message,
            line=line,
            text=text if failed else "",
            log=_log_excerpt(case) if failed else "",
        )
    except PropertyError as exc:
        raise ReportInputError(f"{path}: testcase {classname}::{name}: {exc}") from None


class _Refused(Exception):
    """A DTD in a JUnit file: refused before any entity can be declared or expanded."""


def _read_regular(p: Path) -> tuple[bytes, tuple[int, int]]:
    """The bytes of ``p`` and its identity, refusing anything but a regular file (no hang)."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ReportInputError(f"{p}: no such file") from None
    except OSError as exc:
        raise ReportInputError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ReportInputError(f"{p}: is a directory, expected a JUnit XML file")
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
            raise ReportInputError(
                f"{p}: is {kind}; pto-report reads only regular JUnit XML files "
                "(save the stream to a file first)"
            )
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), (st.st_dev, st.st_ino)
    except OSError as exc:
        raise ReportInputError(f"{p}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _parse_xml(data: bytes) -> ET.Element:
    """Parse with expat into ElementTree elements; any DTD is refused (see module docstring)."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.buffer_text = True

    def refuse(*_: object) -> None:
        raise _Refused("a DTD (<!DOCTYPE ...>) is not allowed in JUnit XML (entity attacks)")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.Parse(data, True)
    return builder.close()


def read_junit(
    path: str | os.PathLike[str], _seen: set[tuple[int, int]] | None = None
) -> JUnitData:
    """Parse one JUnit XML file into pto round records.

    ``_seen`` (file identities already read) makes a repeated file an empty result listed in
    ``duplicates``.
    """
    p = Path(path)
    data_bytes, ident = _read_regular(p)
    if _seen is not None:
        if ident in _seen:
            return JUnitData(duplicates=[p])
        _seen.add(ident)
    try:
        root = _parse_xml(data_bytes)
    except _Refused as exc:
        raise ReportInputError(f"{p}: refused: {exc}") from None
    except expat.ExpatError as exc:
        raise ReportInputError(f"{p}: not well-formed XML: {exc}") from None
    except (RecursionError, MemoryError) as exc:
        raise ReportInputError(f"{p}: cannot parse: {type(exc).__name__}") from None
    try:
        xml = JUnitXml.fromroot(root)  # type: ignore[arg-type]  # any ElementTree element
    except JUnitXmlError:
        raise ReportInputError(
            f"{p}: not JUnit XML: the root element must be <testsuites> or <testsuite>"
        ) from None
    data = JUnitData(files=[p])
    _suite_props(xml._elem, data.suite_props)
    cwd = os.getcwd()
    for case in _walk_cases(xml._elem):
        data.testcases += 1
        props = _props(case)
        if "pto.outcome" not in props:
            data.non_pto += 1
            continue
        data.records.append(_record(p, case, props, cwd))
    return data


def _suite_props(elem: Any, out: dict[str, list[str]]) -> None:
    for child in elem:
        if child.tag in ("testsuite", "testsuites"):
            _suite_props(child, out)
        elif child.tag == "properties":
            for prop in child:
                name = prop.get("name") or ""
                if prop.tag == "property" and name.startswith(PROP_PREFIX):
                    values = out.setdefault(name, [])
                    value = prop.get("value") or ""
                    if value not in values:
                        values.append(value)


def read_junit_files(paths: Iterable[str | os.PathLike[str]]) -> JUnitData:
    """Read and merge several files (directories are expanded by :func:`expand_inputs`)."""
    data = JUnitData()
    seen: set[tuple[int, int]] = set()
    for p in expand_inputs(list(paths)):
        data.extend(read_junit(p, seen))
    return data
