"""The portfolio report's figures from plain inputs (book rows, snapshots, follow-ups); pure, no I/O.

Every amount here is already in the home currency: the rows carry each account's exposure as the
run converted it (`features.exposure`), and nothing in another currency reaches this module.
The figures are JSON-safe dicts (money as decimal strings with two places), so `report --json`
prints exactly what the HTML draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.scoring.policy import BANDS
from connector.scoring.portfolio import Concentration, PortfolioReport

BUCKETS: tuple[str, ...] = ("current", "1_30", "31_60", "61_90", "90_plus")
NEW = "new"
EXITED = "exited"
_ZERO = Decimal(0)


def money(value: Decimal | None) -> str | None:
    """Two-place decimal text, the codebase's JSON form of money."""
    return None if value is None else f"{value:.2f}"


@dataclass(frozen=True, slots=True)
class BookRow:
    """One scored account as the report needs it; money in the home currency."""

    account_id: str
    name: str
    owner_id: str | None
    industry: str | None
    country: str | None
    band: str
    score: float
    confidence: float
    exposure: Decimal
    overdue: Decimal
    aging: tuple[Decimal, ...]
    current_limit: Decimal | None
    recommended_limit: Decimal | None
    as_of: date


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The book at the end of one run: totals by band, and each account's band when still kept."""

    run_id: str
    as_of: date
    taken_at: datetime
    count_by_band: Mapping[str, int]
    exposure_by_band: Mapping[str, Decimal]
    # account id -> band; None once the store pruned the per-account rows of this run.
    bands: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class FollowUp:
    """One follow-up task episode from the ledger: who has it, when it opened, closed and was due."""

    account_id: str
    rule: str
    kind: str
    assignee: str | None
    opened_at: datetime
    closed_at: datetime | None
    due: date
    level: int = 0


@dataclass(frozen=True, slots=True)
class Settings:
    """The report's knobs: caps drawn on the concentration charts, lines and thresholds."""

    customer_cap: float
    industry_cap: float | None = None
    country_cap: float | None = None
    hhi_moderate: float = 1000.0
    hhi_high: float = 1800.0
    low_confidence_below: float = 0.5
    max_listed: int = 25
    band_cutoffs: tuple[float, ...] = (20, 40, 60, 80)
    window_days: int = 90
    movement_days: int = 365
    # Model health replays the payment history of at most this many accounts (a fixed sample).
    health_max_accounts: int = 1000


# -- the book now ---------------------------------------------------------------------------------


def book_figures(rows: Sequence[BookRow], portfolio: PortfolioReport) -> dict[str, Any]:
    """Accounts and exposure by band, the score distribution in 10-point bins, and aging.

    Args:
        rows: every scored account.
        portfolio: the run's totals by band (`scoring.portfolio.portfolio_report` over the rows).

    Returns:
        The "book now" figures.
    """
    total = portfolio.total_exposure
    by_band = []
    for band in BANDS:
        exposure = portfolio.exposure_by_band.get(band, _ZERO)
        by_band.append(
            {
                "band": band,
                "accounts": portfolio.count_by_band.get(band, 0),
                "exposure": money(exposure),
                "share": round(float(exposure / total), 4) if total > 0 else 0.0,
            }
        )
    bins = [0] * 10
    for row in rows:
        bins[min(int(row.score // 10), 9)] += 1
    aging = [_ZERO] * len(BUCKETS)
    counts = [0] * len(BUCKETS)
    overdue = _ZERO
    for row in rows:
        overdue += row.overdue
        for i, amount in enumerate(row.aging):
            aging[i] += amount
            if amount > 0:
                counts[i] += 1
    aged_total = sum(aging, _ZERO)
    return {
        "accounts": portfolio.accounts,
        "exposure": money(total),
        "overdue": money(overdue),
        "by_band": by_band,
        "scores": [
            {"from": 10 * i, "to": 10 * (i + 1), "accounts": count} for i, count in enumerate(bins)
        ],
        "aging": [
            {
                "bucket": bucket,
                "exposure": money(aging[i]),
                "accounts": counts[i],
                "share": round(float(aging[i] / aged_total), 4) if aged_total > 0 else 0.0,
            }
            for i, bucket in enumerate(BUCKETS)
        ],
    }


# -- movement ---------------------------------------------------------------------------------------


def migration(
    before: Mapping[str, str], after: Mapping[str, str], names: Mapping[str, str], max_listed: int
) -> dict[str, Any]:
    """The band migration matrix from one snapshot to another, with accounts that moved ≥ 2 bands.

    Rows are the bands before plus "new" (accounts not in `before`); columns are the bands after
    plus "exited" (accounts no longer in the book).

    Args:
        before: account id -> band in the earlier snapshot.
        after: account id -> band in the later snapshot.
        names: account id -> name, for the list.
        max_listed: how many large movers to list (all are counted).

    Returns:
        `rows`, `columns`, `counts` (one list per row), `upgrades`, `downgrades`, `unchanged`,
        `moved_two_plus` (count) and `movers` (the largest moves first).
    """
    rows = [*BANDS, NEW]
    columns = [*BANDS, EXITED]
    counts = [[0] * len(columns) for _ in rows]
    up = down = same = 0
    movers: list[dict[str, Any]] = []
    for account_id, band in after.items():
        old = before.get(account_id)
        if old is None:
            counts[rows.index(NEW)][columns.index(band)] += 1
            continue
        counts[rows.index(old)][columns.index(band)] += 1
        step = BANDS.index(band) - BANDS.index(old)
        if step > 0:
            down += 1
        elif step < 0:
            up += 1
        else:
            same += 1
        if abs(step) >= 2:
            movers.append(
                {
                    "account_id": account_id,
                    "name": names.get(account_id, account_id),
                    "from": old,
                    "to": band,
                    "bands": step,
                }
            )
    for account_id, band in before.items():
        if account_id not in after:
            counts[rows.index(band)][columns.index(EXITED)] += 1
    movers.sort(key=lambda m: (-abs(m["bands"]), -m["bands"], m["name"], m["account_id"]))
    return {
        "rows": rows,
        "columns": columns,
        "counts": counts,
        "upgrades": up,
        "downgrades": down,
        "unchanged": same,
        "moved_two_plus": len(movers),
        "movers": movers[:max_listed],
    }


def pick_baseline(snapshots: Sequence[Snapshot], on_or_before: date) -> Snapshot | None:
    """The newest snapshot with per-account bands taken as of `on_or_before` or earlier; else the oldest."""
    kept = [s for s in snapshots if s.bands is not None]
    earlier = [s for s in kept if s.as_of <= on_or_before]
    if earlier:
        return earlier[-1]
    return kept[0] if kept else None


def movement_figures(
    snapshots: Sequence[Snapshot], names: Mapping[str, str], as_of: date, settings: Settings
) -> dict[str, Any]:
    """Migration since the previous run and over the last 12 months, and exposure trend by band.

    Args:
        snapshots: the connection's snapshots taken as of `as_of` or earlier, oldest first.
        names: account id -> name.
        as_of: the report date.
        settings: list length and the movement window.

    Returns:
        `latest`, `since_previous` and `over_year` (each None when there is nothing to compare)
        and `trend` (one point per scoring date, the day's last run).
    """
    detailed = [s for s in snapshots if s.bands is not None]
    latest = detailed[-1] if detailed else None
    since_previous: dict[str, Any] | None = None
    over_year: dict[str, Any] | None = None
    if latest is not None and latest.bands is not None:
        if len(detailed) >= 2 and detailed[-2].bands is not None:
            previous = detailed[-2]
            assert previous.bands is not None
            since_previous = {
                "from_run": previous.run_id,
                "from_as_of": previous.as_of.isoformat(),
                **migration(previous.bands, latest.bands, names, settings.max_listed),
            }
        start = pick_baseline(detailed[:-1], as_of - timedelta(days=settings.movement_days))
        if start is not None and start.bands is not None:
            over_year = {
                "from_run": start.run_id,
                "from_as_of": start.as_of.isoformat(),
                "full_window": start.as_of <= as_of - timedelta(days=settings.movement_days),
                **migration(start.bands, latest.bands, names, settings.max_listed),
            }
    window_start = as_of - timedelta(days=settings.movement_days)
    by_day: dict[date, Snapshot] = {}
    for snapshot in snapshots:
        if snapshot.as_of >= window_start:
            by_day[snapshot.as_of] = snapshot
    trend = [
        {
            "as_of": day.isoformat(),
            "run_id": snap.run_id,
            "exposure_by_band": {b: money(snap.exposure_by_band.get(b, _ZERO)) for b in BANDS},
            "accounts": sum(snap.count_by_band.values()),
        }
        for day, snap in sorted(by_day.items())
    ]
    return {
        "latest": None
        if latest is None
        else {"run_id": latest.run_id, "as_of": latest.as_of.isoformat()},
        "since_previous": since_previous,
        "over_year": over_year,
        "trend": trend,
    }


# -- concentration --------------------------------------------------------------------------------


def _concentration(figures: Concentration, cap: float | None, settings: Settings) -> dict[str, Any]:
    out = figures.to_dict()
    out["cap"] = cap
    out["over_cap"] = (
        [member["name"] for member in out["top"] if member["share"] > cap] if cap else []
    )
    hhi = figures.hhi
    out["level"] = (
        "high" if hhi > settings.hhi_high else "moderate" if hhi >= settings.hhi_moderate else "low"
    )
    for member in out["top"]:
        member["exposure"] = money(Decimal(member["exposure"]))
    return out


def concentration_figures(portfolio: PortfolioReport, settings: Settings) -> dict[str, Any]:
    """HHI and top-10 shares by customer, industry and country, with the caps that apply.

    Args:
        portfolio: the run's concentration figures (`scoring.portfolio.portfolio_report`).
        settings: the caps and HHI lines.

    Returns:
        One entry per dimension plus the HHI lines.
    """
    return {
        "hhi_moderate": settings.hhi_moderate,
        "hhi_high": settings.hhi_high,
        "customer": _concentration(portfolio.by_customer, settings.customer_cap, settings),
        "industry": _concentration(portfolio.by_industry, settings.industry_cap, settings),
        "country": _concentration(portfolio.by_country, settings.country_cap, settings),
    }


# -- model health ----------------------------------------------------------------------------------


def confidence_figures(rows: Sequence[BookRow], settings: Settings) -> dict[str, Any]:
    """The share of accounts (and of exposure) scored with low confidence, and the distribution."""
    low = [row for row in rows if row.confidence < settings.low_confidence_below]
    total = sum((row.exposure for row in rows), _ZERO)
    low_exposure = sum((row.exposure for row in low), _ZERO)
    bins = [0] * 5
    for row in rows:
        bins[min(int(row.confidence * 5), 4)] += 1
    return {
        "threshold": settings.low_confidence_below,
        "accounts": len(rows),
        "low_confidence": len(low),
        "share": round(len(low) / len(rows), 4) if rows else None,
        "exposure_share": round(float(low_exposure / total), 4) if total > 0 else None,
        "distribution": [
            {"from": i / 5, "to": (i + 1) / 5, "accounts": count} for i, count in enumerate(bins)
        ],
    }


@dataclass
class Figures:
    """Every section's figures; `to_dict` is what `report --json` prints."""

    header: dict[str, Any]
    book: dict[str, Any]
    movement: dict[str, Any]
    concentration: dict[str, Any]
    owners: dict[str, Any]
    limits: dict[str, Any]
    stress: dict[str, Any]
    model_health: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            **self.header,
            "book": self.book,
            "movement": self.movement,
            "concentration": self.concentration,
            "owners": self.owners,
            "limits": self.limits,
            "stress": self.stress,
            "model_health": self.model_health,
            "notes": list(self.notes),
        }


__all__ = [
    "BUCKETS",
    "BookRow",
    "Figures",
    "FollowUp",
    "Settings",
    "Snapshot",
    "book_figures",
    "concentration_figures",
    "confidence_figures",
    "migration",
    "money",
    "movement_figures",
    "pick_baseline",
]
