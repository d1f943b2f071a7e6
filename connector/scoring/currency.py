"""Money in one currency: the CRM's own exchange rates, rebased on the home currency, and conversions.

Rates follow the CRMs' convention: units of a currency per one unit of the reference currency
(Salesforce CurrencyType/DatedConversionRate.ConversionRate against the corporate currency;
Zoho's org currencies and a record's Exchange_Rate against the home currency), so an amount in
the home currency is `amount / rate`. A rate is looked up, in order: the rate frozen on the
record (Zoho's Exchange_Rate), the dated rate valid on the record's date (Salesforce advanced
currency management), the CRM's current rate, the configured `[policy] rates` fallback. A
currency with none of these has no rate: its amounts are never summed as they are.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from connector.models import Account, CrmRates, DatedRate, Invoice

_CENT = Decimal("0.01")


class NoRate(Exception):
    """No rate converts this currency to the home currency."""

    def __init__(self, currency: str, home: str | None) -> None:
        self.currency = currency
        self.home = home
        super().__init__(
            f"no exchange rate from {currency} to {home or 'the home currency'}: the CRM "
            f"lists none and [policy] rates has no {currency}; add it to the CRM's currencies "
            "or to [policy] rates"
        )


@dataclass(frozen=True)
class CurrencyBook:
    """Rates per unit of the home currency; pure lookups and conversions (no I/O, no clock)."""

    home: str | None
    # Units of the currency per one unit of `home`.
    rates: Mapping[str, Decimal] = field(default_factory=dict)
    # Per currency: sorted start ordinals, and (next start ordinal or None, rate) per start.
    dated: Mapping[str, tuple[tuple[int, ...], tuple[tuple[int | None, Decimal], ...]]] = field(
        default_factory=dict
    )
    # A record's own rate is against this currency (the CRM's reference); rebased onto home.
    record_reference: str | None = None

    def digest(self) -> str:
        """A short hash of every rate: assessments made under other rates are stale."""
        payload = {
            "home": self.home,
            "rates": {k: str(v) for k, v in sorted(self.rates.items())},
            "dated": {
                k: [list(starts), [[n, str(r)] for n, r in spans]]
                for k, (starts, spans) in sorted(self.dated.items())
            },
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def rate(
        self, currency: str | None, on: date | None = None, record_rate: Decimal | None = None
    ) -> Decimal:
        """Units of `currency` per one unit of home, valid on `on`.

        Raises:
            NoRate: nothing converts this currency.
        """
        if currency is None or currency == self.home or self.home is None:
            return Decimal(1)
        if record_rate is not None and record_rate > 0:
            return self._rebase_record(record_rate)
        if on is not None and currency in self.dated:
            starts, spans = self.dated[currency]
            index = bisect.bisect_right(starts, on.toordinal()) - 1
            if index >= 0:
                next_start, value = spans[index]
                if next_start is None or on.toordinal() < next_start:
                    return value
        if currency in self.rates:
            return self.rates[currency]
        raise NoRate(currency, self.home)

    def _rebase_record(self, record_rate: Decimal) -> Decimal:
        reference = self.record_reference
        if reference is None or reference == self.home:
            return record_rate
        # The record's rate is against the CRM's reference; home is another currency.
        return record_rate / self.rates[reference] if reference in self.rates else record_rate

    def to_home(
        self,
        amount: Decimal,
        currency: str | None,
        on: date | None = None,
        record_rate: Decimal | None = None,
    ) -> Decimal:
        """`amount` in home currency, unrounded (round totals, not terms). Raises NoRate."""
        return amount / self.rate(currency, on, record_rate)

    def from_home(self, amount: Decimal, currency: str | None, on: date | None = None) -> Decimal:
        """A home-currency `amount` in `currency`, rounded to cents. Raises NoRate."""
        return (amount * self.rate(currency, on)).quantize(_CENT, ROUND_HALF_UP)


def build_book(
    crm: CrmRates | None,
    home_setting: str | None = None,
    fallback: Mapping[str, Decimal] | None = None,
) -> CurrencyBook:
    """The run's rates, rebased on the home currency.

    Args:
        crm: the CRM's currencies (None when the adapter cannot read them).
        home_setting: `[policy] home_currency`; None means the CRM's own reference currency.
        fallback: `[policy] rates`, units per one unit of home; used for currencies the CRM
            does not rate.

    Returns:
        The book; its `home` is None only when neither the CRM nor the config names one (a
        single-currency book, amounts taken as they are).
    """
    reference = crm.reference if crm else None
    chosen = home_setting or reference
    home = chosen.upper() if chosen else None
    crm_rates = dict(crm.rates) if crm else {}
    if reference and reference not in crm_rates:
        crm_rates[reference] = Decimal(1)
    factor = Decimal(1)
    rebased: dict[str, Decimal] = {}
    if home and reference and home != reference:
        # The home currency is not the CRM's reference: divide by home's own rate.
        factor = crm_rates.get(home, Decimal(0))
    if home and factor > 0:
        rebased = {code: rate / factor for code, rate in crm_rates.items() if rate > 0}
    for code, rate in (fallback or {}).items():
        rebased.setdefault(code.upper(), Decimal(rate))
    dated: dict[str, tuple[tuple[int, ...], tuple[tuple[int | None, Decimal], ...]]] = {}
    if crm and home and factor > 0 and not (home != reference and crm.dated):
        by_currency: dict[str, list[DatedRate]] = {}
        for item in crm.dated:
            if item.rate > 0:
                by_currency.setdefault(item.currency, []).append(item)
        for code, items in by_currency.items():
            items.sort(key=lambda item: item.start)
            dated[code] = (
                tuple(item.start.toordinal() for item in items),
                tuple(
                    (
                        item.next_start.toordinal() if item.next_start else None,
                        item.rate / factor,
                    )
                    for item in items
                ),
            )
    if home:
        rebased[home] = Decimal(1)
    return CurrencyBook(home=home, rates=rebased, dated=dated, record_reference=reference)


# Account fields that hold money in the account's currency.
ACCOUNT_MONEY = (
    "annual_revenue",
    "current_credit_limit",
    "manual_credit_limit",
    "agency_limit",
    "net_worth",
    "insured_limit",
    "working_capital",
    "retained_earnings",
    "ebit",
    "book_equity",
    "total_assets",
    "total_liabilities",
)


def account_in_home(account: Account, book: CurrencyBook, on: date) -> tuple[Account, Decimal]:
    """The account with every money field in the home currency, and the rate used.

    Args:
        account: the account, money in its own currency (none given: the home currency).
        book: the run's rates.
        on: the decision date (the rate valid then).

    Returns:
        (the converted account, units of the account's currency per home unit).

    Raises:
        NoRate: the account's currency has no rate.
    """
    rate = book.rate(account.currency, on)
    if rate == 1:
        return account, rate
    update = {
        name: (value / rate).quantize(_CENT, ROUND_HALF_UP)
        for name in ACCOUNT_MONEY
        if (value := getattr(account, name)) is not None
    }
    return account.model_copy(update=update), rate


def invoice_in_home(invoice: Invoice, book: CurrencyBook, fallback: str | None) -> Invoice:
    """The invoice's amounts in the home currency, at the rate of its own date (or frozen on it).

    Args:
        invoice: the invoice (its currency, else `fallback`, the account's).
        book: the run's rates.
        fallback: the account's currency, for invoices that carry none.

    Raises:
        NoRate: the invoice's currency has no rate.
    """
    currency = invoice.currency or fallback
    rate = book.rate(currency, invoice.issue_date, invoice.exchange_rate)
    if rate == 1 and (currency is None or currency == book.home):
        return invoice
    # Not rounded here: a book's total is rounded once, not invoice by invoice.
    return invoice.model_copy(
        update={
            "amount": invoice.amount / rate,
            "open_amount": invoice.open_amount / rate,
            "currency": book.home,
            "exchange_rate": None,
        }
    )


_NICE = (Decimal(1), Decimal(2), Decimal(5))


def nice_step(step: Decimal) -> Decimal:
    """The largest 1-2-5 × 10^n not above `step` (a readable rounding step in any currency)."""
    if step <= 0:
        return Decimal(1)
    exponent = step.adjusted()
    unit = Decimal(10) ** exponent
    for nice in reversed(_NICE):
        if nice * unit <= step:
            return nice * unit
    return unit


def round_in_currency(amount: Decimal, home_step: Decimal, rate: Decimal) -> Decimal:
    """Floor an amount in a currency to the home rounding step expressed in that currency."""
    if amount <= 0:
        return Decimal(0)
    step = nice_step(home_step * rate) if rate != 1 else home_step
    if amount < step:
        unit = Decimal(10) ** amount.adjusted()
        return (amount / unit).to_integral_value(rounding=ROUND_FLOOR) * unit
    return (amount / step).to_integral_value(rounding=ROUND_FLOOR) * step


def book_to_json(book: CurrencyBook) -> dict[str, Any]:
    """The book as JSON-safe data (rates as decimal strings), kept with a run's snapshot."""
    return {
        "home": book.home,
        "record_reference": book.record_reference,
        "rates": {code: str(rate) for code, rate in sorted(book.rates.items())},
        "dated": {
            code: [list(starts), [[end, str(rate)] for end, rate in spans]]
            for code, (starts, spans) in sorted(book.dated.items())
        },
    }


def book_from_json(data: Mapping[str, Any]) -> CurrencyBook:
    """The inverse of `book_to_json`: the rates a run converted with, for re-scoring its book."""
    return CurrencyBook(
        home=data.get("home"),
        rates={code: Decimal(rate) for code, rate in (data.get("rates") or {}).items()},
        dated={
            code: (
                tuple(int(start) for start in starts),
                tuple((None if end is None else int(end), Decimal(rate)) for end, rate in spans),
            )
            for code, (starts, spans) in (data.get("dated") or {}).items()
        },
        record_reference=data.get("record_reference"),
    )


__all__ = [
    "ACCOUNT_MONEY",
    "CrmRates",
    "CurrencyBook",
    "DatedRate",
    "NoRate",
    "account_in_home",
    "book_from_json",
    "book_to_json",
    "build_book",
    "invoice_in_home",
    "nice_step",
    "round_in_currency",
]
