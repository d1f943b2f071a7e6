"""Paid dates from payment allocations, for CRMs whose invoices carry a balance but no paid date.

Salesforce Billing keeps no paid date on `blng__Invoice__c`: a payment (`blng__Payment__c`, with
its `blng__PaymentDate__c`) is applied to invoices through allocations
(`blng__PaymentAllocationInvoice__c`, type Allocation or Unallocation). An invoice is paid when
its balance reaches zero; its paid date is the date of the payment that settled it, which is the
latest payment still applied to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from connector.models import PaymentEntry


def settlement_dates(entries: Iterable[PaymentEntry]) -> dict[str, date]:
    """The paid date of each invoice that has payments still applied to it.

    A payment counts while its net amount on the invoice is above zero: allocations minus
    unallocations. Billing marks a taken-back allocation (`blng__Unallocated__c`) and may also
    add an unallocation record; when the record exists the two cancel out, when only the flag
    is there the flagged allocation is left out, so either way a payment taken back never
    dates the invoice.

    Args:
        entries: allocation records of any number of invoices, in any order.

    Returns:
        invoice id -> the latest payment date among the payments still applied to it (invoices
        whose applied payments carry no date are left out).
    """
    allocated: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    flagged: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    taken_back: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    paid_on: dict[tuple[str, str], date] = {}
    for entry in entries:
        pair = (entry.invoice_id, entry.payment_id)
        if entry.reversal:
            taken_back[pair] += entry.amount
            continue
        if entry.reversed:
            flagged[pair] += entry.amount
        else:
            allocated[pair] += entry.amount
        if entry.paid_on is not None:
            paid_on[pair] = max(entry.paid_on, paid_on.get(pair, entry.paid_on))
    dates: dict[str, date] = {}
    for pair in {*allocated, *flagged}:
        if pair in taken_back:
            net = allocated[pair] + flagged[pair] - taken_back[pair]
        else:
            net = allocated[pair]
        day = paid_on.get(pair)
        if net <= 0 or day is None:
            continue
        invoice = pair[0]
        dates[invoice] = max(day, dates.get(invoice, day))
    return dates


__all__ = ["settlement_dates"]
