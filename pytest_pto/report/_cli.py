"""``pto-report``: merge JUnit XML from many runs / CI jobs into one round table.

The console script ``pto-report`` (``pytest_pto.cli:report_main``) calls :func:`main`.
Exit codes (also in ``--help``):

- 0 the report was produced (failed rounds are data, not an error) — unless
  ``--fail-on-failure`` and some round did not pass, then 1;
- 2 bad usage or bad input: unknown option, missing file, malformed XML, a non-JUnit file,
  an invalid ``pto.*`` property, an unknown ``--baseline``. Nothing is written;
- 3 no pto rounds: no XML file found, or no testcase carries ``pto.outcome``. Nothing is
  written.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pytest_pto._atomic import write_text_atomic
from pytest_pto.report._aggregate import compare, summarize
from pytest_pto.report._concentration import concentrations
from pytest_pto.report._git import git_commit
from pytest_pto.report._github import append_step_summary, emit_annotations, html_report_link
from pytest_pto.report._history import (
    histories,
    read_runs,
    render_history_markdown,
    render_history_text,
)
from pytest_pto.report._html import render_html
from pytest_pto.report._junit_read import JUnitData, ReportInputError
from pytest_pto.report._render import render_markdown, render_text, to_json

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURES",
    "EXIT_NO_DATA",
    "EXIT_OK",
    "build_parser",
    "main",
    "provenance",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_BAD_INPUT = 2
EXIT_NO_DATA = 3
PROG = "pto-report"

DESCRIPTION = """\
Merge JUnit XML files written by pytest-pto runs (pytest --junitxml; any number of runs,
xdist sessions and CI jobs) and print one table per test and variant: rounds, pass,
failing rounds, one column per outcome class that occurred (failed, sched_error_code=N,
orch_error_code=N, stream_sync_timeout, init_failed, init_timeout, rank_crashed, hang,
device_unavailable, and a runtime adapter's name or name=value classes such as
device_error_code=507018), the pass rate with its Wilson score interval, the failing ranks per
class and the largest init skew (">=" when it is a lower bound of a failing round).
Infrastructure outcomes (device_unavailable, marked "(infra)") are not product failures:
they are left out of "failing rounds", the pass rate and the comparisons.

Rounds are the testcases that carry the pto.outcome property (as a testcase property, or in
the system-out block of --pto-junit-strict files); other testcases are ignored (their number
is reported on stderr). Rounds of the same test and variant from several files add up; a file
named twice or reached again through a symlink is read once. Only regular files are read (a
FIFO is refused, never waited on); a DTD in a file is refused (no entity expansion).

--output writes to what it names: a regular file atomically (temp file + rename), a symlink's
target, a FIFO or a character device in place; a directory, a full device or an unwritable
place is an error naming the path and the cause. Markdown and JSON output end with the
report's provenance: date, git commit, this command, the runs' pytest commands and seeds.

Every row is followed by what its rounds prove: the exact (Clopper-Pearson) interval of the
failure rate, for a clean run the one-sided bound ("30 clean rounds: failure rate below
9.5 % (95 %)"), and for --pto-rounds=auto runs the decision (passes / flaky / undecided,
pto.decision) and the rounds it took.

Between the variants of one test (every pair, or each against --baseline) the failure rates
are compared with an exact two-sided test, so "15/30 vs 0/30" comes with a p-value (not
adjusted for multiple comparisons): McNemar's exact test when the rounds are paired (every
round of both variants has its partner with the same round index and pto.seed: variants
run the same seeds), else Fisher's exact test; the table says which one was used.

--format html writes one self-contained page (no network when opened): outcome-class bars,
the same intervals and tests, init-skew and duration distributions, failures by device and
host with a concentration test (Holm-corrected), and the failing rounds with their text.
Given the files of several runs (grouped by their pto.commit, ordered by pto.timestamp), the
page, text and Markdown reports add each test's failure rate per run, the run where it
changed (Fisher's exact test, Bonferroni over the splits tried) and the failure classes new
since the baseline runs (--baseline-runs)."""

EPILOG = f"""\
exit status:
  {EXIT_OK}  report produced (failed rounds are data, not an error)
  {EXIT_FAILURES}  --fail-on-failure given and at least one round did not pass
  {EXIT_BAD_INPUT}  bad usage or input: missing file, malformed XML, invalid pto.* property,
     unknown --baseline (nothing is written)
  {EXIT_NO_DATA}  no pto rounds in the input (nothing is written)

examples:
  pto-report junit.xml
  pto-report --format markdown --baseline before-fixes artifacts/ > table.md
  pto-report --format json --output pto.json run1.xml run2.xml
  pto-report --github --format markdown artifacts/    # in a GitHub Actions job
  pto-report --format html --output report.html nightly-runs/"""


def _fraction(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {text!r}: must be a number") from None
        if not 0.0 < value < 1.0:
            raise argparse.ArgumentTypeError(f"{name} {text!r}: must be between 0 and 1")
        return value

    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="FILE",
        help="JUnit XML file, or a directory searched recursively for *.xml",
    )
    parser.add_argument(
        "--format",
        choices=("text", "markdown", "json", "html"),
        default="text",
        help="text: aligned columns (default); markdown: GitHub tables for a pull request; "
        "json: schema pto-report/1 for other tools; html: one self-contained page with "
        "plots, history and device/host concentration (open it from a CI artifact)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout"
    )
    parser.add_argument(
        "--baseline",
        metavar="VARIANT",
        help="compare each variant against this one instead of every pair of variants",
    )
    parser.add_argument(
        "--alpha",
        type=_fraction("--alpha"),
        default=0.05,
        help="significance level of the variant comparisons (McNemar or Fisher, default 0.05)",
    )
    parser.add_argument(
        "--confidence",
        type=_fraction("--confidence"),
        default=0.95,
        help="confidence level of the Wilson pass-rate and Clopper-Pearson failure-rate "
        "intervals (default 0.95)",
    )
    parser.add_argument(
        "--title", default="pytest-pto rounds", help="heading of the Markdown and HTML report"
    )
    parser.add_argument(
        "--baseline-runs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="history over several runs: the first N runs are the baseline that new failure "
        "classes are judged against (default: every run but the last)",
    )
    parser.add_argument(
        "--artifact-url",
        metavar="URL",
        help="with --github and --format html: the link to the HTML report in the step "
        "summary (e.g. actions/upload-artifact's artifact-url output; default: the run's "
        "artifacts list)",
    )
    parser.add_argument(
        "--github",
        action="store_true",
        help="also emit a GitHub Actions ::error annotation per failed round (test, round, "
        "rank, outcome) on stdout and append the Markdown table to $GITHUB_STEP_SUMMARY",
    )
    parser.add_argument(
        "--max-annotations",
        type=_positive_int,
        default=50,
        metavar="N",
        help="at most N annotations with --github (default 50; GitHub shows only a few)",
    )
    parser.add_argument(
        "--fail-on-failure",
        action="store_true",
        help=f"exit {EXIT_FAILURES} when any round did not pass",
    )
    return parser


def provenance(data: JUnitData, argv: list[str]) -> dict[str, object]:
    """Where a report came from: the runs' seeds and pytest commands (testsuite properties
    ``pto.seed``/``pto.command`` written by the plugin), this command, the date (UTC) and
    the git commit of the checkout it ran in (None outside a git work tree)."""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(),
        "command": shlex.join([PROG, *argv]),
        "seeds": data.suite_props.get("pto.seed", []),
        "runs": data.suite_props.get("pto.command", []),
        "inputs": [str(p) for p in data.files],
    }


def _markdown_provenance(prov: dict[str, object]) -> str:
    def listed(value: object) -> str:
        items = value if isinstance(value, list) else []
        return ", ".join(f"`{v}`" for v in items) if items else "not recorded"

    lines = [
        "",
        "<details><summary>provenance</summary>",
        "",
        f"- date: {prov['date']}",
        f"- git commit: `{prov['git_commit'] or 'unknown (not a git work tree)'}`",
        f"- report command: `{prov['command']}`",
        f"- pytest command(s): {listed(prov['runs'])}",
        f"- seed(s) (--pto-seed): {listed(prov['seeds'])}",
        f"- inputs: {listed(prov['inputs'])}",
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    """Run ``pto-report``; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): keep argparse's message
        return int(exc.code) if isinstance(exc.code, int) else EXIT_BAD_INPUT

    output = Path(args.output) if args.output else None
    if output is not None:
        if output.is_dir():
            return _error(f"--output {output}: is a directory")
        if not output.parent.is_dir():
            return _error(f"--output {output}: directory {output.parent} does not exist")

    try:
        data, runs = read_runs(args.inputs)
    except ReportInputError as exc:
        return _error(str(exc))

    if not data.files:
        print(
            f"{PROG}: no JUnit XML files found in {' '.join(args.inputs)}; nothing reported",
            file=sys.stderr,
        )
        return EXIT_NO_DATA
    ignored = f"; {data.non_pto} testcases without pto.outcome ignored" if data.non_pto else ""
    if data.duplicates:
        names = ", ".join(str(p) for p in data.duplicates)
        ignored += f"; {len(data.duplicates)} file(s) named again and read once: {names}"
    print(
        f"{PROG}: {len(data.files)} file(s), {len(data.records)} pto rounds{ignored}",
        file=sys.stderr,
    )
    if not data.records:
        print(
            f"{PROG}: no pto rounds (no testcase has a pto.outcome property); nothing reported",
            file=sys.stderr,
        )
        return EXIT_NO_DATA

    rows = summarize(data.records, confidence=args.confidence)
    if args.baseline is not None and not any(r.variant == args.baseline for r in rows):
        known = sorted({r.variant for r in rows if r.variant is not None})
        return _error(
            f"--baseline {args.baseline}: no rounds of that variant; variants present: "
            + (", ".join(known) if known else "none")
        )
    comparisons = compare(rows, baseline=args.baseline, alpha=args.alpha, records=data.records)

    prov = provenance(data, list(sys.argv[1:] if argv is None else argv))
    hist = histories(runs, alpha=args.alpha, baseline_runs=args.baseline_runs)
    if args.format == "html":
        text = render_html(
            rows,
            comparisons,
            data.records,
            runs=runs,
            histories=hist,
            concentrations=concentrations(data.records, alpha=args.alpha),
            title=args.title,
            provenance=prov,
            alpha=args.alpha,
        )
    elif args.format == "json":
        text = json.dumps({**to_json(rows, comparisons), "provenance": prov}, indent=2) + "\n"
    elif args.format == "markdown":
        text = render_markdown(rows, comparisons, title=args.title)
        text += render_history_markdown(hist, runs) + _markdown_provenance(prov)
    else:
        text = render_text(rows, comparisons) + render_history_text(hist, runs)

    if args.github:
        emit_annotations(data.records, sys.stdout, max_annotations=args.max_annotations)
        try:
            summary_md = render_markdown(rows, comparisons, title=args.title)
            if args.format == "html" and output is not None:
                summary_md += html_report_link(output.name, args.artifact_url)
            summary = append_step_summary(summary_md)
        except OSError as exc:  # the report itself is fine: warn, do not lose it
            print(f"{PROG}: GITHUB_STEP_SUMMARY: cannot append: {exc}", file=sys.stderr)
        else:
            if summary is None:
                print(f"{PROG}: GITHUB_STEP_SUMMARY is not set; no step summary", file=sys.stderr)

    if output is not None:
        try:
            write_text_atomic(output, text)
        except OSError as exc:  # OutputError names the path and the cause
            return _error(f"--output {exc}")
        print(f"{PROG}: wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()

    if args.fail_on_failure and any(not r.passed for r in data.records):
        return EXIT_FAILURES
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
