"""The owners section's figures: each person's exposure by band and their follow-up backlog; pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.report.figures import BookRow, FollowUp, Settings, money
from connector.scoring.policy import BANDS

_ZERO = Decimal(0)


def _on_time(item: FollowUp) -> bool:
    return item.closed_at is not None and item.closed_at.date() <= item.due


def owner_figures(
    rows: Sequence[BookRow], followups: Sequence[FollowUp], now: datetime, settings: Settings
) -> dict[str, Any]:
    """Per person: exposure by band of the accounts they own, overdue exposure, and their follow-ups.

    Follow-ups count for the person they are assigned to (an account manager's past-due tasks,
    a credit manager's approvals), so each row is that person's own backlog and record.

    Args:
        rows: every scored account.
        followups: every ledger episode (open and closed).
        now: the report's moment: the 90-day window and ages end here.
        settings: the window length.

    Returns:
        `rules` (columns) and `owners` (rows, largest exposure first).
    """
    owners: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = _entry(owners, row.owner_id)
        item["accounts"] += 1
        item["exposure"] += row.exposure
        item["by_band"][row.band] += row.exposure
        item["overdue"] += row.overdue
    names = {row.account_id: row.name for row in rows}
    window_start = now - timedelta(days=settings.window_days)
    rules: set[str] = set()
    for task in followups:
        item = _entry(owners, task.assignee)
        if task.closed_at is None:
            rules.add(task.rule)
            _count_open(item, task, names, now)
        elif window_start <= task.closed_at <= now:
            item["closed_in_window"] += 1
            item["closed_on_time"] += int(_on_time(task))
    out = [_owner_row(item) for item in owners.values()]
    out.sort(key=lambda o: (-Decimal(o["exposure"]), -o["open_total"], o["owner_id"] or ""))
    return {"window_days": settings.window_days, "rules": sorted(rules), "owners": out}


def _entry(owners: dict[str, dict[str, Any]], owner: str | None) -> dict[str, Any]:
    """The running totals of `owner` (added empty on first sight)."""
    key = owner or ""
    if key not in owners:
        owners[key] = {
            "owner_id": owner,
            "accounts": 0,
            "exposure": _ZERO,
            "by_band": dict.fromkeys(BANDS, _ZERO),
            "overdue": _ZERO,
            "open": Counter[str](),
            "closed_in_window": 0,
            "closed_on_time": 0,
            "oldest_open": None,
        }
    return owners[key]


def _count_open(
    item: dict[str, Any], task: FollowUp, names: Mapping[str, str], now: datetime
) -> None:
    """Count an open follow-up for its owner, and keep it when it is their oldest."""
    item["open"][task.rule] += 1
    age = (now.date() - task.opened_at.date()).days
    oldest = item["oldest_open"]
    if oldest is None or age > oldest["days"]:
        item["oldest_open"] = {
            "days": age,
            "rule": task.rule,
            "account_id": task.account_id,
            "name": names.get(task.account_id, task.account_id),
            "overdue": now.date() > task.due,
        }


def _owner_row(item: dict[str, Any]) -> dict[str, Any]:
    closed = item["closed_in_window"]
    return {
        "owner_id": item["owner_id"],
        "accounts": item["accounts"],
        "exposure": money(item["exposure"]),
        "by_band": {band: money(amount) for band, amount in item["by_band"].items()},
        "overdue": money(item["overdue"]),
        "open": dict(sorted(item["open"].items())),
        "open_total": sum(item["open"].values()),
        "closed_in_window": closed,
        "closed_on_time": item["closed_on_time"],
        "on_time_share": round(item["closed_on_time"] / closed, 4) if closed else None,
        "oldest_open": item["oldest_open"],
    }


__all__ = ["owner_figures"]
