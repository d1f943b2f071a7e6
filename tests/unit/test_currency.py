"""Money in one currency: rates rebased on home, the order rates are looked up in, rounding back."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from connector.models import Account, CrmRates, DatedRate, Invoice
from connector.scoring.currency import (
    NoRate,
    account_in_home,
    build_book,
    invoice_in_home,
    nice_step,
    round_in_currency,
)
from connector.scoring.limits import in_account_currency

CRM = CrmRates(
    reference="EUR",
    rates={"EUR": Decimal(1), "USD": Decimal("1.08"), "JPY": Decimal(160)},
    dated=(
        DatedRate("JPY", date(2026, 1, 1), date(2026, 7, 1), Decimal(150)),
        DatedRate("JPY", date(2026, 7, 1), None, Decimal(160)),
    ),
)


def _invoice(currency: str | None, amount: str, issued: date, rate: str | None = None) -> Invoice:
    return Invoice(
        crm_id="i1",
        account_id="a1",
        issue_date=issued,
        due_date=issued,
        amount=Decimal(amount),
        open_amount=Decimal(amount),
        currency=currency,
        exchange_rate=Decimal(rate) if rate else None,
    )


def test_home_defaults_to_the_crms_corporate_currency() -> None:
    book = build_book(CRM)
    assert book.home == "EUR"
    assert book.to_home(Decimal(108), "USD") == Decimal(100)


@pytest.mark.parametrize(
    ("issued", "record_rate", "expected"),
    [
        (date(2026, 3, 1), None, Decimal(100)),  # dated rate of the invoice's day: 150
        (date(2026, 8, 1), None, Decimal("93.75")),  # the next period's: 160
        (date(2025, 3, 1), None, Decimal("93.75")),  # before any period: today's rate
        (date(2026, 3, 1), "120", Decimal(125)),  # the rate frozen on the record wins
    ],
    ids=["dated_h1", "dated_h2", "before_periods", "record_rate"],
)
def test_rates_are_looked_up_record_then_dated_then_current(
    issued: date, record_rate: str | None, expected: Decimal
) -> None:
    book = build_book(CRM)
    converted = invoice_in_home(_invoice("JPY", "15000", issued, record_rate), book, None)
    assert converted.open_amount == expected
    assert converted.currency == "EUR"


def test_another_home_currency_rebases_every_rate() -> None:
    book = build_book(CRM, home_setting="usd")
    assert book.home == "USD"
    assert book.to_home(Decimal(100), "EUR") == Decimal(108)
    assert book.rate("JPY") == Decimal(160) / Decimal("1.08")


def test_fallback_rates_fill_only_what_the_crm_lacks_and_no_rate_is_an_error() -> None:
    book = build_book(CRM, fallback={"SGD": Decimal("1.45"), "USD": Decimal(9)})
    assert book.rate("SGD") == Decimal("1.45")
    assert book.rate("USD") == Decimal("1.08")
    with pytest.raises(NoRate, match="no exchange rate from BRL to EUR"):
        book.rate("BRL")
    with pytest.raises(NoRate):
        invoice_in_home(_invoice("BRL", "10", date(2026, 1, 1)), book, None)


def test_a_crm_without_rates_and_no_setting_takes_amounts_as_they_are() -> None:
    book = build_book(None)
    assert book.home is None
    assert book.to_home(Decimal(5), "JPY") == Decimal(5)


def test_account_money_converts_at_the_decision_date_and_invoices_default_to_its_currency() -> None:
    book = build_book(CRM)
    account = Account(crm_id="a1", currency="USD", current_credit_limit=Decimal(21600))
    home, rate = account_in_home(account, book, date(2026, 11, 1))
    assert (home.current_credit_limit, rate) == (Decimal(20000), Decimal("1.08"))
    converted = invoice_in_home(_invoice(None, "108", date(2026, 1, 1)), book, "USD")
    assert converted.amount == Decimal(100)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (Decimal(160000), Decimal(100000)),
        (Decimal(1080), Decimal(1000)),
        (Decimal(250), Decimal(200)),
    ],
)
def test_rounding_steps_are_readable_in_any_currency(step: Decimal, expected: Decimal) -> None:
    assert nice_step(step) == expected


def test_a_limit_derived_in_home_is_written_in_the_account_currency_rounded_there() -> None:
    limit, lines = in_account_currency(
        Decimal(12000), home="EUR", currency="JPY", rate=Decimal(160), step=Decimal(1000)
    )
    assert limit == Decimal(1_900_000)  # 1,920,000 JPY floored to a 100,000 JPY step
    assert "12,000.00 EUR × 160 = 1,920,000.00 JPY" in lines[0]
    same, none = in_account_currency(
        Decimal(12000), home="EUR", currency="EUR", rate=Decimal(1), step=Decimal(1000)
    )
    assert (same, none) == (Decimal(12000), ())
    assert round_in_currency(Decimal(740), Decimal(1000), Decimal("1.08")) == Decimal(700)
