"""Human output for run reports: summary tables with rich; JSON output lives in the CLI."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from connector.cli.plain import PlainTable


def render_report(report: dict[str, Any]) -> RenderableType:
    """A compact summary of one run: reads, writes, tasks, errors, API use.

    A dry run's planned changes are printed by connector.cli.plan_view (summary or detail).
    """
    parts: list[RenderableType] = []
    status = str(report["status"]).replace("_", " ")
    title = f"{report['connection']} ({report['crm']}): {status}"
    if report.get("dry_run"):
        title += ", dry run (nothing written)"
    parts.append(Text(title, style="bold"))
    as_of = f", scored as of {report['as_of']}" if report.get("as_of") else ""
    parts.append(Text(f"run {report['run_id']}{as_of}"))
    table = PlainTable(show_header=True, header_style="bold")
    table.add_column("object")
    table.add_column("counts")
    for name, counts in report.get("objects", {}).items():
        table.add_row(name, _counts(counts))
    for name, counts in report.get("writes", {}).items():
        table.add_row(f"{name} writes", _counts(counts))
    if report.get("tasks"):
        table.add_row("tasks", _counts(report["tasks"]))
    if report.get("bands"):
        table.add_row("bands scored", _counts(report["bands"]))
    api = report.get("api", {})
    quota = (
        f", quota left {api['quota_remaining']}" if api.get("quota_remaining") is not None else ""
    )
    table.add_row("API calls", f"{api.get('calls', 0)}{quota}")
    parts.append(table)
    if report.get("errors"):
        errors = PlainTable(title="Errors", header_style="bold")
        for column in ("code", "count", "sample records", "message"):
            errors.add_column(column, overflow="fold")
        for error in report["errors"]:
            errors.add_row(
                error["code"],
                str(error["count"]),
                ", ".join(error["sample_ids"]),
                error.get("message", ""),
            )
        parts.append(errors)
    if report.get("held"):
        held = PlainTable(
            title=f"Held accounts ({report.get('held_count', len(report['held']))}): "
            "not scored or written until their records are valid (crm-risk quarantine)",
            header_style="bold",
        )
        for column in ("account", "record", "rule", "why"):
            held.add_column(column, overflow="fold")
        for item in report["held"]:
            for record in item["records"]:
                held.add_row(
                    item["account_id"],
                    f"{record['object']} {record['record_id']}",
                    record["rule"],
                    record["reason"],
                )
        parts.append(held)
    if report.get("message"):
        parts.append(Text(report["message"], style="yellow"))
    return Group(*parts)


def _counts(counts: dict[str, Any]) -> str:
    words = (f"{key.replace('_', ' ')} {value}" for key, value in counts.items() if value)
    return ", ".join(words) or "-"
