"""``pto-report --format html``: one self-contained page (inline CSS, SVG and a few lines of
script; nothing fetched when it opens) answering what reviewers and CI owners ask of rounds.

Sections (each an element with a fixed ``id``; the browser test looks for them):

- ``summary``: the text report's table (same rows, Wilson pass-rate interval,
  Clopper-Pearson failure-rate interval and statement) with a stacked bar of outcome classes
  per row;
- ``comparisons``: the between-variant tests of the text report (McNemar / Fisher);
- ``history`` (two runs or more): failure rate per run per test, the change point, new
  failure classes (:mod:`pytest_pto.report._history`);
- ``concentration``: failure classes concentrated on a device or host beyond chance, Holm
  corrected (:mod:`pytest_pto.report._concentration`);
- ``tests``: per test and variant, the outcome bar, init-skew and round-duration
  histograms, failures by device and by host (a heat map above 8 devices) and the failing
  rounds, each linked to its failure text, rank and captured-output tail.

The page stays small whatever the input: everything is aggregated; failing rounds are listed
at most :data:`MAX_FAILING_ROUNDS` per row, each text cut to :data:`TEXT_CHARS` characters.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from html import escape

from pytest_pto._vocabulary import RoundRecord, is_infra, outcome_sort_key
from pytest_pto.report._aggregate import Comparison, SummaryRow
from pytest_pto.report._concentration import Concentration
from pytest_pto.report._history import Run, TestHistory, change_text
from pytest_pto.report._render import failing_ranks_text, format_p, statement
from pytest_pto.report._svg import class_color, heatmap, histogram, rate_series, stacked_bar

__all__ = ["MAX_FAILING_ROUNDS", "TEXT_CHARS", "render_html"]

MAX_FAILING_ROUNDS = 25
TEXT_CHARS = 1500
HEATMAP_DEVICES = 8

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;
  background:#fafafa}
header{background:#23395b;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;opacity:.85;font-size:12px}
nav{padding:8px 24px;background:#e8edf3;font-size:13px}
nav a{margin-right:14px}
main{padding:8px 24px 40px}
section{margin:18px 0}
h2{font-size:17px;border-bottom:1px solid #ccd;padding-bottom:3px}
table{border-collapse:collapse;font-size:12.5px;background:#fff}
th,td{border:1px solid #dde;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef1f6}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.r{white-space:nowrap;font-variant-numeric:tabular-nums}
.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px;margin:12px 0}
.card h3{font-size:14.5px;margin:0 0 6px}
.grid{display:flex;flex-wrap:wrap;gap:18px}
.grid>div{min-width:300px}
.muted{color:#666;font-size:12px}
.sig{color:#b52b27;font-weight:600}
.legend span{display:inline-block;margin-right:10px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
pre{background:#f4f4f4;padding:6px;max-height:260px;overflow:auto;font-size:11.5px;
  white-space:pre-wrap}
details>summary{cursor:pointer}
#filter{margin:8px 0;padding:4px;width:320px}
.hist{display:grid;grid-template-columns:repeat(auto-fill,minmax(680px,1fr));gap:0 14px}
.new{color:#b52b27;font-weight:600}
"""

_SCRIPT = """
(function () {
  var box = document.getElementById("filter");
  if (box) {
    box.addEventListener("input", function () {
      var q = box.value.toLowerCase();
      document.querySelectorAll("[data-test]").forEach(function (el) {
        el.style.display = el.getAttribute("data-test").toLowerCase().indexOf(q) >= 0 ? "" : "none";
      });
    });
  }
  if (location.hash) {
    var target = document.getElementById(location.hash.slice(1));
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  document.body.setAttribute("data-pto-ready", "1");
})();
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _name(test: str, variant: str | None, ranks: int | None) -> str:
    out = test + (f" [{variant}]" if variant else "")
    return out + (f" (ranks {ranks})" if ranks is not None else "")


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _p(p: float) -> str:
    return "< 1e-15" if p < 1e-15 else format_p(p)


class _RowData:
    """What the page shows of one row, gathered in one pass over the records."""

    def __init__(self) -> None:
        self.skews: list[float] = []
        self.partial_skews = 0
        self.durations: list[float] = []
        self.device_rounds: dict[int, int] = defaultdict(int)
        self.device_fail: dict[tuple[int, str], int] = defaultdict(int)
        self.host_rounds: dict[str, int] = defaultdict(int)
        self.host_fail: dict[tuple[str, str], int] = defaultdict(int)
        self.failing: list[RoundRecord] = []
        self.failing_total = 0


def _gather(records: Sequence[RoundRecord]) -> dict[tuple[str, str | None, int | None], _RowData]:
    out: dict[tuple[str, str | None, int | None], _RowData] = defaultdict(_RowData)
    for rec in records:
        d = out[(rec.test, rec.variant, rec.ranks)]
        if rec.init_skew_ms is not None:
            d.skews.append(rec.init_skew_ms)
            d.partial_skews += rec.init_skew_partial
        if rec.duration_s is not None:
            d.durations.append(rec.duration_s)
        for dev in rec.devices:
            d.device_rounds[dev] += 1
        if rec.host:
            d.host_rounds[rec.host] += 1
        if rec.passed:
            continue
        if rec.devices and rec.rank is not None and 0 <= rec.rank < len(rec.devices):
            d.device_fail[(rec.devices[rec.rank], rec.outcome)] += 1
        if rec.host:
            d.host_fail[(rec.host, rec.outcome)] += 1
        d.failing_total += 1
        if len(d.failing) < MAX_FAILING_ROUNDS:
            d.failing.append(rec)
    return out


def _legend(classes: Sequence[str], failure_classes: Sequence[str]) -> str:
    items = [
        f'<span><i style="background:{class_color(c, failure_classes, is_infra(c))}"></i>'
        f"{_e(c)}</span>"
        for c in classes
    ]
    return f'<div class="legend">{"".join(items)}</div>'


def _bar(row: SummaryRow, failure_classes: Sequence[str], width: int = 420) -> str:
    segments = [
        (c, n, class_color(c, failure_classes, is_infra(c))) for c, n in row.outcomes.items()
    ]
    return stacked_bar(segments, width=width)


def _summary(rows: Sequence[SummaryRow], failure_classes: Sequence[str], ids: list[str]) -> str:
    conf = rows[0].confidence if rows else 0.95
    head = (
        "<tr><th>test</th><th>variant</th><th>ranks</th><th>rounds</th><th>pass</th>"
        f"<th>failing</th><th>infra</th><th>pass rate [{conf:.0%} Wilson]</th>"
        f"<th>failure rate [{conf:.0%} Clopper-Pearson]</th><th>outcome classes</th></tr>"
    )
    body = []
    for r, rid in zip(rows, ids, strict=True):
        n = r.product_rounds
        pass_rate = f"{_pct(r.passed / n)} [{_pct(r.pass_low)}, {_pct(r.pass_high)}]" if n else "-"
        fail_rate = f"{_pct(r.failed / n)} [{_pct(r.fail_low)}, {_pct(r.fail_high)}]" if n else "-"
        body.append(
            f'<tr data-test="{_e(_name(r.test, r.variant, r.ranks))}">'
            f'<td><a href="#{rid}">{_e(r.test)}</a></td><td>{_e(r.variant or "-")}</td>'
            f'<td class="n">{_e(r.ranks if r.ranks is not None else "-")}</td>'
            f'<td class="n">{r.rounds}</td><td class="n">{r.passed}</td>'
            f'<td class="n">{r.failed}</td><td class="n">{r.infra}</td>'
            f'<td class="r">{pass_rate}</td><td class="r">{fail_rate}</td>'
            f"<td>{_bar(r, failure_classes, 160)}</td></tr>"
        )
    all_classes = sorted({c for r in rows for c in r.outcomes}, key=outcome_sort_key)
    return (
        '<section id="summary"><h2>Rounds per test and variant</h2>'
        '<input id="filter" type="search" placeholder="filter tests" aria-label="filter tests">'
        f"{_legend(all_classes, failure_classes)}<table>{head}{''.join(body)}</table>"
        '<p class="muted">pass rate: Wilson score interval; failure rate: exact '
        "Clopper-Pearson interval; infrastructure outcomes (infra) are outside both and "
        "outside the comparisons, as in the text report.</p></section>"
    )


def _comparisons(comparisons: Sequence[Comparison]) -> str:
    if not comparisons:
        return (
            '<section id="comparisons"><h2>Variant comparisons</h2>'
            '<p class="muted">no test has two variants: nothing to compare.</p></section>'
        )
    alpha = comparisons[0].alpha
    rows = []
    for c in comparisons:
        sig = f'<span class="sig">yes (p &lt; {c.alpha:g})</span>' if c.significant else "no"
        rows.append(
            f'<tr data-test="{_e(c.test)}"><td>{_e(c.test)}</td>'
            f'<td class="n">{_e(c.ranks if c.ranks is not None else "-")}</td>'
            f"<td>{_e(c.variant_a or '-')}</td><td>{_e(c.variant_b or '-')}</td>"
            f'<td class="n">{c.failed_a}/{c.rounds_a}</td>'
            f'<td class="n">{c.failed_b}/{c.rounds_b}</td>'
            f'<td class="n">{_e(format_p(c.p_value))}</td><td>{_e(c.method_text)}</td>'
            f"<td>{sig}</td></tr>"
        )
    return (
        '<section id="comparisons"><h2>Variant comparisons</h2>'
        f'<p class="muted">failure rates; McNemar\'s exact test on paired rounds (same round '
        f"and seed), else Fisher's exact test; two-sided, alpha {alpha:g}, not adjusted for "
        "multiple comparisons.</p><table><tr><th>test</th><th>ranks</th><th>variant A</th>"
        "<th>variant B</th><th>fail A</th><th>fail B</th><th>p</th><th>test</th>"
        f"<th>significant</th></tr>{''.join(rows)}</table></section>"
    )


def _history(hist: Sequence[TestHistory], runs: Sequence[Run]) -> str:
    if len(runs) < 2:
        return (
            '<section id="history"><h2>History over runs</h2><p class="muted">one run in the '
            "input: give the JUnit files of several runs (one per CI run or commit) for a "
            "history.</p></section>"
        )
    base = hist[0].baseline_runs if hist else len(runs) - 1
    run_rows = "".join(
        f'<tr><td class="n">{i + 1}</td><td>{_e(r.commit or "-")}</td>'
        f'<td>{_e(r.timestamp or "-")}</td><td class="n">{len(r.records)}</td>'
        f"<td>{_e(', '.join(p.name for p in r.files[:3]))}"
        f"{' ...' if len(r.files) > 3 else ''}</td></tr>"
        for i, r in enumerate(runs)
    )
    cards = []
    for h in hist:
        ch = h.change
        labels = [r.label for r in runs]
        points = [
            (labels[i], p[0], p[1]) if p is not None else None for i, p in enumerate(h.points)
        ]
        mark = ch.run if ch is not None and ch.significant else None
        levels = (ch.rate_before, ch.rate_after) if mark is not None and ch is not None else None
        chart = rate_series(points, change=mark, levels=levels)
        cls = "sig" if ch is not None and ch.significant else ""
        new = (
            ", ".join(f'<span class="new">{_e(c)}</span> ({n})' for c, n in h.new_classes.items())
            or "none"
        )
        known = ", ".join(f"{_e(c)} ({n})" for c, n in h.known_classes.items()) or "none"
        cards.append(
            f'<div class="card" data-test="{_e(h.name)}"><h3>{_e(h.name)}</h3>{chart}'
            f'<p class="{cls}">{_e(change_text(h, runs))}</p>'
            f"<p>new failure classes (after the baseline, never on it): {new}<br>"
            f"failure classes also seen on the baseline: {known}</p></div>"
        )
    return (
        '<section id="history"><h2>History over runs</h2>'
        f'<p class="muted">{len(runs)} runs (one per commit, ordered by the run timestamp); '
        f"baseline: runs 1-{base}. The change point is the split of the runs that best "
        "separates the failure rates, tested with Fisher's exact test (the between-variant "
        "test for unpaired rounds), its p-value multiplied by the number of splits tried "
        "(Bonferroni).</p>"
        "<details><summary>runs</summary><table><tr><th>run</th><th>commit</th><th>time</th>"
        f"<th>rounds</th><th>files</th></tr>{run_rows}</table></details>"
        f'<div class="hist">{"".join(cards)}</div></section>'
    )


def _concentration(found: Sequence[Concentration], alpha: float) -> str:
    significant = [c for c in found if c.significant]
    tested = len(found)
    if significant:
        items = "".join(
            f'<li class="sig" data-test="{_e(c.test)}">{_e(c.text())}</li>' for c in significant
        )
        body = f"<ul>{items}</ul>"
    else:
        body = (
            f"<p>no failure class is concentrated on a device or host beyond chance "
            f"({tested} tests, Holm-adjusted, alpha {alpha:g}).</p>"
        )
    return (
        '<section id="concentration"><h2>Failures concentrated on a device or host</h2>'
        '<p class="muted">per test, variant and failure class: each device (the device of '
        "the failing rank) and each host against its share of the rounds, one-sided exact "
        "binomial test, Holm's correction over all devices and hosts of the test.</p>"
        f"{body}</section>"
    )


def _units_table(
    title: str,
    units: Sequence[str],
    rounds: dict[str, int],
    fails: dict[tuple[str, str], int],
    classes: Sequence[str],
) -> str:
    if not units:
        return f'<div><h4>{_e(title)}</h4><p class="muted">not recorded</p></div>'
    head = "".join(f"<th>{_e(c)}</th>" for c in classes)
    body = "".join(
        f'<tr><td>{_e(u)}</td><td class="n">{rounds[u]}</td>'
        + "".join(f'<td class="n">{fails.get((u, c), 0) or ""}</td>' for c in classes)
        + "</tr>"
        for u in units
    )
    return (
        f"<div><h4>{_e(title)}</h4><table><tr><th>{_e(title.rsplit(maxsplit=1)[-1])}</th><th>rounds</th>"
        f"{head}</tr>{body}</table></div>"
    )


def _devices(d: _RowData, classes: Sequence[str]) -> str:
    devices = sorted(d.device_rounds)
    if len(devices) > HEATMAP_DEVICES and classes:
        cells = [
            [(d.device_fail.get((dev, c), 0), d.device_rounds[dev]) for c in classes]
            for dev in devices
        ]
        return (
            "<div><h4>failures by device</h4>"
            + heatmap([f"device {x}" for x in devices], list(classes), cells)
            + '<p class="muted">shade: failing rounds of the class charged to the device / '
            "rounds on it</p></div>"
        )
    return _units_table(
        "failures by device",
        [str(x) for x in devices],
        {str(k): v for k, v in d.device_rounds.items()},
        {(str(k[0]), k[1]): v for k, v in d.device_fail.items()},
        classes,
    )


def _failing(d: _RowData, rid: str) -> str:
    if not d.failing_total:
        return ""
    items = []
    for i, rec in enumerate(d.failing):
        aid = f"{rid}-f{i + 1}"
        rank = f"rank {rec.rank}" if rec.rank is not None else "rank unknown"
        dev = (
            f", device {rec.devices[rec.rank]}"
            if rec.devices and rec.rank is not None and 0 <= rec.rank < len(rec.devices)
            else ""
        )
        host = f", host {rec.host}" if rec.host else ""
        text = rec.text or rec.message or "(no failure text in the JUnit)"
        if len(text) > TEXT_CHARS:
            text = text[:TEXT_CHARS] + f"\n... ({len(text) - TEXT_CHARS} more characters)"
        log = (
            f"<p>captured output (tail):</p><pre>{_e(rec.log[-TEXT_CHARS:])}</pre>"
            if rec.log
            else ""
        )
        where = f" ({_e(rec.file)})" if rec.file else ""
        items.append(
            f'<li><a href="#{aid}">round {rec.round}: {_e(rec.outcome)}, {_e(rank)}'
            f"{_e(dev)}{_e(host)}</a>"
            f'<details id="{aid}"><summary>failure text{where}</summary>'
            f"<pre>{_e(text)}</pre>{log}</details></li>"
        )
    more = (
        f'<p class="muted">{d.failing_total - len(d.failing)} more failing rounds not listed '
        f"(the first {MAX_FAILING_ROUNDS} are).</p>"
        if d.failing_total > len(d.failing)
        else ""
    )
    head = f"<h4>failing rounds ({d.failing_total})</h4>"
    return f'{head}<ol class="failing">{"".join(items)}</ol>{more}'


def _row_comparisons(row: SummaryRow, comparisons: Sequence[Comparison]) -> str:
    """This row's variant tests (the ones of the comparisons section that involve it)."""
    items = []
    for c in comparisons:
        if (c.test, c.ranks) != (row.test, row.ranks) or row.variant not in (
            c.variant_a,
            c.variant_b,
        ):
            continue
        verdict = (
            f'<span class="sig">significant (p &lt; {c.alpha:g})</span>'
            if c.significant
            else "not significant"
        )
        items.append(
            f"<li>{_e(c.variant_a or '-')} {c.failed_a}/{c.rounds_a} vs {_e(c.variant_b or '-')}"
            f" {c.failed_b}/{c.rounds_b}: p = {_e(format_p(c.p_value))} "
            f"({_e(c.method_text)}), {verdict}</li>"
        )
    return f'<ul class="cmp">{"".join(items)}</ul>' if items else ""


def _card(
    row: SummaryRow,
    d: _RowData,
    rid: str,
    failure_classes: Sequence[str],
    comparisons: Sequence[Comparison],
) -> str:
    classes = [c for c in row.outcomes if c != "passed"]
    skew_note = (
        f" ({d.partial_skews} lower bounds: a rank still initialising at teardown)"
        if d.partial_skews
        else ""
    )
    hosts = sorted(d.host_rounds)
    return (
        f'<div class="card" id="{rid}" data-test="{_e(_name(row.test, row.variant, row.ranks))}">'
        f"<h3>{_e(_name(row.test, row.variant, row.ranks))}</h3>"
        f"{_bar(row, failure_classes)}"
        f"<p>{_e(statement(row))}<br>failing ranks: {_e(failing_ranks_text(row))}</p>"
        f"{_row_comparisons(row, comparisons)}"
        '<div class="grid">'
        f"<div><h4>init skew{_e(skew_note)}</h4>{histogram(d.skews, 'ms')}</div>"
        f"<div><h4>round duration</h4>{histogram(d.durations, 's')}</div>"
        "</div>"
        '<div class="grid">'
        f"{_devices(d, classes)}"
        + _units_table("failures by host", hosts, dict(d.host_rounds), dict(d.host_fail), classes)
        + "</div>"
        + _failing(d, rid)
        + "</div>"
    )


def render_html(
    rows: Sequence[SummaryRow],
    comparisons: Sequence[Comparison],
    records: Sequence[RoundRecord],
    *,
    runs: Sequence[Run] = (),
    histories: Sequence[TestHistory] = (),
    concentrations: Sequence[Concentration] = (),
    title: str = "pytest-pto rounds",
    provenance: dict[str, object] | None = None,
    alpha: float = 0.05,
) -> str:
    """The whole page as one string."""
    failure_classes = sorted(
        {c for r in rows for c in r.outcomes if c != "passed" and not is_infra(c)},
        key=outcome_sort_key,
    )
    ids = [f"t{i + 1}" for i in range(len(rows))]
    gathered = _gather(records)
    cards = "".join(
        _card(r, gathered[(r.test, r.variant, r.ranks)], rid, failure_classes, comparisons)
        for r, rid in zip(rows, ids, strict=True)
    )
    prov = provenance or {}
    n_rounds = sum(r.rounds for r in rows)
    sub = (
        f"{n_rounds} rounds, {len(rows)} test/variant rows, {max(len(runs), 1)} run(s); "
        f"generated {prov.get('date', '')} by {prov.get('command', 'pto-report')}; "
        f"git commit {prov.get('git_commit') or 'unknown'}"
    )
    data = json.dumps({"rounds": n_rounds, "rows": len(rows), "runs": len(runs)})
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>{_e(sub)}</p></header>"
        '<nav><a href="#summary">summary</a><a href="#comparisons">comparisons</a>'
        '<a href="#history">history</a><a href="#concentration">concentration</a>'
        '<a href="#tests">tests</a></nav><main>'
        + _summary(rows, failure_classes, ids)
        + _comparisons(comparisons)
        + _history(histories, runs)
        + _concentration(concentrations, alpha)
        + f'<section id="tests"><h2>Per test and variant</h2>{cards}</section>'
        + f'</main><script type="application/json" id="pto-data">{_e(data)}</script>'
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )
