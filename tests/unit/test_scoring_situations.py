"""Credit situations a credit manager recognises, each asserting band, limit and first reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from connector.models import Account, Invoice, InvoiceStatus
from connector.scoring import PortfolioContext, assess
from connector.scoring.policy import ScoringPolicy

AS_OF = date(2025, 6, 30)
POLICY = ScoringPolicy()


def account(**kw: Any) -> Account:
    base: dict[str, Any] = {
        "crm_id": "acc-1",
        "name": "Acme GmbH",
        "currency": "EUR",
        "created_at": datetime(2022, 1, 1, tzinfo=UTC),
        "current_credit_limit": Decimal(50000),
    }
    base.update(kw)
    return Account(**base)


def paid(
    n: int, *, issued_days_ago: int, late: int = 0, amount: int = 10000, disputed: bool = False
) -> Invoice:
    issue = AS_OF - timedelta(days=issued_days_ago)
    due = issue + timedelta(days=30)
    return Invoice(
        crm_id=f"p{n}",
        account_id="acc-1",
        issue_date=issue,
        due_date=due,
        amount=Decimal(amount),
        open_amount=Decimal(0),
        paid_date=due + timedelta(days=late),
        status=InvoiceStatus.PAID,
        disputed_since=issue + timedelta(days=5) if disputed else None,
    )


def open_item(
    n: int, *, days_past_due: int, amount: int = 10000, disputed: bool = False
) -> Invoice:
    due = AS_OF - timedelta(days=days_past_due)
    issue = due - timedelta(days=30)
    return Invoice(
        crm_id=f"o{n}",
        account_id="acc-1",
        issue_date=issue,
        due_date=due,
        amount=Decimal(amount),
        open_amount=Decimal(amount),
        status=InvoiceStatus.DISPUTED if disputed else InvoiceStatus.OPEN,
        disputed_since=issue + timedelta(days=3) if disputed else None,
    )


def monthly_history(late: int = 0, months: int = 12) -> list[Invoice]:
    # One 10,000 invoice a month, issued 60..(30*months+30) days ago, all settled.
    return [paid(i, issued_days_ago=60 + 30 * i, late=late) for i in range(months)]


@dataclass
class Situation:
    account: Account
    invoices: list[Invoice]
    band: str
    limit: Decimal | None
    first_reason: str | None
    hard_rules: tuple[str, ...] = ()
    policy: ScoringPolicy = field(default_factory=ScoringPolicy)


# Limits by hand: need = invoiced in the last 365 days / (365 / 30) months × (30 + 15) / 30,
# × band multiplier, floored to 1,000.
SITUATIONS: dict[str, Situation] = {
    # 11 × 10,000 in the window (the 12th was issued 390 days ago) + 10,000 current = 120,000
    # → need 14,795 → A → 14,000.
    "prompt_payer_with_good_agency_score": Situation(
        account(external_score=Decimal(85), external_score_date=AS_OF - timedelta(days=30)),
        [*monthly_history(), open_item(1, days_past_due=-10)],
        band="A",
        limit=Decimal(14000),
        first_reason="EXTERNAL_SCORE",
    ),
    # 11 × 10,000 in window + 30,000 = 140,000 → need 17,260 × 0.35 = 6,041 → 6,000.
    "95_days_overdue": Situation(
        account(),
        [*monthly_history(months=11), open_item(1, days_past_due=95, amount=30000)],
        band="D",
        limit=Decimal(6000),
        first_reason="HARD_SEVERE_DELINQUENCY",
        hard_rules=("HARD_SEVERE_DELINQUENCY",),
    ),
    # 11 × 10,000 in window + 60,000 current = 170,000 → need 20,959. Model v2: paying on the
    # due date is 32 of the delay factor's 100 points (earlier payers are safer), so with 120 %
    # utilisation the score is (45 × 32 + 10 × 100) / 85 = 28.7 → B → × 0.85 = 17,815 → 17,000.
    "over_limit_prompt_payer": Situation(
        account(),
        [*monthly_history(), open_item(1, days_past_due=-5, amount=60000)],
        band="B",
        limit=Decimal(17000),
        first_reason="OVER_LIMIT",
    ),
    # Two months as a customer, one invoice paid on time: band B, from the thin-file factor
    # itself in v2 (weight 10: (45 × 32 + 10 × 91.7) / 75 = 31.4), so the cap does not bind.
    # Invoiced 20,000 over a 60-day span (2 months) → 10,000 × 1.5 × 0.85 = 12,750 → 12,000.
    "thin_file_new_customer": Situation(
        account(created_at=datetime(2025, 5, 1, tzinfo=UTC), current_credit_limit=None),
        [paid(1, issued_days_ago=50, late=0), open_item(2, days_past_due=-20)],
        band="B",
        limit=Decimal(12000),
        first_reason="THIN_FILE",
    ),
    # The cap still binds where the score alone would say A: a single settled invoice, paid
    # early, with the thin-file factor switched off.
    "thin_file_capped_early_payer": Situation(
        account(created_at=datetime(2025, 5, 1, tzinfo=UTC), current_credit_limit=None),
        [paid(1, issued_days_ago=50, late=-10), open_item(2, days_past_due=-20)],
        band="B",
        limit=Decimal(12000),
        first_reason="THIN_FILE_CAP",
        policy=ScoringPolicy(weights={"thin_file": 0}),
    ),
    # 40 % of last year's invoicing disputed and still open, otherwise prompt. Disputes earn no
    # weight in the default v2 model (they did not pre-split); a book that weights them (5, as
    # v1) sees them first: (45 × 32 + 5 × 40 + 10 × 16.7) / 90 = 20.1 → B. 100,000 invoiced in
    # the window → need 12,329 × 0.85 = 10,480 → 10,000.
    "disputed_invoices": Situation(
        account(current_credit_limit=Decimal(200000)),
        [
            *[paid(i, issued_days_ago=60 + 30 * i, amount=6000) for i in range(10)],
            open_item(1, days_past_due=-10, amount=20000, disputed=True),
            open_item(2, days_past_due=-2, amount=20000, disputed=True),
        ],
        band="B",
        limit=Decimal(10000),
        first_reason="DISPUTES",
        policy=ScoringPolicy(weights={"disputes": 5}),
    ),
    # The same book under the default weights: A (18.9); ten settled invoices are a thin file.
    "disputed_invoices_default_weights": Situation(
        account(current_credit_limit=Decimal(200000)),
        [
            *[paid(i, issued_days_ago=60 + 30 * i, amount=6000) for i in range(10)],
            open_item(1, days_past_due=-10, amount=20000, disputed=True),
            open_item(2, days_past_due=-2, amount=20000, disputed=True),
        ],
        band="A",
        limit=Decimal(12000),
        first_reason="THIN_FILE",
    ),
    # Paid on time for nine months, then 25 days late for the last three: an average delay of
    # 6.25 days (52 points) → (45 × 52) / 75 = 31.2 → B.
    # 110,000 invoiced in the window → need 13,562 × 0.85 = 11,527 → 11,000.
    "deteriorating_payer": Situation(
        account(),
        [
            *[paid(i, issued_days_ago=60 + 30 * i, late=25) for i in range(3)],
            *[paid(i, issued_days_ago=60 + 30 * i, late=0) for i in range(3, 12)],
        ],
        band="B",
        limit=Decimal(11000),
        first_reason="DBT_HIGH",
    ),
    # With the trend weighted (10, as v1), the worsening comes first: +25 days → 100 points.
    "deteriorating_payer_trend_weighted": Situation(
        account(),
        [
            *[paid(i, issued_days_ago=60 + 30 * i, late=25) for i in range(3)],
            *[paid(i, issued_days_ago=60 + 30 * i, late=0) for i in range(3, 12)],
        ],
        band="B",
        limit=Decimal(11000),
        first_reason="TREND_WORSE",
        policy=ScoringPolicy(weights={"trend": 10}),
    ),
    # Insolvency flag: band E, limit 0 whatever the history says.
    "insolvent_customer": Situation(
        account(insolvency_flag=True),
        monthly_history(),
        band="E",
        limit=Decimal(0),
        first_reason="HARD_INSOLVENCY",
        hard_rules=("HARD_INSOLVENCY",),
    ),
    # A manual limit set by a credit expert is never exceeded.
    "prompt_payer_with_manual_limit": Situation(
        account(manual_credit_limit=Decimal(7500)),
        monthly_history(),
        band="A",
        limit=Decimal(7500),
        first_reason=None,
    ),
    # No invoices, no agency data: unrated at 30 (band B, below every known slow payer; v1's 50
    # put a customer nobody knows above payers known to be late). 10,000 × 0.85 → 8,000.
    "brand_new_no_history": Situation(
        account(current_credit_limit=Decimal(10000), created_at=None),
        [],
        band="B",
        limit=Decimal(8000),
        first_reason="NO_HISTORY",
    ),
    # A customer known to pay 30 days late ranks above one nobody knows: 30 days → 83 points →
    # (45 × 83) / 75 = 50 → C. 110,000 invoiced in the window → 13,562 × 0.65 = 8,815 → 8,000.
    "known_slow_payer_outranks_no_history": Situation(
        account(current_credit_limit=Decimal(10000)),
        monthly_history(late=30),
        band="C",
        limit=Decimal(8000),
        first_reason="DBT_HIGH",
    ),
}


@pytest.mark.parametrize("case", list(SITUATIONS.values()), ids=list(SITUATIONS))
def test_credit_situation(case: Situation) -> None:
    result = assess(case.account, case.invoices, PortfolioContext(), case.policy, AS_OF)
    assert result.band == case.band, (result.score, result.reasons)
    assert result.recommended_credit_limit == case.limit, result.limit_derivation
    first = result.reasons[0].code if result.reasons else None
    assert first == case.first_reason, result.reasons
    assert result.hard_rules == case.hard_rules
    assert len(result.reasons) <= POLICY.max_reasons


def test_reason_sentence_is_specific_in_both_languages() -> None:
    invoices = [
        *monthly_history(),
        *[open_item(i, days_past_due=70 + i, amount=16000 + 100 * i) for i in range(3)],
    ]
    english = assess(account(), invoices, PortfolioContext(), POLICY, AS_OF)
    past_due = next(r for r in english.reasons if r.code == "PAST_DUE_NOW")
    assert past_due.text.startswith("3 invoices 61–90 days past due, 48,300 EUR")
    chinese = assess(account(), invoices, PortfolioContext(), ScoringPolicy(language="zh"), AS_OF)
    zh = next(r for r in chinese.reasons if r.code == "PAST_DUE_NOW")
    assert "48,300 EUR" in zh.text
    assert "张发票逾期" in zh.text
    assert [r.code for r in english.reasons] == [r.code for r in chinese.reasons]


def test_reasons_are_ordered_by_points_after_hard_rules() -> None:
    invoices = [*monthly_history(late=40), open_item(1, days_past_due=120, amount=5000)]
    result = assess(account(), invoices, PortfolioContext(), POLICY, AS_OF)
    assert result.reasons[0].code == "HARD_SEVERE_DELINQUENCY"
    factor_points = [r.points for r in result.reasons[1:]]
    assert factor_points == sorted(factor_points, reverse=True)
    assert {r.code for r in result.reasons[1:3]} == {"PAST_DUE_NOW", "DBT_HIGH"}


def test_materiality_keeps_a_tiny_old_item_from_flooring_the_band() -> None:
    tiny = assess(
        account(), [*monthly_history(), open_item(1, days_past_due=120, amount=50)],
        PortfolioContext(), POLICY, AS_OF,
    )  # fmt: skip
    material = assess(
        account(), [*monthly_history(), open_item(1, days_past_due=120, amount=500)],
        PortfolioContext(), POLICY, AS_OF,
    )  # fmt: skip
    assert tiny.hard_rules == ()
    assert tiny.band < "D"
    assert material.hard_rules == ("HARD_SEVERE_DELINQUENCY",)
    assert material.band == "D"


def test_write_off_in_the_last_year_forces_band_e() -> None:
    written_off = open_item(9, days_past_due=200, amount=3000).model_copy(
        update={
            "status": InvoiceStatus.WRITTEN_OFF,
            "open_amount": Decimal(0),
            "paid_date": AS_OF - timedelta(days=40),
        }
    )
    result = assess(account(), [*monthly_history(), written_off], PortfolioContext(), POLICY, AS_OF)
    assert result.band == "E"
    assert result.hard_rules == ("HARD_WRITE_OFF",)
    assert result.recommended_credit_limit == 0


def test_missing_external_score_lowers_confidence_not_score() -> None:
    with_score = assess(
        account(external_score=Decimal(100), external_score_date=AS_OF),
        monthly_history(),
        PortfolioContext(),
        POLICY,
        AS_OF,
    )
    without = assess(account(), monthly_history(), PortfolioContext(), POLICY, AS_OF)
    assert without.confidence < with_score.confidence
    stale = assess(
        account(external_score=Decimal(10), external_score_date=AS_OF - timedelta(days=400)),
        monthly_history(),
        PortfolioContext(),
        POLICY,
        AS_OF,
    )
    assert stale.score == without.score
    assert stale.features["external_score_age_days"] == 400


def test_concentration_cap_limits_a_large_share_of_the_book() -> None:
    invoices = [*monthly_history(), open_item(1, days_past_due=-5, amount=40000)]
    book = PortfolioContext(total_exposure=Decimal(100000), account_count=50)
    result = assess(account(), invoices, book, POLICY, AS_OF)
    assert result.features["concentration_share"] == pytest.approx(0.4)
    assert result.features["concentration_cap_exceeded"] is True
    assert result.recommended_credit_limit == Decimal(10000)
    assert any("concentration cap" in step for step in result.limit_derivation)


def test_insured_limit_caps_the_recommendation_and_reports_uninsured_exposure() -> None:
    invoices = [*monthly_history(), open_item(1, days_past_due=-5, amount=40000)]
    result = assess(
        account(insured_limit=Decimal(8000)), invoices, PortfolioContext(), POLICY, AS_OF
    )
    assert result.recommended_credit_limit == Decimal(8000)
    assert result.features["exposure_above_insured"] == "32000.00"


def test_task_rule_features_are_present_and_json_safe() -> None:
    import json

    result = assess(
        account(),
        [*monthly_history(), open_item(1, days_past_due=45)],
        PortfolioContext(),
        POLICY,
        AS_OF,
    )
    needed = {
        "exposure", "utilisation", "max_days_past_due", "overdue_amount", "overdue_count",
        "aging_current", "aging_1_30", "aging_31_60", "aging_61_90", "aging_90_plus",
        "aging_current_count", "aging_1_30_count", "aging_31_60_count", "aging_61_90_count",
        "aging_90_plus_count", "days_beyond_terms", "late_share", "trend", "open_disputes",
        "oldest_dispute_days", "settled_count", "tenure_days", "external_score",
        "external_score_age_days", "insured_limit", "exposure_above_insured",
        "concentration_share", "concentration_cap_exceeded", "dso", "add", "currency",
    }  # fmt: skip
    assert needed <= set(result.features)
    assert json.loads(json.dumps(result.features)) == result.features
    assert result.features["max_days_past_due"] == 45
    assert result.features["aging_31_60"] == "10000.00"
    assert result.features["overdue_count"] == 1
