"""Stress scenarios: the same pure scoring run on inputs changed by a shock (a sector down, a default).

A scenario selects accounts (industry, country, owner, band) and applies one or more shocks:

* `bands_down = N`: the account is rated N bands worse than its inputs say (a sector outlook
  the payment data does not show yet); the limit rule runs again with that band.
* `days_late = D`: every invoice still open at `as_of` is D days further past due (its due date
  moved back), so aging, delay, the 90+ days hard rule and the limit all follow from the inputs.
* `default_rate = r`: the account defaults: it is flagged insolvent (the hard rule puts it in
  band E, limit 0) and `r` of its exposure is counted as lost.

Nothing here reads the clock or the store: the caller passes the inputs and `as_of`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from connector.models import Account, Invoice, InvoiceStatus, StrictModel
from connector.scoring.features import extract
from connector.scoring.limits import recommend_limit
from connector.scoring.policy import BANDS, ScoringPolicy
from connector.scoring.portfolio import PortfolioContext
from connector.scoring.rating import rate

Band = Literal["A", "B", "C", "D", "E"]
_SETTLED = (InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.WRITTEN_OFF)


def _as_tuple(value: Any) -> Any:
    # `industry = "Construction"` reads as well as `industry = ["Construction", "Mining"]`.
    return (value,) if isinstance(value, str) else value


class Scenario(StrictModel):
    """One stress scenario: which accounts, and what happens to them."""

    label: str = ""
    industry: tuple[str, ...] = ()
    country: tuple[str, ...] = ()
    owner: tuple[str, ...] = ()
    band: tuple[Band, ...] = ()
    bands_down: int = Field(default=0, ge=0, le=4)
    days_late: int = Field(default=0, ge=0, le=3650)
    default_rate: float | None = Field(default=None, ge=0, le=1)

    _tuples = field_validator("industry", "country", "owner", "band", mode="before")(_as_tuple)

    @model_validator(mode="after")
    def _has_a_shock(self) -> Scenario:
        if not self.bands_down and not self.days_late and self.default_rate is None:
            raise ValueError("a scenario needs a shock: bands_down, days_late or default_rate")
        return self

    def selects(self, account: Account, band: str) -> bool:
        """Whether the scenario applies to this account (filters compare case-insensitively)."""

        def matches(wanted: tuple[str, ...], value: str | None) -> bool:
            if not wanted:
                return True
            return value is not None and value.strip().casefold() in {
                w.strip().casefold() for w in wanted
            }

        return (
            matches(self.industry, account.industry)
            and matches(self.country, account.country)
            and matches(self.owner, account.owner_id)
            and (not self.band or band in self.band)
        )

    def describe(self) -> str:
        """A one-line English description of the filters and shocks (the label when set)."""
        if self.label:
            return self.label
        where = [
            f"{name} = {', '.join(values)}"
            for name, values in (
                ("industry", self.industry),
                ("country", self.country),
                ("owner", self.owner),
                ("band", self.band),
            )
            if values
        ]
        what = []
        if self.bands_down:
            what.append(f"moves down {self.bands_down} band{'s' if self.bands_down > 1 else ''}")
        if self.days_late:
            what.append(f"pays {self.days_late} days later")
        if self.default_rate is not None:
            what.append(f"defaults at {self.default_rate:.0%}")
        return f"{' and '.join(where) or 'every account'}: {', '.join(what)}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One account before and after the shock: band, score, recommended limit, exposure, loss."""

    band_before: str
    band_after: str
    score_before: float
    score_after: float
    limit_before: Decimal | None
    limit_after: Decimal | None
    exposure: Decimal
    loss: Decimal
    hard_rule_after: bool


def _shift_open(invoices: Sequence[Invoice], days: int, as_of: date) -> list[Invoice]:
    """Invoices with every item still open at `as_of` due `days` earlier (so further past due)."""
    shifted: list[Invoice] = []
    for invoice in invoices:
        paid = invoice.paid_date
        settled = (
            (invoice.status in _SETTLED or invoice.open_amount <= 0)
            and paid is not None
            and paid <= as_of
        )
        if settled or invoice.deleted or invoice.issue_date > as_of:
            shifted.append(invoice)
        else:
            shifted.append(
                invoice.model_copy(update={"due_date": invoice.due_date - timedelta(days=days)})
            )
    return shifted


def _rated(
    account: Account,
    invoices: Sequence[Invoice],
    portfolio: PortfolioContext,
    policy: ScoringPolicy,
    as_of: date,
    bands_down: int,
) -> tuple[str, float, Decimal | None, bool, float]:
    f = extract(account, invoices, portfolio, policy, as_of)
    rating = rate(f, policy)
    band = BANDS[min(len(BANDS) - 1, BANDS.index(rating.band) + bands_down)]
    limit, _ = recommend_limit(account, f, band, portfolio, policy)
    return band, rating.score, limit, bool(rating.hard_rules), f.exposure


def stress_all(
    account: Account,
    invoices: Sequence[Invoice],
    portfolio: PortfolioContext,
    policy: ScoringPolicy,
    as_of: date,
    scenarios: Sequence[Scenario],
) -> list[Outcome]:
    """`stress` for several scenarios of one account, scoring the account as it is only once.

    A scenario that only moves bands changes no input, so its shocked score is the unshocked
    one: only the band and the limit rule run again.
    """
    f = extract(account, invoices, portfolio, policy, as_of)
    rating = rate(f, policy)
    limit, _ = recommend_limit(account, f, rating.band, portfolio, policy)
    before = (rating.band, rating.score, limit, bool(rating.hard_rules), f.exposure)
    outcomes = []
    for scenario in scenarios:
        if scenario.default_rate is None and not scenario.days_late:
            band = BANDS[min(len(BANDS) - 1, BANDS.index(rating.band) + scenario.bands_down)]
            shifted, _ = recommend_limit(account, f, band, portfolio, policy)
            after = (band, rating.score, shifted, bool(rating.hard_rules), f.exposure)
        else:
            shocked, shifted_invoices = _shock(account, invoices, as_of, scenario)
            after = _rated(shocked, shifted_invoices, portfolio, policy, as_of, scenario.bands_down)
        outcomes.append(_outcome(before, after, scenario))
    return outcomes


def _shock(
    account: Account, invoices: Sequence[Invoice], as_of: date, scenario: Scenario
) -> tuple[Account, Sequence[Invoice]]:
    """The inputs as the scenario's shocks change them (`bands_down` changes none: see `_rated`)."""
    if scenario.default_rate is not None:
        account = account.model_copy(update={"insolvency_flag": True})
    if scenario.days_late:
        invoices = _shift_open(invoices, scenario.days_late, as_of)
    return account, invoices


def _outcome(
    before: tuple[str, float, Decimal | None, bool, float],
    after: tuple[str, float, Decimal | None, bool, float],
    scenario: Scenario,
) -> Outcome:
    exposure = Decimal(f"{before[4]:.2f}")
    rate_lost = Decimal(str(scenario.default_rate or 0))
    return Outcome(
        band_before=before[0],
        band_after=after[0],
        score_before=before[1],
        score_after=after[1],
        limit_before=before[2],
        limit_after=after[2],
        exposure=exposure,
        loss=(exposure * rate_lost).quantize(Decimal("0.01")) if exposure > 0 else Decimal(0),
        hard_rule_after=after[3],
    )


def stress(
    account: Account,
    invoices: Sequence[Invoice],
    portfolio: PortfolioContext,
    policy: ScoringPolicy,
    as_of: date,
    scenario: Scenario,
) -> Outcome:
    """Score one account as it is and under the scenario's shocks, with the same scoring code.

    Args:
        account: the account (money in the home currency).
        invoices: its invoices (in the home currency).
        portfolio: the book's totals (concentration cap of the limit rule).
        policy: the scoring policy.
        as_of: the decision date of the book.
        scenario: the shocks (its filters are the caller's business).

    Returns:
        The outcome before and after.
    """
    before = _rated(account, invoices, portfolio, policy, as_of, 0)
    shocked, shifted_invoices = _shock(account, invoices, as_of, scenario)
    after = _rated(shocked, shifted_invoices, portfolio, policy, as_of, scenario.bands_down)
    return _outcome(before, after, scenario)


__all__ = ["Outcome", "Scenario", "stress", "stress_all"]
