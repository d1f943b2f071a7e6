"""Feature formulas against the worked examples of the reference (A2)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from connector.models import Account, Invoice, InvoiceStatus
from connector.scoring.features import _count_back, extract
from connector.scoring.policy import ScoringPolicy
from connector.scoring.portfolio import PortfolioContext

AS_OF = date(2025, 6, 30)


def test_count_back_dso_matches_the_reference_example() -> None:
    # AR 212,000 with monthly sales 100,000 / 80,000 / 70,000 (newest first) → 30 + 30 + 32/70 × 30.
    assert _count_back(212000, [100000, 80000, 70000], 12) == pytest.approx(73.714, abs=0.01)


def test_dbt_is_amount_weighted_and_floors_early_payment() -> None:
    # Days beyond terms (reported beside the signed delay) still floor early payment at 0.
    def paid(n: int, amount: int, late: int) -> Invoice:
        due = AS_OF - timedelta(days=60 + n)
        return Invoice(crm_id=str(n), account_id="a", issue_date=due - timedelta(days=30), due_date=due,
                       amount=Decimal(amount), open_amount=Decimal(0), paid_date=due + timedelta(days=late),
                       status=InvoiceStatus.PAID)  # fmt: skip

    f = extract(
        Account(crm_id="a"),
        [paid(1, 3000, 10), paid(2, 1000, -20)],
        PortfolioContext(),
        ScoringPolicy(),
        AS_OF,
    )
    assert f.dbt == pytest.approx(7.5)  # (3000 × 10 + 1000 × 0) / 4000
    assert f.late_share == pytest.approx(0.75)
    assert f.settled_count == 2


def test_aging_buckets_use_days_from_due_date() -> None:
    def open_item(n: int, dpd: int) -> Invoice:
        due = AS_OF - timedelta(days=dpd)
        return Invoice(crm_id=str(n), account_id="a", issue_date=due - timedelta(days=30), due_date=due,
                       amount=Decimal(100 * n), open_amount=Decimal(100 * n))  # fmt: skip

    f = extract(
        Account(crm_id="a"),
        [open_item(1, -3), open_item(2, 0), open_item(3, 30), open_item(4, 31), open_item(5, 90), open_item(6, 91)],
        PortfolioContext(), ScoringPolicy(), AS_OF,
    )  # fmt: skip
    assert f.bucket_amounts == [300, 300, 400, 500, 600]
    assert f.bucket_counts == [2, 1, 1, 1, 1]
    assert f.max_days_past_due == 91
    assert f.overdue_count == 4
    assert f.severe_overdue_amount == 600


def test_home_currency_converts_with_the_exchange_rate() -> None:
    # Zoho's Exchange_Rate and Salesforce's ConversionRate: units of the currency per home unit.
    invoice = Invoice(crm_id="1", account_id="a", issue_date=AS_OF, due_date=AS_OF + timedelta(days=30),
                      amount=Decimal(108), open_amount=Decimal(108), currency="USD",
                      exchange_rate=Decimal("1.08"))  # fmt: skip
    f = extract(
        Account(crm_id="a"),
        [invoice],
        PortfolioContext(),
        ScoringPolicy(home_currency="EUR"),
        AS_OF,
    )
    assert f.exposure == pytest.approx(100)
    assert f.currency == "EUR"


def _open(n: int, amount: str, issued_days_ago: int) -> Invoice:
    issue = AS_OF - timedelta(days=issued_days_ago)
    return Invoice(crm_id=str(n), account_id="a", issue_date=issue, due_date=issue + timedelta(days=30),
                   amount=Decimal(amount), open_amount=Decimal(amount))  # fmt: skip


def test_count_back_dso_is_exact_in_cents_whatever_the_summation_order() -> None:
    # Open AR 19.99 + 29.99 + 9.99 summed in invoice order exceeds the monthly sums by 1e-17 in
    # floats; that residue used to "cover" every empty older month: 360 days instead of 60.
    invoices = [_open(1, "19.99", 5), _open(2, "29.99", 40), _open(3, "9.99", 10)]
    f = extract(Account(crm_id="a"), invoices, PortfolioContext(), ScoringPolicy(), AS_OF)
    assert f.dso == pytest.approx(60.0)


def _paid(n: int, late: int, amount: int = 1000, *, disputed: bool = False) -> Invoice:
    due = AS_OF - timedelta(days=60 + 7 * n)
    paid = due + timedelta(days=late)
    return Invoice(crm_id=str(n), account_id="a", issue_date=due - timedelta(days=30), due_date=due,
                   amount=Decimal(amount), open_amount=Decimal(0), paid_date=paid,
                   status=InvoiceStatus.PAID, disputed_since=paid if disputed else None)  # fmt: skip


def test_dispute_share_counts_only_invoices_whose_dispute_status_is_final() -> None:
    # 2 settled (1 disputed) and 2 open undisputed invoices: the open ones may still be
    # disputed, so the share is 1 of 2 settled, not 1 of 4 invoiced.
    invoices = [_paid(1, 0, disputed=True), _paid(2, 0), _open(3, "1000", 10), _open(4, "1000", 20)]
    f = extract(Account(crm_id="a"), invoices, PortfolioContext(), ScoringPolicy(), AS_OF)
    assert f.disputed_share == pytest.approx(0.5)
    # An open invoice already in dispute is final for this purpose and counts on both sides.
    disputed_open = _open(5, "1000", 15).model_copy(
        update={"disputed_since": AS_OF - timedelta(days=3)}
    )
    f = extract(
        Account(crm_id="a"), [*invoices, disputed_open], PortfolioContext(), ScoringPolicy(), AS_OF
    )
    assert f.disputed_share == pytest.approx(2 / 3)


def test_signed_delay_counts_early_payment_with_limited_credit() -> None:
    invoices = [_paid(1, 12, 3000), _paid(2, -20, 1000)]
    unlimited = ScoringPolicy(windows={"early_payment": "floor", "early_credit_days": None})
    floor = extract(Account(crm_id="a"), invoices, PortfolioContext(), unlimited, AS_OF)
    assert floor.dbt == pytest.approx(9.0)  # (3000 × 12 + 1000 × 0) / 4000
    assert floor.payment_delay == pytest.approx(4.0)  # (3000 × 12 − 1000 × 20) / 4000
    capped = ScoringPolicy(windows={"early_payment": "signed", "early_credit_days": 10})
    f = extract(Account(crm_id="a"), invoices, PortfolioContext(), capped, AS_OF)
    # 20 days early earns only 10 days of credit: early payments cannot hide late ones.
    assert f.payment_delay == pytest.approx(6.5)  # (3000 × 12 − 1000 × 10) / 4000
    assert f.late_share == pytest.approx(0.75)


def test_late_share_has_no_grace_by_default() -> None:
    f = extract(Account(crm_id="a"), [_paid(1, 1), _paid(2, 0), _paid(3, -2), _paid(4, 3)],
                PortfolioContext(), ScoringPolicy(), AS_OF)  # fmt: skip
    assert f.late_share == pytest.approx(
        0.5
    )  # 1 and 3 days late count; the default outcome is "> 0"


def test_invoice_written_off_after_as_of_was_still_open_on_as_of() -> None:
    issue = AS_OF - timedelta(days=100)
    written_off = Invoice(crm_id="w", account_id="a", issue_date=issue, due_date=issue + timedelta(days=30),
                          amount=Decimal(500), open_amount=Decimal(0), paid_date=AS_OF + timedelta(days=20),
                          status=InvoiceStatus.WRITTEN_OFF)  # fmt: skip
    f = extract(Account(crm_id="a"), [written_off], PortfolioContext(), ScoringPolicy(), AS_OF)
    assert f.write_offs == 0
    assert f.exposure == pytest.approx(500)
    assert f.max_days_past_due == 70
    later = extract(Account(crm_id="a"), [written_off], PortfolioContext(), ScoringPolicy(),
                    AS_OF + timedelta(days=30))  # fmt: skip
    assert later.write_offs == 1
    assert later.exposure == 0
