"""Terminal glue: round records from reports, a progress tally, the end-of-session table.

Records are built from reports (``pto.*`` user properties), never from items, so the same code
works in a plain session and in the xdist controller. Rendering is
:mod:`pytest_pto.report._aggregate`'s, shared with ``pto-report``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_pto._junit_props import properties_dict
from pytest_pto.outcomes import outcome_sort_key
from pytest_pto.report._aggregate import (
    RoundRecord,
    base_test_id,
    compare,
    parse_outcome,
    render_text,
    summarize,
)

__all__ = ["SummaryCollector", "tally_text"]


def tally_text(counts: Counter[str]) -> str:
    parts = sorted(counts.items(), key=lambda kv: outcome_sort_key(kv[0]))
    return ", ".join(f"{n} {name}" for name, n in parts)


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


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
        try:
            outcome = parse_outcome(raw)
        except ValueError:  # not ours (a conftest's own property): nothing to count
            return None
        self._seen.add(report.nodeid)
        variant = props.get("pto.variant")
        test, rnd = base_test_id(report.nodeid, variant)
        message = ""
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            message = str(crash.message).splitlines()[0] if crash.message else ""
        fspath, lineno = report.location[0], report.location[1]
        record = RoundRecord(
            test=test,
            variant=variant,
            round=_int(props.get("pto.round")) or rnd or 1,
            outcome=outcome,
            ranks=_int(props.get("pto.ranks")),
            rank=_int(props.get("pto.failed_rank")),
            error_code=_int(props.get("pto.error_code")),
            init_skew_ms=_float(props.get("pto.init_skew_ms")),
            init_skew_partial=props.get("pto.init_skew_partial") == "true",
            duration_s=report.duration,
            message=message,
            file=fspath,
            line=lineno + 1 if isinstance(lineno, int) else None,
            verdict=props.get("pto.verdict"),
            seed=props.get("pto.seed"),
            decision=props.get("pto.decision"),
            target_fail_rate=_float(props.get("pto.target_fail_rate")),
        )
        self.records.append(record)
        events = getattr(report, "pto_events", None)
        if events:
            self.events.append((record, list(events)))
        tally = self._tallies.setdefault((test, variant), Counter())
        tally[outcome] += 1
        return record, tally, _int(props.get("pto.rounds")) or 1

    def render(self) -> str:
        """The table, what each row proves, and the variant comparisons (paired when the
        rounds are: same round index and seed)."""
        rows = summarize(self.records)
        return render_text(rows, compare(rows, records=self.records))
