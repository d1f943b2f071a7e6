"""What `crm-risk check` prints: one verdict line per connection, then its warnings and errors."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text


def render_check(results: dict[str, Any], *, checked_online: bool) -> list[Text]:
    """Lines for people: `ok NAME ...` when a connection has no error (warnings follow it).

    Args:
        results: per connection, the entry cmd_check builds (mapping, problems, quota, enabled).
        checked_online: False for --offline (config and mapping files only).

    Returns:
        Rich text lines; paths and CRM messages are escaped, never read as markup.
    """
    lines: list[Text] = []
    for name, entry in results.items():
        problems = entry["problems"]
        errors = [problem for problem in problems if problem["severity"] == "error"]
        warnings = [problem for problem in problems if problem["severity"] != "error"]
        if not errors:
            lines.append(
                Text.from_markup(f"[green]ok[/] {escape(_verdict(name, entry, checked_online))}")
            )
        for problem in errors + warnings:
            colour = "red" if problem["severity"] == "error" else "yellow"
            lines.append(
                Text.from_markup(
                    f"[{colour}]{problem['severity']}[/] {escape(name)}: {escape(problem['message'])}"
                )
            )
    return lines


def _verdict(name: str, entry: dict[str, Any], checked_online: bool) -> str:
    mapping = entry["mapping"]
    if not entry.get("checked_online", checked_online) and checked_online:
        return (
            f"{name}: disabled (enabled = false); config and mapping {mapping} valid, "
            "not checked against the CRM"
        )
    if not checked_online:
        return f"{name}: config and mapping {mapping} valid (offline: the CRM was not asked)"
    warnings = sum(1 for problem in entry["problems"] if problem["severity"] != "error")
    quota = entry.get("quota_remaining")
    text = f"{name}: config, credentials and mapping {mapping} valid"
    if quota is not None:
        text += (
            f"; API quota left: {quota:,}"
            if isinstance(quota, int)
            else f"; API quota left: {quota}"
        )
    if warnings:
        text += f"; {warnings} warning{'s' if warnings != 1 else ''}:"
    return text
