"""Zoho's Node SDK (@zohocrm/nodejs-sdk-8.0, unchanged) against the Zoho sandbox, checked against its state."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes import RunningSandbox, start_zoho
from tests.clients.conftest import node_env, ok, run_node


@pytest.fixture(scope="module")
def org(node_clients: Path) -> Iterator[RunningSandbox]:
    # Over 2,000 invoices, so paging must switch from `page` to `page_token`.
    with start_zoho(accounts=240, seed=4, token_mints_per_window=100) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


@pytest.fixture(scope="module")
def account(org: RunningSandbox) -> dict[str, Any]:
    return sorted(org.emulator.records("Accounts"), key=lambda r: r["id"])[3]


@pytest.fixture(scope="module")
def session(
    org: RunningSandbox, account: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("zoho-sdk")
    env = node_env(
        org.ca_bundle,
        work,
        ZOHO_API_URL=org.base_url,
        ZOHO_TOKEN_URL=org.token_url,
        ZOHO_CLIENT_ID=org.client_id,
        ZOHO_CLIENT_SECRET=org.client_secret,
        ZOHO_REFRESH_TOKEN=str(org.refresh_token),
        ZOHO_WORK_DIR=str(work),
        ZOHO_ACCOUNT_ID=str(account["id"]),
    )
    org.server.reset_calls()
    return run_node("zoho_sdk_session.mjs", env)


def test_initialize_with_a_refresh_token_against_a_custom_environment(
    org: RunningSandbox, session: dict[str, Any]
) -> None:
    assert ok(session, "initialize") is True
    # The SDK posts its refresh grant as multipart/form-data.
    assert org.server.calls[("POST", "/oauth/v2/token")] >= 1


def test_records_page_by_page_past_2000(org: RunningSandbox, session: dict[str, Any]) -> None:
    paged = ok(session, "records_paged")
    expected = {str(r["id"]) for r in org.emulator.records("Invoices")}
    assert len(expected) > 2000
    assert len(paged["ids"]) == len(set(paged["ids"])) and set(paged["ids"]) == expected
    assert paged["calls"][:10] == ["page"] * 10
    assert "token" in paged["calls"]


def test_update_writes_the_account(
    org: RunningSandbox, account: dict[str, Any], session: dict[str, Any]
) -> None:
    answer = ok(session, "update_account")
    assert answer == [{"status": "success", "code": "SUCCESS", "id": str(account["id"])}]
    stored = {r["id"]: r for r in org.emulator.records("Accounts")}[account["id"]]
    assert stored["Risk_Score"] == 61.5
    assert stored["Risk_Reasons"] == "Node SDK: two invoices 60+ days overdue"


def test_create_task_linked_to_the_account(
    org: RunningSandbox, account: dict[str, Any], session: dict[str, Any]
) -> None:
    answer = ok(session, "create_task")
    assert [(a["status"], a["code"]) for a in answer] == [("success", "SUCCESS")]
    tasks = {str(t["id"]): t for t in org.emulator.tasks()}
    task = tasks[answer[0]["id"]]
    assert task["Subject"] == "Node SDK follow-up"
    assert str(task["What_Id"]["id"]) == str(account["id"])
    assert task["$se_module"] == "Accounts"


def test_coql_filters_by_lookup(
    org: RunningSandbox, account: dict[str, Any], session: dict[str, Any]
) -> None:
    answer = ok(session, "coql")
    mine = sorted(
        r["Subject"]
        for r in org.emulator.records("Invoices")
        if str((r.get("Account_Name") or {}).get("id")) == str(account["id"])
    )
    assert mine
    assert answer == {"subjects": mine, "count": len(mine), "more": False}


def test_field_metadata_of_tasks(session: dict[str, Any]) -> None:
    meta = ok(session, "field_metadata")
    assert {"Subject", "What_Id", "Status", "Due_Date"} <= set(meta["api_names"])
    assert meta["subject"]["data_type"] == "text"
    assert meta["subject"]["json_type"] == "string"
    assert meta["subject"]["system_mandatory"] is True
    assert meta["subject"]["field_label"] == meta["subject"]["display_label"] == "Subject"
    # What_Id is Zoho's multi-module "Related To" lookup; its module comes with each record
    # ($se_module), so the lookup metadata points at se_module rather than one module.
    assert meta["what_id"] == {
        "data_type": "lookup",
        "json_type": "jsonobject",
        "lookup_module": "se_module",
    }
    # v8 keys the SDK models beyond the basics.
    assert meta["subject_v8"] == {
        "sortable": True,
        "filterable": True,
        "searchable": True,
        "view_edit": True,
        "api_update": True,
        "permission": "read_write",
        "sequence_number": meta["api_names"].index("Subject") + 1,
    }


def test_bulk_read_exports_every_invoice(org: RunningSandbox, session: dict[str, Any]) -> None:
    bulk = ok(session, "bulk_read")
    expected = {str(r["id"]): r for r in org.emulator.records("Invoices")}
    assert bulk["state"] == "COMPLETED"
    assert bulk["count"] == len(expected)
    with zipfile.ZipFile(bulk["zip"]) as archive:
        (name,) = archive.namelist()
        rows = list(csv.DictReader(io.TextIOWrapper(archive.open(name), encoding="utf-8")))
    assert {row["id"] for row in rows} == set(expected)
    sample = rows[0]
    assert sample["Subject"] == expected[sample["id"]]["Subject"]
