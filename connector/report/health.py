"""The model-health section's figures: the stored payment history replayed, and low-confidence shares."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from connector.models import Invoice, InvoiceStatus
from connector.report.figures import Settings, confidence_figures
from connector.report.stored import Book
from connector.scoring.backtest import MIN_CLASS, evaluate, replay
from connector.scoring.currency import CurrencyBook, NoRate, invoice_in_home
from connector.scoring.history import DISPUTED, WRITTEN_OFF, History
from connector.scoring.policy import ScoringPolicy
from connector.store import SqlStore

# Invoices issued within this many days of the book's date are the model-health sample.
HEALTH_WINDOW_DAYS = 365
# The payment history replayed for model health: at most this many invoices (the newest).
HEALTH_MAX_INVOICES = 300_000


def history_from_invoices(
    invoices: Iterable[Invoice],
    source: str,
    rates: CurrencyBook | None = None,
    currencies: Mapping[str, str | None] | None = None,
) -> History:
    """The store's invoices as a backtest history (columns), amounts in the home currency.

    Args:
        invoices: the invoices, any order.
        source: how the history is named in the figures.
        rates: converts each amount to the home currency (None: amounts are in one currency).
        currencies: account id -> the account's currency, for invoices that carry none.

    Returns:
        The history; an invoice whose currency has no rate is left out (never summed as is).
    """
    history = History(source=source, fmt="store", encoding="")
    index: dict[str, int] = {}
    for original in invoices:
        invoice = original
        if rates is not None:
            try:
                invoice = invoice_in_home(
                    original, rates, (currencies or {}).get(original.account_id)
                )
            except NoRate:
                history.rows_rejected += 1
                continue
        if invoice.deleted or invoice.status == InvoiceStatus.VOID or invoice.amount <= 0:
            continue
        customer = index.setdefault(invoice.account_id, len(history.customers))
        if customer == len(history.customers):
            history.customers.append(invoice.account_id)
        written_off = invoice.status == InvoiceStatus.WRITTEN_OFF
        settled = invoice.paid_date if (invoice.open_amount <= 0 or written_off) else None
        history.customer.append(customer)
        history.issue.append(invoice.issue_date.toordinal())
        history.due.append(invoice.due_date.toordinal())
        history.paid.append(settled.toordinal() if settled else 0)
        history.amount.append(float(invoice.amount))
        flags = 0
        if invoice.disputed_since is not None or invoice.status == InvoiceStatus.DISPUTED:
            flags |= DISPUTED
        if written_off:
            flags |= WRITTEN_OFF
        history.flags.append(flags)
        history.channel.append(-1)
        history.line.append(len(history.line) + 1)
    history.rows_read = len(history.issue)
    return history


def health_sample(account_ids: Iterable[str], limit: int) -> list[str]:
    """At most `limit` account ids, chosen by a hash of the id: the same accounts on every run,
    spread at random over the book (ids in CRM order would pick the oldest customers)."""
    ids = list(account_ids)
    if len(ids) <= limit:
        return ids
    return sorted(ids, key=lambda i: hashlib.blake2b(i.encode(), digest_size=8).digest())[:limit]


def model_health(
    store: SqlStore,
    connection: str,
    policy: ScoringPolicy,
    book: Book,
    settings: Settings,
) -> dict[str, Any]:
    """The backtest of the stored payment history and the share of low-confidence accounts.

    Invoices issued in the year before the book's date are scored point in time (the backtest's
    `replay`, the same extract and rate) and compared with how they were paid, as known on the
    book's date. Figures resting on fewer than `MIN_CLASS` late or on-time invoices are hidden.
    """
    confidence = confidence_figures(book.rows, settings)
    as_of = book.as_of
    if as_of is None or not book.rows:
        return {"backtest": None, "confidence": confidence}
    sample = health_sample(book.accounts, settings.health_max_accounts)
    history = history_from_invoices(
        store.iter_invoices(connection, sample),
        f"state store ({connection})",
        book.rates,
        {account_id: account.currency for account_id, account in book.accounts.items()},
    )
    known_before = as_of.toordinal() + 1
    start = as_of.toordinal() - HEALTH_WINDOW_DAYS
    rows = [i for i in range(len(history)) if start <= history.issue[i] < known_before]
    backtest: dict[str, Any]
    if len(rows) > HEALTH_MAX_INVOICES:
        rows = sorted(rows, key=lambda i: history.issue[i])[-HEALTH_MAX_INVOICES:]
    if book.rates is not None:
        policy = policy.model_copy(update={"home_currency": book.rates.home})
    run = replay(history, policy) if rows else None
    if run is None:
        backtest = {"invoices": 0, "enough": False}
    else:
        period = evaluate(history, run, rows, known_before, thresholds=(0, 15), bootstrap=0)
        figures = period.to_dict()
        enough = figures["auc"].get("0") is not None
        backtest = {
            "enough": enough,
            "min_class": MIN_CLASS,
            "window_days": HEALTH_WINDOW_DAYS,
            "invoices": figures["invoices"],
            "late_share": figures["late_share"],
            "decided": figures["decided"],
            "positives": figures["positives"],
            "auc": figures["auc"],
            "ks": figures["ks"],
            "band_auc": figures["band_auc"],
            "bands": figures["bands"],
            "bands_monotone": figures["bands_monotone"],
        }
    backtest["accounts_sampled"] = len(sample)
    backtest["accounts_total"] = len(book.accounts)
    return {"backtest": backtest, "confidence": confidence}


__all__ = [
    "HEALTH_MAX_INVOICES",
    "HEALTH_WINDOW_DAYS",
    "health_sample",
    "history_from_invoices",
    "model_health",
]
