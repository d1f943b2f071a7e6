"""Review points 2 and 6 (issue 22) on both sandboxes: implausible values a user sets through the
CRM's REST API (an invoice dated 1900, payment terms of -300 days, paid before issue, issued years
ahead, due centuries ahead) quarantine the record; its account is held, nothing is written onto it
(checked through the CRM's API), no task is opened, and the message names the record, the field
and the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.engine.sync import classify_exit
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import CRMS, start_sandbox
from tests.crm_user import CrmUser, crm_user

RISK = ("risk_score", "risk_band", "risk_reasons", "recommended_limit", "credit_limit")

# (kind edited, values by meaning, rule, field named, texts the reason must hold)
CASES: dict[str, tuple[str, dict[str, Any], str, str, tuple[str, ...]]] = {
    "invoice_dated_1900": (
        "invoice",
        {"issue_date": "1900-10-01", "due_date": "1900-10-31"},
        "DATE_BEFORE_FLOOR",
        "issue_date",
        ("1900-10-01", "[validation] date_floor"),
    ),
    "payment_terms_minus_300": (
        "account",
        {"payment_terms": -300},
        "PAYMENT_TERMS_OUT_OF_RANGE",
        "payment_terms_days",
        ("-300", "[validation] payment_terms_min"),
    ),
    "paid_before_issue": (
        "invoice",
        {"issue_date": "2026-03-01", "due_date": "2026-03-31", "paid_date": "2025-01-15"},
        "PAID_BEFORE_ISSUE",
        "paid_date",
        ("2025-01-15", "[validation] paid_before_issue"),
    ),
    "issued_years_ahead": (
        "invoice",
        {"issue_date": "2031-01-01", "due_date": "2031-01-31"},
        "DATE_IN_FUTURE",
        "issue_date",
        ("2031-01-01", "[validation] max_days_ahead"),
    ),
    # Point 6. 3999: within what Salesforce stores (to 4000-12-31), far beyond any due date.
    "due_centuries_ahead": (
        "invoice",
        {"due_date": "3999-12-31"},
        "DUE_DATE_TOO_FAR",
        "due_date",
        ("3999-12-31", "[validation] max_due_days"),
    ),
}


# Fxiaoke sets a payment plan's create_time (the preset's issue date) itself, and no API call
# edits it, so a plan dated 1900 or years ahead has no Fxiaoke form. Paid before issue does: a
# person dates the payment booked against a settled plan (回款明细) before the plan was made.
PARAMS = [
    (crm, case)
    for crm in CRMS
    for case in sorted(CASES)
    if crm != "fxiaoke" or case not in ("invoice_dated_1900", "issued_years_ahead")
]


def _edited_invoice(user: CrmUser, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The invoice the case edits, and the values to set on it."""
    if user.crm != "fxiaoke" or "paid_date" not in values:
        return user.invoices()[0], values
    paid = values["paid_date"]
    settled = next(
        invoice
        for invoice in user.invoices()
        if invoice["status"] == "completed" and invoice["issue_date"][:10] > paid
    )
    return settled, {"paid_date": paid}


def _risk(user: CrmUser, account_id: str) -> dict[str, Any]:
    record = user.get("account", account_id)
    return {name: record.get(name) for name in RISK}


def _tasks_on(user: CrmUser, account_id: str) -> list[tuple[str, str]]:
    return sorted(
        (str(task["id"]), str(task["status"]))
        for task in user.tasks()
        if task["what_id"] == account_id
    )


@pytest.mark.parametrize(("crm", "case"), PARAMS)
def test_point2_an_implausible_value_holds_its_account_and_writes_nothing(
    crm: str, case: str, tmp_path: Path
) -> None:
    kind, values, rule, field, texts = CASES[case]
    with start_sandbox(crm) as sandbox:
        sync = SandboxSync(sandbox, write_config(sandbox, tmp_path))
        user = crm_user(sandbox)
        with sync.store() as store:
            sync.run(store)
            invoice, values = (
                _edited_invoice(user, values) if kind == "invoice" else (user.invoices()[0], values)
            )
            account_id = invoice["account_id"]
            record_id = invoice["id"] if kind == "invoice" else account_id
            before = _risk(user, account_id)
            tasks_before = _tasks_on(user, account_id)
            user.update(kind, record_id, values)

            report = sync.run(store, full=True)

            [held] = report.quarantined
            assert (held["record_id"], held["rule"]) == (record_id, rule)
            assert held["reason"].startswith(f"record {record_id}: {field} ("), held["reason"]
            for text in texts:
                assert text in held["reason"], held["reason"]
            assert [item["account_id"] for item in report.held] == [account_id]
            assert _risk(user, account_id) == before, "nothing written onto the held account"
            assert _tasks_on(user, account_id) == tasks_before, "no task opened or closed"
            assert report.scored > 0 and classify_exit(report) == 1
