"""Unmodified simple-salesforce against the Salesforce sandbox over HTTPS: reads, writes, bulk, login."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from sandboxes import RunningSandbox, start_salesforce
from tests.sandbox.conftest import API_VERSION, client_session, fetch_token


@pytest.fixture(scope="module")
def big() -> Iterator[RunningSandbox]:
    # 230 accounts x 10 invoices: more than one default 2,000-record page of invoices.
    with start_salesforce(accounts=230, seed=3) as running:
        yield running


@pytest.fixture
def big_sf(big: RunningSandbox) -> Iterator[Salesforce]:
    with client_session(big.ca_bundle) as session:
        token = fetch_token(big, session)
        yield Salesforce(
            instance_url=token["instance_url"],
            session_id=token["access_token"],
            session=session,
            version=API_VERSION,
        )


def first_account(sandbox: RunningSandbox) -> dict[str, Any]:
    return sorted(sandbox.emulator.records("Account"), key=lambda r: r["Id"])[0]


def test_query_all_follows_next_records_url_across_2000(
    big: RunningSandbox, big_sf: Salesforce
) -> None:
    expected = {r["Id"] for r in big.emulator.records("blng__Invoice__c")}
    assert len(expected) > 2000
    big.server.reset_calls()
    result = big_sf.query_all("SELECT Id, Name, blng__Balance__c FROM blng__Invoice__c")
    assert result["totalSize"] == len(expected)
    assert {r["Id"] for r in result["records"]} == expected
    assert big.server.calls[("GET", f"/services/data/v{API_VERSION}/query/{{id}}")] == 1


def test_query_all_iter_honours_batch_size(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    sf_sandbox.server.reset_calls()
    records = list(
        sf.query_all_iter(
            "SELECT Id FROM blng__Invoice__c ORDER BY SystemModstamp, Id",
            headers={"Sforce-Query-Options": "batchSize=200"},
        )
    )
    total = len(sf_sandbox.emulator.records("blng__Invoice__c"))
    assert len(records) == total
    pages = sf_sandbox.server.calls[("GET", f"/services/data/v{API_VERSION}/query/{{id}}")] + 1
    assert pages == -(-total // 200)


def test_records_carry_attributes_and_nested_parents(sf: Salesforce) -> None:
    page = sf.query("SELECT Id, Name, Owner.Name, Owner.IsActive FROM Account LIMIT 1")
    record = page["records"][0]
    assert record["attributes"]["type"] == "Account"
    assert record["attributes"]["url"].endswith("/sobjects/Account/" + record["Id"])
    assert record["Owner"]["attributes"]["type"] == "User"
    assert isinstance(record["Owner"]["IsActive"], bool)
    assert len(record["Id"]) == 18 and record["Id"].startswith("001")
    invoice = sf.query("SELECT Id, blng__Account__r.Name FROM blng__Invoice__c LIMIT 1")["records"][
        0
    ]
    assert invoice["blng__Account__r"]["Name"]


def test_describe(sf: Salesforce) -> None:
    names = {o["name"]: o for o in sf.describe()["sobjects"]}
    assert {"Account", "Task", "User", "blng__Invoice__c", "Invoice__c"} <= set(names)
    assert names["Account"]["keyPrefix"] == "001"
    fields = {f["name"]: f for f in sf.Account.describe()["fields"]}
    score = fields["Risk_Score__c"]
    assert (score["type"], score["precision"], score["scale"], score["updateable"]) == (
        "double",
        5,
        1,
        True,
    )
    rating = fields["Risk_Rating__c"]
    assert rating["restrictedPicklist"] and [p["value"] for p in rating["picklistValues"]] == list(
        "ABCDE"
    )
    assert fields["SystemModstamp"]["updateable"] is False
    assert (
        fields["OwnerId"]["referenceTo"] == ["User"]
        and fields["OwnerId"]["relationshipName"] == "Owner"
    )
    invoice = {f["name"]: f for f in sf.blng__Invoice__c.describe()["fields"]}
    assert (
        invoice["blng__Balance__c"]["calculated"] and not invoice["blng__Balance__c"]["updateable"]
    )
    with pytest.raises(SalesforceResourceNotFound):
        sf.No_Such_Object__c.describe()


def test_update_is_visible_and_bumps_modstamps(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    before = first_account(sf_sandbox)
    newest_seed = max(r["SystemModstamp"] for r in sf_sandbox.emulator.records("Account"))
    assert sf.Account.update(before["Id"], {"Risk_Score__c": 42.5, "Risk_Rating__c": "B"}) == 204
    after = sf.Account.get(before["Id"])
    assert (after["Risk_Score__c"], after["Risk_Rating__c"]) == (42.5, "B")
    assert after["SystemModstamp"] > newest_seed
    assert after["LastModifiedDate"] == after["SystemModstamp"]
    assert sf_sandbox.emulator.writes_log[-1] == {
        "object": "Account",
        "id": before["Id"],
        "op": "update",
        "fields": {"Risk_Score__c": 42.5, "Risk_Rating__c": "B"},
    }


def test_create_task_derives_closed_and_account(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    account = first_account(sf_sandbox)
    created = sf.Task.create(
        {
            "Subject": "[CRM-RISK] Overdue",
            "WhatId": account["Id"],
            "Status": "Completed",
            "Crm_Risk_Key__c": "k1",
            "ActivityDate": "2026-12-05",
        }
    )
    assert created["success"] and created["id"].startswith("00T")
    task = sf.Task.get(created["id"])
    assert task["IsClosed"] is True and task["AccountId"] == account["Id"]
    assert task["Priority"] == "Normal" and task["OwnerId"]
    inactive = next(u for u in sf_sandbox.emulator.records("User") if not u["IsActive"])
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Task.create({"Subject": "x", "WhatId": account["Id"], "OwnerId": inactive["Id"]})
    assert info.value.content[0]["errorCode"] == "INACTIVE_OWNER_OR_USER"


def test_collections_patch_reports_per_record(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    ids = sorted(r["Id"] for r in sf_sandbox.emulator.records("Account"))[:3]
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Account"}, "id": ids[0], "Risk_Score__c": 10},
            {"attributes": {"type": "Account"}, "id": ids[1], "Risk_Rating__c": "Z"},
            {"attributes": {"type": "Account"}, "id": ids[2], "No_Such_Field__c": 1},
        ],
    }
    results = sf.restful("composite/sobjects", method="PATCH", json=body)
    assert [r["success"] for r in results] == [True, False, False]
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert results[1]["errors"][0]["fields"] == ["Risk_Rating__c"]
    assert results[2]["errors"][0]["statusCode"] == "INVALID_FIELD"
    stored = {r["Id"]: r for r in sf_sandbox.emulator.records("Account")}
    assert stored[ids[0]]["Risk_Score__c"] == 10


def test_collections_all_or_none_rolls_back(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    ids = sorted(r["Id"] for r in sf_sandbox.emulator.records("Account"))[:2]
    body = {
        "allOrNone": True,
        "records": [
            {"attributes": {"type": "Account"}, "id": ids[0], "Risk_Score__c": 77},
            {"attributes": {"type": "Account"}, "id": ids[1], "Risk_Score__c": "abc"},
        ],
    }
    results = sf.restful("composite/sobjects", method="PATCH", json=body)
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    stored = {r["Id"]: r for r in sf_sandbox.emulator.records("Account")}
    assert stored[ids[0]]["Risk_Score__c"] != 77


def test_collections_create_and_limit(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    account = first_account(sf_sandbox)["Id"]
    records = [
        {"attributes": {"type": "Task"}, "Subject": f"T{i}", "WhatId": account} for i in range(3)
    ]
    results = sf.restful("composite/sobjects", method="POST", json={"records": records})
    assert all(r["success"] and r["id"].startswith("00T") for r in results)
    too_many = {"records": [{"attributes": {"type": "Account"}, "id": account}] * 201}
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful("composite/sobjects", method="PATCH", json=too_many)
    assert info.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_bulk2_query_pages_with_a_header_each(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    pages = list(
        sf.bulk2.Account.query(
            "SELECT Id, Name, Owner.Name, AnnualRevenue FROM Account ORDER BY Id",
            max_records=12,
            wait=0.01,
        )
    )
    total = len(sf_sandbox.emulator.records("Account"))
    assert len(pages) == -(-total // 12)
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert len(rows) == total
    assert set(rows[0]) == {"Id", "Name", "Owner.Name", "AnnualRevenue"}
    stored = {r["Id"]: r for r in sf_sandbox.emulator.records("Account")}
    missing_revenue = [r for r in rows if stored[r["Id"]]["AnnualRevenue"] is None]
    assert all(r["AnnualRevenue"] == "" for r in missing_revenue)


def test_bulk2_update_with_failed_records(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    ids = sorted(r["Id"] for r in sf_sandbox.emulator.records("Account"))[:3]
    result = sf.bulk2.Account.update(
        records=[
            {"Id": ids[0], "Risk_Rating__c": "C"},
            {"Id": ids[1], "Risk_Rating__c": "Q"},
            {"Id": ids[2], "Risk_Rating__c": "E"},
        ],
        wait=0.01,
    )[0]
    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (3, 1)
    failed = list(
        csv.DictReader(io.StringIO(sf.bulk2.Account.get_failed_records(result["job_id"])))
    )
    assert failed[0]["sf__Id"] == ids[1]
    assert failed[0]["sf__Error"].startswith("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:")
    ok = list(
        csv.DictReader(io.StringIO(sf.bulk2.Account.get_successful_records(result["job_id"])))
    )
    assert {r["sf__Id"] for r in ok} == {ids[0], ids[2]}
    assert sf.bulk2.Account.get_unprocessed_records(result["job_id"]).startswith('"')
    stored = {r["Id"]: r for r in sf_sandbox.emulator.records("Account")}
    assert (stored[ids[0]]["Risk_Rating__c"], stored[ids[2]]["Risk_Rating__c"]) == ("C", "E")


class ToSandbox(HTTPAdapter):
    """Sends simple-salesforce's hard-wired *.salesforce.com login calls to the sandbox."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        assert request.url is not None
        path = request.url.split(".salesforce.com", 1)[1]
        request.url = self.target + path
        return super().send(request, *args, **kwargs)


@pytest.fixture
def login_session(sf_sandbox: RunningSandbox) -> Iterator[requests.Session]:
    with client_session(sf_sandbox.ca_bundle) as session:
        for host in ("https://login.salesforce.com", "https://acme.my.salesforce.com"):
            session.mount(host, ToSandbox(sf_sandbox.base_url))
        yield session


def test_simple_salesforce_soap_login_and_relogin(
    sf_sandbox: RunningSandbox, login_session: requests.Session
) -> None:
    sf = Salesforce(
        username=sf_sandbox.username,
        password=sf_sandbox.password,
        security_token=sf_sandbox.emulator.security_token,
        session=login_session,
        version=API_VERSION,
    )
    assert sf.sf_instance == sf_sandbox.base_url.removeprefix("https://")
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 30
    sf_sandbox.emulator.expire_tokens()
    # The library logs in again on 401 INVALID_SESSION_ID and retries.
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 30
    assert sf_sandbox.server.calls[("POST", f"/services/Soap/u/{API_VERSION}")] == 2
    with pytest.raises(SalesforceAuthenticationFailed):
        Salesforce(
            username=sf_sandbox.username,
            password="wrong",
            security_token="",
            session=login_session,
            version=API_VERSION,
        )


def test_simple_salesforce_oauth_flows(
    sf_sandbox: RunningSandbox, login_session: requests.Session
) -> None:
    emulator = sf_sandbox.emulator
    by_password = Salesforce(
        username=sf_sandbox.username,
        password=sf_sandbox.password,
        consumer_key=sf_sandbox.client_id,
        consumer_secret=sf_sandbox.client_secret,
        session=login_session,
        version=API_VERSION,
    )
    assert by_password.query("SELECT COUNT() FROM User")["totalSize"] == 6
    by_client = Salesforce(
        consumer_key=sf_sandbox.client_id,
        consumer_secret=sf_sandbox.client_secret,
        domain="acme.my",
        session=login_session,
        version=API_VERSION,
    )
    assert by_client.query("SELECT COUNT() FROM User")["totalSize"] == 6
    by_jwt = Salesforce(
        username=sf_sandbox.username,
        consumer_key=sf_sandbox.client_id,
        privatekey=emulator.jwt_private_key,
        session=login_session,
        version=API_VERSION,
    )
    assert by_jwt.query("SELECT COUNT() FROM User")["totalSize"] == 6
    with pytest.raises(SalesforceAuthenticationFailed) as info:
        Salesforce(
            consumer_key="wrong",
            consumer_secret="x",
            domain="acme.my",
            session=login_session,
            version=API_VERSION,
        )
    assert info.value.code == "invalid_client_id"
