"""Terminal view of a backtest report: ranking with counts and intervals, bands, calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from connector.cli.plain import PlainTable
from connector.scoring.backtest import MIN_CLASS, BacktestReport, PeriodResult


def _fmt(value: float | None, places: int = 3) -> str:
    return "-" if value is None else f"{value:.{places}f}"


def _ci(value: list[float] | None) -> str:
    return "" if not value else f" [{value[0]:.3f}, {value[1]:.3f}]"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ranking(report: BacktestReport) -> PlainTable:
    table = PlainTable(
        title=f"Backtest of {Path(report.source).name} ({report.encoding}), split {report.split_date}",
        header_style="bold",
    )
    for column in ("period", "late by", "invoices", "late", "AUC", "95% CI", "KS"):
        table.add_column(column, justify="left" if column == "period" else "right")
    periods: tuple[tuple[str, PeriodResult], ...] = (
        ("out of time", report.out_of_time),
        ("in sample", report.in_sample),
    )
    for name, period in periods:
        for k, n in enumerate(report.thresholds):
            key = str(n)
            value = period.auc.get(key)
            interval = period.auc_ci.get(key)
            table.add_row(
                name if k == 0 else "",
                f"> {n} days",
                str(period.decided.get(key, 0)),
                str(period.positives.get(key, 0)),
                _fmt(value) if value is not None else "hidden",
                f"{interval[0]:.3f}-{interval[1]:.3f}" if interval else "",
                _fmt(period.ks.get(key)),
                end_section=k == len(report.thresholds) - 1,
            )
    return table


def _bands(period: PeriodResult, title: str) -> PlainTable:
    table = PlainTable(title=title, header_style="bold")
    for column in (
        "band",
        "invoices",
        "late share",
        "late > 15 days",
        "mean score",
        "mean P(late)",
    ):
        table.add_column(column, justify="left" if column == "band" else "right")
    for entry in period.bands:
        table.add_row(
            entry["band"] + ("" if entry["checked"] else " *"),
            str(entry["count"]),
            _pct(entry["late_share"]),
            _pct(entry["late_share_15"]),
            f"{entry['mean_score']:.1f}",
            _pct(entry["mean_probability_late"]),
        )
    return table


def _factors(period: PeriodResult) -> PlainTable:
    table = PlainTable(
        title="Out of time, each factor alone vs the score (> 0 days)", header_style="bold"
    )
    for column in ("factor", "invoices", "late", "factor AUC", "score AUC, same invoices"):
        table.add_column(column, justify="left" if column == "factor" else "right")
    for row in period.factors:
        table.add_row(
            row["factor"],
            str(row["invoices"]),
            str(row["positives"]),
            _fmt(row["auc"]),
            _fmt(row["composite_auc"]),
        )
    return table


def _calibration(period: PeriodResult) -> PlainTable:
    overall = period.calibration_overall
    table = PlainTable(
        title=(
            f"Out of time, probability_late: Brier {_fmt(period.brier, 4)}, predicted "
            f"{_pct(overall.get('predicted'))} vs observed {_pct(overall.get('observed'))}"
        ),
        header_style="bold",
    )
    for column in ("decile", "invoices", "predicted", "observed", "gap"):
        table.add_column(column, justify="right")
    for row in period.calibration:
        table.add_row(
            str(row["decile"]),
            str(row["invoices"]),
            _pct(float(row["predicted"])),
            _pct(float(row["observed"])),
            f"{float(row['gap']):+.1%}",
        )
    return table


def _segments(period: PeriodResult) -> PlainTable:
    table = PlainTable(title="Out of time, by billing channel", header_style="bold")
    for column in ("channel", "invoices", "late", "late share", "mean P(late)", "AUC"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for row in period.segments:
        table.add_row(
            row["value"],
            str(row["invoices"]),
            str(row["positives"]),
            _pct(row["late_share"]),
            _pct(row["mean_probability_late"]),
            _fmt(row["auc"]),
        )
    return table


def _curve(rows: list[list[float]] | None) -> str:
    if not rows:
        return "-"
    return ", ".join(f"{x:g} -> {points:g}" for x, points in rows)


def _curves(curves: dict[str, Any], split: str) -> RenderableType:
    table = PlainTable(
        title=(
            f"Proposed points curves (value -> points), fitted on {curves['invoices']} invoices "
            f"known before {split} ({curves['positives']} late)"
        ),
        header_style="bold",
    )
    for column in ("curve", "invoices", "late", "current", "proposed"):
        table.add_column(column, justify="right" if column in ("invoices", "late") else "left")
    for row in curves["curves"]:
        table.add_row(
            row["curve"],
            str(row["invoices"]),
            str(row["late"]),
            _curve(row["current"]),
            _curve(row["proposed"]) if row["proposed"] else row["reason"],
        )
    before, after = curves["pre_split"]["current"], curves["pre_split"]["proposed"]
    lines = [
        "Before the split (invoices whose outcome was known then), current -> proposed curves: "
        + ", ".join(
            f"AUC > {key} days {_fmt(before['auc'].get(key))} -> {_fmt(after['auc'].get(key))}"
            for key in before["auc"]
        )
        + f", band-only AUC {_fmt(before['band_auc'])} -> {_fmt(after['band_auc'])}. "
        "The figures above are the proposed policy's, with probability_late refitted for it; "
        "adopt it with --write-policy FILE."
    ]
    return Group(table, Text("\n".join(lines)))


def _compare(compare: dict[str, Any]) -> Text:
    lines = [f"Against {compare['reference']} (out of time):"]
    for key, gain in compare["gain"].items():
        if gain is None:
            continue
        lines.append(
            f"  > {key} days: AUC {_fmt(compare['auc'][key])} -> gain {gain:+.4f}"
            f"{_ci(compare['gain_ci'].get(key))} (95% customer-clustered interval)"
        )
    return Text("\n".join(lines))


def render_backtest(report: BacktestReport) -> RenderableType:
    """Tables for the terminal: ranking by period and threshold, bands, factors, calibration."""
    oot = report.out_of_time
    parts: list[RenderableType] = [_ranking(report)]
    if report.curves is not None:
        parts.append(_curves(report.curves, str(report.split_date)))
    if oot.invoices == 0:
        parts.append(Text("No invoice with a known outcome was issued on or after the split date."))
    parts.append(
        Text(
            f"Band-only AUC (> 0 days): out of time {_fmt(oot.band_auc)}, in sample "
            f"{_fmt(report.in_sample.band_auc)}. Late counts beside every AUC; figures on fewer "
            f"than {MIN_CLASS} late or on-time invoices are hidden."
        )
    )
    parts.append(_bands(oot, "Out of time, by band (late = paid after the due date)"))
    parts.append(_bands(report.in_sample, "In sample, by band"))
    for name, period in (("out of time", oot), ("in sample", report.in_sample)):
        verdict = "rises" if period.bands_monotone else "does NOT rise"
        parts.append(
            Text(
                f"{name}: late share {verdict} across the bands with at least 30 invoices (* = fewer)."
            )
        )
    if oot.factors:
        parts.append(_factors(oot))
    if oot.calibration:
        parts.append(_calibration(oot))
    if oot.segments:
        parts.append(_segments(oot))
    if oot.compare is not None:
        parts.append(_compare(oot.compare))
    if report.fit is not None:
        parts.append(
            Text(
                f"probability_late refitted on {report.fit['invoices']} in-sample invoices "
                f"({report.fit['positives']} late) known before the split: "
                + ", ".join(f"{x:g} -> {p:.0%}" for x, p in report.fit["table"])
            )
        )
    problems = report.input
    if problems["problems"]:
        shown = problems["first_problems"]
        lines = [
            f"Data errors in {Path(report.source).name}: {problems['problems']} problems, "
            f"{problems['rows_rejected']} of {problems['rows_read']} rows left out"
            + (f" (first {len(shown)} shown)" if problems["problems"] > len(shown) else "")
        ]
        lines += [f"  {line}" for line in shown]
        if problems["errors_file"]:
            lines.append(f"All problems written to {problems['errors_file']}.")
        elif problems["problems"] > len(shown):
            lines.append("Pass --errors-file FILE to write them all.")
        parts.append(Text("\n".join(lines), style="yellow"))
    for note in report.notes:
        parts.append(Text(f"Note: {note}", style="dim"))
    return Group(*parts)
