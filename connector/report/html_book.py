"""The report's sections on the book itself: what it holds now, how it moved, where it concentrates."""

from __future__ import annotations

from html import escape
from typing import Any

from connector.report.html_blocks import (
    ACCENT,
    BAND_COLORS,
    Page,
    as_float,
    band_chip,
    band_series,
    bars,
    describe,
    html_table,
    share_table,
)
from connector.report.labels import label
from connector.report.svg import (
    Chart,
    RefLine,
    Series,
    bar_chart,
    hbar_chart,
    line_chart,
    matrix_chart,
    percent,
)
from connector.scoring.policy import BANDS


def book_section(p: Page) -> str:
    """Accounts and exposure by band, the score distribution and aging: the book now."""
    book = p.figures["book"]
    by_band = book["by_band"]
    bands = [row["band"] for row in by_band]
    parts = [
        '<div class="kpis">'
        f'<div class="kpi">{p.t("accounts")}<b>{book["accounts"]:,}</b></div>'
        f'<div class="kpi">{p.t("exposure")}<b>{escape(p.amount(book["exposure"]))}</b></div>'
        f'<div class="kpi">{p.t("overdue")}<b>{escape(p.amount(book["overdue"]))}</b></div>'
        "</div>",
        '<div class="charts">',
        bars(
            "chart-accounts-by-band",
            label("accounts_by_band", p.lang),
            (label("band", p.lang), label("accounts", p.lang)),
            [(b["band"], str(b["accounts"])) for b in by_band],
            [Series(label("accounts", p.lang), [float(b["accounts"]) for b in by_band], ACCENT)],
        ),
        bars(
            "chart-exposure-by-band",
            label("exposure_by_band", p.lang),
            (label("band", p.lang), p.money_axis("exposure")),
            [(b["band"], p.amount(b["exposure"])) for b in by_band],
            band_series(bands, by_band, lambda b: b["band"], lambda b: as_float(b["exposure"])),
            stacked=True,
        ),
    ]
    cutoffs = p.figures.get("band_cutoffs") or (20, 40, 60, 80)
    scores = book["scores"]

    def band_of(low: float) -> str:
        return BANDS[sum(1 for c in cutoffs if low + 5 >= c)]

    parts.append(
        bars(
            "chart-score-distribution",
            label("score_distribution", p.lang),
            (label("score_axis", p.lang), label("accounts", p.lang)),
            [(f"{s['from']}–{s['to']}", str(s["accounts"])) for s in scores],
            band_series(
                BANDS, scores, lambda s: band_of(s["from"]), lambda s: float(s["accounts"])
            ),
            stacked=True,
        )
    )
    aging = book["aging"]
    parts.append(
        bars(
            "chart-aging",
            label("aging", p.lang),
            (label("bucket", p.lang), p.money_axis("exposure")),
            [(label(f"bucket_{a['bucket']}", p.lang), p.amount(a["exposure"])) for a in aging],
            [Series(label("exposure", p.lang), [as_float(a["exposure"]) for a in aging], ACCENT)],
        )
    )
    parts.append("</div>")
    parts.append(
        share_table(
            p,
            "exposure_by_band",
            "band",
            [(band_chip(b["band"]), b) for b in by_band] + [(p.t("total"), {**book, "share": 1})],
        )
    )
    parts.append(
        share_table(p, "aging", "bucket", [(p.t(f"bucket_{a['bucket']}"), a) for a in aging])
    )
    parts.append(
        html_table(
            p.t("score_distribution"),
            [(p.t("score"), False), (p.t("accounts"), True)],
            [[f"{s['from']}–{s['to']}", f"{s['accounts']:,}"] for s in scores],
        )
    )
    return "".join(parts)


def _matrix(p: Page, key: str, data: dict[str, Any], title_key: str) -> str:
    rows = [label(r, p.lang) if r in ("new",) else r for r in data["rows"]]
    columns = [label(c, p.lang) if c in ("exited",) else c for c in data["columns"]]
    title = f"{label(title_key, p.lang)} ({data['from_as_of']} → {p.figures['movement']['latest']['as_of']})"
    desc = (
        f"{label('upgrades', p.lang)} {data['upgrades']}, {label('downgrades', p.lang)} "
        f"{data['downgrades']}, {label('unchanged', p.lang)} {data['unchanged']}; "
        + "; ".join(
            f"{r}→{c}: {data['counts'][i][j]}"
            for i, r in enumerate(data["rows"])
            for j, c in enumerate(data["columns"])
            if data["counts"][i][j]
        )
    )
    return matrix_chart(
        Chart(key, title, desc, label("to_band", p.lang), label("from_band", p.lang)),
        rows,
        columns,
        data["counts"],
    )


def _matrix_table(p: Page, data: dict[str, Any], caption: str) -> str:
    head = [(p.t("from_band"), False)] + [
        (p.t(c) if c == "exited" else escape(c), True) for c in data["columns"]
    ]
    rows = [
        [p.t(r) if r == "new" else escape(r)] + [str(n) for n in data["counts"][i]]
        for i, r in enumerate(data["rows"])
    ]
    return html_table(caption, head, rows)


def _movers(p: Page, data: dict[str, Any], caption: str) -> str:
    rows = [
        [escape(m["name"]), band_chip(m["from"]), band_chip(m["to"]), f"{m['bands']:+d}"]
        for m in data["movers"]
    ]
    more = data["moved_two_plus"] - len(data["movers"])
    table = html_table(
        f"{caption}: {data['moved_two_plus']}",
        [
            (p.t("account"), False),
            (p.t("from"), False),
            (p.t("to"), False),
            (p.t("bands_moved"), True),
        ],
        rows,
    )
    if more > 0:
        table += f'<p class="note">{p.t("and_more", n=more)}</p>'
    return table


def movement_section(p: Page) -> str:
    """Band migration since the previous run and over the year, and the exposure trend."""
    movement = p.figures["movement"]
    parts = ['<div class="charts">']
    tables: list[str] = []
    if movement["since_previous"]:
        data = movement["since_previous"]
        parts.append(_matrix(p, "chart-migration-previous", data, "since_previous"))
        tables.append(_matrix_table(p, data, p.t("since_previous")))
        tables.append(_movers(p, data, p.t("moved_two_plus") + " (" + p.t("since_previous") + ")"))
    if movement["over_year"]:
        data = movement["over_year"]
        key = "over_year" if data["full_window"] else "since_earliest"
        parts.append(_matrix(p, "chart-migration-year", data, key))
        tables.append(_matrix_table(p, data, p.t(key)))
        tables.append(_movers(p, data, p.t("moved_two_plus") + " (" + p.t(key) + ")"))
    trend = movement["trend"]
    if trend:
        parts.append(
            line_chart(
                Chart(
                    "chart-trend",
                    label("trend", p.lang),
                    describe(
                        [
                            (
                                point["as_of"],
                                ", ".join(
                                    f"{b} {p.amount(v)}"
                                    for b, v in point["exposure_by_band"].items()
                                ),
                            )
                            for point in trend[-12:]
                        ]
                    ),
                    label("run_date", p.lang),
                    p.money_axis("exposure"),
                ),
                [point["as_of"] for point in trend],
                [
                    Series(
                        band,
                        [as_float(point["exposure_by_band"][band]) for point in trend],
                        BAND_COLORS[band],
                    )
                    for band in BANDS
                ],
            )
        )
        tables.append(
            html_table(
                p.t("trend"),
                [(p.t("run_date"), False)]
                + [(escape(b), True) for b in BANDS]
                + [(p.t("accounts"), True)],
                [
                    [escape(point["as_of"])]
                    + [escape(p.amount(point["exposure_by_band"][b])) for b in BANDS]
                    + [f"{point['accounts']:,}"]
                    for point in trend[-24:]
                ],
            )
        )
    parts.append("</div>")
    if not movement["since_previous"]:
        parts.append(f'<p class="note">{p.t("no_comparison")}</p>')
    return "".join(parts + tables)


def concentration_section(p: Page) -> str:
    """HHI by dimension and the largest customers, industries and countries against their caps."""
    conc = p.figures["concentration"]
    dims = (("customer", "by_customer"), ("industry", "by_industry"), ("country", "by_country"))
    parts = ['<div class="charts">']
    parts.append(
        bar_chart(
            Chart(
                "chart-hhi",
                label("hhi_title", p.lang),
                describe([(label(k, p.lang), f"{conc[d]['hhi']:,.0f}") for d, k in dims]),
                label("dimension", p.lang),
                label("hhi_axis", p.lang),
                fmt=lambda v: f"{v:,.0f}",
                refs=(
                    RefLine(conc["hhi_moderate"], label("hhi_moderate_line", p.lang), "#e08214"),
                    RefLine(conc["hhi_high"], label("hhi_high_line", p.lang)),
                ),
            ),
            [label(k, p.lang) for _, k in dims],
            [Series(label("hhi", p.lang), [float(conc[d]["hhi"]) for d, _ in dims], ACCENT)],
        )
    )
    tables = []
    for dim, key in dims:
        data = conc[dim]
        top = data["top"]
        cap = data["cap"]
        refs = (RefLine(cap, f"{label('cap', p.lang)} {percent(cap)}"),) if cap else ()
        parts.append(
            hbar_chart(
                Chart(
                    f"chart-top-{dim}",
                    f"{label(key, p.lang)}: {label('largest', p.lang)}",
                    describe([(m["name"], percent(m["share"])) for m in top])
                    or label("none", p.lang),
                    "",
                    label("share_axis", p.lang),
                    fmt=percent,
                    refs=refs,
                ),
                [m["name"] for m in top],
                [float(m["share"]) for m in top],
                ACCENT,
            )
        )
        tables.append(
            html_table(
                f"{p.t(key)}: {p.t('hhi')} {data['hhi']:,.0f} ({p.t('level_' + data['level'])}), "
                f"{p.t('top10_share')} {percent(data['top10_share'])}, {p.t('equivalent')} "
                f"{data['equivalent_count']:,.1f}",
                [
                    (p.t("largest"), False),
                    (p.t("exposure"), True),
                    (p.t("share"), True),
                    (p.t("over_cap"), False),
                ],
                [
                    [
                        escape(m["name"]),
                        escape(p.amount(m["exposure"])),
                        percent(m["share"]),
                        '<span class="warn">✖</span>' if m["name"] in data["over_cap"] else "",
                    ]
                    for m in top
                ],
            )
        )
    parts.append("</div>")
    return "".join(parts + tables)


__all__ = ["book_section", "concentration_section", "movement_section"]
