"""The limits section's figures: limits by band, changes, utilisation and held approvals; pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from connector.report.figures import BookRow, FollowUp, Settings, money
from connector.scoring.policy import BANDS

# Utilisation classes (exposure / current limit): Infor's 80/90/100 % alert lines.
UTILISATION_CLASSES: tuple[tuple[str, float, float], ...] = (
    ("0_50", 0.0, 0.5),
    ("50_80", 0.5, 0.8),
    ("80_90", 0.8, 0.9),
    ("90_100", 0.9, 1.0),
    ("100_plus", 1.0, float("inf")),
)
# Age classes of held limit approvals, in days.
AGE_CLASSES: tuple[tuple[str, int, int], ...] = (
    ("0_7", 0, 7),
    ("8_30", 8, 30),
    ("31_90", 31, 90),
    ("90_plus", 91, 10**9),
)
_ZERO = Decimal(0)


def limit_figures(
    rows: Sequence[BookRow],
    approvals: Iterable[FollowUp],
    now: datetime,
    settings: Settings,
) -> dict[str, Any]:
    """Current against recommended limits by band, held approvals and their age, utilisation.

    Args:
        rows: every scored account (limits in the home currency).
        approvals: open limit-approval follow-ups (held changes).
        now: the moment ages are measured to.
        settings: list length.

    Returns:
        `by_band`, `changes`, `utilisation`, `held` (count, age classes, the oldest listed).
    """
    current = dict.fromkeys(BANDS, _ZERO)
    recommended = dict.fromkeys(BANDS, _ZERO)
    changes = Counter[str]()
    classes = Counter[str]()
    class_exposure = {name: _ZERO for name, _, _ in UTILISATION_CLASSES}
    for row in rows:
        if row.current_limit is not None:
            current[row.band] += row.current_limit
        if row.recommended_limit is not None:
            recommended[row.band] += row.recommended_limit
        changes[_change(row)] += 1
        name = _utilisation_class(row)
        classes[name] += 1
        class_exposure[name] = class_exposure.get(name, _ZERO) + row.exposure
    held, ages = _held(approvals, {row.account_id: row for row in rows}, now)
    held.sort(key=lambda h: (-h["days"], h["name"]))
    return {
        "by_band": [
            {"band": b, "current": money(current[b]), "recommended": money(recommended[b])}
            for b in BANDS
        ],
        "changes": {
            key: changes.get(key, 0)
            for key in ("increase", "decrease", "unchanged", "first_limit", "no_basis")
        },
        "utilisation": [
            {"class": name, "accounts": classes.get(name, 0), "exposure": money(amount)}
            for name, amount in class_exposure.items()
        ],
        "held": {
            "count": len(held),
            "ages": [{"class": name, "count": ages.get(name, 0)} for name, _, _ in AGE_CLASSES],
            "oldest": held[: settings.max_listed],
        },
    }


def _change(row: BookRow) -> str:
    """How the recommended limit would change the current one."""
    if row.current_limit is None and row.recommended_limit is None:
        return "no_basis"
    if row.current_limit is None:
        return "first_limit"
    if row.recommended_limit is None or row.recommended_limit == row.current_limit:
        return "unchanged"
    if row.recommended_limit > row.current_limit:
        return "increase"
    return "decrease"


def _utilisation_class(row: BookRow) -> str:
    """The utilisation class of the account's exposure against its current limit."""
    if row.current_limit is None or row.current_limit <= 0:
        return "no_limit"
    used = float(row.exposure / row.current_limit)
    return next(n for n, low, high in UTILISATION_CLASSES if low <= used < high)


def _held(
    approvals: Iterable[FollowUp], by_id: Mapping[str, BookRow], now: datetime
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The open approvals, longest waiting first, and how many fall in each age class."""
    held: list[dict[str, Any]] = []
    ages = Counter[str]()
    for task in approvals:
        if task.closed_at is not None:
            continue
        days = (now.date() - task.opened_at.date()).days
        ages[next(n for n, low, high in AGE_CLASSES if low <= max(days, 0) <= high)] += 1
        found = by_id.get(task.account_id)
        held.append(
            {
                "account_id": task.account_id,
                "name": found.name if found else task.account_id,
                "owner_id": found.owner_id if found else None,
                "band": found.band if found else None,
                "current_limit": money(found.current_limit) if found else None,
                "recommended_limit": money(found.recommended_limit) if found else None,
                "days": days,
            }
        )
    held.sort(key=lambda h: (-h["days"], h["name"]))
    return held, ages


__all__ = ["AGE_CLASSES", "UTILISATION_CLASSES", "limit_figures"]
