"""explain: the JSON and terminal views carry the whole breakdown of an assessment."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

from rich.console import Console

from connector.cli.explain import explanation_dict, render_explanation
from connector.models import Account, Invoice
from connector.scoring import PortfolioContext, assess
from connector.scoring.policy import ScoringPolicy

AS_OF = date(2025, 6, 30)


def scored(language: str = "en"):
    account = Account(
        crm_id="acc-9", name="Beta Ltd", currency="GBP", current_credit_limit=Decimal(20000)
    )
    invoices = [
        Invoice(
            crm_id=f"i{i}",
            account_id="acc-9",
            issue_date=AS_OF - timedelta(days=150 + 20 * i),
            due_date=AS_OF - timedelta(days=120 + 20 * i),
            amount=Decimal(9000),
            open_amount=Decimal(9000),
        )
        for i in range(2)
    ]
    return account, assess(
        account, invoices, PortfolioContext(), ScoringPolicy(language=language), AS_OF
    )


def test_dict_is_json_and_complete() -> None:
    account, assessment = scored()
    data = json.loads(json.dumps(explanation_dict(account, assessment)))
    assert data["account"]["crm_id"] == "acc-9"
    assert data["band"] == assessment.band == "E"
    assert data["recommended_credit_limit"] == str(assessment.recommended_credit_limit)
    assert data["hard_rules"] == ["HARD_SEVERE_DELINQUENCY"]
    assert data["reasons"][0]["code"] == "HARD_SEVERE_DELINQUENCY"
    assert len(data["factors"]) == 9
    assert data["features"]["aging_90_plus"] == "18000.00"
    # Numbered steps (issue 21 point 8: no longer bare pre-formatted strings).
    assert [step["text"] for step in data["limit_derivation"]] == list(assessment.limit_derivation)
    assert [step["step"] for step in data["limit_derivation"]][:2] == [1, 2]


def test_terminal_view_shows_reasons_factors_and_limit_steps() -> None:
    account, assessment = scored("zh")
    console = Console(record=True, width=160)
    console.print(render_explanation(account, assessment))
    text = console.export_text()
    assert "Beta Ltd" in text
    assert "HARD_SEVERE_DELINQUENCY" in text
    assert "张发票逾期超过 90 天" in text
    assert "band E multiplier" in text
    assert "EXTERNAL_SCORE" in text and "no data" in text


def test_probability_late_is_filled_from_the_policy_table_and_shown() -> None:
    account, assessment = scored()
    table = ScoringPolicy().probability.table
    assert assessment.probability_late == table[-1][1]  # band E: beyond the table's last row
    data = explanation_dict(account, assessment)
    assert data["probability_late"] == assessment.probability_late
    console = Console(record=True, width=160)
    console.print(render_explanation(account, assessment))
    assert f"probability of paying late {assessment.probability_late:.0%}" in console.export_text()
    unset = assess(account, [], PortfolioContext(), ScoringPolicy(probability={"table": []}), AS_OF)
    assert unset.probability_late is None


def test_a_thin_file_account_gets_the_thin_file_table_and_explain_says_so() -> None:
    account = Account(crm_id="new-1", name="New Ltd", currency="GBP")
    invoices = [
        Invoice(
            crm_id="n1",
            account_id="new-1",
            issue_date=AS_OF - timedelta(days=60),
            due_date=AS_OF - timedelta(days=30),
            amount=Decimal(1000),
            open_amount=Decimal(0),
            paid_date=AS_OF - timedelta(days=31),
            status="paid",
        )
    ]
    policy = ScoringPolicy(
        probability={"table": [[0, 0.5], [100, 0.9]], "thin_file_table": [[0, 0.05], [100, 0.1]]}
    )
    assessment = assess(account, invoices, PortfolioContext(), policy, AS_OF)
    assert assessment.features["settled_count"] == 1  # under the thin-file rule (fewer than 3)
    assert assessment.probability_late is not None and assessment.probability_late <= 0.1
    console = Console(record=True, width=160)
    console.print(render_explanation(account, assessment))
    assert "thin-file table" in console.export_text()
    # An agency score takes the account out of the thin-file rule: the main table.
    rated = account.model_copy(update={"external_score": Decimal(80)})
    main_table = assess(rated, invoices, PortfolioContext(), policy, AS_OF)
    assert main_table.probability_late is not None and main_table.probability_late >= 0.5
    assert main_table.features["probability_table"] == "main"
    # Without a thin-file table, the main table serves everyone.
    plain = assess(account, invoices, PortfolioContext(), ScoringPolicy(), AS_OF)
    assert plain.features["probability_table"] == "main"
    assert "thin-file table" not in str(explanation_dict(account, plain)["features"].values())
