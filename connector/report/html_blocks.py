"""HTML building blocks the report's sections share: one page's formatting, tables, band chips, bar charts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from html import escape
from typing import Any

from connector.report.labels import label
from connector.report.svg import Chart, Formatter, Series, bar_chart, compact, percent

# Green to red, ColorBrewer RdYlGn reversed (readable in grey print too, darker = riskier).
BAND_COLORS = {"A": "#1a9850", "B": "#91cf60", "C": "#e6c229", "D": "#fc8d59", "E": "#d73027"}
ACCENT = "#2166ac"
SECOND = "#999999"


def as_decimal(text: Any) -> Decimal:
    """A figure's money text as a Decimal (zero when missing)."""
    return Decimal(str(text)) if text not in (None, "") else Decimal(0)


def as_float(text: Any) -> float:
    """A figure's money text as a float, for a chart."""
    return float(as_decimal(text))


class Page:
    """Formatting helpers bound to one language and currency."""

    def __init__(self, figures: dict[str, Any]) -> None:
        self.figures = figures
        self.lang = str(figures.get("language") or "en")
        self.currency = str(figures.get("home_currency") or "")

    def t(self, key: str, **values: object) -> str:
        return escape(label(key, self.lang, **values))

    def amount(self, value: Any) -> str:
        text = f"{as_decimal(value):,.0f}"
        return f"{text} {self.currency}".strip()

    def money_axis(self, key: str) -> str:
        title = label(key, self.lang)
        return f"{title} ({self.currency})" if self.currency else title

    def share(self, value: Any) -> str:
        return "–" if value is None else percent(float(value))


def html_table(
    caption: str, head: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]]
) -> str:
    """A table: `head` is (escaped label, numeric) per column; cells are escaped already."""
    cols = "".join(
        f'<th scope="col"{" class=n" if numeric else ""}>{text}</th>' for text, numeric in head
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=n' if numeric else ''}>{cell}</td>"
            for cell, (_, numeric) in zip(row, head, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    # The wrapper scrolls a wide table on a narrow screen instead of widening the whole page.
    return (
        f'<div class="table-wrap"><table><caption>{caption}</caption><thead><tr>{cols}</tr>'
        f"</thead><tbody>{body}</tbody></table></div>"
    )


def band_chip(band: str | None) -> str:
    if not band:
        return "–"
    return f'<span class="band" style="background:{BAND_COLORS.get(band, "#eee")}">{escape(band)}</span>'


def describe(pairs: Sequence[tuple[str, str]]) -> str:
    return "; ".join(f"{name}: {value}" for name, value in pairs)


def bars(
    chart_id: str,
    title: str,
    axes: tuple[str, str],
    points: Sequence[tuple[str, str]],
    series: Sequence[Series],
    *,
    fmt: Formatter = compact,
    stacked: bool = False,
) -> str:
    """A bar chart with one bar group a point: (category, its value as the text alternative reads).

    The categories on the axis and in the text alternative come from the same points, so a
    screen reader hears the bars that are drawn.
    """
    x_title, y_title = axes
    return bar_chart(
        Chart(chart_id, title, describe(points), x_title, y_title, fmt=fmt),
        [category for category, _ in points],
        series,
        stacked=stacked,
    )


def band_series(
    bands: Sequence[str],
    rows: Sequence[dict[str, Any]],
    band_of: Callable[[dict[str, Any]], str],
    value: Callable[[dict[str, Any]], float],
) -> list[Series]:
    """One series a band, so each row's bar (stacked) takes the colour of the band it falls in."""
    return [
        Series(
            band, [value(row) if band_of(row) == band else 0.0 for row in rows], BAND_COLORS[band]
        )
        for band in bands
    ]


def share_table(
    p: Page, caption_key: str, group_key: str, groups: Sequence[tuple[str, dict[str, Any]]]
) -> str:
    """Accounts, exposure and share of the book per group: (its escaped label, its figures)."""
    return html_table(
        p.t(caption_key),
        [
            (p.t(group_key), False),
            (p.t("accounts"), True),
            (p.t("exposure"), True),
            (p.t("share"), True),
        ],
        [
            [name, f"{g['accounts']:,}", escape(p.amount(g["exposure"])), p.share(g["share"])]
            for name, g in groups
        ],
    )


def owner_name(p: Page, owner: Any) -> str:
    """An owner id as shown, escaped; "unassigned" when there is none."""
    return escape(str(owner)) if owner else p.t("unassigned")


__all__ = [
    "ACCENT",
    "BAND_COLORS",
    "SECOND",
    "Page",
    "as_decimal",
    "as_float",
    "band_chip",
    "band_series",
    "bars",
    "describe",
    "html_table",
    "owner_name",
    "share_table",
]
