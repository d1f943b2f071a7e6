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
    invoice = Invoice(crm_id="1", account_id="a", issue_date=AS_OF, due_date=AS_OF + timedelta(days=30),
                      amount=Decimal(100), open_amount=Decimal(100), currency="USD",
                      exchange_rate=Decimal("0.9"))  # fmt: skip
    f = extract(
        Account(crm_id="a"),
        [invoice],
        PortfolioContext(),
        ScoringPolicy(home_currency="EUR"),
        AS_OF,
    )
    assert f.exposure == pytest.approx(90)
    assert f.currency == "EUR"
