"""The report's sections on the work the book gives people: owners' exposure and follow-ups, limits."""

from __future__ import annotations

from html import escape
from typing import Any, get_args

from connector.planning.task_rules import RuleKind
from connector.report.html_blocks import (
    ACCENT,
    BAND_COLORS,
    SECOND,
    Page,
    as_float,
    band_chip,
    bars,
    describe,
    html_table,
    owner_name,
)
from connector.report.labels import label
from connector.report.svg import Chart, Series, bar_chart
from connector.scoring.policy import BANDS

# The built-in rule kinds have a label; a rule a policy names otherwise is shown as written.
_RULE_KEYS = {f"rule_{kind}" for kind in get_args(RuleKind)}


def owners_section(p: Page) -> str:
    """Each owner's exposure by band, and their open and closed follow-ups."""
    data = p.figures["owners"]
    owners = data["owners"]
    shown = owners[:12]
    parts = ['<div class="charts">']
    parts.append(
        bar_chart(
            Chart(
                "chart-owner-exposure",
                label("owner_exposure", p.lang),
                describe([(str(o["owner_id"] or "-"), p.amount(o["exposure"])) for o in shown]),
                label("owner", p.lang),
                p.money_axis("exposure"),
            ),
            [str(o["owner_id"] or "–")[-10:] for o in shown],
            [Series(b, [as_float(o["by_band"][b]) for o in shown], BAND_COLORS[b]) for b in BANDS],
            stacked=True,
            width=max(640, 60 * len(shown) + 100),
        )
    )
    parts.append("</div>")
    rules = data["rules"]
    # Two tables, money and follow-ups: one table of both is too wide to print on A4.
    parts.append(
        html_table(
            p.t("owner_exposure"),
            [(p.t("owner"), False), (p.t("accounts"), True)]
            + [(escape(b), True) for b in BANDS]
            + [(p.t("overdue"), True)],
            [
                [owner_name(p, o["owner_id"]), f"{o['accounts']:,}"]
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
            [owner_name(p, o["owner_id"])]
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
        html_table(
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


def limits_section(p: Page) -> str:
    """Limits by band, limit changes, utilisation and the held approvals."""
    data = p.figures["limits"]
    return (
        '<div class="charts">'
        + _limit_charts(p, data)
        + "</div>"
        + _limit_tables(p, data)
        + _held_table(p, data["held"])
    )


def _limit_charts(p: Page, data: dict[str, Any]) -> str:
    """Current against recommended limits by band, utilisation classes, ages of held approvals."""
    by_band = data["by_band"]
    parts: list[str] = []
    parts.append(
        bars(
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
                Series(
                    label("current_limit", p.lang),
                    [as_float(b["current"]) for b in by_band],
                    SECOND,
                ),
                Series(
                    label("recommended_limit", p.lang),
                    [as_float(b["recommended"]) for b in by_band],
                    ACCENT,
                ),
            ],
        )
    )
    util = data["utilisation"]
    parts.append(
        bars(
            "chart-utilisation",
            label("utilisation", p.lang),
            (label("utilisation_axis", p.lang), label("accounts", p.lang)),
            [(label(f"util_{u['class']}", p.lang), str(u["accounts"])) for u in util],
            [Series(label("accounts", p.lang), [float(u["accounts"]) for u in util], ACCENT)],
        )
    )
    held = data["held"]
    parts.append(
        bars(
            "chart-held-age",
            f"{label('held_age', p.lang)} ({held['count']})",
            (label("age_axis", p.lang), label("count", p.lang)),
            [(label(f"age_{a['class']}", p.lang), str(a["count"])) for a in held["ages"]],
            [Series(label("count", p.lang), [float(a["count"]) for a in held["ages"]], "#e08214")],
        )
    )
    return "".join(parts)


def _limit_tables(p: Page, data: dict[str, Any]) -> str:
    by_band = data["by_band"]
    util = data["utilisation"]
    parts: list[str] = []
    parts.append(
        html_table(
            p.t("limits_by_band"),
            [(p.t("band"), False), (p.t("current_limit"), True), (p.t("recommended_limit"), True)],
            [
                [
                    band_chip(b["band"]),
                    escape(p.amount(b["current"])),
                    escape(p.amount(b["recommended"])),
                ]
                for b in by_band
            ],
        )
    )
    parts.append(
        html_table(
            p.t("limit_changes"),
            [(p.t("limit_changes"), False), (p.t("accounts"), True)],
            [[p.t(f"change_{k}"), f"{v:,}"] for k, v in data["changes"].items()],
        )
    )
    parts.append(
        html_table(
            p.t("utilisation"),
            [(p.t("utilisation_axis"), False), (p.t("accounts"), True), (p.t("exposure"), True)],
            [
                [p.t(f"util_{u['class']}"), f"{u['accounts']:,}", escape(p.amount(u["exposure"]))]
                for u in util
            ],
        )
    )
    return "".join(parts)


def _held_table(p: Page, held: dict[str, Any]) -> str:
    parts: list[str] = []
    rows = [
        [
            escape(h["name"]),
            owner_name(p, h["owner_id"]),
            band_chip(h["band"]),
            escape(p.amount(h["current_limit"])) if h["current_limit"] else "–",
            escape(p.amount(h["recommended_limit"])) if h["recommended_limit"] else "–",
            str(h["days"]),
        ]
        for h in held["oldest"]
    ]
    parts.append(
        html_table(
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


__all__ = ["limits_section", "owners_section"]
