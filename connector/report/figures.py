"""The portfolio report's figures from plain inputs (book rows, snapshots, follow-ups); pure, no I/O.

Every amount here is already in the home currency: the rows carry each account's exposure as the
run converted it (`features.exposure`), and nothing in another currency reaches this module.
The figures are JSON-safe dicts (money as decimal strings with two places), so `report --json`
prints exactly what the HTML draws.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.scoring.policy import BANDS
from connector.scoring.portfolio import Concentration, PortfolioReport

BUCKETS: tuple[str, ...] = ("current", "1_30", "31_60", "61_90", "90_plus")
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


# -- owners ---------------------------------------------------------------------------------------


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

    def entry(owner: str | None) -> dict[str, Any]:
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

    names = {row.account_id: row.name for row in rows}
    for row in rows:
        item = entry(row.owner_id)
        item["accounts"] += 1
        item["exposure"] += row.exposure
        item["by_band"][row.band] += row.exposure
        item["overdue"] += row.overdue
    window_start = now - timedelta(days=settings.window_days)
    rules: set[str] = set()
    for task in followups:
        item = entry(task.assignee)
        if task.closed_at is None:
            rules.add(task.rule)
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
        elif window_start <= task.closed_at <= now:
            item["closed_in_window"] += 1
            item["closed_on_time"] += int(_on_time(task))
    out = []
    for item in owners.values():
        closed = item["closed_in_window"]
        out.append(
            {
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
        )
    out.sort(key=lambda o: (-Decimal(o["exposure"]), -o["open_total"], o["owner_id"] or ""))
    return {"window_days": settings.window_days, "rules": sorted(rules), "owners": out}


# -- limits ---------------------------------------------------------------------------------------


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
    by_id = {row.account_id: row for row in rows}
    for row in rows:
        if row.current_limit is not None:
            current[row.band] += row.current_limit
        if row.recommended_limit is not None:
            recommended[row.band] += row.recommended_limit
        if row.current_limit is None and row.recommended_limit is None:
            changes["no_basis"] += 1
        elif row.current_limit is None:
            changes["first_limit"] += 1
        elif row.recommended_limit is None or row.recommended_limit == row.current_limit:
            changes["unchanged"] += 1
        elif row.recommended_limit > row.current_limit:
            changes["increase"] += 1
        else:
            changes["decrease"] += 1
        if row.current_limit is None or row.current_limit <= 0:
            name = "no_limit"
            class_exposure.setdefault(name, _ZERO)
        else:
            used = float(row.exposure / row.current_limit)
            name = next(n for n, low, high in UTILISATION_CLASSES if low <= used < high)
        classes[name] += 1
        class_exposure[name] += row.exposure
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
    "limit_figures",
    "migration",
    "money",
    "movement_figures",
    "owner_figures",
    "pick_baseline",
]
