"""Pure feature extraction: what an account's invoices say at `as_of` (aging, delay, trend, DSO ...).

Early payment. Reference A2.7 recommended flooring early payment at 0 (Experian's DBT) so that a
customer cannot bank early payments against late ones. Both measures are computed: `dbt`
(floored, reported as days beyond terms) and `payment_delay` (signed: paying 8 days early counts
-8, as in Upflow's average payment delay and D&B's PAYDEX, where anticipating payers score above
prompt ones). `policy.windows.early_payment` says which one the delay factor and the trend use.
The default, "signed", was decided by evidence, not by the reference: on the IBM sample before
the backtest split (invoices known on 2013-01-01 whose customer had a settled invoice), the
signed delay ranks "paid late" at AUC 0.862 against 0.836 floored (0.837 against 0.823 at more
than 15 days late; bench/select_model.py). Banking is limited instead of forbidden: no invoice
counts more than `windows.early_credit_days` (10) early, where the delay curve reaches 0 points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from connector.models import Account, Invoice, InvoiceStatus
from connector.scoring.policy import ScoringPolicy, WindowPolicy
from connector.scoring.portfolio import PortfolioContext

_SKIP = (InvoiceStatus.VOID,)
_SETTLED = (InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.WRITTEN_OFF)
BUCKETS: tuple[str, ...] = ("current", "1_30", "31_60", "61_90", "90_plus")


@dataclass(slots=True)
class Features:
    """Every measurement of one account at `as_of`; amounts are floats in one currency."""

    currency: str | None = None
    # False when the CRM mapping has no paid-date source: settled invoices cannot be seen, so
    # the thin-file factor and cap would blame the customer for our missing data.
    payment_history: bool = True
    invoice_count: int = 0
    exposure: float = 0.0
    bucket_amounts: list[float] = field(default_factory=lambda: [0.0] * 5)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * 5)
    max_days_past_due: int = 0
    overdue_amount: float = 0.0
    overdue_count: int = 0
    severe_overdue_amount: float = 0.0
    severe_count: int = 0
    insolvency: bool = False
    # Payment experience: any invoice due on or before as_of (paid, or open and due).
    has_experience: bool = False
    dbt: float | None = None
    dbt_settled: float | None = None
    # Signed amount-weighted delay (early payment negative), open overdue items counted to as_of.
    payment_delay: float | None = None
    # Recent and prior delay and their difference, in the measure `windows.early_payment` picks.
    recent_dbt: float | None = None
    prior_dbt: float | None = None
    trend: float | None = None
    late_share: float | None = None
    paid_amount: float = 0.0
    settled_count: int = 0
    invoiced_amount: float = 0.0
    disputed_amount: float = 0.0
    disputed_share: float | None = None
    open_disputes: int = 0
    oldest_dispute_days: int | None = None
    write_offs: int = 0
    tenure_days: int = 0
    utilisation: float | None = None
    current_limit: float | None = None
    external_score: float | None = None
    external_score_age_days: int | None = None
    external_risk: float | None = None
    altman_z: float | None = None
    need_invoiced: float = 0.0
    need_months: float = 0.0
    terms_days: int = 30
    insured_limit: float | None = None
    exposure_above_insured: float = 0.0
    concentration_share: float | None = None
    concentration_cap_exceeded: bool = False
    dso: float | None = None
    bpdso: float | None = None

    @property
    def add(self) -> float | None:
        """Average days delinquent: DSO minus best possible DSO."""
        if self.dso is None or self.bpdso is None:
            return None
        return self.dso - self.bpdso


def _money(value: float | None) -> str | None:
    # Money goes into the JSON features as a decimal string (exact, locale-free, 2 places).
    return None if value is None else f"{value:.2f}"


def _round(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)


def features_dict(f: Features) -> dict[str, Any]:
    """The JSON-safe feature map stored with the assessment (money as decimal strings).

    Args:
        f: extracted features.

    Returns:
        A dict of str -> str | int | float | bool | None; money values are strings such as "1250.00".
    """
    out: dict[str, Any] = {
        "currency": f.currency,
        "exposure": _money(f.exposure),
        "utilisation": _round(f.utilisation),
        "max_days_past_due": f.max_days_past_due,
        "overdue_amount": _money(f.overdue_amount),
        "overdue_count": f.overdue_count,
        "severe_overdue_amount": _money(f.severe_overdue_amount),
    }
    for name, amount, count in zip(BUCKETS, f.bucket_amounts, f.bucket_counts, strict=True):
        out[f"aging_{name}"] = _money(amount)
        out[f"aging_{name}_count"] = count
    out.update(
        {
            "days_beyond_terms": _round(f.dbt, 2),
            "payment_delay": _round(f.payment_delay, 2),
            "late_share": _round(f.late_share),
            "recent_dbt": _round(f.recent_dbt, 2),
            "prior_dbt": _round(f.prior_dbt, 2),
            "trend": _round(f.trend, 2),
            "open_disputes": f.open_disputes,
            "oldest_dispute_days": f.oldest_dispute_days,
            "disputed_share": _round(f.disputed_share),
            "write_offs_recent": f.write_offs,
            "settled_count": f.settled_count,
            "invoice_count": f.invoice_count,
            "tenure_days": f.tenure_days,
            "external_score": _round(f.external_score, 2),
            "external_score_age_days": f.external_score_age_days,
            "altman_z": _round(f.altman_z, 3),
            "insured_limit": _money(f.insured_limit),
            "exposure_above_insured": _money(f.exposure_above_insured),
            "concentration_share": _round(f.concentration_share, 6),
            "concentration_cap_exceeded": f.concentration_cap_exceeded,
            "dso": _round(f.dso, 1),
            "bpdso": _round(f.bpdso, 1),
            "add": _round(f.add, 1),
            "payment_terms_days": f.terms_days,
        }
    )
    return out


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _count_back(ar: float, monthly_sales: list[float], max_months: int) -> float:
    """Count-back days (reference A2.2) over 30-day months, newest first.

    Works in whole cents: in floats, AR summed in invoice order can exceed the same invoices
    summed month by month by 1e-17, and that residue then "covers" every empty older month
    (60 days reported as 360).
    """
    days = 0.0
    remaining = round(ar * 100)
    for month in monthly_sales[:max_months]:
        if remaining <= 0:
            break
        sales = round(month * 100)
        if sales <= 0:
            days += 30.0
        elif remaining >= sales:
            remaining -= sales
            days += 30.0
        else:
            days += remaining / sales * 30.0
            remaining = 0
    return days


def extract(
    account: Account,
    invoices: Sequence[Invoice],
    portfolio: PortfolioContext,
    policy: ScoringPolicy,
    as_of: date,
) -> Features:
    """Measure an account at `as_of` using only what was known then.

    Invoices issued after `as_of` are ignored; an invoice paid after `as_of` counts as open
    at its full amount, and a dispute starting after `as_of` is not yet a dispute. This makes
    the same function serve the live run and the point-in-time backtest.

    Args:
        account: the customer.
        invoices: its invoices (any order).
        portfolio: totals of the whole book, for the concentration share.
        policy: the scoring policy.
        as_of: the decision date.

    Returns:
        The features.
    """
    f = Features()
    today = as_of.toordinal()
    windows = policy.windows
    trailing_start = today - windows.trailing_days
    months = policy.dso_max_months
    monthly_sales = [0.0] * months
    # The sums `finish` reads (open and paid invoices added as `scoring.timeline` adds them).
    t = InvoiceTotals()
    first_issue: int | None = None
    terms: list[int] = []
    currency: str | None = policy.home_currency

    for inv in invoices:
        if inv.deleted or inv.status in _SKIP:
            continue
        issue = inv.issue_date.toordinal()
        if issue > today:
            continue
        rate = _home_rate(inv, policy.home_currency)
        if currency is None and inv.currency:
            currency = inv.currency
        amount = float(inv.amount) * rate
        due = inv.due_date.toordinal()
        f.invoice_count += 1
        first_issue = issue if first_issue is None else min(first_issue, issue)
        terms.append(due - issue)
        if (age_block := (today - issue) // 30) < months:
            monthly_sales[age_block] += amount
        if issue > today - policy.limits.need_window_days:
            t.need_invoiced += amount
        if inv.status == InvoiceStatus.WRITTEN_OFF and (written := _written_off_on(inv)) <= today:
            f.write_offs += 1 if written > today - policy.hard_rules.write_off_lookback_days else 0
            continue
        # Written off after as_of: on as_of it was still an open invoice (point in time).
        is_disputed, paid_ord, settled_now, settled_by_as_of = _status_at(inv, today)
        # Dispute share over invoices whose dispute status is final at as_of (settled, or
        # disputed): an open undisputed invoice may still be disputed, so it is in neither the
        # numerator nor the denominator (in the backtest, disputes are known only once settled).
        if issue > trailing_start and (is_disputed or settled_by_as_of):
            t.invoiced += amount
            if is_disputed:
                t.disputed += amount
        if settled_by_as_of and paid_ord is not None:
            f.has_experience = True
            if paid_ord > trailing_start:
                _add_paid(f, t, amount, paid_ord, due, today, windows)
            continue
        # Paid after as_of: at as_of the whole amount was still open.
        open_amt = amount if settled_now else float(inv.open_amount) * rate
        if settled_now or open_amt > 0:
            age_open_invoice(f, t, open_amt, amount, today - due, policy)
            if is_disputed:
                _count_open_dispute(f, inv.disputed_since or inv.issue_date, today)

    median = sorted(terms)[len(terms) // 2] if terms else None
    return finish(f, t, monthly_sales, median, first_issue, currency, account, portfolio,
                  policy, today)  # fmt: skip


def _status_at(inv: Invoice, today: int) -> tuple[bool, int | None, bool, bool]:
    """(disputed by `today`, paid day or None, settled now, settled by `today`) of an invoice."""
    since = inv.disputed_since
    is_disputed = (since is not None and since.toordinal() <= today) or (
        since is None and inv.status == InvoiceStatus.DISPUTED
    )
    paid = inv.paid_date
    paid_ord = paid.toordinal() if paid is not None else None
    settled_now = (inv.status in _SETTLED or inv.open_amount <= 0) and paid_ord is not None
    return (
        is_disputed,
        paid_ord,
        settled_now,
        settled_now and paid_ord is not None and paid_ord <= today,
    )


def _written_off_on(inv: Invoice) -> int:
    """The day (ordinal) a written-off invoice was written off: paid date, else last change, else due."""
    when = inv.paid_date or (inv.modified_at.date() if inv.modified_at else inv.due_date)
    return when.toordinal()


def _count_open_dispute(f: Features, since: date, today: int) -> None:
    """Count one open disputed invoice, and how long the oldest open dispute has run."""
    f.open_disputes += 1
    days = today - since.toordinal()
    if f.oldest_dispute_days is None or days > f.oldest_dispute_days:
        f.oldest_dispute_days = days


def _home_rate(inv: Invoice, home: str | None) -> float:
    """What one unit of the invoice's currency is worth in the home currency (1.0 if the same)."""
    if home is not None and inv.currency and inv.currency != home and inv.exchange_rate:
        # The CRMs' convention: units of the invoice currency per unit of home.
        return 1.0 / float(inv.exchange_rate)
    return 1.0


def _add_paid(
    f: Features,
    t: InvoiceTotals,
    amount: float,
    paid: int,
    due: int,
    today: int,
    windows: WindowPolicy,
) -> None:
    """Count one invoice paid inside the trailing window: DBT, delay, late share, trend halves."""
    days_late = paid - due
    beyond = days_late if days_late > 0 else 0
    # Early credit is limited per invoice, so early payments bank only so much.
    early_cap = windows.early_credit_days
    credit = days_late if early_cap is None or days_late >= -early_cap else -early_cap
    measure = credit if windows.early_payment == "signed" else beyond
    t.dbt_num += amount * beyond
    t.delay_num += amount * credit
    t.dbt_den += amount
    t.paid_amt += amount
    f.settled_count += 1
    if days_late > windows.grace_days:
        t.late_amt += amount
    if paid > today - windows.trend_recent_days:
        t.rec_num += amount * measure
        t.rec_den += amount
    else:
        t.prior_num += amount * measure
        t.prior_den += amount


@dataclass(slots=True)
class InvoiceTotals:
    """The amount-weighted sums over an account's invoices that `finish` turns into features."""

    dbt_num: float = 0.0
    dbt_den: float = 0.0
    open_num: float = 0.0
    open_den: float = 0.0
    delay_num: float = 0.0
    rec_num: float = 0.0
    rec_den: float = 0.0
    prior_num: float = 0.0
    prior_den: float = 0.0
    late_amt: float = 0.0
    paid_amt: float = 0.0
    invoiced: float = 0.0
    disputed: float = 0.0
    need_invoiced: float = 0.0


def age_open_invoice(
    f: Features,
    totals: InvoiceTotals,
    open_amount: float,
    invoiced_amount: float,
    days_past_due: int,
    policy: ScoringPolicy,
) -> None:
    """Count one invoice open at the decision date: exposure, aging bucket, overdue, open delay.

    Shared by `extract` and the backtest's replay (`scoring.timeline`) so both age open invoices
    alike, and add to the same sums in the same order (every float equal).

    Args:
        f: the features being filled (exposure, buckets, overdue and severe figures).
        totals: the sums being filled (`open_num`, `open_den`).
        open_amount: the amount still open.
        invoiced_amount: the invoiced amount: open items count to the decision date in DBT and
            the recent trend, weighted by it, so a partly paid invoice's paid part counts as on
            time (its payment date is unknown) and more still open never lowers the DBT.
        days_past_due: decision date minus due date (negative = not due yet).
        policy: the scoring policy (aging edges, severe days past due).
    """
    f.exposure += open_amount
    dpd = days_past_due
    if dpd < 0:
        bucket = 0
    else:
        f.has_experience = True
        totals.open_num += open_amount * dpd
        totals.open_den += invoiced_amount
        if dpd == 0:
            bucket = 0
        else:
            f.overdue_amount += open_amount
            f.overdue_count += 1
            if dpd > f.max_days_past_due:
                f.max_days_past_due = dpd
            if dpd > policy.hard_rules.severe_days_past_due:
                f.severe_overdue_amount += open_amount
                f.severe_count += 1
            e1, e2, e3 = policy.aging.edges
            bucket = 1 if dpd <= e1 else 2 if dpd <= e2 else 3 if dpd <= e3 else 4
    f.bucket_amounts[bucket] += open_amount
    f.bucket_counts[bucket] += 1


def finish(
    f: Features,
    totals: InvoiceTotals,
    monthly_sales: list[float],
    terms_median: int | None,
    first_issue: int | None,
    currency: str | None,
    account: Account,
    portfolio: PortfolioContext,
    policy: ScoringPolicy,
    today: int,
) -> Features:
    """Complete the features from the invoice totals and the account: ratios, tenure, DSO, limits.

    Shared by `extract` and the backtest's incremental replay (`scoring.timeline`), so the two
    differ only in how they add up the invoices.

    Args:
        f: features with the invoice counts, exposure and aging already filled.
        totals: the amount-weighted sums.
        monthly_sales: invoiced amount per 30-day block back from `today`, newest first.
        terms_median: the median of the invoices' terms (due minus issue days); None = none.
        first_issue: the earliest issue date (ordinal) among the invoices; None = none.
        currency: the scoring currency found from the policy or the invoices.
        account: the customer.
        portfolio: totals of the whole book.
        policy: the scoring policy.
        today: the decision date (ordinal).

    Returns:
        `f`, completed.
    """
    f.currency = currency or account.currency
    f.insolvency = account.insolvency_flag
    _payment_ratios(f, totals)
    _tenure_and_need(f, account, terms_median, first_issue, policy, today)
    _account_figures(f, account, portfolio, policy, today)
    if f.invoice_count:
        months = policy.dso_max_months
        f.dso = _count_back(f.exposure, monthly_sales, months)
        f.bpdso = _count_back(f.bucket_amounts[0], monthly_sales, months)
    return f


def _payment_ratios(f: Features, t: InvoiceTotals) -> None:
    """The amounts and ratios from the sums: late and disputed shares, DBT, delay, trend."""
    f.paid_amount = t.paid_amt
    f.invoiced_amount = t.invoiced
    f.disputed_amount = t.disputed
    f.need_invoiced = t.need_invoiced
    if t.paid_amt > 0:
        f.late_share = t.late_amt / t.paid_amt
    if t.invoiced > 0:
        f.disputed_share = t.disputed / t.invoiced
    # Open overdue items may only worsen the settled delay, never dilute it: otherwise running up
    # new, briefly overdue invoices would make an account with a slow history look better.
    if t.dbt_den > 0:
        f.dbt_settled = t.dbt_num / t.dbt_den
    if t.dbt_den + t.open_den > 0:
        dbt_all = (t.dbt_num + t.open_num) / (t.dbt_den + t.open_den)
        f.dbt = dbt_all if f.dbt_settled is None else max(dbt_all, f.dbt_settled)
        delay_all = (t.delay_num + t.open_num) / (t.dbt_den + t.open_den)
        f.payment_delay = delay_all if t.dbt_den == 0 else max(delay_all, t.delay_num / t.dbt_den)
    if t.rec_den + t.open_den > 0:
        rec_all = (t.rec_num + t.open_num) / (t.rec_den + t.open_den)
        f.recent_dbt = rec_all if t.rec_den == 0 else max(rec_all, t.rec_num / t.rec_den)
    if t.prior_den > 0:
        f.prior_dbt = t.prior_num / t.prior_den
    if f.recent_dbt is not None and f.prior_dbt is not None:
        f.trend = f.recent_dbt - f.prior_dbt


def _tenure_and_need(
    f: Features,
    account: Account,
    terms_median: int | None,
    first_issue: int | None,
    policy: ScoringPolicy,
    today: int,
) -> None:
    """Tenure (from the account's creation or first invoice), payment terms, the need window."""
    start_ord: int | None = None
    if account.created_at is not None:
        start_ord = account.created_at.date().toordinal()
    if first_issue is not None and (start_ord is None or first_issue < start_ord):
        start_ord = first_issue
    f.tenure_days = max(0, today - start_ord) if start_ord is not None else 0

    if account.payment_terms_days is not None:
        f.terms_days = account.payment_terms_days
    elif terms_median is not None:
        f.terms_days = max(0, terms_median)
    else:
        f.terms_days = policy.limits.default_terms_days
    span = min(policy.limits.need_window_days, max(30, f.tenure_days))
    f.need_months = span / 30.0


def _account_figures(
    f: Features, account: Account, portfolio: PortfolioContext, policy: ScoringPolicy, today: int
) -> None:
    """What the account and the book add: utilisation, agency score, Z'', insurance, concentration."""
    limit = _f(account.current_credit_limit)
    f.current_limit = limit
    if limit is not None and limit > 0:
        f.utilisation = f.exposure / limit

    ext = policy.external
    if account.external_score is not None:
        age = (
            today - account.external_score_date.toordinal()
            if account.external_score_date is not None
            else None
        )
        f.external_score = float(account.external_score)
        f.external_score_age_days = age
        if age is None or age <= ext.max_age_days:
            share = min(max(f.external_score / ext.scale_max, 0.0), 1.0)
            f.external_risk = (1.0 - share) * 100.0 if ext.higher_is_safer else share * 100.0

    f.altman_z = altman_z_double_prime(account)

    insured = _f(account.insured_limit)
    f.insured_limit = insured
    if insured is not None and f.exposure > insured:
        f.exposure_above_insured = f.exposure - insured

    total = float(portfolio.total_exposure)
    if total > 0:
        f.concentration_share = f.exposure / total
        f.concentration_cap_exceeded = (
            portfolio.account_count >= policy.limits.concentration_min_accounts
            and f.concentration_share > policy.limits.concentration_cap_share
        )


def altman_z_double_prime(account: Account) -> float | None:
    """Altman Z'' (non-manufacturers, Altman 2000) from the account's financials, if all exist.

    Args:
        account: the customer with working capital, retained earnings, EBIT, book equity,
            total assets and total liabilities.

    Returns:
        6.56·X1 + 3.26·X2 + 6.72·X3 + 1.05·X4, or None when an input is missing or not positive.
    """
    values = (
        account.working_capital,
        account.retained_earnings,
        account.ebit,
        account.book_equity,
        account.total_assets,
        account.total_liabilities,
    )
    if None in values:  # `in` tests identity first; no value equals None
        return None
    wc, re, ebit, equity, assets, liabilities = (float(v) for v in values if v is not None)
    if assets <= 0 or liabilities <= 0:
        return None
    return (
        6.56 * wc / assets + 3.26 * re / assets + 6.72 * ebit / assets + 1.05 * equity / liabilities
    )


def open_exposure(
    account: Account, invoices: Sequence[Invoice], policy: ScoringPolicy, as_of: date
) -> Decimal:
    """Open amount of an account at `as_of` in the scoring currency (for the portfolio context).

    Args:
        account: the customer.
        invoices: its invoices.
        policy: the scoring policy (home currency).
        as_of: the decision date.

    Returns:
        The exposure, rounded to cents.
    """
    features = extract(account, invoices, PortfolioContext(), policy, as_of)
    return Decimal(f"{features.exposure:.2f}")
