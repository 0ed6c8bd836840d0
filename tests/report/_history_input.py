"""Hand-built JUnit files of whole runs for the history, concentration and HTML tests.

Each file is what the plugin writes (pytest's structure, the docs/design.md section 4
round properties, ``pto.commit``/``pto.timestamp`` testsuite properties), built here from a
list of :class:`Round` so a test states exactly which round failed how, on which device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr


@dataclass(frozen=True)
class Round:
    outcome: str = "passed"
    variant: str | None = None
    test: str = "test_allreduce"
    round: int = 1
    devices: tuple[int, ...] = (0, 1)
    failed_rank: int | None = None
    host: str | None = "node0"
    skew_ms: float = 12.5
    text: str = ""


def write_run(
    path: Path,
    rounds: Sequence[Round],
    *,
    commit: str | None = None,
    timestamp: str | None = None,
) -> Path:
    cases = []
    for r in rounds:
        props = {
            "pto.outcome": r.outcome,
            "pto.round": str(r.round),
            "pto.ranks": str(len(r.devices)),
            "pto.devices": ",".join(map(str, r.devices)),
            "pto.init_skew_ms": f"{r.skew_ms:.3f}",
            "pto.verdict": "product",
        }
        if r.variant:
            props["pto.variant"] = r.variant
        if r.host:
            props["pto.host"] = r.host
        if r.failed_rank is not None:
            props["pto.failed_rank"] = str(r.failed_rank)
        body = "".join(
            f"<property name={quoteattr(k)} value={quoteattr(v)} />" for k, v in props.items()
        )
        failure = ""
        if r.outcome != "passed":
            text = r.text or f"{r.outcome}: rank {r.failed_rank}: round {r.round} failed"
            failure = (
                f"<failure message={quoteattr(text.splitlines()[0])} type={quoteattr(r.outcome)}>"
                f"{escape(text)}</failure>"
            )
        params = "-".join(p for p in (r.variant, f"round-{r.round}") if p)
        cases.append(
            f'<testcase classname="tests.test_coll" name="{r.test}[{params}]" time="1.250">'
            f"<properties>{body}</properties>{failure}</testcase>"
        )
    suite = ""
    if commit:
        suite += f'<property name="pto.commit" value={quoteattr(commit)} />'
    if timestamp:
        suite += f'<property name="pto.timestamp" value={quoteattr(timestamp)} />'
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
        f'tests="{len(cases)}"><properties>{suite}</properties>{"".join(cases)}'
        "</testsuite></testsuites>"
    )
    return path


def rounds(n: int, failing: Sequence[int] = (), outcome: str = "hang", **kw: object) -> list[Round]:
    """``n`` rounds of one test, those numbered in ``failing`` (1-based) failing on rank 1."""
    return [
        Round(
            outcome=outcome if k in failing else "passed",
            round=k,
            failed_rank=1 if k in failing else None,
            **kw,  # type: ignore[arg-type]
        )
        for k in range(1, n + 1)
    ]
