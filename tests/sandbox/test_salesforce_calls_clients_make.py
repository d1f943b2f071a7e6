"""Salesforce sandbox: the calls clients in other languages make first, and their edge cases, over plain HTTP.

The stock Node clients in tests/clients exercise the happy paths; these cases pin the error
shapes and corners (and run where node is not installed).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce

from sandboxes import RunningSandbox
from sandboxes.salesforce import ORG_ID
from tests.sandbox.conftest import fetch_token
from tests.sandbox.test_salesforce_protocol import DATA, api


def identity_path(sandbox: RunningSandbox) -> str:
    return f"/id/{ORG_ID}/{sandbox.emulator.integration_user_id}"


def test_identity_url_takes_the_token_as_header_or_query_and_names_the_user(
    sf_sandbox: RunningSandbox, session: requests.Session
) -> None:
    token = fetch_token(sf_sandbox, session)
    assert token["id"] == sf_sandbox.login_url + identity_path(sf_sandbox)
    by_header = session.get(
        token["id"], headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10
    ).json()
    by_query = session.get(
        token["id"], params={"oauth_token": token["access_token"], "version": "62.0"}, timeout=10
    ).json()
    assert by_header["user_id"] == by_query["user_id"] == sf_sandbox.emulator.integration_user_id
    assert by_header["organization_id"] == ORG_ID
    assert by_header["username"] == sf_sandbox.username
    assert by_header["urls"]["rest"].endswith("/services/data/v{version}/")
    assert by_query["urls"]["rest"].endswith("/services/data/v62.0/")
    missing = session.get(token["id"], timeout=10)
    assert missing.status_code == 403 and missing.text == "Bad_OAuth_Token"
    other_org = session.get(
        sf_sandbox.base_url + f"/id/00D000000000001AAA/{sf_sandbox.emulator.integration_user_id}",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=10,
    )
    assert other_org.status_code == 404


def test_userinfo_answers_the_openid_claims(
    sf_sandbox: RunningSandbox, session: requests.Session
) -> None:
    token = fetch_token(sf_sandbox, session)["access_token"]
    info = session.get(
        sf_sandbox.base_url + "/services/oauth2/userinfo",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert info.status_code == 200
    claims = info.json()
    assert claims["sub"] == sf_sandbox.login_url + identity_path(sf_sandbox)
    assert claims["preferred_username"] == sf_sandbox.username
    assert claims["organization_id"] == ORG_ID
    sf_sandbox.emulator.expire_tokens()
    expired = session.get(
        sf_sandbox.base_url + "/services/oauth2/userinfo",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert expired.status_code == 403


@pytest.mark.parametrize(
    "envelope",
    [
        '<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Body>'
        '<login xmlns="urn:partner.soap.sforce.com"><username>{u}</username>'
        "<password>{p}</password></login></se:Body></se:Envelope>",
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:n1="urn:partner.soap.sforce.com"><env:Body><n1:login><n1:username>{u}'
        "</n1:username><n1:password>{p}</n1:password></n1:login></env:Body></env:Envelope>",
    ],
    ids=["default-namespace", "prefixed"],
)
def test_soap_login_reads_either_namespace_form_and_returns_user_info(
    sf_sandbox: RunningSandbox, session: requests.Session, envelope: str
) -> None:
    url = sf_sandbox.base_url + "/services/Soap/u/62.0"
    headers = {"Content-Type": "text/xml", "SOAPAction": '""'}
    body = envelope.format(u=sf_sandbox.username, p=sf_sandbox.password)
    answer = session.post(url, data=body, headers=headers, timeout=10)
    assert answer.status_code == 200
    assert f"<organizationId>{ORG_ID}</organizationId>" in answer.text
    assert f"<userName>{sf_sandbox.username}</userName>" in answer.text
    assert "<userInfo>" in answer.text and "<sessionId>" in answer.text
    wrong = envelope.format(u=sf_sandbox.username, p="nope")
    refused = session.post(url, data=wrong, headers=headers, timeout=10)
    assert refused.status_code == 500
    assert "<faultcode>sf:INVALID_LOGIN</faultcode>" in refused.text


def test_collections_retrieve_answers_null_for_missing_ids_and_checks_fields(
    sf_sandbox: RunningSandbox, session: requests.Session
) -> None:
    ids = sorted(r["Id"] for r in sf_sandbox.emulator.records("Account"))[:2]
    sf_sandbox.emulator.delete_record("Account", ids[1])
    answer = api(
        sf_sandbox,
        session,
        "/composite/sobjects/Account",
        method="POST",
        json={"ids": [ids[0], ids[1], "001000000000000AAA"], "fields": ["Name", "Owner.Name"]},
    )
    assert answer.status_code == 200
    first, deleted, unknown = answer.json()
    assert first["Id"] == ids[0] and first["attributes"]["type"] == "Account"
    assert set(first) == {"attributes", "Id", "Name", "Owner"}
    assert deleted is None and unknown is None
    bad = api(
        sf_sandbox,
        session,
        "/composite/sobjects/Account",
        method="POST",
        json={"ids": [ids[0]], "fields": ["Naem"]},
    )
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"


def test_collections_upsert_creates_updates_and_reports_duplicates(
    sf_sandbox: RunningSandbox, session: requests.Session
) -> None:
    account = sorted(sf_sandbox.emulator.records("Account"), key=lambda r: r["Id"])[0]
    owner = account["OwnerId"]

    def task(key: str, subject: str) -> dict[str, Any]:
        return {
            "attributes": {"type": "Task"},
            "Risk_Task_Key__c": key,
            "Subject": subject,
            "WhatId": account["Id"],
            "OwnerId": owner,
        }

    url = "/composite/sobjects/Task/Risk_Task_Key__c"
    created = api(
        sf_sandbox, session, url, method="PATCH", json={"records": [task("k-1", "first")]}
    ).json()
    assert [(r["success"], r["created"]) for r in created] == [(True, True)]
    again = api(
        sf_sandbox,
        session,
        url,
        method="PATCH",
        json={"records": [task("k-1", "second"), task("k-2", "x"), task("k-2", "y")]},
    ).json()
    assert [r["success"] for r in again] == [True, False, False]
    assert again[0] == {"id": created[0]["id"], "success": True, "errors": [], "created": False}
    assert {e["statusCode"] for r in again[1:] for e in r["errors"]} == {"DUPLICATE_VALUE"}
    subjects = {t["Risk_Task_Key__c"]: t["Subject"] for t in sf_sandbox.emulator.tasks()}
    assert subjects["k-1"] == "second" and "k-2" not in subjects
    rolled_back = api(
        sf_sandbox,
        session,
        url,
        method="PATCH",
        json={"allOrNone": True, "records": [task("k-3", "ok"), task("k-4", "x" * 300)]},
    ).json()
    assert [e["statusCode"] for r in rolled_back for e in r["errors"]] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "STRING_TOO_LONG",
    ]
    assert "k-3" not in {t["Risk_Task_Key__c"] for t in sf_sandbox.emulator.tasks()}
    not_external = api(
        sf_sandbox,
        session,
        "/composite/sobjects/Task/Subject",
        method="PATCH",
        json={"records": []},
    )
    assert not_external.status_code == 400


def test_aggregate_queries(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    invoices = sf_sandbox.emulator.records("Invoice__c")
    total = sf.query("SELECT COUNT(Id), MAX(Amount__c) top FROM Invoice__c")
    (row,) = total["records"]
    assert row["attributes"] == {"type": "AggregateResult"}
    assert row["expr0"] == len(invoices)
    assert row["top"] == max(float(r["Amount__c"]) for r in invoices if r["Amount__c"] is not None)
    by_owner = sf.query(
        "SELECT Account__r.OwnerId, COUNT(Id) FROM Invoice__c GROUP BY Account__r.OwnerId "
        "ORDER BY COUNT(Id) DESC LIMIT 2"
    )["records"]
    counts = [r["expr0"] for r in by_owner]
    assert counts == sorted(counts, reverse=True) and len(counts) == 2
    with pytest.raises(Exception, match="Field must be grouped or aggregated: Name"):
        sf.query("SELECT Name, COUNT(Id) FROM Invoice__c GROUP BY Account__c")
    assert sf.query("SELECT COUNT() FROM Invoice__c")["totalSize"] == len(invoices)


def test_child_subqueries_and_unknown_relationships(
    sf_sandbox: RunningSandbox, sf: Salesforce
) -> None:
    accounts = sf.query(
        "SELECT Id, (SELECT Id, Name FROM Invoices__r WHERE Amount__c > 0 ORDER BY Name LIMIT 2) "
        "FROM Account ORDER BY Id LIMIT 3"
    )["records"]
    invoices = sf_sandbox.emulator.records("Invoice__c")
    for account in accounts:
        mine = sorted(
            (r for r in invoices if r["Account__c"] == account["Id"] and (r["Amount__c"] or 0) > 0),
            key=lambda r: r["Name"],
        )[:2]
        nested = account["Invoices__r"]
        assert (nested is None) == (not mine)
        if nested:
            assert [r["Id"] for r in nested["records"]] == [r["Id"] for r in mine]
    with pytest.raises(Exception, match="Didn't understand relationship 'Nopes'"):
        sf.query("SELECT Id, (SELECT Id FROM Nopes) FROM Account")


def test_columns_true_describes_the_query_not_its_rows(
    sf_sandbox: RunningSandbox, session: requests.Session
) -> None:
    plain = "SELECT Id, Name, Owner.Name, (SELECT Id, Subject FROM Tasks) FROM Account"
    answer = api(sf_sandbox, session, "/query", params={"q": plain, "columns": "true"}).json()
    assert "records" not in answer
    assert answer["entityName"] == "Account" and answer["idSelected"] is True
    columns = {c["columnName"]: c for c in answer["columnMetadata"]}
    assert list(columns) == ["Id", "Name", "Owner", "Tasks"]
    assert columns["Owner"]["foreignKeyName"] == "OwnerId"
    assert [j["displayName"] for j in columns["Owner"]["joinColumns"]] == ["Owner.Name"]
    assert columns["Tasks"]["aggregate"] is True
    assert [j["columnName"] for j in columns["Tasks"]["joinColumns"]] == ["Id", "Subject"]
    counted = api(
        sf_sandbox,
        session,
        "/query",
        params={
            "q": "SELECT OwnerId, COUNT(Id) n FROM Account GROUP BY OwnerId",
            "columns": "true",
        },
    ).json()
    assert counted["groupBy"] is True
    assert [
        (c["columnName"], c["displayName"], c["aggregate"]) for c in counted["columnMetadata"]
    ] == [
        ("OwnerId", "OwnerId", False),
        ("n", "n", True),
    ]


def test_describe_lists_child_relationships_and_limits_move_with_traffic(
    sf_sandbox: RunningSandbox, session: requests.Session
) -> None:
    described = api(sf_sandbox, session, "/sobjects/Account/describe").json()
    children = {
        (c["childSObject"], c["field"]): c["relationshipName"]
        for c in described["childRelationships"]
    }
    assert children[("Task", "WhatId")] == "Tasks"
    assert children[("Invoice__c", "Account__c")] == "Invoices__r"
    assert children[("Task", "AccountId")] is None
    before = api(sf_sandbox, session, "/limits").json()["DailyApiRequests"]["Remaining"]
    after = api(sf_sandbox, session, "/limits").json()["DailyApiRequests"]["Remaining"]
    assert after < before
    resources = api(sf_sandbox, session, "").json()
    assert resources["identity"] == sf_sandbox.base_url + identity_path(sf_sandbox)
    assert DATA + "/sobjects" in resources.values()
