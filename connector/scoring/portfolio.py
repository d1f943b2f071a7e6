"""Portfolio figures: the context one account is scored in, and the run's concentration report."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connector.models import Account, RiskAssessment

if TYPE_CHECKING:
    from connector.scoring.policy import ScoringPolicy

UNKNOWN = "(unknown)"


@dataclass(frozen=True, slots=True)
class PortfolioContext:
    """Totals of the whole book that an account's limit and concentration share depend on."""

    total_exposure: Decimal = Decimal(0)
    account_count: int = 0
    exposure_by_industry: Mapping[str, Decimal] = field(default_factory=dict)
    exposure_by_country: Mapping[str, Decimal] = field(default_factory=dict)


def build_portfolio_context(
    exposures: Iterable[tuple[Account, Decimal]], policy: ScoringPolicy | None = None
) -> PortfolioContext:
    """Sum exposures over the book (streamed; nothing per account is kept).

    Args:
        exposures: (account, open exposure) pairs, e.g. from `open_exposure` or the store.
        policy: the scoring policy (reserved for currency handling; amounts are taken as given).

    Returns:
        The context passed to every `assess` call of the run.
    """
    total = Decimal(0)
    count = 0
    industry: dict[str, Decimal] = {}
    country: dict[str, Decimal] = {}
    for account, exposure in exposures:
        if account.deleted:
            continue
        count += 1
        if exposure <= 0:
            continue
        total += exposure
        key = account.industry or UNKNOWN
        industry[key] = industry.get(key, Decimal(0)) + exposure
        key = account.country or UNKNOWN
        country[key] = country.get(key, Decimal(0)) + exposure
    return PortfolioContext(total, count, industry, country)


@dataclass(frozen=True, slots=True)
class Concentration:
    """Concentration of exposure over one dimension (customer, industry or country)."""

    hhi: float
    top10_share: float
    equivalent_count: float
    top: tuple[tuple[str, Decimal, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (money as decimal strings)."""
        return {
            "hhi": round(self.hhi, 1),
            "top10_share": round(self.top10_share, 4),
            "equivalent_count": round(self.equivalent_count, 1),
            "top": [
                {"name": name, "exposure": str(amount), "share": round(share, 4)}
                for name, amount, share in self.top
            ],
        }


def concentration(
    sum_squares: Decimal, total: Decimal, top: Iterable[tuple[Decimal, str]]
) -> Concentration:
    """HHI = Σ (100·s_i)² (0-10,000), top-10 share and 10,000 / HHI equal-sized equivalents.

    Args:
        sum_squares: Σ exposure_i² over the members.
        total: Σ exposure_i.
        top: the (exposure, name) pairs of the largest members.

    Returns:
        The concentration figures (all 0 for an empty book).
    """
    if total <= 0:
        return Concentration(0.0, 0.0, 0.0, ())
    hhi = float(sum_squares / (total * total)) * 10_000
    ranked = sorted(top, key=lambda item: (-item[0], item[1]))[:10]
    top10 = float(sum(amount for amount, _ in ranked) / total)
    members = tuple((name, amount, float(amount / total)) for amount, name in ranked)
    return Concentration(hhi, top10, 10_000 / hhi if hhi else 0.0, members)


def _from_totals(totals: Mapping[str, Decimal]) -> Concentration:
    total = sum(totals.values(), Decimal(0))
    squares = sum((v * v for v in totals.values()), Decimal(0))
    return concentration(squares, total, ((v, k) for k, v in totals.items()))


@dataclass(frozen=True, slots=True)
class PortfolioReport:
    """The run's portfolio figures: exposure by band and concentration by three dimensions."""

    accounts: int
    total_exposure: Decimal
    count_by_band: Mapping[str, int]
    exposure_by_band: Mapping[str, Decimal]
    by_customer: Concentration
    by_industry: Concentration
    by_country: Concentration

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; empty when no account was scored. Money is a decimal string."""
        if not self.accounts:
            return {}
        return {
            "accounts": self.accounts,
            "total_exposure": str(self.total_exposure),
            "count_by_band": dict(sorted(self.count_by_band.items())),
            "exposure_by_band": {k: str(v) for k, v in sorted(self.exposure_by_band.items())},
            "by_customer": self.by_customer.to_dict(),
            "by_industry": self.by_industry.to_dict(),
            "by_country": self.by_country.to_dict(),
        }


def portfolio_report(rows: Iterable[tuple[Account, RiskAssessment, Decimal]]) -> PortfolioReport:
    """Summarise a scored book in one pass, keeping only the ten largest customers.

    Args:
        rows: (account, assessment, exposure) per scored account; may be a generator.

    Returns:
        The portfolio report.
    """
    count = 0
    total = Decimal(0)
    squares = Decimal(0)
    largest: list[tuple[Decimal, str]] = []
    count_by_band: dict[str, int] = {}
    exposure_by_band: dict[str, Decimal] = {}
    industry: dict[str, Decimal] = {}
    country: dict[str, Decimal] = {}
    for account, assessment, exposure in rows:
        count += 1
        band = assessment.band
        count_by_band[band] = count_by_band.get(band, 0) + 1
        exposure_by_band[band] = exposure_by_band.get(band, Decimal(0)) + exposure
        if exposure <= 0:
            continue
        total += exposure
        squares += exposure * exposure
        item = (exposure, account.name or account.crm_id)
        if len(largest) < 10:
            heapq.heappush(largest, item)
        elif item > largest[0]:
            heapq.heapreplace(largest, item)
        key = account.industry or UNKNOWN
        industry[key] = industry.get(key, Decimal(0)) + exposure
        key = account.country or UNKNOWN
        country[key] = country.get(key, Decimal(0)) + exposure
    return PortfolioReport(
        accounts=count,
        total_exposure=total,
        count_by_band=count_by_band,
        exposure_by_band=exposure_by_band,
        by_customer=concentration(squares, total, largest),
        by_industry=_from_totals(industry),
        by_country=_from_totals(country),
    )
