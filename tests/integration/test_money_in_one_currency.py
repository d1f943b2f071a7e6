"""Money in one currency, on both sandboxes: every figure checked against the CRM's own rates.

The expected home-currency figures are computed here from what the CRM's API serves
(Salesforce: CurrencyType, DatedConversionRate and the invoices' CurrencyIsoCode; Zoho: each
invoice's own Exchange_Rate and the org's currencies), never from the connector's code.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from connector.cli.main import main
from tests.crm_user import crm_user, open_marked_tasks
from tests.integration.conftest import AS_OF, Org, org_gap

EXCLUDED = {"Draft", "Cancelled"}  # the presets' invoice filters


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def salesforce_expected(user: Any, held: str) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Open amounts per account and limits, in the corporate currency, from SOQL alone."""
    sf = user.sf
    static = {
        row["IsoCode"]: Decimal(str(row["ConversionRate"]))
        for row in sf.query_all("SELECT IsoCode, ConversionRate FROM CurrencyType")["records"]
    }
    dated = sf.query_all(
        "SELECT IsoCode, ConversionRate, StartDate, NextStartDate FROM DatedConversionRate"
    )["records"]

    def rate(code: str, day: date) -> Decimal:
        for row in dated:
            start = date.fromisoformat(row["StartDate"])
            following = row["NextStartDate"]
            if (
                row["IsoCode"] == code
                and start <= day
                and (following is None or day < date.fromisoformat(following))
            ):
                return Decimal(str(row["ConversionRate"]))
        return static[code]

    exposure: dict[str, Decimal] = {}
    rows = sf.query_all(
        "SELECT Account__c, Balance__c, CurrencyIsoCode, Invoice_Date__c, Status__c FROM Invoice__c"
    )["records"]
    for row in rows:
        if row["Status__c"] in EXCLUDED or row["Account__c"] == held:
            continue
        balance = Decimal(str(row["Balance__c"] or 0))
        day = date.fromisoformat(row["Invoice_Date__c"])
        exposure[row["Account__c"]] = exposure.get(row["Account__c"], Decimal(0)) + (
            balance / rate(row["CurrencyIsoCode"], day)
        )
    limits = {}
    for row in sf.query_all("SELECT Id, Credit_Limit__c, CurrencyIsoCode FROM Account")["records"]:
        if row["Credit_Limit__c"] and row["Id"] != held:
            limits[row["Id"]] = Decimal(str(row["Credit_Limit__c"])) / rate(
                row["CurrencyIsoCode"], date.fromisoformat(AS_OF)
            )
    return exposure, limits


def zoho_expected(user: Any, held: str) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Open amounts per account and limits, in the home currency, from REST v8 alone."""
    org_rates = {
        row["iso_code"]: Decimal(str(row["exchange_rate"]))
        for row in user._call("GET", "org/currencies")["currencies"]
    }
    exposure: dict[str, Decimal] = {}
    fields = ["Account_Name", "Balance", "Currency", "Exchange_Rate", "Status"]
    for row in user._all("Invoices", fields):
        account = row["Account_Name"]["id"]
        if row["Status"] in EXCLUDED or account == held:
            continue
        balance = Decimal(str(row["Balance"] or 0))
        # The rate frozen on the record comes first (Zoho's own conversion of that record).
        record_rate = Decimal(str(row["Exchange_Rate"]))
        exposure[account] = exposure.get(account, Decimal(0)) + balance / record_rate
    limits = {}
    for row in user._all("Accounts", ["Credit_Limit", "Currency"]):
        if row["Credit_Limit"] and row["id"] != held:
            limits[row["id"]] = Decimal(str(row["Credit_Limit"])) / org_rates[row["Currency"]]
    return exposure, limits


def plant_unrated_invoice(org: Org, user: Any) -> tuple[str, str]:
    """An invoice in a currency the CRM has no rate for (an import from another system)."""
    emulator = org.sandbox.emulator
    if org.crm == "salesforce":
        row = user.sf.query("SELECT Id, Account__c FROM Invoice__c WHERE Balance__c > 0 LIMIT 1")
        invoice = row["records"][0]
        emulator.set_field("Invoice__c", invoice["Id"], "CurrencyIsoCode", "SGD")
        return invoice["Id"], invoice["Account__c"]
    invoice = next(
        row for row in user._all("Invoices", ["Account_Name", "Balance"]) if row["Balance"]
    )
    emulator.set_field("Invoices", invoice["id"], "Currency", "SGD")
    emulator.set_field("Invoices", invoice["id"], "Exchange_Rate", None)
    return invoice["id"], invoice["Account_Name"]["id"]


@org_gap("fxiaoke", "issue 16: the Fxiaoke sandbox serves a CNY-only tenant (no mc_exchange_rate)")
def test_portfolio_exposure_shares_and_over_limit_use_the_crms_own_rates(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    user = crm_user(org.sandbox)
    unrated, held = plant_unrated_invoice(org, user)
    expected, limits = (salesforce_expected if org.crm == "salesforce" else zoho_expected)(
        user, held
    )
    currencies = (
        {
            row["CurrencyIsoCode"]
            for row in user.sf.query_all("SELECT CurrencyIsoCode FROM Account")["records"]
        }
        if org.crm == "salesforce"
        else {row["Currency"] for row in user._all("Accounts", ["Currency"])}
    )
    assert len(currencies) >= 4, currencies
    org.sync(capsys)
    code, book = _cli(capsys, "portfolio", "-c", str(org.config), "--json")
    assert code == 0
    assert book["home_currency"] == "EUR"
    rows = {row["crm_id"]: row for row in book["accounts"]}
    assert held not in rows, "an account with an unrated amount is held, not scored"
    assert set(rows) == set(user.account_values()) - {held}
    total = sum(expected.values(), Decimal(0))
    over = set()
    for account, row in rows.items():
        want = expected.get(account, Decimal(0))
        assert abs(Decimal(row["exposure_home"]) - want) <= Decimal("0.01"), (account, row)
        if want > 0:
            assert row["concentration_share"] == pytest.approx(float(want / total), abs=1e-5)
        if account in limits and limits[account] > 0:
            utilisation = float(want / limits[account])
            assert row["utilisation"] == pytest.approx(utilisation, rel=1e-3, abs=1e-4)
            if utilisation >= 0.9:
                over.add(account)
    assert Decimal(book["totals"]["total_exposure"]) == pytest.approx(total, abs=Decimal("0.05"))
    tasked = {
        task["key"].rsplit(":", 3)[1]
        for task in open_marked_tasks(user)
        if task["key"].rsplit(":", 3)[2] == "over_limit"
    }
    assert tasked == over
    # The unrated invoice is quarantined with a reason, and its account was left alone.
    code, quarantined = _cli(capsys, "quarantine", "-c", str(org.config), "--json")
    entry = next(row for row in quarantined["quarantined"] if row["record_id"] == unrated)
    assert entry["rule"] == "NO_EXCHANGE_RATE"
    assert "SGD" in entry["reason"] and entry["holds_account"] == held
    assert user.account_values()[held]["risk_band"] in (None, "-None-")

    # A fallback rate in [policy] rates releases the hold on the next run.
    text = org.config.read_text().replace("[tasks]", "[policy]\nrates = { SGD = 1.45 }\n\n[tasks]")
    org.config.write_text(text)
    org.sync(capsys)
    code, quarantined = _cli(capsys, "quarantine", "-c", str(org.config), "--json")
    assert unrated not in {row["record_id"] for row in quarantined["quarantined"]}
    code, book = _cli(capsys, "portfolio", "-c", str(org.config), "--json")
    assert held in {row["crm_id"] for row in book["accounts"]}
