"""Inline SVG charts for the HTML report: stacked bars, histograms, a rate series, a heat map.

Every chart is a string of SVG markup drawn on the server side (no script, no fonts, no
network: the page opens from a CI artifact anywhere). Every text that comes from the input is
escaped; every mark carries a ``<title>`` so a browser shows its numbers on hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["class_color", "heatmap", "histogram", "rate_series", "stacked_bar"]

PASSED_COLOR = "#3a9d5d"
INFRA_COLOR = "#9e9e9e"
_PALETTE = (
    "#d9534f",
    "#f0ad4e",
    "#8e44ad",
    "#2c7fb8",
    "#e377c2",
    "#8c564b",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#ff7f0e",
)


def class_color(outcome: str, classes: Sequence[str], infra: bool = False) -> str:
    """A stable color per outcome class: green for passed, gray for infrastructure, else the
    palette by the class's position among ``classes`` (the report's failure classes)."""
    if outcome == "passed":
        return PASSED_COLOR
    if infra:
        return INFRA_COLOR
    idx = classes.index(outcome) if outcome in classes else len(classes)
    return _PALETTE[idx % len(_PALETTE)]


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">{body}</svg>'
    )


def stacked_bar(
    segments: Sequence[tuple[str, int, str]], width: int = 420, height: int = 22
) -> str:
    """One horizontal bar, a segment per ``(label, count, color)`` proportional to its count."""
    total = sum(n for _, n, _ in segments)
    parts = []
    x = 0.0
    for label, n, color in segments:
        if n <= 0 or total <= 0:
            continue
        w = width * n / total
        tip = f"{label}: {n} of {total} rounds ({100 * n / total:.1f} %)"
        parts.append(
            f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" fill="{color}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        x += w
    return _svg(width, height, "".join(parts), "outcome classes")


def _ticks(lo: float, hi: float) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / 4 or 1))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= 5:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 10 or x == int(x) else f"{x:.2g}"


def histogram(
    values: Sequence[float], unit: str, bins: int = 24, width: int = 420, height: int = 130
) -> str:
    """Distribution of ``values`` in equal-width bins, with x ticks in ``unit``."""
    label = f"distribution ({unit})"
    if not values:
        return _svg(width, 24, '<text x="0" y="16" font-size="12">no values recorded</text>', label)
    lo, hi = min(values), max(values)
    if hi == lo:
        hi = lo + 1.0
    counts = [0] * bins
    span = hi - lo
    for v in values:
        counts[min(bins - 1, int((v - lo) / span * bins))] += 1
    top = max(counts)
    pad_l, pad_b = 34, 20
    plot_w, plot_h = width - pad_l - 6, height - pad_b - 6
    bw = plot_w / bins
    parts = [
        f'<line x1="{pad_l}" y1="{6 + plot_h}" x2="{width - 6}" y2="{6 + plot_h}" stroke="#888"/>',
        f'<text x="{pad_l - 4}" y="14" font-size="10" text-anchor="end">{top}</text>',
        f'<text x="{pad_l - 4}" y="{6 + plot_h}" font-size="10" text-anchor="end">0</text>',
    ]
    for i, c in enumerate(counts):
        if not c:
            continue
        h = plot_h * c / top
        a, b = lo + span * i / bins, lo + span * (i + 1) / bins
        parts.append(
            f'<rect x="{pad_l + i * bw:.2f}" y="{6 + plot_h - h:.2f}" width="{max(bw - 1, 1):.2f}" '
            f'height="{h:.2f}" fill="#2c7fb8"><title>{_num(a)}-{_num(b)} {escape(unit)}: '
            f"{c} rounds</title></rect>"
        )
    for t in _ticks(lo, hi):
        x = pad_l + plot_w * (t - lo) / span
        parts.append(
            f'<text x="{x:.1f}" y="{height - 6}" font-size="10" text-anchor="middle">'
            f"{_num(t)}</text>"
        )
    parts.append(
        f'<text x="{width - 6}" y="{height - 6}" font-size="10" text-anchor="end">'
        f"{escape(unit)}</text>"
    )
    return _svg(width, height, "".join(parts), label)


def rate_series(
    points: Sequence[tuple[str, int, int] | None],
    change: int | None = None,
    levels: tuple[float, float] | None = None,
    width: int = 640,
    height: int = 150,
) -> str:
    """Failure rate per run (``(label, failed, rounds)``, None where the run has no rounds of
    this test), a dashed line at the change run ``change`` and, with ``levels``, the rates
    before and after it as horizontal segments."""
    pad_l, pad_b, pad_t = 40, 18, 8
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    n = max(len(points), 1)
    rates = [p[1] / p[2] for p in points if p is not None and p[2]]
    top = max([*rates, *(levels or ()), 0.05])
    top = min(1.0, math.ceil(top * 10) / 10 if top > 0.1 else math.ceil(top * 100) / 100)

    def x(i: float) -> float:
        return pad_l + plot_w * (i + 0.5) / n

    def y(r: float) -> float:
        return pad_t + plot_h * (1 - r / top)

    parts = [
        f'<line x1="{pad_l}" y1="{y(0):.1f}" x2="{width - 8}" y2="{y(0):.1f}" stroke="#888"/>',
        f'<text x="{pad_l - 4}" y="{y(top) + 8:.1f}" font-size="10" text-anchor="end">'
        f"{100 * top:.0f} %</text>",
        f'<text x="{pad_l - 4}" y="{y(0):.1f}" font-size="10" text-anchor="end">0 %</text>',
        f'<text x="{pad_l}" y="{height - 4}" font-size="10">run 1</text>',
        f'<text x="{width - 8}" y="{height - 4}" font-size="10" text-anchor="end">run {n}</text>',
    ]
    if change is not None:
        cx = pad_l + plot_w * change / n
        parts.append(
            f'<line x1="{cx:.1f}" y1="{pad_t}" x2="{cx:.1f}" y2="{y(0):.1f}" stroke="#d9534f" '
            'stroke-dasharray="4 3"><title>change point</title></line>'
        )
        if levels is not None:
            parts.append(
                f'<line x1="{pad_l}" y1="{y(levels[0]):.1f}" x2="{cx:.1f}" '
                f'y2="{y(levels[0]):.1f}" stroke="#555" stroke-width="1.5"/>'
                f'<line x1="{cx:.1f}" y1="{y(levels[1]):.1f}" x2="{width - 8}" '
                f'y2="{y(levels[1]):.1f}" stroke="#555" stroke-width="1.5"/>'
            )
    r = 2.5 if n <= 80 else 1.6
    for i, p in enumerate(points):
        if p is None or not p[2]:
            continue
        label, k, total = p
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(k / total):.1f}" r="{r}" '
            f'fill="{"#d9534f" if k else PASSED_COLOR}"><title>run {i + 1} '
            f"{escape(label)}: {k}/{total} failed</title></circle>"
        )
    return _svg(width, height, "".join(parts), "failure rate per run")


def heatmap(
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    cells: Sequence[Sequence[tuple[int, int]]],
    cell: int = 22,
) -> str:
    """A grid: row ``i`` column ``j`` is ``(failures, rounds)``, shaded by the failure rate
    (white 0 % to red at the largest rate in the grid)."""
    label_w = 8 + 7 * max((len(r) for r in row_labels), default=4)
    head_h = 8 + 6 * max((len(c) for c in col_labels), default=4)
    head_h = min(head_h, 140)
    width = label_w + cell * len(col_labels) + 4
    height = head_h + cell * len(row_labels) + 4
    top = max((k / n for row in cells for k, n in row if n), default=0.0) or 1.0
    parts = []
    for j, c in enumerate(col_labels):
        cx = label_w + cell * j + cell / 2
        parts.append(
            f'<text transform="translate({cx + 4:.1f},{head_h - 4}) rotate(-60)" '
            f'font-size="10">{escape(c)}</text>'
        )
    for i, r in enumerate(row_labels):
        cy = head_h + cell * i
        parts.append(
            f'<text x="{label_w - 4}" y="{cy + cell * 0.7:.1f}" font-size="10" '
            f'text-anchor="end">{escape(r)}</text>'
        )
        for j, (k, n) in enumerate(cells[i]):
            share = (k / n / top) if n else 0.0
            g = int(255 - 200 * share)
            fill = f"rgb(255,{g},{g})" if n else "#eee"
            tip = f"{r}, {col_labels[j]}: {k}/{n} rounds" if n else f"{r}: no rounds"
            parts.append(
                f'<rect x="{label_w + cell * j}" y="{cy}" width="{cell - 1}" '
                f'height="{cell - 1}" fill="{fill}"><title>{escape(tip)}</title></rect>'
            )
    return _svg(width, height, "".join(parts), "failures by device")
