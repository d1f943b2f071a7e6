"""The portfolio report as one self-contained HTML file: inline CSS and SVG, no script, no fetch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from html import escape
from typing import Any, get_args

from connector.planning.task_rules import RuleKind
from connector.report.labels import label
from connector.report.svg import (
    Chart,
    Formatter,
    RefLine,
    Series,
    bar_chart,
    compact,
    hbar_chart,
    line_chart,
    matrix_chart,
    percent,
)
from connector.scoring.policy import BANDS

# Green to red, ColorBrewer RdYlGn reversed (readable in grey print too, darker = riskier).
BAND_COLORS = {"A": "#1a9850", "B": "#91cf60", "C": "#e6c229", "D": "#fc8d59", "E": "#d73027"}
ACCENT = "#2166ac"
SECOND = "#999999"

CSS = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",
"PingFang SC","Microsoft YaHei",sans-serif;color:#222;margin:0;background:#fff;line-height:1.4}
header,main,footer{max-width:1180px;margin:0 auto;padding:0 20px}
header{padding-top:16px;border-bottom:2px solid #2166ac}
h1{font-size:1.5rem;margin:.2em 0}h2{font-size:1.2rem;margin:1.2em 0 .3em;color:#2166ac}
h3{font-size:1rem;margin:1em 0 .3em}
.meta{color:#555;margin:.2em 0 .6em}.lead{color:#444;margin:.2em 0 .6em}
nav a{margin-right:1em;color:#2166ac}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:.6em 0}
.kpi{border:1px solid #ddd;border-radius:6px;padding:6px 12px;min-width:120px}
.kpi b{display:block;font-size:1.15rem}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px;
align-items:start}
figure.chart-box{margin:0;min-width:0}
figure.chart-box figcaption{font-weight:600;font-size:.9rem;margin:0 0 4px}
svg.chart{display:block;width:100%;height:auto;border:1px solid #eee;border-radius:4px}
.table-wrap{overflow-x:auto;max-width:100%}
.axis-title{font-weight:600}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.86rem;width:100%}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border-bottom:1px solid #e4e4e4;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f5f7fa}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.band{display:inline-block;width:1.4em;text-align:center;border-radius:3px;color:#111}
.note{color:#555;font-style:italic}.warn{color:#b2182b}
section{break-inside:auto;border-bottom:1px solid #eee;padding-bottom:8px}
@page{size:A4;margin:12mm}
@media print{body{font-size:10pt}th{overflow-wrap:anywhere}header,main,footer{max-width:none;padding:0}
nav{display:none}section{break-before:page}section:first-of-type{break-before:auto}
.charts{grid-template-columns:1fr 1fr}svg.chart{border:none}
table,figure{break-inside:avoid}a{color:inherit;text-decoration:none}
.table-wrap{overflow:visible}table{font-size:7.5pt}th,td{padding:2px 3px}
.charts{gap:6px}}
"""

# No network, no script: the policy forbids every fetch, so the file renders the same offline.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _d(text: Any) -> Decimal:
    return Decimal(str(text)) if text not in (None, "") else Decimal(0)


def _f(text: Any) -> float:
    return float(_d(text))


class _Page:
    """Formatting helpers bound to one language and currency."""

    def __init__(self, figures: dict[str, Any]) -> None:
        self.figures = figures
        self.lang = str(figures.get("language") or "en")
        self.currency = str(figures.get("home_currency") or "")

    def t(self, key: str, **values: object) -> str:
        return escape(label(key, self.lang, **values))

    def amount(self, value: Any) -> str:
        text = f"{_d(value):,.0f}"
        return f"{text} {self.currency}".strip()

    def money_axis(self, key: str) -> str:
        title = label(key, self.lang)
        return f"{title} ({self.currency})" if self.currency else title

    def share(self, value: Any) -> str:
        return "–" if value is None else percent(float(value))


def _table(caption: str, head: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]]) -> str:
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


def _band(band: str | None) -> str:
    if not band:
        return "–"
    return f'<span class="band" style="background:{BAND_COLORS.get(band, "#eee")}">{escape(band)}</span>'


def _desc(pairs: Sequence[tuple[str, str]]) -> str:
    return "; ".join(f"{name}: {value}" for name, value in pairs)


def _bars(
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
        Chart(chart_id, title, _desc(points), x_title, y_title, fmt=fmt),
        [category for category, _ in points],
        series,
        stacked=stacked,
    )


def _by_band(
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


# -- sections -------------------------------------------------------------------------------------


def _book(p: _Page) -> str:
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
        _bars(
            "chart-accounts-by-band",
            label("accounts_by_band", p.lang),
            (label("band", p.lang), label("accounts", p.lang)),
            [(b["band"], str(b["accounts"])) for b in by_band],
            [Series(label("accounts", p.lang), [float(b["accounts"]) for b in by_band], ACCENT)],
        ),
        _bars(
            "chart-exposure-by-band",
            label("exposure_by_band", p.lang),
            (label("band", p.lang), p.money_axis("exposure")),
            [(b["band"], p.amount(b["exposure"])) for b in by_band],
            _by_band(bands, by_band, lambda b: b["band"], lambda b: _f(b["exposure"])),
            stacked=True,
        ),
    ]
    cutoffs = p.figures.get("band_cutoffs") or (20, 40, 60, 80)
    scores = book["scores"]

    def band_of(low: float) -> str:
        return BANDS[sum(1 for c in cutoffs if low + 5 >= c)]

    parts.append(
        _bars(
            "chart-score-distribution",
            label("score_distribution", p.lang),
            (label("score_axis", p.lang), label("accounts", p.lang)),
            [(f"{s['from']}–{s['to']}", str(s["accounts"])) for s in scores],
            _by_band(BANDS, scores, lambda s: band_of(s["from"]), lambda s: float(s["accounts"])),
            stacked=True,
        )
    )
    aging = book["aging"]
    parts.append(
        _bars(
            "chart-aging",
            label("aging", p.lang),
            (label("bucket", p.lang), p.money_axis("exposure")),
            [(label(f"bucket_{a['bucket']}", p.lang), p.amount(a["exposure"])) for a in aging],
            [Series(label("exposure", p.lang), [_f(a["exposure"]) for a in aging], ACCENT)],
        )
    )
    parts.append("</div>")
    parts.append(
        _share_table(
            p,
            "exposure_by_band",
            "band",
            [(_band(b["band"]), b) for b in by_band] + [(p.t("total"), {**book, "share": 1})],
        )
    )
    parts.append(
        _share_table(p, "aging", "bucket", [(p.t(f"bucket_{a['bucket']}"), a) for a in aging])
    )
    parts.append(
        _table(
            p.t("score_distribution"),
            [(p.t("score"), False), (p.t("accounts"), True)],
            [[f"{s['from']}–{s['to']}", f"{s['accounts']:,}"] for s in scores],
        )
    )
    return "".join(parts)


def _share_table(
    p: _Page, caption_key: str, group_key: str, groups: Sequence[tuple[str, dict[str, Any]]]
) -> str:
    """Accounts, exposure and share of the book per group: (its escaped label, its figures)."""
    return _table(
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


def _matrix(p: _Page, key: str, data: dict[str, Any], title_key: str) -> str:
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


def _matrix_table(p: _Page, data: dict[str, Any], caption: str) -> str:
    head = [(p.t("from_band"), False)] + [
        (p.t(c) if c == "exited" else escape(c), True) for c in data["columns"]
    ]
    rows = [
        [p.t(r) if r == "new" else escape(r)] + [str(n) for n in data["counts"][i]]
        for i, r in enumerate(data["rows"])
    ]
    return _table(caption, head, rows)


def _movers(p: _Page, data: dict[str, Any], caption: str) -> str:
    rows = [
        [escape(m["name"]), _band(m["from"]), _band(m["to"]), f"{m['bands']:+d}"]
        for m in data["movers"]
    ]
    more = data["moved_two_plus"] - len(data["movers"])
    table = _table(
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


def _movement(p: _Page) -> str:
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
                    _desc(
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
                        [_f(point["exposure_by_band"][band]) for point in trend],
                        BAND_COLORS[band],
                    )
                    for band in BANDS
                ],
            )
        )
        tables.append(
            _table(
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


def _concentration(p: _Page) -> str:
    conc = p.figures["concentration"]
    dims = (("customer", "by_customer"), ("industry", "by_industry"), ("country", "by_country"))
    parts = ['<div class="charts">']
    parts.append(
        bar_chart(
            Chart(
                "chart-hhi",
                label("hhi_title", p.lang),
                _desc([(label(k, p.lang), f"{conc[d]['hhi']:,.0f}") for d, k in dims]),
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
                    _desc([(m["name"], percent(m["share"])) for m in top]) or label("none", p.lang),
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
            _table(
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


def _owner_name(p: _Page, owner: Any) -> str:
    return escape(str(owner)) if owner else p.t("unassigned")


def _owners(p: _Page) -> str:
    data = p.figures["owners"]
    owners = data["owners"]
    shown = owners[:12]
    parts = ['<div class="charts">']
    parts.append(
        bar_chart(
            Chart(
                "chart-owner-exposure",
                label("owner_exposure", p.lang),
                _desc([(str(o["owner_id"] or "-"), p.amount(o["exposure"])) for o in shown]),
                label("owner", p.lang),
                p.money_axis("exposure"),
            ),
            [str(o["owner_id"] or "–")[-10:] for o in shown],
            [Series(b, [_f(o["by_band"][b]) for o in shown], BAND_COLORS[b]) for b in BANDS],
            stacked=True,
            width=max(640, 60 * len(shown) + 100),
        )
    )
    parts.append("</div>")
    rules = data["rules"]
    # Two tables, money and follow-ups: one table of both is too wide to print on A4.
    parts.append(
        _table(
            p.t("owner_exposure"),
            [(p.t("owner"), False), (p.t("accounts"), True)]
            + [(escape(b), True) for b in BANDS]
            + [(p.t("overdue"), True)],
            [
                [_owner_name(p, o["owner_id"]), f"{o['accounts']:,}"]
                + [escape(p.amount(o["by_band"][b])) for b in BANDS]
                + [escape(p.amount(o["overdue"]))]
                for o in owners
            ],
        )
    )
    rows = []
    for o in owners:
        oldest = o["oldest_open"]
        rows.append(
            [_owner_name(p, o["owner_id"])]
            + [str(o["open"].get(r, 0)) for r in rules]
            + [
                f"{o['open_total']:,}",
                f"{o['closed_in_window']}",
                p.share(o["on_time_share"]),
                (
                    f"{oldest['days']} {p.t('days')} · {escape(oldest['name'])} ({escape(oldest['rule'])})"
                    if oldest
                    else "–"
                ),
            ]
        )
    parts.append(
        _table(
            p.t("open_followups") + f": {sum(o['open_total'] for o in owners):,}",
            [(p.t("owner"), False)]
            + [(p.t(f"rule_{r}") if f"rule_{r}" in _RULE_KEYS else escape(r), True) for r in rules]
            + [
                (p.t("total"), True),
                (p.t("closed_window", n=data["window_days"]), True),
                (p.t("on_time"), True),
                (p.t("oldest_open"), False),
            ],
            rows,
        )
    )
    return "".join(parts)


# The built-in rule kinds have a label; a rule a policy names otherwise is shown as written.
_RULE_KEYS = {f"rule_{kind}" for kind in get_args(RuleKind)}


def _limits(p: _Page) -> str:
    data = p.figures["limits"]
    by_band = data["by_band"]
    parts = ['<div class="charts">']
    parts.append(
        _bars(
            "chart-limits",
            label("limits_by_band", p.lang),
            (
                label("band", p.lang),
                p.money_axis("current_limit").replace(
                    label("current_limit", p.lang), label("limits", p.lang)
                ),
            ),
            [
                (b["band"], f"{p.amount(b['current'])} → {p.amount(b['recommended'])}")
                for b in by_band
            ],
            [
                Series(label("current_limit", p.lang), [_f(b["current"]) for b in by_band], SECOND),
                Series(
                    label("recommended_limit", p.lang),
                    [_f(b["recommended"]) for b in by_band],
                    ACCENT,
                ),
            ],
        )
    )
    util = data["utilisation"]
    parts.append(
        _bars(
            "chart-utilisation",
            label("utilisation", p.lang),
            (label("utilisation_axis", p.lang), label("accounts", p.lang)),
            [(label(f"util_{u['class']}", p.lang), str(u["accounts"])) for u in util],
            [Series(label("accounts", p.lang), [float(u["accounts"]) for u in util], ACCENT)],
        )
    )
    held = data["held"]
    parts.append(
        _bars(
            "chart-held-age",
            f"{label('held_age', p.lang)} ({held['count']})",
            (label("age_axis", p.lang), label("count", p.lang)),
            [(label(f"age_{a['class']}", p.lang), str(a["count"])) for a in held["ages"]],
            [Series(label("count", p.lang), [float(a["count"]) for a in held["ages"]], "#e08214")],
        )
    )
    parts.append("</div>")
    parts.append(
        _table(
            p.t("limits_by_band"),
            [(p.t("band"), False), (p.t("current_limit"), True), (p.t("recommended_limit"), True)],
            [
                [
                    _band(b["band"]),
                    escape(p.amount(b["current"])),
                    escape(p.amount(b["recommended"])),
                ]
                for b in by_band
            ],
        )
    )
    parts.append(
        _table(
            p.t("limit_changes"),
            [(p.t("limit_changes"), False), (p.t("accounts"), True)],
            [[p.t(f"change_{k}"), f"{v:,}"] for k, v in data["changes"].items()],
        )
    )
    parts.append(
        _table(
            p.t("utilisation"),
            [(p.t("utilisation_axis"), False), (p.t("accounts"), True), (p.t("exposure"), True)],
            [
                [p.t(f"util_{u['class']}"), f"{u['accounts']:,}", escape(p.amount(u["exposure"]))]
                for u in util
            ],
        )
    )
    rows = [
        [
            escape(h["name"]),
            _owner_name(p, h["owner_id"]),
            _band(h["band"]),
            escape(p.amount(h["current_limit"])) if h["current_limit"] else "–",
            escape(p.amount(h["recommended_limit"])) if h["recommended_limit"] else "–",
            str(h["days"]),
        ]
        for h in held["oldest"]
    ]
    parts.append(
        _table(
            f"{p.t('held')}: {held['count']}",
            [
                (p.t("account"), False),
                (p.t("owner"), False),
                (p.t("band"), False),
                (p.t("current_limit"), True),
                (p.t("recommended_limit"), True),
                (p.t("waiting"), True),
            ],
            rows,
        )
    )
    more = held["count"] - len(held["oldest"])
    if more > 0:
        parts.append(f'<p class="note">{p.t("and_more", n=more)}</p>')
    return "".join(parts)


def _stress(p: _Page) -> str:
    scenarios = p.figures["stress"]["scenarios"]
    if not scenarios:
        return f'<p class="note">{p.t("no_scenarios")}</p>'
    categories: list[str] = []
    values: dict[str, list[float]] = {b: [] for b in BANDS}
    for i, s in enumerate(scenarios, 1):
        for when in ("before", "after"):
            categories.append(f"S{i} {label(when, p.lang)}")
            for b in BANDS:
                values[b].append(_f(s[f"exposure_by_band_{when}"][b]))
    chart = bar_chart(
        Chart(
            "chart-stress",
            label("stress_chart", p.lang),
            _desc(
                [
                    (
                        f"S{i} {s['label']}",
                        f"{label('at_risk', p.lang)} {p.amount(s['exposure_at_risk'])}",
                    )
                    for i, s in enumerate(scenarios, 1)
                ]
            ),
            label("scenario", p.lang),
            p.money_axis("exposure"),
        ),
        categories,
        [Series(b, values[b], BAND_COLORS[b]) for b in BANDS],
        stacked=True,
        width=max(640, 90 * len(categories) + 100),
    )
    rows = [
        [
            f"S{i} {escape(s['label'])}",
            f"{s['accounts']:,}",
            escape(p.amount(s["exposure"])) + f" ({percent(s['share_of_book'])})",
            f"{escape(p.amount(s['high_risk_before']))} → {escape(p.amount(s['high_risk_after']))}",
            escape(p.amount(s["loss"])),
            escape(p.amount(s["exposure_at_risk"])),
            f"{escape(p.amount(s['limits_before']))} → {escape(p.amount(s['limits_after']))}",
            f"{s['limit_cuts']:,}",
            f"{s['limit_cuts_needing_approval']:,}",
            f"{s['limits_to_zero']:,}",
        ]
        for i, s in enumerate(scenarios, 1)
    ]
    table = _table(
        p.t("stress"),
        [
            (p.t("scenario"), False),
            (p.t("accounts_hit"), True),
            (p.t("exposure_hit"), True),
            (p.t("high_risk"), True),
            (p.t("loss"), True),
            (p.t("at_risk"), True),
            (p.t("limits_total"), True),
            (p.t("limit_cuts"), True),
            (p.t("cuts_approval"), True),
            (p.t("to_zero"), True),
        ],
        rows,
    )
    return f'<div class="charts">{chart}</div>{table}'


def _health(p: _Page) -> str:
    health = p.figures["model_health"]
    conf = health["confidence"]
    parts = ['<div class="charts">']
    backtest = health.get("backtest")
    text: list[str] = []
    if backtest and backtest.get("enough"):
        bands = backtest["bands"]
        parts.append(
            _bars(
                "chart-late-by-band",
                label("late_by_band", p.lang),
                (label("band", p.lang), label("late_share", p.lang)),
                [(b["band"], f"{percent(b['late_share'])} ({b['count']})") for b in bands],
                _by_band(
                    [b["band"] for b in bands],
                    bands,
                    lambda b: b["band"],
                    lambda b: float(b["late_share"]),
                ),
                fmt=percent,
                stacked=True,
            )
        )
        for key, threshold in (("auc_late", "0"), ("auc_late15", "15")):
            value = backtest["auc"].get(threshold)
            shown = f"{value:.3f}" if value is not None else "–"
            text.append(
                f'<div class="kpi">{p.t(key)}<b>{p.t("with_count", value=shown, n=backtest["decided"].get(threshold, 0))}</b></div>'
            )
        monotone = "bands_monotone" if backtest["bands_monotone"] else "bands_not_monotone"
        text.append(f'<div class="kpi">{p.t(monotone)}</div>')
        table = _table(
            p.t("late_by_band"),
            [(p.t("band"), False), (p.t("invoices"), True), (p.t("late_share"), True)],
            [[_band(b["band"]), f"{b['count']:,}", percent(b["late_share"])] for b in bands],
        )
        sampled, total = backtest.get("accounts_sampled"), backtest.get("accounts_total")
        if sampled is not None and total is not None and sampled < total:
            table = (
                f'<p class="note">{p.t("health_sample", n=f"{sampled:,}", total=f"{total:,}")}</p>'
                + table
            )
    else:
        decided = (backtest or {}).get("decided", {}).get("0", 0)
        late = (backtest or {}).get("positives", {}).get("0", 0)
        table = f'<p class="note">{p.t("not_enough", invoices=decided, late=late, min=(backtest or {}).get("min_class", 30))}</p>'
    dist = conf["distribution"]
    parts.append(
        _bars(
            "chart-confidence",
            label("confidence", p.lang),
            (label("confidence_axis", p.lang), label("accounts", p.lang)),
            [(f"{d['from']:.1f}–{d['to']:.1f}", str(d["accounts"])) for d in dist],
            [Series(label("accounts", p.lang), [float(d["accounts"]) for d in dist], ACCENT)],
        )
    )
    parts.append("</div>")
    low = p.t(
        "low_confidence",
        n=conf["low_confidence"],
        total=conf["accounts"],
        share=p.share(conf["share"]),
        threshold=conf["threshold"],
        exposure_share=p.share(conf["exposure_share"]),
    )
    head = f'<div class="kpis">{"".join(text)}</div>' if text else ""
    conf_table = _table(
        p.t("confidence"),
        [(p.t("confidence_axis"), False), (p.t("accounts"), True)],
        [[f"{d['from']:.1f}–{d['to']:.1f}", f"{d['accounts']:,}"] for d in dist],
    )
    return head + "".join(parts) + table + f"<p>{low}</p>" + conf_table


SECTIONS: tuple[tuple[str, Callable[[_Page], str]], ...] = (
    ("book", _book),
    ("movement", _movement),
    ("concentration", _concentration),
    ("owners", _owners),
    ("limits", _limits),
    ("stress", _stress),
    ("model_health", _health),
)


def render_html(figures: dict[str, Any]) -> str:
    """The whole report as one HTML document (UTF-8 text), from `Figures.to_dict()`.

    Args:
        figures: the report's figures (what `report --json` prints).

    Returns:
        The document: inline CSS and SVG only, so it opens offline and prints as it shows.
    """
    p = _Page(figures)
    lang = "zh-CN" if p.lang == "zh" else "en"
    title = f"{label('title', p.lang)}: {figures['connection']} ({figures['crm']})"
    nav = "".join(f'<a href="#{key}">{p.t(key)}</a>' for key, _ in SECTIONS)
    meta = (
        f"{p.t('book_as_of')} {escape(str(figures.get('book_as_of') or '–'))} · "
        f"{p.t('report_date')} {escape(figures['report_date'])} · "
        f"{p.t('amounts_in')} {escape(p.currency or '–')} · {p.t('generated')} "
        f"{escape(figures['generated_at'])}"
    )
    sections = "".join(
        f'<section id="{key}" aria-labelledby="{key}-h"><h2 id="{key}-h">{p.t(key)}</h2>'
        f'<p class="lead">{p.t(key + "_lead")}</p>{render(p)}</section>'
        for key, render in SECTIONS
    )
    notes = figures.get("notes") or []
    notes_html = (
        f"<h3>{p.t('notes')}</h3><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    footer = p.t(
        "footer",
        model=figures.get("model_version", ""),
        fingerprint=figures.get("policy_fingerprint", ""),
    )
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{escape(title)}</h1><p class="meta">{meta}</p><nav>{nav}</nav></header>'
        f'<main>{sections}{notes_html}</main><footer><p class="meta">{footer}</p></footer>'
        "</body></html>\n"
    )


__all__ = ["BAND_COLORS", "render_html"]
