"""GitHub Actions output: failure annotations and the job step summary.

Workflow commands are lines on stdout (``::error file=F,line=L,title=T::message``); GitHub
decodes ``%25``, ``%0D``, ``%0A`` in the message and additionally ``%3A`` and ``%2C`` in
property values, so a message with newlines or a title with ``:``/``,`` (every
``sched_error_code=100, rank 1`` title has both) must be escaped or it is cut short. The step
summary is a Markdown file named by ``$GITHUB_STEP_SUMMARY`` that every step appends to.

GitHub shows only a limited number of annotations per step (10 errors at the time of
writing), so :func:`emit_annotations` caps its output and says how many it left out.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

from pytest_pto._atomic import append_text
from pytest_pto._vocabulary import RoundRecord, round_label

__all__ = [
    "annotation",
    "append_step_summary",
    "emit_annotations",
    "escape_data",
    "escape_property",
    "failure_annotations",
    "html_report_link",
    "in_github_actions",
]

DEFAULT_MAX_ANNOTATIONS = 50


def in_github_actions(environ: Mapping[str, str] | None = None) -> bool:
    """True inside a GitHub Actions job (``GITHUB_ACTIONS=true``)."""
    env = os.environ if environ is None else environ
    return env.get("GITHUB_ACTIONS", "").lower() == "true"


def escape_data(text: str) -> str:
    """Escape a workflow-command message: ``%`` first, then CR and LF."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value: as :func:`escape_data` plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    message: str,
    *,
    level: str = "error",
    file: str | None = None,
    line: int | None = None,
    title: str | None = None,
) -> str:
    """One workflow-command line (without the trailing newline)."""
    if level not in ("error", "warning", "notice"):
        raise ValueError(f"annotation level={level!r}: must be error, warning or notice")
    props = []
    if file:
        props.append(f"file={escape_property(file)}")
        if line is not None and line > 0:
            props.append(f"line={line}")
    if title:
        props.append(f"title={escape_property(title)}")
    head = f"::{level} " + ",".join(props) if props else f"::{level}"
    return f"{head}::{escape_data(message)}"


def _describe(rec: RoundRecord) -> tuple[str, str]:
    """(title, message) of a failed round: test, variant, round, rank and outcome."""
    rank = f"rank {rec.rank}" if rec.rank is not None else "rank unknown"
    variant = f" [{rec.variant}]" if rec.variant else ""
    kind = " (infra)" if rec.infra else ""
    title = f"pto {rec.outcome}{kind}, {rank}, round {rec.round}{variant}"
    message = f"{round_label(rec.test, rec.variant, rec.round)}: {rec.outcome} on {rank}"
    if rec.infra:  # a product failure is what every other annotation is: said only here
        message += " (infrastructure failure: not counted against the product)"
    if rec.message:
        message += f"\n{rec.message}"
    return title, message


def failure_annotations(records: Iterable[RoundRecord]) -> list[str]:
    """An ``::error`` line for every round that did not pass."""
    out = []
    for rec in records:
        if rec.passed:
            continue
        title, message = _describe(rec)
        out.append(annotation(message, file=rec.file, line=rec.line, title=title))
    return out


def emit_annotations(
    records: Iterable[RoundRecord],
    stream: TextIO | None = None,
    max_annotations: int = DEFAULT_MAX_ANNOTATIONS,
) -> int:
    """Write failure annotations (at most ``max_annotations``, then one notice); return count."""
    stream = sys.stdout if stream is None else stream
    lines = failure_annotations(records)
    shown = lines[:max_annotations]
    for text in shown:
        stream.write(text + "\n")
    if len(lines) > len(shown):
        more = len(lines) - len(shown)
        stream.write(annotation(f"{more} more failed pto rounds not annotated", level="notice"))
        stream.write("\n")
    stream.flush()
    return len(shown)


def append_step_summary(
    markdown: str,
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path | None:
    """Append ``markdown`` to the step summary file; return its path, or None if there is none.

    ``path`` defaults to ``$GITHUB_STEP_SUMMARY``. Appending (never truncating) is what
    GitHub expects: several steps, and several tools within one step, share the file.
    """
    env = os.environ if environ is None else environ
    target = path if path is not None else env.get("GITHUB_STEP_SUMMARY") or None
    if target is None:
        return None
    p = Path(target)
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    append_text(p, "\n" + text)  # OutputError (an OSError) names the path and the cause
    return p


def html_report_link(
    name: str, url: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The step summary's line pointing at the HTML report ``name``: ``url`` when given
    (actions/upload-artifact's ``artifact-url`` output), else this run's page, whose
    artifacts list holds it (``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/
    $GITHUB_RUN_ID``), else just the name. The Markdown table stays the summary itself."""
    env = os.environ if environ is None else environ
    if url is None:
        server, repo, run = (
            env.get("GITHUB_SERVER_URL"),
            env.get("GITHUB_REPOSITORY"),
            env.get("GITHUB_RUN_ID"),
        )
        if server and repo and run:
            url = f"{server}/{repo}/actions/runs/{run}#artifacts"
    label = f"`{name}`"
    if url:
        return f"\nHTML report with plots and history: [{label}]({url}) (a CI artifact)\n"
    return f"\nHTML report with plots and history: {label} (a CI artifact of this job)\n"
