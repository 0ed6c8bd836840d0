"""Terminal glue: round records from reports, a progress tally, the end-of-session table.

Records are built from reports (``pto.*`` user properties, read by the vocabulary's one
reader), never from items, so the same code works in a plain session and in the xdist
controller. Counting and rendering are the report wing's, shared with ``pto-report``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_pto._vocabulary import (
    PropertyError,
    RoundRecord,
    outcome_sort_key,
    properties_dict,
    round_record,
)
from pytest_pto.report._aggregate import compare, summarize
from pytest_pto.report._render import render_text

__all__ = ["SummaryCollector", "tally_text"]


def tally_text(counts: Counter[str]) -> str:
    parts = sorted(counts.items(), key=lambda kv: outcome_sort_key(kv[0]))
    return ", ".join(f"{n} {name}" for name, n in parts)


@dataclass
class SummaryCollector:
    """One record per round, first report that carries ``pto.outcome`` wins."""

    records: list[RoundRecord] = field(default_factory=list)
    events: list[tuple[RoundRecord, list[dict[str, Any]]]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _tallies: dict[tuple[str, str | None], Counter[str]] = field(default_factory=dict)

    def add(self, report: pytest.TestReport) -> tuple[RoundRecord, Counter[str], int] | None:
        """Record ``report``'s round if it is the first report with an outcome; returns the
        record, the running tally of its (test, variant) and the session's rounds per test."""
        if report.nodeid in self._seen:
            return None
        # only TestReports carry user_properties; another plugin may log a CollectReport here
        props = properties_dict(getattr(report, "user_properties", None) or ())
        raw = props.get("pto.outcome")
        if raw is None or not raw.strip():
            return None
        message = ""
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            message = str(crash.message).splitlines()[0] if crash.message else ""
        fspath, lineno = report.location[0], report.location[1]
        try:  # lenient: a conftest's own bad pto.* value is not ours to reject here
            record = round_record(
                props,
                report.nodeid,
                strict=False,
                duration_s=report.duration,
                message=message,
                file=fspath,
                line=lineno + 1 if isinstance(lineno, int) else None,
            )
        except PropertyError:  # not ours (a conftest's own pto.outcome): nothing to count
            return None
        self._seen.add(report.nodeid)
        self.records.append(record)
        events = getattr(report, "pto_events", None)
        if events:
            self.events.append((record, list(events)))
        tally = self._tallies.setdefault((record.test, record.variant), Counter())
        tally[record.outcome] += 1
        return record, tally, record.rounds or 1

    def render(self) -> str:
        """The table, what each row proves, and the variant comparisons (paired when the
        rounds are: same round index and seed)."""
        rows = summarize(self.records)
        return render_text(rows, compare(rows, records=self.records))
