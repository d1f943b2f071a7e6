"""Stock jsforce (Node) against the Salesforce sandbox: every answer checked against the org's own state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes import RunningSandbox, start_salesforce
from tests.clients.conftest import node_env, ok, run_node

API_VERSION = "62.0"


@pytest.fixture(scope="module")
def org(node_clients: Path) -> Iterator[RunningSandbox]:
    # 230 accounts x 10 invoices: Invoice__c spans two 2,000-record query pages.
    with start_salesforce(accounts=230, seed=5) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


@pytest.fixture(scope="module")
def session(org: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the jsforce driver; its steps are checked test by test."""
    emulator = org.emulator
    env = node_env(
        org.ca_bundle,
        tmp_path_factory.mktemp("home"),
        SF_LOGIN_URL=org.login_url,
        SF_CLIENT_ID=org.client_id,
        SF_CLIENT_SECRET=org.client_secret,
        SF_USERNAME=str(org.username),
        SF_PASSWORD=str(org.password),
        SF_REFRESH_TOKEN=emulator.demo_refresh_token,
        SF_JWT_KEY=emulator.jwt_private_key,
        SF_API_VERSION=API_VERSION,
    )
    org.server.reset_calls()
    return run_node("jsforce_session.mjs", env)


def identity_url(org: RunningSandbox) -> str:
    from sandboxes.salesforce import ORG_ID

    return f"{org.login_url}/id/{ORG_ID}/{org.emulator.integration_user_id}"


def test_token_grants_return_the_documented_token_response(
    org: RunningSandbox, session: dict[str, Any]
) -> None:
    for step in ("token_client_credentials", "token_refresh"):
        token = ok(session, step)
        assert token["has_access_token"]
        assert token["instance_url"] == org.base_url
        assert token["id"] == identity_url(org)
        assert token["token_type"] == "Bearer"
    jwt = ok(session, "token_jwt_bearer")
    assert jwt["user_id"] == org.emulator.integration_user_id


def test_username_password_login_and_identity(org: RunningSandbox, session: dict[str, Any]) -> None:
    login = ok(session, "login_oauth2_password")
    assert login["user"]["url"] == identity_url(org)
    identity = login["identity"]
    assert identity["id"] == identity_url(org)
    assert identity["user_id"] == org.emulator.integration_user_id
    assert identity["username"] == org.username
    assert identity["active"] is True
    assert identity["user_type"] == "STANDARD"
    assert identity["urls_rest"].endswith("/services/data/v{version}/")
    assert identity["urls_query"].endswith("/services/data/v{version}/query/")


def test_soap_login_with_an_unprefixed_username_gives_a_working_session(
    org: RunningSandbox, session: dict[str, Any]
) -> None:
    soap = ok(session, "login_soap")
    assert soap["user"]["organizationId"] == identity_url(org).split("/")[-2]
    assert soap["user"]["id"] == org.emulator.integration_user_id
    assert soap["instance_url"] == org.base_url
    assert soap["identity_username"] == org.username
    assert soap["account_count"] == len(org.emulator.records("Account"))


def test_query_and_query_more_read_every_record_past_2000(
    org: RunningSandbox, session: dict[str, Any]
) -> None:
    expected = sorted(
        org.emulator.records("Invoice__c"), key=lambda r: (r["Name"] is None, r["Name"])
    )
    assert len(expected) > 2000
    fetched = ok(session, "query_autofetch")
    assert fetched["totalSize"] == len(expected)
    assert sorted(fetched["ids"]) == sorted(r["Id"] for r in expected)
    paged = ok(session, "query_more")
    assert paged["pages"] == [2000, len(expected) - 2000]


def test_aggregates_and_child_subqueries(org: RunningSandbox, session: dict[str, Any]) -> None:
    aggregates = ok(session, "query_aggregates")
    assert aggregates["count"] == len(org.emulator.records("Account"))
    invoices = org.emulator.records("Invoice__c")
    counts = Counter(r["Account__c"] for r in invoices)
    totals: dict[str, float] = {}
    for r in invoices:
        totals[r["Account__c"]] = totals.get(r["Account__c"], 0.0) + float(r["Amount__c"] or 0)
    grouped = aggregates["grouped"]
    assert [g["Account__c"] for g in grouped] == sorted(counts)
    assert {g["Account__c"]: g["n"] for g in grouped} == dict(counts)
    assert {g["Account__c"]: g["total"] for g in grouped} == pytest.approx(totals)
    assert {g["type"] for g in grouped} == {"AggregateResult"}
    accounts = sorted(org.emulator.records("Account"), key=lambda r: r["Name"])[:5]
    assert [row["Id"] for row in aggregates["children"]] == [a["Id"] for a in accounts]
    for account, row in zip(accounts, aggregates["children"], strict=True):
        assert row["tasks"] is None  # no Tasks yet: Salesforce answers null, not an empty list
        mine = sorted(
            (r for r in invoices if r["Account__c"] == account["Id"]), key=lambda r: r["Name"]
        )
        assert row["invoices"] == {
            "totalSize": len(mine),
            "done": True,
            "ids": [r["Id"] for r in mine],
        }


def test_describe_and_describe_global_carry_the_documented_keys(session: dict[str, Any]) -> None:
    described = ok(session, "describe")
    assert described["name"] == "Account"
    for key in (
        "activateable",
        "childRelationships",
        "compactLayoutable",
        "createable",
        "custom",
        "customSetting",
        "deletable",
        "deprecatedAndHidden",
        "feedEnabled",
        "fields",
        "keyPrefix",
        "label",
        "labelPlural",
        "layoutable",
        "mergeable",
        "mruEnabled",
        "name",
        "queryable",
        "recordTypeInfos",
        "replicateable",
        "retrieveable",
        "searchable",
        "supportedScopes",
        "triggerable",
        "undeletable",
        "updateable",
        "urls",
    ):
        assert key in described["keys"], key
    for key in (
        "aggregatable",
        "cascadeDelete",
        "caseSensitive",
        "controllerName",
        "dependentPicklist",
        "groupable",
        "htmlFormatted",
        "inlineHelpText",
        "nameField",
        "namePointing",
        "permissionable",
        "polymorphicForeignKey",
        "relationshipOrder",
        "writeRequiresMasterRead",
    ):
        assert key in described["field_keys"], key
    assert "Tasks" in described["child_relationships"]
    assert {"Account", "Task", "Invoice__c"} <= set(described["global_names"])
    for key in ("activateable", "layoutable", "mergeable", "replicateable", "searchable", "urls"):
        assert key in described["global_keys"], key


def test_limits(org: RunningSandbox, session: dict[str, Any]) -> None:
    limits = ok(session, "limits")
    assert len(limits["keys"]) >= 20
    for key in ("DailyApiRequests", "DailyBulkV2QueryJobs", "DailyBulkApiBatches", "DataStorageMB"):
        assert key in limits["keys"]
    assert limits["daily"]["Max"] == org.emulator.daily_api_limit
    assert 0 < limits["daily"]["Remaining"] < limits["daily"]["Max"]


def test_collections_update_create_retrieve_upsert_delete(
    org: RunningSandbox, session: dict[str, Any]
) -> None:
    updated = ok(session, "collections_update")
    assert [r["success"] for r in updated] == [True] * 3
    scores = {r["Id"]: r["Risk_Score__c"] for r in org.emulator.records("Account")}
    assert [scores[r["id"]] for r in updated] == [11, 12, 13]
    created = ok(session, "collections_create")
    assert [r["success"] for r in created] == [True] * 3
    retrieved = ok(session, "collections_retrieve")
    assert [r["Risk_Score__c"] for r in retrieved["explicit"]] == [11, 12, 13]
    assert {r["type"] for r in retrieved["explicit"]} == {"Account"}
    assert retrieved["described_subjects"] == [f"jsforce follow-up {i}" for i in range(3)]
    upserted = ok(session, "collections_upsert")
    assert [(r["success"], r["created"]) for r in upserted] == [(True, False), (True, True)]
    deleted = ok(session, "collections_delete")
    assert len(deleted["ids"]) == 4
    assert all(r["success"] for r in deleted["results"])
    live = {t["Risk_Task_Key__c"] for t in org.emulator.records("Task")}
    assert not {k for k in live if k and k.startswith("jsforce-")}
    gone = {
        t["Id"]: t["Subject"]
        for t in org.emulator.records("Task", include_deleted=True)
        if t["Id"] in deleted["ids"]
    }
    assert gone[created[0]["id"]] == "jsforce follow-up 0 (upserted)"


def test_bulk2_query_reads_every_invoice(org: RunningSandbox, session: dict[str, Any]) -> None:
    bulk = ok(session, "bulk2_query")
    expected = sorted(r["Id"] for r in org.emulator.records("Invoice__c"))
    assert sorted(bulk["ids"]) == expected
    # One results page, as Salesforce sizes them (test_sf_cli follows Sforce-Locator across
    # small pages): jsforce 3.10's bulk2.query pipes every page into one CSV parser at once,
    # so pages of a few thousand rows interleave on its side ("Invalid Closing Quote").
    pages = org.server.calls[("GET", f"/services/data/v{API_VERSION}/jobs/query/{{id}}/results")]
    assert pages == 1


def test_bulk2_ingest_reports_each_row(org: RunningSandbox, session: dict[str, Any]) -> None:
    ingest = ok(session, "bulk2_ingest")
    assert ingest["contentUrl"].startswith(f"services/data/v{API_VERSION}/jobs/ingest/")
    assert ingest["contentUrl"].endswith("/batches")
    assert sorted(r["key"] for r in ingest["successful"]) == ["bulk-0", "bulk-1", "bulk-2"]
    assert all(r["created"] == "true" for r in ingest["successful"])
    tasks = {t["Id"]: t for t in org.emulator.records("Task")}
    assert {tasks[r["id"]]["Risk_Task_Key__c"] for r in ingest["successful"]} == {
        "bulk-0",
        "bulk-1",
        "bulk-2",
    }
    assert [r["key"] for r in ingest["failed"]] == ["bulk-too-long"]
    # Salesforce names the field by its label in STRING_TOO_LONG.
    assert ingest["failed"][0]["error"].startswith("STRING_TOO_LONG:Subject: data value too large")
    assert ingest["unprocessed"] == 0
