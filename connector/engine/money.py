"""The run's money: the CRM's exchange rates read once, conversions to home, and no-rate quarantine.

Every amount the model adds, compares or ranks across invoices or accounts is converted to the
home currency first; an amount whose currency has no rate is quarantined (its account is held,
nothing about it is written) until a rate exists, in the CRM or in `[policy] rates`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from connector.errors import PermissionRefused
from connector.models import Account, CrmRates, Invoice
from connector.protocol import CrmAdapter, CurrencySource
from connector.redaction import redact
from connector.scoring.currency import (
    CurrencyBook,
    NoRate,
    account_in_home,
    build_book,
    invoice_in_home,
)
from connector.scoring.policy import ScoringPolicy
from connector.store import SqlStore

log = logging.getLogger("crm_risk.money")
_CENT = Decimal("0.01")

NO_RATE = "NO_EXCHANGE_RATE"


def read_rates(adapter: CrmAdapter, policy: ScoringPolicy) -> CurrencyBook:
    """The CRM's currencies (one call per run) rebased on the home currency, with the fallback.

    A CRM that will not show its currencies to the integration user (a missing OAuth scope or
    permission) leaves the configured `[policy] rates` alone; a warning says so. Any other failure,
    a token refused included, ends the run: going on would convert this run's amounts at other
    rates than the next run's, and its task texts and limits would differ from a healthy run's.

    Raises:
        CrmError: when the currencies cannot be read for any reason but a refused permission.
    """
    crm: CrmRates | None = None
    if isinstance(adapter, CurrencySource):
        try:
            crm = adapter.currencies()
        except PermissionRefused as exc:
            log.warning(
                "the CRM's currencies are not readable; only [policy] rates convert amounts",
                extra={"detail": redact(str(exc))},
            )
    return build_book(crm, policy.home_currency, policy.rates)


@dataclass(frozen=True)
class Unrated:
    """A record whose currency has no rate: it is quarantined and holds its account."""

    obj: str
    record_id: str
    account_id: str
    name: str
    currency: str
    reason: str


@dataclass(frozen=True)
class HomeInputs:
    """One account's scoring inputs in the home currency, and its currency's rate."""

    account: Account
    invoices: list[Invoice]
    rate: Decimal


def to_home(
    account: Account, invoices: Sequence[Invoice], book: CurrencyBook, as_of: date
) -> HomeInputs | list[Unrated]:
    """The account and its invoices in home currency, or every record that has no rate."""
    unrated: list[Unrated] = []
    converted: list[Invoice] = []
    for invoice in invoices:
        try:
            converted.append(invoice_in_home(invoice, book, account.currency))
        except NoRate as exc:
            unrated.append(
                Unrated(
                    "invoice",
                    invoice.crm_id,
                    account.crm_id,
                    invoice.number,
                    exc.currency,
                    str(exc),
                )
            )
    try:
        home_account, rate = account_in_home(account, book, as_of)
    except NoRate as exc:
        unrated.append(
            Unrated("account", account.crm_id, account.crm_id, account.name, exc.currency, str(exc))
        )
        return unrated
    if unrated:
        return unrated
    return HomeInputs(home_account, converted, rate)


def home_exposures(store: SqlStore, connection: str, book: CurrencyBook) -> dict[str, Decimal]:
    """Open amount per account in the home currency (amounts without a rate are left out)."""
    totals: dict[str, Decimal] = {}
    unknown: set[str] = set()
    for account_id, amount, currency, record_rate, issued in store.open_invoice_amounts(connection):
        try:
            home = book.to_home(amount, currency, issued, record_rate)
        except NoRate:
            # That account is held until a rate exists; its exposure is unknown, so none of
            # it counts in the book's totals (concentration shares stay true for the rest).
            unknown.add(account_id)
            continue
        totals[account_id] = totals.get(account_id, Decimal(0)) + home
    return {
        account_id: amount.quantize(_CENT)
        for account_id, amount in totals.items()
        if account_id not in unknown
    }


def release_rated(store: SqlStore, connection: str, book: CurrencyBook, as_of: date) -> int:
    """Release no-rate quarantines whose currency has a rate now; returns how many."""
    released = 0
    for row in store.quarantined(connection):
        if row.get("rule") != NO_RATE:
            continue
        currency = row.get("value") or None
        try:
            if row["object"] == "invoice":
                invoice = store.get_invoice(connection, row["record_id"])
                if invoice is not None:
                    book.rate(
                        invoice.currency or currency, invoice.issue_date, invoice.exchange_rate
                    )
            else:
                book.rate(currency, as_of)
        except NoRate:
            continue
        store.release_quarantine(connection, row["object"], row["record_id"])
        if row.get("account_id"):
            store.flag_for_scoring(connection, [str(row["account_id"])])
        released += 1
    return released


__all__ = [
    "NO_RATE",
    "HomeInputs",
    "Unrated",
    "home_exposures",
    "read_rates",
    "release_rated",
    "to_home",
]
