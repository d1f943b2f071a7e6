"""The report's sections on what could go wrong: stress scenarios and the model's health."""

from __future__ import annotations

from html import escape

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
)
from connector.report.labels import label
from connector.report.svg import Chart, Series, bar_chart, percent
from connector.scoring.policy import BANDS


def stress_section(p: Page) -> str:
    """Each stress scenario's exposure by band before and after, and what it would cost."""
    scenarios = p.figures["stress"]["scenarios"]
    if not scenarios:
        return f'<p class="note">{p.t("no_scenarios")}</p>'
    categories: list[str] = []
    values: dict[str, list[float]] = {b: [] for b in BANDS}
    for i, s in enumerate(scenarios, 1):
        for when in ("before", "after"):
            categories.append(f"S{i} {label(when, p.lang)}")
            for b in BANDS:
                values[b].append(as_float(s[f"exposure_by_band_{when}"][b]))
    chart = bar_chart(
        Chart(
            "chart-stress",
            label("stress_chart", p.lang),
            describe(
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
    table = html_table(
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


def health_section(p: Page) -> str:
    """How well the scores ordered late payment, and how many accounts are scored with low confidence."""
    health = p.figures["model_health"]
    conf = health["confidence"]
    parts = ['<div class="charts">']
    backtest = health.get("backtest")
    text: list[str] = []
    if backtest and backtest.get("enough"):
        bands = backtest["bands"]
        parts.append(
            bars(
                "chart-late-by-band",
                label("late_by_band", p.lang),
                (label("band", p.lang), label("late_share", p.lang)),
                [(b["band"], f"{percent(b['late_share'])} ({b['count']})") for b in bands],
                band_series(
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
        table = html_table(
            p.t("late_by_band"),
            [(p.t("band"), False), (p.t("invoices"), True), (p.t("late_share"), True)],
            [[band_chip(b["band"]), f"{b['count']:,}", percent(b["late_share"])] for b in bands],
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
        bars(
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
    conf_table = html_table(
        p.t("confidence"),
        [(p.t("confidence_axis"), False), (p.t("accounts"), True)],
        [[f"{d['from']:.1f}–{d['to']:.1f}", f"{d['accounts']:,}"] for d in dist],
    )
    return head + "".join(parts) + table + f"<p>{low}</p>" + conf_table


__all__ = ["health_section", "stress_section"]
