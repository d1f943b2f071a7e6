"""Salesforce Billing on the sandbox: paid dates from payment allocations, and a mapping without a
paid-date source says so once instead of blaming every customer with THIN_FILE.

The allocation-based figures are compared with the same org's Invoice__c, whose paid dates the
CRM holds as a field: two independent CRM records of one payment history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.cli.main import main
from connector.models import Account, RiskAssessment
from connector.registry import sandbox_starter
from connector.store import open_store
from tests.crm_user import SalesforceUser, crm_user
from tests.integration.conftest import Org, write_org_config

PAYMENT_FEATURES = ("settled_count", "late_share", "dbt", "payment_delay", "trend")


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def _org(sandbox: Any, folder: Path, mapping: str) -> Org:
    sandbox.mapping = mapping
    folder.mkdir(parents=True, exist_ok=True)
    return Org("salesforce", sandbox, folder, write_org_config(sandbox, folder))


def _assessed(org: Org) -> list[tuple[Account, RiskAssessment]]:
    """Every stored account with the assessment the run stored for it."""
    store = open_store(str(org.store), create=False)
    try:
        out = []
        for stored in store.iter_accounts(org.sandbox.connection_name):
            assessment = store.get_assessment(org.sandbox.connection_name, stored.account.crm_id)
            assert assessment is not None
            out.append((stored.account, assessment))
        return out
    finally:
        store.close()


def _features(org: Org) -> dict[str, dict[str, Any]]:
    """Per account name, the payment-behaviour features the run stored."""
    return {
        account.name: {
            **{name: assessment.features.get(name) for name in PAYMENT_FEATURES},
            "reasons": [reason.code for reason in assessment.reasons],
        }
        for account, assessment in _assessed(org)
    }


def _check(org: Org, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", "-c", str(org.config)])
    captured = capsys.readouterr()
    # The console wraps long lines: compare words.
    return code, " ".join((captured.out + captured.err).split())


def test_billing_preset_scores_payment_behaviour_from_allocations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_ca_env: None
) -> None:
    start = sandbox_starter("salesforce")
    with start(accounts=60, seed=7) as billing_crm, start(accounts=60, seed=7) as field_crm:
        billing = _org(billing_crm, tmp_path / "billing", "salesforce.billing")
        by_field = _org(field_crm, tmp_path / "field", "salesforce.custom-invoice")
        code, text = _check(billing, capsys)
        assert code == 0, text
        assert "payment history not mapped" not in text
        report = billing.sync(capsys)
        by_field.sync(capsys)
        user = crm_user(billing_crm)
        assert isinstance(user, SalesforceUser)
        allocations = user.sf.query_all("SELECT Id FROM blng__PaymentAllocationInvoice__c")[
            "totalSize"
        ]
    assert report["warnings"] == []
    assert 0 < report["objects"]["payment"]["read"] <= allocations
    from_allocations, from_field = _features(billing), _features(by_field)
    assert from_allocations.keys() == from_field.keys()
    for name, expected in from_field.items():
        got = from_allocations[name]
        assert {k: got[k] for k in PAYMENT_FEATURES} == {
            k: expected[k] for k in PAYMENT_FEATURES
        }, name
    scored = [f for f in from_allocations.values() if (f["settled_count"] or 0) > 0]
    assert len(scored) > len(from_allocations) / 2, "most customers have a payment history"
    assert sum(f["late_share"] is not None for f in from_allocations.values()) == len(scored)


def test_a_mapping_without_a_paid_date_source_warns_once_and_blames_no_customer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_ca_env: None
) -> None:
    folder = tmp_path / "admin"
    folder.mkdir()
    (folder / "billing-no-payments.toml").write_text(
        'extends = "salesforce.billing"\n\n[objects.payment]\nenabled = false\n'
    )
    with sandbox_starter("salesforce")(accounts=60, seed=7) as sandbox:
        org = _org(sandbox, folder, "billing-no-payments.toml")
        code, text = _check(org, capsys)
        assert code == 0, text
        assert text.count("payment history not mapped") == 1, text
        report = org.sync(capsys)
        values = crm_user(sandbox).account_values()
    assert [w for w in report["warnings"] if "payment history not mapped" in w] == report[
        "warnings"
    ]
    assert len(report["warnings"]) == 1
    assert report["scored"] == 60
    features = _features(org)
    assert all(f["settled_count"] == 0 for f in features.values())
    for name, f in features.items():
        assert not {"THIN_FILE", "THIN_FILE_CAP"} & set(f["reasons"]), name
    written = [v["risk_reasons"] or "" for v in values.values()]
    assert not any("THIN_FILE" in text for text in written)
    assert "billing-no-payments.toml:objects.invoice.fields.paid_date" in report["warnings"][0]


def test_a_payment_recorded_in_billing_dates_its_invoice_on_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_ca_env: None
) -> None:
    with sandbox_starter("salesforce")(accounts=60, seed=7) as sandbox:
        org = _org(sandbox, tmp_path / "billing", "salesforce.billing")
        org.sync(capsys)
        user = crm_user(sandbox)
        assert isinstance(user, SalesforceUser)
        [invoice] = user.sf.query(
            "SELECT Id, Name, blng__Account__c, blng__TotalAmount__c, CurrencyIsoCode "
            "FROM blng__Invoice__c WHERE blng__PaymentStatus__c = 'Unpaid' "
            "AND blng__InvoiceStatus__c = 'Posted' AND blng__DueDate__c < 2026-10-01 "
            "ORDER BY Name LIMIT 1"
        )["records"]
        account = invoice["blng__Account__c"]
        before = _features_by_id(org)[account]
        # What a cash clerk does in Billing: a payment, applied to the invoice.
        payment = user.sf.blng__Payment__c.create(
            {
                "blng__Account__c": account,
                "blng__Amount__c": invoice["blng__TotalAmount__c"],
                "blng__PaymentDate__c": "2026-10-25",
                "blng__Status__c": "Processed",
                "CurrencyIsoCode": invoice["CurrencyIsoCode"],
            }
        )
        user.sf.blng__PaymentAllocationInvoice__c.create(
            {
                "blng__Invoice__c": invoice["Id"],
                "blng__Payment__c": payment["id"],
                "blng__Amount__c": invoice["blng__TotalAmount__c"],
                "blng__Type__c": "Allocation",
                "CurrencyIsoCode": invoice["CurrencyIsoCode"],
            }
        )
        second = org.sync(capsys)
    assert second["objects"]["invoice"]["read"] >= 1
    assert second["objects"]["payment"]["read"] == 1
    store = open_store(str(org.store), create=False)
    try:
        [stored] = [
            i
            for i in store.invoices_for(org.sandbox.connection_name, account)
            if i.crm_id == invoice["Id"]
        ]
    finally:
        store.close()
    assert stored.paid_date is not None and stored.paid_date.isoformat() == "2026-10-25"
    assert _features_by_id(org)[account]["settled_count"] == before["settled_count"] + 1


def _features_by_id(org: Org) -> dict[str, dict[str, Any]]:
    return {account.crm_id: dict(assessment.features) for account, assessment in _assessed(org)}
