"""Paid dates from payment allocations (Salesforce Billing): the payment that settled the invoice."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from connector.engine.payments import settlement_dates
from connector.models import PaymentEntry


def entry(
    payment: str,
    amount: str,
    day: date | None,
    *,
    invoice: str = "inv1",
    reversal: bool = False,
    reversed_: bool = False,
) -> PaymentEntry:
    return PaymentEntry(
        crm_id=f"{invoice}-{payment}-{amount}-{reversal}",
        invoice_id=invoice,
        payment_id=payment,
        amount=Decimal(amount),
        paid_on=day,
        reversal=reversal,
        reversed=reversed_,
    )


def test_one_payment_dates_the_invoice() -> None:
    assert settlement_dates([entry("p1", "100", date(2026, 3, 4))]) == {"inv1": date(2026, 3, 4)}


def test_the_last_of_several_payments_settled_it() -> None:
    entries = [entry("p2", "60", date(2026, 3, 9)), entry("p1", "40", date(2026, 2, 1))]
    assert settlement_dates(entries) == {"inv1": date(2026, 3, 9)}


def test_a_payment_taken_back_with_an_unallocation_record_does_not_date_it() -> None:
    entries = [
        entry("p1", "100", date(2026, 3, 4)),
        entry("p2", "100", date(2026, 3, 7), reversed_=True),
        entry("p2", "100", date(2026, 3, 7), reversal=True),
    ]
    assert settlement_dates(entries) == {"inv1": date(2026, 3, 4)}


def test_a_payment_taken_back_without_a_flag_still_cancels_out() -> None:
    entries = [
        entry("p1", "100", date(2026, 3, 4)),
        entry("p2", "100", date(2026, 3, 7)),
        entry("p2", "100", None, reversal=True),
    ]
    assert settlement_dates(entries) == {"inv1": date(2026, 3, 4)}


def test_a_flagged_allocation_alone_is_left_out() -> None:
    entries = [
        entry("p1", "100", date(2026, 3, 4)),
        entry("p2", "100", date(2026, 3, 7), reversed_=True),
    ]
    assert settlement_dates(entries) == {"inv1": date(2026, 3, 4)}


def test_invoices_without_a_dated_applied_payment_get_no_date() -> None:
    entries = [
        entry("p1", "100", None, invoice="a"),
        entry("p2", "100", date(2026, 1, 2), invoice="b", reversed_=True),
        entry("p3", "50", date(2026, 1, 3), invoice="c"),
    ]
    assert settlement_dates(entries) == {"c": date(2026, 1, 3)}
