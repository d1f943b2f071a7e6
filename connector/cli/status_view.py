"""`crm-risk status` for people: recent runs with readable times and reasons, and each connection's state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from connector.cli.plain import PlainTable

STATUS_WORDS = {
    "succeeded": "succeeded",
    "succeeded_with_rejections": "succeeded with rejections",
    "failed": "failed",
    "cancelled": "cancelled",
    "running": "running",
    "skipped": "skipped",
    "abandoned": "abandoned",
}


def readable_time(value: str | None, now: datetime) -> str:
    """`2026-12-02 04:07 UTC (5 min ago)` / `(in 2 h)`: the time and how far it is from now."""
    if not value:
        return "-"
    moment = datetime.fromisoformat(value).astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC ({_distance(moment, now)})"


def _distance(moment: datetime, now: datetime) -> str:
    seconds = (moment - now).total_seconds()
    amount = abs(seconds)
    if amount < 60:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if amount >= size:
            count = round(amount / size) if unit != "min" else int(amount // size)
            text = f"{count} {unit}"
            break
    return f"in {text}" if seconds > 0 else f"{text} ago"


def runs_table(runs: list[dict[str, Any]], now: datetime, width: int = 80) -> RenderableType:
    """Recent runs, newest first, one line each, then a line of reason for each run that failed.

    Below 100 columns the year moves to the title and the API calls column is left out
    (`--json` has it), so a run fits 80 columns with its status spelled out.
    """
    several = len({run["connection"] for run in runs}) > 1
    narrow = width < 100
    started_at = [datetime.fromisoformat(str(run["started_at"])).astimezone(UTC) for run in runs]
    title = "Recent runs"
    if narrow:
        years = sorted({f"{moment:%Y}" for moment in started_at})
        title += f" (times in UTC, {'-'.join(dict.fromkeys([years[0], years[-1]]))})"
    table = PlainTable(
        title=title,
        title_justify="left",
        header_style="bold",
        box=None,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    table.add_column("started" if narrow else "started (UTC)", no_wrap=True)
    if several:
        table.add_column("connection", no_wrap=True, max_width=18, overflow="ellipsis")
    table.add_column("status", no_wrap=True)
    numbers = ["read", "written", "rejected", "quarantined", "tasks"]
    if not narrow:
        numbers.append("calls")
    for column in numbers:
        table.add_column(column, no_wrap=True, justify="right")
    reasons: list[Text] = []
    for run, started in zip(runs, started_at, strict=True):
        report = run.get("report") or {}
        objects = report.get("objects", {})
        writes = report.get("writes", {}).get("account", {})
        tasks = report.get("tasks", {})
        status = STATUS_WORDS.get(str(run["status"]), str(run["status"]).replace("_", " "))
        when = f"{started:%m-%d %H:%M}" if narrow else f"{started:%Y-%m-%d %H:%M}"
        cells = [
            when,
            status,
            str(sum(counts.get("read", 0) for counts in objects.values())),
            str(writes.get("written", 0)),
            str(writes.get("rejected", 0) + writes.get("unknown", 0) + tasks.get("failed", 0)),
            str(report.get("quarantined_count", 0)),
            str(sum(tasks.get(k, 0) for k in ("create", "escalate", "complete", "comment"))),
        ]
        if not narrow:
            cells.append(str(report.get("api", {}).get("calls", "")))
        if several:
            cells.insert(1, str(run["connection"]))
        table.add_row(*cells)
        message = str(report.get("message") or report.get("reason") or "")
        if run["status"] in ("failed", "cancelled", "skipped", "abandoned") and message:
            reasons.append(Text(f"{when} {run['connection']} {status}: {message}"))
    parts: list[RenderableType] = [table]
    if reasons:
        parts.append(Text("Why:", style="bold"))
        parts.extend(reasons)
    return Group(*parts)


def connection_line(
    name: str,
    *,
    lease: dict[str, Any] | None,
    pending: int,
    quarantined: int,
    held: int,
    due_at: str | None,
    held_back: int = 0,
    enabled: bool,
    service_running: bool,
    now: datetime,
) -> Text:
    """One connection: running or idle, pending retries, quarantine, and when it runs next."""
    if lease is None:
        state = "idle"
    elif lease["state"] == "stale":
        state = (
            f"stale lease (held by {lease['holder']}: {lease['stale_reason']}; "
            "the next run takes it over)"
        )
    elif lease["state"] == "expired":
        state = f"expired lease (held by {lease['holder']}; the next run takes it over)"
    else:
        state = (
            f"running (held by {lease['holder']} until {readable_time(lease['expires_at'], now)})"
        )
    waiting = (
        f"; quarantined {quarantined} (holding {held} accounts: "
        f"crm-risk quarantine --connection {name})"
        if quarantined
        else "; quarantined 0"
    )
    if held_back:
        # Known holds keep later runs at exit 0: this is where they stay visible.
        waiting += (
            f"; fields held back {held_back} (values the CRM refused, sent again once "
            "the mapping or the CRM field changes: crm-risk audit)"
        )
    if not enabled:
        schedule = "disabled (enabled = false)"
    elif service_running:
        schedule = f"next run {readable_time(due_at, now)}"
    else:
        # Without a `crm-risk run` service nothing is scheduled: say so, and when it would run.
        overdue = due_at is None or datetime.fromisoformat(due_at) <= now
        when = "at once" if overdue else f"at {readable_time(due_at, now)}"
        schedule = (
            "no run scheduled: no `crm-risk run` service is running "
            f"(one started now would run it {when})"
        )
    return Text(f"{name}: {state}; pending retries {pending}{waiting}; {schedule}")
