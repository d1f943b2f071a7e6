"""`crm-risk audit` for people: `--since` in the forms people type, and one compact row per entry."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.console import Group, RenderableType
from rich.text import Text

from connector.errors import UsageError

_AGE = re.compile(r"^(\d+)\s*(m|min|h|d|w)$")
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SINCE_HELP = (
    "only entries at or after this time: a date (2026-11-30), a date and time (2026-11-30T14:00, "
    "local time unless it has an offset), an age (30m, 2h, 3d, 1w) or today / yesterday"
)


def parse_since(text: str, now: datetime) -> datetime:
    """The moment `--since` names, as an aware datetime.

    Args:
        text: a date, a date and time (ISO 8601, a space allowed instead of T), an age such as
            `2h` or `3d`, or `today` / `yesterday` (local midnight).
        now: the current time, aware (local time zone for dates without an offset).

    Returns:
        The start of the window.

    Raises:
        UsageError: the text is none of these (exit 64).
    """
    value = text.strip().lower()
    local = now.astimezone()
    if value in ("today", "yesterday"):
        day = local.date() - timedelta(days=1 if value == "yesterday" else 0)
        return datetime.combine(day, time.min, tzinfo=local.tzinfo)
    age = _AGE.match(value)
    if age:
        return now - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time.min, tzinfo=local.tzinfo)
        moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise UsageError(
            f"--since {text!r}: not a time; use a date (2026-11-30), a date and time "
            "(2026-11-30T14:00), an age (30m, 2h, 3d, 1w), today or yesterday"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=local.tzinfo)


_VERBS = {
    "update": "set",
    "held": "needs approval",
    "conflict": "kept manual edit",
    "refused": "refused by the CRM",
    "adopt": "adopted",
    "revert": "restored",
    "revert_skipped": "not restored",
    "lease_takeover": "lease taken over",
}


_TASK_VERBS = {
    "create": "created",
    "escalate": "escalated",
    "complete": "completed",
    "comment": "commented",
    "adopt": "adopted",
    "revert_complete": "completed by revert",
    "revert_delete": "deleted by revert",
}


def describe_entry(row: dict[str, Any]) -> tuple[str, str]:
    """(what: the field or task rule, and what happened to it) for one entry, in words.

    Tasks read as text (`task limit_approval`, `created: Approve credit limit ... (normal)`),
    never as the JSON the log keeps.
    """
    action = str(row["action"])
    field = str(row.get("field") or "")
    new, old = row.get("new_value"), row.get("old_value")
    if action.startswith("task_"):
        verb = action.removeprefix("task_")
        verb = _TASK_VERBS.get(verb, verb.replace("_", " "))
        task = new if isinstance(new, dict) else old if isinstance(old, dict) else {}
        subject = str(task.get("subject") or "") if isinstance(task, dict) else ""
        priority = str(task.get("priority") or "") if isinstance(task, dict) else ""
        text = subject + (f" ({priority})" if priority else "")
        if not text:
            text = _plain(new if new is not None else old)
        return f"task {field}".strip(), f"{verb}: {text}" if text else verb
    verb = _VERBS.get(action, action.replace("_", " "))
    if action in ("update", "held", "revert", "adopt", "refused"):
        return field, f"{verb}: {_plain(old) or '(empty)'} → {_plain(new) or '(empty)'}"
    if action == "conflict":
        return (
            field,
            f"{verb}: CRM has {_plain(new) or '(empty)'}, we wrote {_plain(old) or '(empty)'}",
        )
    values = " → ".join(part for part in (_plain(old), _plain(new)) if part)
    return field or action, f"{verb}: {values}" if values else verb


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return " · ".join(line.strip() for line in value.splitlines() if line.strip())
    if isinstance(value, dict):
        return ", ".join(f"{key} {_plain(item)}" for key, item in value.items())
    return json.dumps(value, ensure_ascii=False, default=str)


def render_audit(
    rows: list[dict[str, Any]],
    names: dict[tuple[str, str], str],
    *,
    total: int,
    several_connections: bool,
    title: str,
    width: int,
    show_accounts: bool = True,
) -> RenderableType:
    """The newest entries, one line each: when (UTC), account by name, field or task, what happened.

    Args:
        rows: audit entries, newest first.
        names: account names by (connection, record id).
        total: how many entries match the filters (more than shown: a hint says how to see them).
        several_connections: show the connection of each entry.
        title: the line above the entries.
        width: the console's width; each entry is cut to fit it (--json has everything).
        show_accounts: False when one account was asked for (the title names it).

    Returns:
        The lines to print.
    """
    narrow = width < 96
    # On a narrow terminal the year moves to the title: "11-30 14:05" instead of the full date.
    years = sorted({_when(str(row["at"]))[:4] for row in rows})
    if narrow and years:
        title += f" (times in UTC, {'-'.join(dict.fromkeys([years[0], years[-1]]))})"
    columns: list[tuple[str, int]] = [("when (UTC)", 11 if narrow else 16)]
    if several_connections:
        columns.append(("connection", 12 if narrow else 14))
    if show_accounts:
        columns.append(("account", 18 if narrow else 24))
    rest = max(24, width - sum(size + 2 for _, size in columns))
    lines: list[RenderableType] = [Text(_fit(title, width), style="bold")]
    header = "  ".join(name.ljust(size) for name, size in columns) + "  what happened"
    lines.append(Text(header, style="bold"))
    for row in rows:
        what, values = describe_entry(row)
        answer = str(row.get("crm_response") or "")
        if answer not in ("", "ok", "not sent", "taken over") and row["action"] != "refused":
            values = f"{values}; CRM: {answer}"
        cells = [_when(str(row["at"]))[5:] if narrow else _when(str(row["at"]))]
        if several_connections:
            cells.append(str(row["connection"]))
        account = names.get((str(row["connection"]), str(row["record_id"])), "")
        if show_accounts:
            cells.append(account or str(row["record_id"]))
        if account:
            # Task subjects start with the account's name, already in its column or the title.
            values = values.replace(f": {account}: ", ": ", 1)
        fitted = [
            _pad(_fit(cell, size), size) for cell, (_, size) in zip(cells, columns, strict=True)
        ]
        happened = f"{what} {values}" if what else values
        lines.append(Text("  ".join([*fitted, _fit(happened, rest)]).rstrip()))
    if total > len(rows):
        lines.append(
            Text(
                f"{total - len(rows)} more (older): --since 2h|yesterday|2026-11-30, "
                "--account NAME or --limit N"
            )
        )
    else:
        lines.append(Text("--json has every field of each entry (run, cause, CRM answer)"))
    return Group(*lines)


def _fit(text: str, size: int) -> str:
    # Sizes are terminal cells: a Chinese character takes two, so counting characters would
    # overflow the line and the terminal would wrap one entry onto two lines.
    return text if cell_len(text) <= size else set_cell_size(text, size - 1).rstrip() + "…"


def _pad(text: str, size: int) -> str:
    return text + " " * max(0, size - cell_len(text))


def _when(at: str) -> str:
    moment = datetime.fromisoformat(at).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M")
