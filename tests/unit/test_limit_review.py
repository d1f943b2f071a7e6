"""Limit reviews a credit manager would accept: hysteresis in good bands, a cap per review, no churn."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from connector.models import Invoice, InvoiceStatus
from connector.scoring.limits import peak_exposures, review_limit, within_review_cap
from connector.scoring.policy import ScoringPolicy

POLICY = ScoringPolicy()
AS_OF = date(2026, 11, 1)
USED = (Decimal(12000),) * 6  # half of a 24,000 limit, every month
IDLE = (Decimal(1000),) * 6  # under a quarter of it, every month


@pytest.mark.parametrize(
    ("band", "previous", "peaks", "hard", "expected"),
    [
        ("A", "A", USED, (), Decimal(24000)),  # good band, limit in use: no cut
        ("A", None, USED, (), Decimal(24000)),  # first review: no worse band to point to
        ("B", "A", USED, (), Decimal("19200.00")),  # band worsened: cut, capped at 20 %
        ("A", "A", IDLE, (), Decimal("19200.00")),  # low use for 6 months: cut, capped
        ("C", "C", USED, (), Decimal("19200.00")),  # not a hold band: capped cut
        ("D", "C", USED, ("SEVERE_DELINQUENCY",), Decimal(9000)),  # a hard rule cuts at once
    ],
    ids=[
        "good_band_in_use",
        "first_review",
        "band_worsened",
        "low_use",
        "middle_band",
        "hard_rule",
    ],
)
def test_a_cut_needs_a_worse_band_or_low_use_and_is_capped_per_review(
    band: str,
    previous: str | None,
    peaks: tuple[Decimal, ...],
    hard: tuple[str, ...],
    expected: Decimal,
) -> None:
    limit, _ = review_limit(
        Decimal(9000),
        Decimal(24000),
        band=band,
        previous_band=previous,
        peaks=peaks,
        hard_rules=hard,
        manual=None,
        policy=POLICY,
    )
    assert limit == expected


def test_increases_are_capped_and_small_changes_not_written() -> None:
    up, lines = review_limit(
        Decimal(60000), Decimal(24000), band="A", previous_band="A", peaks=USED,
        hard_rules=(), manual=None, policy=POLICY,
    )  # fmt: skip
    assert up == Decimal(28000) and "capped at 20%" in lines[0]
    same, lines = review_limit(
        Decimal(24900), Decimal(24000), band="A", previous_band="A", peaks=USED,
        hard_rules=(), manual=None, policy=POLICY,
    )  # fmt: skip
    assert same == Decimal(24000) and "below 5%" in lines[0]


def test_rounding_in_another_currency_stays_inside_the_cap() -> None:
    # 57,000 USD cut by 20 % is 45,600; a 1,000 USD step would floor it to 45,000 (-21 %).
    assert within_review_cap(
        Decimal(45000), Decimal(57000), rate=Decimal("1.08"), policy=POLICY
    ) == Decimal(46000)


def test_peak_exposure_per_month_counts_invoices_open_at_each_month_end() -> None:
    def invoice(issued: int, paid: int | None, amount: int) -> Invoice:
        return Invoice(
            crm_id=f"i{issued}",
            account_id="a",
            issue_date=AS_OF - timedelta(days=issued),
            due_date=AS_OF - timedelta(days=issued - 30),
            amount=Decimal(amount),
            open_amount=Decimal(0 if paid is not None else amount),
            paid_date=None if paid is None else AS_OF - timedelta(days=paid),
            status=InvoiceStatus.PAID if paid is not None else InvoiceStatus.OPEN,
        )

    peaks = peak_exposures([invoice(100, 20, 500), invoice(10, None, 300)], AS_OF, 4)
    assert peaks == (Decimal(300), Decimal(500), Decimal(500), Decimal(500))
