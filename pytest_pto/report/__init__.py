"""The report wing: round records -> tables, statistics, JUnit reading, trace, GitHub output,
and the ``pto-report`` and ``pto-bisect`` commands.

It reads rounds in the one vocabulary (:mod:`pytest_pto._vocabulary`) and never imports the
plugin, so the same code serves the plugin's terminal summary (records from live reports) and
``pto-report`` (records read back from JUnit files). Behind this surface, one private module per
job:

- ``_aggregate``: records -> summary rows, and the exact tests between variants;
- ``_stats``: Wilson and Clopper-Pearson intervals, Fisher's and McNemar's exact tests, the
  anytime-valid decision of ``--pto-rounds=auto``;
- ``_render``: rows -> aligned text, Markdown, JSON (schema ``pto-report/1``);
- ``_junit_read``: JUnit XML files -> round records, defensively;
- ``_trace``: the Chrome trace-event timeline (``--pto-trace``);
- ``_github``: GitHub Actions annotations and the step summary;
- ``_html`` (charts in ``_svg``): the self-contained HTML page of ``pto-report --format html``;
- ``_history``: JUnit files of several runs -> runs, failure rate per run, change point, new
  failure classes;
- ``_concentration``: a failure class concentrated on a device or host beyond chance (Holm);
- ``_git``: the checkout's commit (report provenance, the plugin's ``pto.commit``);
- ``_cli`` and ``_bisect``: the ``pto-report`` and ``pto-bisect`` commands.

Names are loaded on first use, so the plugin (which needs the table and the decision rule at
every session) does not pay for the JUnit parser or the commands.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_pto._vocabulary import RoundRecord
    from pytest_pto.report._aggregate import Comparison, SummaryRow, compare, summarize
    from pytest_pto.report._bisect import main as bisect_main
    from pytest_pto.report._cli import main as report_main
    from pytest_pto.report._concentration import Concentration, concentrations
    from pytest_pto.report._github import (
        append_step_summary,
        failure_annotations,
        in_github_actions,
    )
    from pytest_pto.report._history import Run, TestHistory, histories, read_runs
    from pytest_pto.report._html import render_html
    from pytest_pto.report._junit_read import (
        JUnitData,
        ReportInputError,
        read_junit,
        read_junit_files,
    )
    from pytest_pto.report._render import (
        JSON_SCHEMA,
        render_markdown,
        render_text,
        statement,
        to_json,
    )
    from pytest_pto.report._stats import sequential_decision
    from pytest_pto.report._trace import TraceWriter, merge_parts, merge_trace_files

#: public name -> (private module, its name there)
_WHERE = {
    "RoundRecord": ("pytest_pto._vocabulary", "RoundRecord"),
    "Comparison": ("pytest_pto.report._aggregate", "Comparison"),
    "SummaryRow": ("pytest_pto.report._aggregate", "SummaryRow"),
    "compare": ("pytest_pto.report._aggregate", "compare"),
    "summarize": ("pytest_pto.report._aggregate", "summarize"),
    "JSON_SCHEMA": ("pytest_pto.report._render", "JSON_SCHEMA"),
    "render_markdown": ("pytest_pto.report._render", "render_markdown"),
    "render_text": ("pytest_pto.report._render", "render_text"),
    "statement": ("pytest_pto.report._render", "statement"),
    "to_json": ("pytest_pto.report._render", "to_json"),
    "sequential_decision": ("pytest_pto.report._stats", "sequential_decision"),
    "JUnitData": ("pytest_pto.report._junit_read", "JUnitData"),
    "ReportInputError": ("pytest_pto.report._junit_read", "ReportInputError"),
    "read_junit": ("pytest_pto.report._junit_read", "read_junit"),
    "read_junit_files": ("pytest_pto.report._junit_read", "read_junit_files"),
    "TraceWriter": ("pytest_pto.report._trace", "TraceWriter"),
    "merge_parts": ("pytest_pto.report._trace", "merge_parts"),
    "merge_trace_files": ("pytest_pto.report._trace", "merge_trace_files"),
    "append_step_summary": ("pytest_pto.report._github", "append_step_summary"),
    "failure_annotations": ("pytest_pto.report._github", "failure_annotations"),
    "in_github_actions": ("pytest_pto.report._github", "in_github_actions"),
    "report_main": ("pytest_pto.report._cli", "main"),
    "render_html": ("pytest_pto.report._html", "render_html"),
    "Run": ("pytest_pto.report._history", "Run"),
    "TestHistory": ("pytest_pto.report._history", "TestHistory"),
    "histories": ("pytest_pto.report._history", "histories"),
    "read_runs": ("pytest_pto.report._history", "read_runs"),
    "Concentration": ("pytest_pto.report._concentration", "Concentration"),
    "concentrations": ("pytest_pto.report._concentration", "concentrations"),
    "bisect_main": ("pytest_pto.report._bisect", "main"),
}

__all__ = [
    "JSON_SCHEMA",
    "Comparison",
    "Concentration",
    "JUnitData",
    "ReportInputError",
    "RoundRecord",
    "Run",
    "SummaryRow",
    "TestHistory",
    "TraceWriter",
    "append_step_summary",
    "bisect_main",
    "compare",
    "concentrations",
    "failure_annotations",
    "histories",
    "in_github_actions",
    "merge_parts",
    "merge_trace_files",
    "read_junit",
    "read_junit_files",
    "read_runs",
    "render_html",
    "render_markdown",
    "render_text",
    "report_main",
    "sequential_decision",
    "statement",
    "summarize",
    "to_json",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its private module on first use (PEP 562)."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
