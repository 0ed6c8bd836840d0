"""Runs over time: each test's failure rate per run, the run where it changed, new classes.

A **run** is the rounds of one commit: the JUnit files whose testsuite property
``pto.commit`` (written by the plugin from ``git rev-parse HEAD``) names the same commit are
one run (a CI matrix of jobs on one commit adds up); a file without ``pto.commit`` is a run
of its own. Runs are ordered by their ``pto.timestamp`` (the earliest of their files; the
plugin writes the session's start in UTC), runs without one after them in input order.

For every population (test, variant, rank count) with rounds in at least two runs:

- the failure rate per run (failing product rounds / product rounds, as the table counts);
- the **change point**: the split of its runs into "before" and "from run j on" that best
  separates the failure rates (largest binomial likelihood ratio), tested with the report's
  between-variant test (:func:`pytest_pto.report._aggregate.compare`: rounds of different runs are
  unpaired, so Fisher's exact test). Choosing the best of ``m - 1`` splits and testing it
  is a multiple comparison: the p-value is multiplied by ``m - 1`` (Bonferroni) before it is
  compared with alpha, so a stable test has a false "changed at run j" at most alpha of the
  time;
- **new failure classes**: classes in the runs after the baseline runs that no baseline run
  of that population had (by default the baseline is every run but the last;
  ``--baseline-runs N`` makes it the first N).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_pto._vocabulary import RoundRecord, outcome_sort_key
from pytest_pto.report._aggregate import Comparison, SummaryRow, compare
from pytest_pto.report._junit_read import JUnitData, expand_inputs, read_junit
from pytest_pto.report._render import format_p

__all__ = [
    "ChangePoint",
    "Run",
    "TestHistory",
    "histories",
    "read_runs",
    "render_history_markdown",
    "render_history_text",
]

PopKey = tuple[str, "str | None", "int | None"]


@dataclass
class Run:
    """The rounds of one commit (or of one file without ``pto.commit``)."""

    commit: str | None
    timestamp: str | None
    files: list[Path] = field(default_factory=list)
    records: list[RoundRecord] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Short commit and time, else the file name."""
        head = self.commit[:12] if self.commit else self.files[0].name
        return f"{head} {self.timestamp}" if self.timestamp else head


def read_runs(paths: Iterable[str | os.PathLike[str]]) -> tuple[JUnitData, list[Run]]:
    """Read the inputs (as :func:`pytest_pto.report._junit_read.read_junit_files`, same errors) and
    group their records into runs, oldest first."""
    data = JUnitData()
    seen: set[tuple[int, int]] = set()
    runs: dict[str, Run] = {}
    order: dict[str, int] = {}
    for p in expand_inputs(list(paths)):
        part = read_junit(p, seen)
        data.extend(part)
        if not part.files:
            continue  # a file named again
        commits = [c for c in part.suite_props.get("pto.commit", []) if c]
        commit = commits[0] if commits else None
        stamps = sorted(s for s in part.suite_props.get("pto.timestamp", []) if s)
        key = f"commit:{commit}" if commit else f"file:{p}"
        run = runs.get(key)
        if run is None:
            run = runs[key] = Run(commit=commit, timestamp=None)
            order[key] = len(order)
        run.files.append(p)
        run.records += part.records
        if stamps and (run.timestamp is None or stamps[0] < run.timestamp):
            run.timestamp = stamps[0]
    ordered = sorted(
        runs,
        key=lambda k: (0, runs[k].timestamp, order[k]) if runs[k].timestamp else (1, "", order[k]),
    )
    return data, [runs[k] for k in ordered]


@dataclass(frozen=True)
class ChangePoint:
    """The failure rate changed at run ``run`` (0-based index into the runs): ``comparison``
    is the test of the runs before against the runs from it on; ``p_adjusted`` its p-value
    times the ``candidates`` splits that were tried."""

    run: int
    comparison: Comparison
    p_adjusted: float
    candidates: int

    @property
    def significant(self) -> bool:
        return self.p_adjusted < self.comparison.alpha

    @property
    def rate_before(self) -> float:
        c = self.comparison
        return c.failed_a / c.rounds_a if c.rounds_a else 0.0

    @property
    def rate_after(self) -> float:
        c = self.comparison
        return c.failed_b / c.rounds_b if c.rounds_b else 0.0


@dataclass(frozen=True)
class TestHistory:
    """One population over the runs: ``points[i]`` is ``(failed, product rounds)`` in run i
    (None: no rounds there), ``classes[i]`` its failure classes with their rounds."""

    __test__ = False  # not a pytest test class

    test: str
    variant: str | None
    ranks: int | None
    points: list[tuple[int, int] | None]
    classes: list[dict[str, int]]
    change: ChangePoint | None
    new_classes: dict[str, int]
    known_classes: dict[str, int]
    baseline_runs: int

    @property
    def name(self) -> str:
        out = self.test + (f" [{self.variant}]" if self.variant else "")
        return out + (f" (ranks {self.ranks})" if self.ranks is not None else "")


def _loglik(k: int, n: int) -> float:
    if n == 0 or k in (0, n):
        return 0.0
    p = k / n
    return k * math.log(p) + (n - k) * math.log1p(-p)


def _change_point(
    key: PopKey, points: Sequence[tuple[int, int] | None], alpha: float
) -> ChangePoint | None:
    present = [(i, p) for i, p in enumerate(points) if p is not None and p[1] > 0]
    if len(present) < 2:
        return None
    k_all = sum(p[0] for _, p in present)
    n_all = sum(p[1] for _, p in present)
    if k_all in (0, n_all):
        return None  # never failed, or always failed: nothing changed
    best, best_gain = 1, -math.inf
    k_b = n_b = 0
    for j in range(1, len(present)):
        k_b += present[j - 1][1][0]
        n_b += present[j - 1][1][1]
        gain = _loglik(k_b, n_b) + _loglik(k_all - k_b, n_all - n_b)
        if gain > best_gain:
            best, best_gain = j, gain
    k_b = sum(p[0] for _, p in present[:best])
    n_b = sum(p[1] for _, p in present[:best])
    test, _, ranks = key
    rows = [
        _row(test, ranks, "runs before", k_b, n_b),
        _row(test, ranks, "runs after", k_all - k_b, n_all - n_b),
    ]
    comparison = compare(rows, alpha=alpha)[0]
    candidates = len(present) - 1
    return ChangePoint(
        run=present[best][0],
        comparison=comparison,
        p_adjusted=min(1.0, comparison.p_value * candidates),
        candidates=candidates,
    )


def _row(test: str, ranks: int | None, label: str, failed: int, n: int) -> SummaryRow:
    """The counts :func:`compare` reads (the intervals are not used by the comparison)."""
    return SummaryRow(
        test=test,
        variant=label,
        rounds=n,
        passed=n - failed,
        failed=failed,
        outcomes={},
        pass_low=0.0,
        pass_high=1.0,
        ranks=ranks,
    )


def histories(
    runs: Sequence[Run], alpha: float = 0.05, baseline_runs: int | None = None
) -> list[TestHistory]:
    """Every population with rounds in at least two runs, in first-seen order."""
    if len(runs) < 2:
        return []
    base_n = len(runs) - 1 if baseline_runs is None else max(1, min(baseline_runs, len(runs) - 1))
    counts: dict[PopKey, list[list[int]]] = {}
    classes: dict[PopKey, list[dict[str, int]]] = {}
    for i, run in enumerate(runs):
        for rec in run.records:
            key: PopKey = (rec.test, rec.variant, rec.ranks)
            per = counts.get(key)
            if per is None:
                per = counts[key] = [[0, 0] for _ in runs]
                classes[key] = [{} for _ in runs]
            if rec.passed:
                per[i][1] += 1
                continue
            cl = classes[key][i]
            cl[rec.outcome] = cl.get(rec.outcome, 0) + 1
            if not rec.infra:
                per[i][0] += 1
                per[i][1] += 1
    out = []
    for key, per in counts.items():
        present = [(k, n) if n else None for k, n in per]
        if sum(1 for p in present if p is not None) < 2:
            continue
        seen = {c for cl in classes[key][:base_n] for c in cl}
        recent: dict[str, int] = {}
        for cl in classes[key][base_n:]:
            for c, n in cl.items():
                recent[c] = recent.get(c, 0) + n
        order = sorted(recent, key=outcome_sort_key)
        test, variant, ranks = key
        out.append(
            TestHistory(
                test=test,
                variant=variant,
                ranks=ranks,
                points=present,
                classes=classes[key],
                change=_change_point(key, present, alpha),
                new_classes={c: recent[c] for c in order if c not in seen},
                known_classes={c: recent[c] for c in order if c in seen},
                baseline_runs=base_n,
            )
        )
    return out


def change_text(h: TestHistory, runs: Sequence[Run]) -> str:
    """One sentence on the change point of ``h`` (or that there is none)."""
    ch = h.change
    if ch is None:
        return "no change to test (the failure rate is 0 % or 100 % in every run)"
    c = ch.comparison
    where = f"run {ch.run + 1} ({runs[ch.run].label})"
    rates = (
        f"{c.failed_a}/{c.rounds_a} ({100 * ch.rate_before:.1f} %) before, "
        f"{c.failed_b}/{c.rounds_b} ({100 * ch.rate_after:.1f} %) from it on"
    )
    test = (
        f"{c.method_text}, p = {format_p(c.p_value)}, x {ch.candidates} candidate runs "
        f"(Bonferroni): {format_p(ch.p_adjusted)}"
    )
    if ch.significant:
        return f"changed at {where}: {rates}; {test} < {c.alpha:g}"
    return f"no significant change (largest at {where}: {rates}; {test})"


def _series(h: TestHistory, last: int = 12) -> str:
    shown = [f"{p[0]}/{p[1]}" if p else "-" for p in h.points[-last:]]
    more = f"... {len(h.points) - last} earlier runs, " if len(h.points) > last else ""
    return more + " ".join(shown)


def _classes_text(classes: dict[str, int]) -> str:
    return ", ".join(f"{c} ({n})" for c, n in classes.items()) or "none"


def _lines(hist: Sequence[TestHistory], runs: Sequence[Run]) -> list[str]:
    base = hist[0].baseline_runs if hist else len(runs) - 1
    lines = [
        f"{len(runs)} runs, oldest first: "
        + ", ".join(r.label for r in runs[:3])
        + (f", ... {runs[-1].label}" if len(runs) > 3 else ""),
        f"baseline: runs 1-{base}; new failure classes: seen after the baseline, never on it",
    ]
    for h in hist:
        lines += [
            "",
            f"{h.name}",
            f"  failed/rounds per run: {_series(h)}",
            f"  {change_text(h, runs)}",
            f"  new failure classes: {_classes_text(h.new_classes)}; "
            f"also on the baseline: {_classes_text(h.known_classes)}",
        ]
    return lines


def render_history_text(hist: Sequence[TestHistory], runs: Sequence[Run]) -> str:
    """The history section of the text report (empty with fewer than two runs)."""
    if len(runs) < 2:
        return ""
    return "\n".join(["", "history: failure rate over runs", *_lines(hist, runs)]) + "\n"


def render_history_markdown(hist: Sequence[TestHistory], runs: Sequence[Run]) -> str:
    """The same as Markdown (a fenced block keeps the columns)."""
    if len(runs) < 2:
        return ""
    return (
        "\n".join(
            ["", "#### History: failure rate over runs", "", "```", *_lines(hist, runs), "```"]
        )
        + "\n"
    )
