"""Human output for run reports: summary tables with rich; JSON output lives in the CLI."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from connector.cli.plain import PlainTable


def render_report(report: dict[str, Any]) -> RenderableType:
    """A compact summary of one run: reads, writes, tasks, errors, API use."""
    parts: list[RenderableType] = []
    title = f"{report['connection']} ({report['crm']}) run {report['run_id']}: {report['status']}"
    if report.get("dry_run"):
        title += " [dry run: nothing written]"
    parts.append(Text(title, style="bold"))
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
    if report.get("planned"):
        planned = PlainTable(title="Planned changes", header_style="bold")
        for column in ("account", "change", "old", "new", "cause"):
            planned.add_column(column, overflow="fold")
        for item in report["planned"][:200]:
            if "fields" in item:
                for field, change in item["fields"].items():
                    planned.add_row(
                        item["account_id"],
                        field,
                        str(change["old"]),
                        str(change["new"]),
                        item["cause"],
                    )
            else:
                planned.add_row(
                    item["account_id"],
                    f"task {item['task']}",
                    "",
                    f"{item['subject']} ({item['priority']})",
                    item["rule"],
                )
        parts.append(planned)
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
    return ", ".join(f"{key} {value}" for key, value in counts.items() if value) or "-"
