"""Recommended credit limit: need-based exposure × band multiplier, capped, rounded, recorded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from connector.models import Account, Invoice, InvoiceStatus
from connector.scoring.currency import nice_step, round_in_currency
from connector.scoring.features import Features
from connector.scoring.policy import LimitPolicy, ScoringPolicy
from connector.scoring.portfolio import PortfolioContext

_CENT = Decimal("0.01")


def _d(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


def _fmt(value: Decimal) -> str:
    return f"{value:,.2f}"


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Floor to a multiple of `step`; below one step, floor to a power of ten (never rounds up).

    Args:
        value: the amount (negative amounts give 0).
        step: the policy's rounding step.

    Returns:
        The rounded amount, never above `value`.
    """
    if value <= 0:
        return Decimal(0)
    if value >= step:
        return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step
    # A small customer still gets a readable, non-zero limit: 740 -> 700, 7.4 -> 7.
    unit = Decimal(10) ** value.adjusted()
    return (value / unit).to_integral_value(rounding=ROUND_FLOOR) * unit


def recommend_limit(
    account: Account,
    f: Features,
    band: str,
    portfolio: PortfolioContext,
    policy: ScoringPolicy,
) -> tuple[Decimal | None, tuple[str, ...]]:
    """Derive the recommended limit and record every step (reference A7, steps 1-6).

    Args:
        account: the customer (capacity inputs, insured limit, manual limit).
        f: its features (invoiced amounts, terms, exposure).
        band: the band from the rating.
        portfolio: book totals for the concentration cap.
        policy: the scoring policy.

    Returns:
        (limit or None when there is no basis at all, derivation lines).
    """
    lp = policy.limits
    steps: list[str] = []
    need = _need(account, f, lp, steps)
    if need is None:
        return None, tuple(steps)
    limit = _capacity_base(account, lp, need, steps)
    multiplier = Decimal(str(lp.band_multipliers[band]))
    limit = (limit * multiplier).quantize(_CENT)
    steps.append(f"band {band} multiplier {multiplier} → {_fmt(limit)}")
    limit = _capped(account, portfolio, lp, limit, steps)
    rounded = floor_to_step(limit, lp.rounding_step)
    steps.append(f"floored to step {_fmt(lp.rounding_step)}: {_fmt(rounded)}")
    return _within_manual(account, rounded, steps), tuple(steps)


def _need(account: Account, f: Features, lp: LimitPolicy, steps: list[str]) -> Decimal | None:
    """What the customer needs (monthly invoicing over terms), or the current limit."""
    cur = f" {f.currency}" if f.currency else ""
    if f.need_invoiced > 0:
        monthly = f.need_invoiced / f.need_months
        need = _d(monthly * (f.terms_days + lp.tolerance_days) / 30.0)
        steps.append(
            f"need: {_fmt(_d(monthly))}{cur} invoiced per month × ({f.terms_days} days terms + "
            f"{lp.tolerance_days} tolerance) / 30 = {_fmt(need)}"
        )
    elif account.current_credit_limit is not None:
        need = account.current_credit_limit
        steps.append(
            f"need: no invoices in the last {lp.need_window_days} days; current limit "
            f"{_fmt(need)} taken as the need"
        )
    else:
        steps.append("no invoice history and no current limit: no recommendation")
        return None
    return need


def _capacity_base(account: Account, lp: LimitPolicy, need: Decimal, steps: list[str]) -> Decimal:
    """The base: the need, or the lowest capacity input (agency limit, net worth, capital) if lower."""
    capacity: list[tuple[str, Decimal]] = []
    if lp.use_agency_limit and account.agency_limit is not None:
        capacity.append(("agency limit", account.agency_limit))
    if account.net_worth is not None and lp.net_worth_share > 0:
        share = Decimal(str(lp.net_worth_share))
        capacity.append(
            (f"{lp.net_worth_share:.0%} of net worth", max(account.net_worth, Decimal(0)) * share)
        )
    if account.working_capital is not None and lp.working_capital_share > 0:
        share = Decimal(str(lp.working_capital_share))
        capacity.append(
            (
                f"{lp.working_capital_share:.0%} of working capital",
                max(account.working_capital, Decimal(0)) * share,
            )
        )
    limit = need
    if capacity:
        name, cap = min(capacity, key=lambda item: item[1])
        steps.append(
            f"capacity: {name} {_fmt(cap)}"
            + (" (lowest capacity input)" if len(capacity) > 1 else "")
        )
        if cap < limit:
            limit = cap
            steps.append(f"base = capacity {_fmt(limit)}")
        else:
            steps.append(f"base = need {_fmt(limit)}")
    else:
        steps.append(
            f"capacity: no agency limit or financials (needs capacity data); base = need {_fmt(limit)}"
        )
    return limit


def _capped(
    account: Account,
    portfolio: PortfolioContext,
    lp: LimitPolicy,
    limit: Decimal,
    steps: list[str],
) -> Decimal:
    """The caps: the insured limit plus appetite, the concentration cap, the policy maximum."""
    caps: list[tuple[str, Decimal]] = []
    if account.insured_limit is not None:
        caps.append(
            (
                f"insured limit {_fmt(account.insured_limit)} + uninsured appetite {_fmt(lp.uninsured_appetite)}",
                account.insured_limit + lp.uninsured_appetite,
            )
        )
    if portfolio.total_exposure > 0 and portfolio.account_count >= lp.concentration_min_accounts:
        share = Decimal(str(lp.concentration_cap_share))
        caps.append(
            (
                f"concentration cap {lp.concentration_cap_share:.0%} of portfolio exposure "
                f"{_fmt(portfolio.total_exposure)}",
                (portfolio.total_exposure * share).quantize(_CENT),
            )
        )
    if lp.max_limit is not None:
        caps.append(("policy maximum", lp.max_limit))
    for name, cap in caps:
        if cap < limit:
            limit = max(cap, Decimal(0))
            steps.append(f"capped by {name}: {_fmt(limit)}")
        else:
            steps.append(f"within {name} ({_fmt(cap)})")
    return limit


def _within_manual(account: Account, rounded: Decimal, steps: list[str]) -> Decimal:
    """A manual credit limit on the account is never exceeded."""
    manual = account.manual_credit_limit
    if manual is not None:
        if rounded > manual:
            rounded = max(manual, Decimal(0))
            steps.append(f"manual credit limit {_fmt(manual)} is never exceeded: {_fmt(rounded)}")
        else:
            steps.append(f"within manual credit limit {_fmt(manual)}")
    return rounded


def in_account_currency(
    limit_home: Decimal | None,
    *,
    home: str | None,
    currency: str | None,
    rate: Decimal,
    step: Decimal,
) -> tuple[Decimal | None, tuple[str, ...]]:
    """A limit derived in the home currency, converted into the account's currency and rounded there.

    Args:
        limit_home: the recommendation in the home currency (None: no recommendation).
        home: the home currency.
        currency: the account's currency (None or home: no conversion).
        rate: units of `currency` per one unit of home.
        step: the policy's rounding step (in home units); a readable 1-2-5 step in the
            account's currency is derived from it.

    Returns:
        (the limit in the account's currency, derivation lines).
    """
    if limit_home is None or currency is None or currency == home or rate == 1:
        return limit_home, ()
    raw = (limit_home * rate).quantize(_CENT)
    rounded = round_in_currency(raw, step, rate)
    return rounded, (
        f"in the account's currency: {_fmt(limit_home)} {home} × {rate.normalize():f} = "
        f"{_fmt(raw)} {currency}, floored to {_fmt(rounded)} {currency}",
    )


_ORDER = "ABCDE"


def peak_exposures(invoices: Sequence[Invoice], as_of: date, months: int) -> tuple[Decimal, ...]:
    """Peak open amount in each of the last `months` 30-day months, newest first.

    An invoice is open on a day from its issue date until its paid date (or now, when unpaid);
    each month's peak is taken at its end and at `as_of`, which is what a limit is used for.

    Args:
        invoices: the account's invoices (amounts in one currency).
        as_of: the decision date.
        months: how many months back.

    Returns:
        One open amount per month, newest first.
    """
    peaks = []
    for month in range(months):
        day = as_of - timedelta(days=30 * month)
        total = Decimal(0)
        for inv in invoices:
            if inv.deleted or inv.status in (InvoiceStatus.VOID, InvoiceStatus.WRITTEN_OFF):
                continue
            if inv.issue_date > day:
                continue
            if inv.paid_date is not None:
                if inv.paid_date > day:
                    total += inv.amount
            elif inv.open_amount > 0:
                total += inv.open_amount if month == 0 else inv.amount
        peaks.append(total)
    return tuple(peaks)


def review_limit(
    target: Decimal | None,
    current: Decimal | None,
    *,
    band: str,
    previous_band: str | None,
    peaks: Sequence[Decimal],
    hard_rules: Sequence[str],
    manual: Decimal | None,
    policy: ScoringPolicy,
) -> tuple[Decimal | None, tuple[str, ...]]:
    """The change a credit manager would accept from the limit the account has to the target.

    No cut in a good band for low recent invoicing (a cut needs a worse band than last review,
    or low use of the limit for months), at most a set share of change per review (hard rules
    may cut at once), and no change too small to be worth a write.

    Args:
        target: the derived limit (home currency), or None.
        current: the limit the account has now (home currency), or None.
        band: this review's band.
        previous_band: last review's band (None at the first review).
        peaks: peak open amounts per month, newest first (see `peak_exposures`).
        hard_rules: the hard rules that fired (they allow an immediate cut).
        manual: a manual limit, never exceeded.
        policy: the scoring policy.

    Returns:
        (the reviewed limit, derivation lines).
    """
    lp = policy.limits
    if target is None or current is None or current <= 0:
        return target, ()
    steps: list[str] = []
    limit = target
    if limit < current and not hard_rules:
        worse = previous_band is not None and _ORDER.index(band) > _ORDER.index(previous_band)
        months = list(peaks[: lp.low_use_months])
        share = Decimal(str(lp.low_use_share))
        low_use = len(months) == lp.low_use_months and all(p < current * share for p in months)
        if band in lp.hold_bands and not worse and not low_use:
            steps.append(
                f"kept at {_fmt(current)}: band {band} did not worsen and the limit was used "
                f"(peak {_fmt(max(months, default=Decimal(0)))} in {lp.low_use_months} months)"
            )
            return current, tuple(steps)
        floor = (current * (1 - Decimal(str(lp.max_decrease_share)))).quantize(_CENT)
        if limit < floor:
            limit = floor
            steps.append(f"cut capped at {lp.max_decrease_share:.0%} per review: {_fmt(limit)}")
    elif limit > current:
        ceiling = (current * (1 + Decimal(str(lp.max_increase_share)))).quantize(_CENT)
        if limit > ceiling:
            limit = ceiling
            steps.append(
                f"increase capped at {lp.max_increase_share:.0%} per review: {_fmt(limit)}"
            )
    if limit != current and abs(limit - current) < current * Decimal(str(lp.min_change_share)):
        steps.append(f"change below {lp.min_change_share:.0%} of {_fmt(current)}: kept")
        return current, tuple(steps)
    if limit != target:
        limit = floor_to_step(limit, lp.rounding_step) if limit > current else limit
    if manual is not None and limit > manual:
        limit = manual
        steps.append(f"manual credit limit {_fmt(manual)} is never exceeded")
    return limit, tuple(steps)


def within_review_cap(
    limit: Decimal | None,
    reference: Decimal | None,
    *,
    rate: Decimal,
    policy: ScoringPolicy,
) -> Decimal | None:
    """Keep a limit rounded in the account's currency within the per-review cap of `reference`.

    Rounding to a step in the account's currency can push a capped change just past the cap
    (and past an approval threshold set at the same share); the nearest step inside wins.
    """
    if limit is None or reference is None or reference <= 0:
        return limit
    lp = policy.limits
    step = nice_step(lp.rounding_step * rate) if rate != 1 else lp.rounding_step
    low = reference * (1 - Decimal(str(lp.max_decrease_share)))
    high = reference * (1 + Decimal(str(lp.max_increase_share)))
    if limit < low:
        return min(reference, (low / step).to_integral_value(rounding=ROUND_CEILING) * step)
    if limit > high:
        return max(reference, (high / step).to_integral_value(rounding=ROUND_FLOOR) * step)
    return limit
