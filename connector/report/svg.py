"""Charts as inline SVG text: bars, horizontal bars with a cap line, a matrix and lines; pure, no I/O.

Why SVG written here rather than a chart library: the report must open with no network and stay
small at 10,000 accounts. Every chart here is an aggregate (five bands, ten customers, a 5 x 5
matrix), so a chart is a few kilobytes of text, prints as vectors, and carries its own `<title>`
and `<desc>` for screen readers. A vendored JavaScript library would add 200 KB to 1 MB to every
file and a script that must run before anything shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH = 640
HEIGHT = 280
# Left, top, right, bottom margins: room for the y tick labels, the legend, the x labels.
MARGIN = (72, 34, 16, 58)
FONT = 12
INK = "#222"
GRID = "#ddd"
MUTED = "#666"
CAP = "#b2182b"

Formatter = Callable[[float], str]


def _attr(text: str) -> str:
    return escape(text, quote=True)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above `value` (axis tops); 1 for nothing to show."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10.0 * power


def compact(value: float) -> str:
    """A short number for axis ticks: 950, 12k, 1.5M, 2B (thousands separators elsewhere)."""
    size = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            scaled = value / limit
            text = f"{scaled:.1f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    if size and size < 10 and value != int(value):
        return f"{value:.2g}"
    return f"{value:.0f}"


def percent(value: float) -> str:
    """A share as a percentage tick: 0.125 -> 12.5 %."""
    text = f"{value * 100:.1f}".rstrip("0").rstrip(".")
    return f"{text} %"


@dataclass(frozen=True)
class Series:
    """One named row of values, drawn in one colour."""

    name: str
    values: Sequence[float]
    color: str


@dataclass(frozen=True)
class RefLine:
    """A labelled threshold across the value axis (a cap, an HHI line)."""

    value: float
    label: str
    color: str = CAP


@dataclass(frozen=True)
class Chart:
    """What every chart has: an id, a title, a text alternative and the axis titles."""

    chart_id: str
    title: str
    desc: str
    x_label: str
    y_label: str
    fmt: Formatter = compact
    refs: Sequence[RefLine] = field(default_factory=tuple)


def _open(chart: Chart, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    cid = _attr(chart.chart_id)
    # The caption shows the title to sighted readers; the SVG's own <title> and <desc> are what
    # a screen reader announces, so the caption is hidden from it (said once, not twice). The
    # max-width keeps a lone chart at its drawn size instead of blowing its text up.
    return [
        f'<figure class="chart-box"><figcaption aria-hidden="true">{escape(chart.title)}'
        "</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{cid}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-labelledby="{cid}-t {cid}-d" font-size="{FONT}" font-family="inherit" '
        f'style="max-width:{width}px">',
        f'<title id="{cid}-t">{escape(chart.title)}</title>',
        f'<desc id="{cid}-d">{escape(chart.desc)}</desc>',
    ]


_CLOSE = "</svg></figure>"


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    parts: list[str] = []
    for item in series:
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{item.color}"/>'
            f'<text x="{x + 14:.1f}" y="{y:.1f}" fill="{INK}">{escape(item.name)}</text>'
        )
        x += 22 + 7 * len(item.name)
    return parts


def _value_axis(
    top: float, fmt: Formatter, left: float, right: float, y0: float, y1: float
) -> list[str]:
    """Horizontal grid lines and tick labels for a vertical value axis from 0 to `top`."""
    parts: list[str] = []
    for i in range(5):
        value = top * i / 4
        y = y0 - (y0 - y1) * i / 4
        parts.append(
            f'<line x1="{left:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">'
            f"{escape(fmt(value))}</text>"
        )
    return parts


def _axis_titles(chart: Chart, width: int, height: int) -> list[str]:
    left, top, right, bottom = MARGIN
    mid_y = top + (height - top - bottom) / 2
    return [
        f'<text x="{left + (width - left - right) / 2:.1f}" y="{height - 8}" '
        f'text-anchor="middle" fill="{INK}" class="axis-title">{escape(chart.x_label)}</text>',
        f'<text x="14" y="{mid_y:.1f}" text-anchor="middle" fill="{INK}" class="axis-title" '
        f'transform="rotate(-90 14 {mid_y:.1f})">{escape(chart.y_label)}</text>',
    ]


@dataclass(frozen=True)
class _Plot:
    """The plotting area of a chart with a vertical value axis, and its value scale."""

    x0: int
    x1: int
    y0: int
    y1: int
    scale: float


def _open_plot(chart: Chart, peak: float, width: int, height: int) -> tuple[_Plot, list[str]]:
    """The plotting area for values up to `peak`, and the chart's opening with its value axis."""
    left, top, right, bottom = MARGIN
    x0, x1, y0, y1 = left, width - right, height - bottom, top
    axis_top = nice_ceiling(peak)
    parts = _open(chart, width, height)
    parts += _value_axis(axis_top, chart.fmt, x0, x1, y0, y1)
    return _Plot(x0, x1, y0, y1, (y0 - y1) / axis_top), parts


def _close_plot(
    chart: Chart, plot: _Plot, legend: Sequence[Series], width: int, height: int
) -> list[str]:
    """The axis lines, the legend (when one is wanted), the axis titles and the closing tags."""
    x0, x1, y0, y1 = plot.x0, plot.x1, plot.y0, plot.y1
    parts = [
        f'<line x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}" stroke="{INK}"/>'
        f'<line x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}" stroke="{INK}"/>'
    ]
    if legend:
        parts += _legend(legend, x0, 14)
    parts += _axis_titles(chart, width, height)
    parts.append(_CLOSE)
    return parts


def bar_chart(
    chart: Chart,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    stacked: bool = False,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Vertical bars per category: one bar per series side by side, or stacked.

    Args:
        chart: id, title, text alternative, axis titles, value format and threshold lines.
        categories: x-axis labels, in order.
        series: the values per category of each series (same length as `categories`).
        stacked: stack the series instead of placing them side by side.
        width: viewBox width.
        height: viewBox height.

    Returns:
        One `<svg>` element.
    """
    count = max(1, len(categories))
    if stacked:
        peak = max((sum(s.values[i] for s in series) for i in range(len(categories))), default=0.0)
    else:
        peak = max((v for s in series for v in s.values), default=0.0)
    plot, parts = _open_plot(chart, max([peak, *(ref.value for ref in chart.refs)]), width, height)
    x0, x1, y0, scale = plot.x0, plot.x1, plot.y0, plot.scale
    slot = (x1 - x0) / count
    group = slot * 0.72
    bar = group if stacked else group / max(1, len(series))
    for i, category in enumerate(categories):
        start = x0 + slot * i + (slot - group) / 2
        base = float(y0)
        for k, item in enumerate(series):
            value = max(0.0, float(item.values[i]))
            h = value * scale
            x = start if stacked else start + bar * k
            y = base - h if stacked else y0 - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{item.color}"><title>{escape(category)} · {escape(item.name)}: '
                f"{escape(chart.fmt(value))}</title></rect>"
            )
            if stacked:
                base -= h
        label_x = x0 + slot * (i + 0.5)
        parts.append(
            f'<text x="{label_x:.1f}" y="{y0 + 16:.1f}" text-anchor="middle" fill="{INK}">'
            f"{escape(category)}</text>"
        )
    for ref in chart.refs:
        y = y0 - ref.value * scale
        parts.append(
            f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{ref.color}" '
            f'stroke-dasharray="5 3" stroke-width="1.5"/><text x="{x1:.1f}" y="{y - 4:.1f}" '
            f'text-anchor="end" fill="{ref.color}">{escape(ref.label)}</text>'
        )
    # One series needs no legend: the chart's title names it.
    parts += _close_plot(chart, plot, series if len(series) > 1 else (), width, height)
    return "".join(parts)


def hbar_chart(
    chart: Chart,
    labels: Sequence[str],
    values: Sequence[float],
    color: str,
    *,
    width: int = WIDTH,
) -> str:
    """Horizontal bars, largest first as given (top-10 shares), with vertical cap lines.

    Args:
        chart: id, title, text alternative, axis titles (x = values), format and cap lines.
        labels: one label per bar (cut to 28 characters on the chart; the table has them whole).
        values: the bar values.
        color: the bar colour.
        width: viewBox width.

    Returns:
        One `<svg>` element.
    """
    row = 20
    left, top, right, bottom = 190, 30, 24, 46
    height = top + bottom + row * max(1, len(labels))
    x0, x1, y0 = left, width - right, top
    peak = max([*values, *(ref.value for ref in chart.refs), 0.0])
    axis_top = nice_ceiling(peak)
    scale = (x1 - x0) / axis_top
    parts = _open(chart, width, height)
    for i in range(5):
        value = axis_top * i / 4
        x = x0 + (x1 - x0) * i / 4
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0}" y2="{height - bottom}" stroke="{GRID}"/>'
            f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle" fill="{MUTED}">'
            f"{escape(chart.fmt(value))}</text>"
        )
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = y0 + row * i
        short = label if len(label) <= 28 else label[:27] + "…"
        parts.append(
            f'<text x="{x0 - 6}" y="{y + 14}" text-anchor="end" fill="{INK}">{escape(short)}</text>'
            f'<rect x="{x0}" y="{y + 3}" width="{max(value * scale, 0.5):.1f}" height="{row - 6}" '
            f'fill="{color}"><title>{escape(label)}: {escape(chart.fmt(value))}</title></rect>'
        )
    for ref in chart.refs:
        x = x0 + ref.value * scale
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 - 6}" y2="{height - bottom}" '
            f'stroke="{ref.color}" stroke-dasharray="5 3" stroke-width="1.5"/>'
            f'<text x="{x:.1f}" y="{y0 - 10}" text-anchor="middle" fill="{ref.color}">'
            f"{escape(ref.label)}</text>"
        )
    parts.append(
        f'<text x="{x0 + (x1 - x0) / 2:.1f}" y="{height - 8}" text-anchor="middle" fill="{INK}" '
        f'class="axis-title">{escape(chart.x_label)}</text>'
    )
    parts.append(_CLOSE)
    return "".join(parts)


def matrix_chart(
    chart: Chart,
    rows: Sequence[str],
    columns: Sequence[str],
    counts: Sequence[Sequence[int]],
    *,
    diagonal: bool = True,
) -> str:
    """A from → to matrix of counts, shaded by count; the diagonal (no move) is outlined.

    Args:
        chart: id, title, text alternative; x_label names the columns, y_label the rows.
        rows: row labels (from).
        columns: column labels (to).
        counts: one row of counts per row label.
        diagonal: outline cells whose row and column label are equal.

    Returns:
        One `<svg>` element.
    """
    cell = 46
    left, top = 96, 52
    width = left + cell * len(columns) + 16
    height = top + cell * len(rows) + 20
    peak = max((c for row in counts for c in row), default=0) or 1
    parts = _open(chart, width, height)
    parts.append(
        f'<text x="{left + cell * len(columns) / 2:.1f}" y="16" text-anchor="middle" '
        f'fill="{INK}" class="axis-title">{escape(chart.x_label)}</text>'
    )
    mid_y = top + cell * len(rows) / 2
    parts.append(
        f'<text x="16" y="{mid_y:.1f}" text-anchor="middle" fill="{INK}" class="axis-title" '
        f'transform="rotate(-90 16 {mid_y:.1f})">{escape(chart.y_label)}</text>'
    )
    for j, column in enumerate(columns):
        parts.append(
            f'<text x="{left + cell * (j + 0.5):.1f}" y="{top - 8}" text-anchor="middle" '
            f'fill="{INK}">{escape(column)}</text>'
        )
    for i, row in enumerate(rows):
        y = top + cell * i
        parts.append(
            f'<text x="{left - 8}" y="{y + cell / 2 + 4:.1f}" text-anchor="end" fill="{INK}">'
            f"{escape(row)}</text>"
        )
        for j, column in enumerate(columns):
            value = counts[i][j]
            x = left + cell * j
            shade = 0.08 + 0.82 * value / peak if value else 0.0
            stroke = f' stroke="{INK}" stroke-width="2"' if diagonal and row == column else ""
            ink = "#fff" if shade > 0.55 else INK
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="#2166ac" fill-opacity="{shade:.2f}"{stroke}><title>{escape(row)} → '
                f"{escape(column)}: {value}</title></rect>"
                f'<text x="{x + cell / 2 - 1:.1f}" y="{y + cell / 2 + 4:.1f}" '
                f'text-anchor="middle" fill="{ink}">{value}</text>'
            )
    parts.append(_CLOSE)
    return "".join(parts)


def line_chart(
    chart: Chart,
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """One line per series over ordered points (dates); every point is a marker with its value.

    Args:
        chart: id, title, text alternative, axis titles and value format.
        x_labels: the points' labels in order (at most about eight are printed on the axis).
        series: values per point of each series.
        width: viewBox width.
        height: viewBox height.

    Returns:
        One `<svg>` element.
    """
    count = len(x_labels)
    peak = max((v for s in series for v in s.values), default=0.0)
    plot, parts = _open_plot(chart, peak, width, height)
    x0, x1, y0, scale = plot.x0, plot.x1, plot.y0, plot.scale

    def x_at(i: int) -> float:
        return x0 + (x1 - x0) * (0.5 if count == 1 else i / (count - 1))

    every = max(1, math.ceil(count / 8))
    for i, label in enumerate(x_labels):
        if i % every == 0 or i == count - 1:
            parts.append(
                f'<text x="{x_at(i):.1f}" y="{y0 + 16:.1f}" text-anchor="middle" fill="{INK}">'
                f"{escape(label)}</text>"
            )
    for item in series:
        points = [(x_at(i), y0 - max(0.0, v) * scale) for i, v in enumerate(item.values)]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{item.color}" stroke-width="2"/>'
            )
        for (x, y), value, label in zip(points, item.values, x_labels, strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{item.color}"><title>'
                f"{escape(item.name)} {escape(label)}: {escape(chart.fmt(value))}</title></circle>"
            )
    parts += _close_plot(chart, plot, series, width, height)
    return "".join(parts)


__all__ = [
    "Chart",
    "RefLine",
    "Series",
    "bar_chart",
    "compact",
    "hbar_chart",
    "line_chart",
    "matrix_chart",
    "nice_ceiling",
    "percent",
]
