"""Portfolio context and report: totals, exposure by band, HHI and top-10 share."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from connector.models import Account, Invoice, RiskAssessment
from connector.scoring import build_portfolio_context, open_exposure, portfolio_report
from connector.scoring.policy import ScoringPolicy


def acct(
    n: int, industry: str | None = None, country: str | None = None, deleted: bool = False
) -> Account:
    return Account(
        crm_id=f"a{n}", name=f"Account {n}", industry=industry, country=country, deleted=deleted
    )


def assessment(n: int, band: str) -> RiskAssessment:
    return RiskAssessment(
        account_id=f"a{n}", as_of=date(2025, 1, 1), score=10, band=band, level="Low", confidence=1
    )


def test_context_sums_live_exposure_by_dimension() -> None:
    context = build_portfolio_context(
        [
            (acct(1, "steel", "DE"), Decimal(100)),
            (acct(2, "steel", "FR"), Decimal(300)),
            (acct(3, None, "DE"), Decimal(0)),
            (acct(4, "retail", "DE", deleted=True), Decimal(1000)),
        ],
        ScoringPolicy(),
    )
    assert context.total_exposure == 400
    assert context.account_count == 3
    assert context.exposure_by_industry == {"steel": Decimal(400)}
    assert context.exposure_by_country == {"DE": Decimal(100), "FR": Decimal(300)}


def test_report_hhi_top10_and_bands() -> None:
    rows = [
        (
            acct(i, "steel" if i < 2 else "retail", "DE"),
            assessment(i, "A" if i < 3 else "C"),
            Decimal(100),
        )
        for i in range(4)
    ]
    report = portfolio_report(iter(rows))
    data = report.to_dict()
    # Four equal customers: HHI = 4 × 25² = 2,500, equivalent to 4 customers.
    assert data["by_customer"]["hhi"] == pytest.approx(2500)
    assert data["by_customer"]["equivalent_count"] == pytest.approx(4)
    assert data["by_customer"]["top10_share"] == pytest.approx(1.0)
    assert data["by_industry"]["hhi"] == pytest.approx(5000)
    assert data["by_country"]["hhi"] == pytest.approx(10000)
    assert data["exposure_by_band"] == {"A": "300", "C": "100"}
    assert data["count_by_band"] == {"A": 3, "C": 1}


def test_report_keeps_only_the_ten_largest_customers() -> None:
    rows = [(acct(i), assessment(i, "B"), Decimal(i + 1)) for i in range(25)]
    data = portfolio_report(rows).to_dict()
    top = data["by_customer"]["top"]
    assert [item["name"] for item in top] == [f"Account {i}" for i in range(24, 14, -1)]
    total = sum(range(1, 26))
    assert data["by_customer"]["top10_share"] == pytest.approx(sum(range(16, 26)) / total, abs=1e-4)


def test_empty_report_is_empty() -> None:
    assert portfolio_report([]).to_dict() == {}


def test_open_exposure_counts_open_items_at_as_of() -> None:
    invoices = [
        Invoice(crm_id="1", account_id="a1", issue_date=date(2025, 1, 1), due_date=date(2025, 1, 31),
                amount=Decimal(500), open_amount=Decimal(200)),
        Invoice(crm_id="2", account_id="a1", issue_date=date(2025, 1, 1), due_date=date(2025, 1, 31),
                amount=Decimal(300), open_amount=Decimal(0), paid_date=date(2025, 3, 1), status="paid"),
        Invoice(crm_id="3", account_id="a1", issue_date=date(2025, 4, 1), due_date=date(2025, 5, 1),
                amount=Decimal(999), open_amount=Decimal(999)),
    ]  # fmt: skip
    # On 2025-02-15 invoice 2 was not paid yet and invoice 3 did not exist.
    assert open_exposure(acct(1), invoices, ScoringPolicy(), date(2025, 2, 15)) == Decimal("500.00")
    assert open_exposure(acct(1), invoices, ScoringPolicy(), date(2025, 3, 15)) == Decimal("200.00")
