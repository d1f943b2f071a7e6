"""Zoho's own Python SDK (zohocrmsdk8-0, test-only extra `zoho-sdk-tests`) against the Zoho sandbox.

The SDK is pointed at the loopback host with a plain `DataCenter.Environment(api_url,
token_url, upload_url)`; it trusts the sandbox's test CA through REQUESTS_CA_BUNDLE, because it
calls module-level `requests.get/post/put` (api_http_connector.py), which read that variable.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("zohocrmsdk", reason="install the zoho-sdk-tests extra")

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store import FileStore
from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.record import (
    APIException,
    BodyWrapper,
    GetRecordsHeader,
    GetRecordsParam,
    Record,
    RecordOperations,
    ResponseWrapper,
    SuccessResponse,
)
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zohocrmsdk.src.com.zoho.crm.api.util import Choice

from sandboxes import RunningSandbox, start_zoho


@pytest.fixture(scope="module")
def big() -> Iterator[RunningSandbox]:
    # Over 2,000 invoices so paging must switch to page_token; each test mints one token.
    with start_zoho(accounts=240, seed=4, token_mints_per_window=100) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


@pytest.fixture
def sdk(big: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunningSandbox:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(big.ca_bundle))
    Initializer.initialize(
        environment=DataCenter.Environment(big.base_url, big.token_url, big.base_url),
        token=OAuthToken(
            client_id=big.client_id,
            client_secret=big.client_secret,
            refresh_token=big.refresh_token,
        ),
        # The SDK's own stores write secrets in plain text; keep them in the test's tmp dir.
        store=FileStore(str(tmp_path / "sdk_tokens.txt")),
        sdk_config=SDKConfig(auto_refresh_fields=False, pick_list_validation=False),
        resource_path=str(tmp_path),
    )
    return big


def _records(module: str, params: dict[Any, Any], headers: HeaderMap | None = None) -> Any:
    parameters = ParameterMap()
    for key, value in params.items():
        parameters.add(key, value)
    return RecordOperations(module).get_records(parameters, headers or HeaderMap())


def test_sdk_fetches_every_record_page_by_page_past_2000(sdk: RunningSandbox) -> None:
    expected = {row["id"] for row in sdk.emulator.records("Invoices")}
    assert len(expected) > 2000
    fields = "Subject,Account_Name,Grand_Total,Status,Modified_Time"
    seen: list[str] = []
    page, token = 1, None
    sdk.server.reset_calls()
    while True:
        params: dict[Any, Any] = {
            GetRecordsParam.fields: fields,
            GetRecordsParam.per_page: 200,
            GetRecordsParam.sort_by: "Modified_Time",
            GetRecordsParam.sort_order: "asc",
        }
        if token:
            params[GetRecordsParam.page_token] = token
        else:
            params[GetRecordsParam.page] = page
        answer = _records("Invoices", params)
        wrapper = answer.get_object()
        assert isinstance(wrapper, ResponseWrapper), wrapper
        records = wrapper.get_data()
        seen.extend(str(record.get_id()) for record in records)
        info = wrapper.get_info()
        if not info.get_more_records():
            break
        if page * 200 >= 2000:
            token = info.get_next_page_token()
        page += 1
    assert token is not None
    assert len(seen) == len(set(seen)) and set(seen) == expected
    assert sdk.server.calls[("GET", "/crm/v8/Invoices")] == page
    last = records[-1]
    assert last.get_key_value("Account_Name").get_id()
    assert isinstance(last.get_key_value("Grand_Total"), float)
    assert last.get_key_value("Modified_Time").tzinfo is not None


def test_sdk_if_modified_since_sees_only_the_edit(sdk: RunningSandbox) -> None:
    rows = sdk.emulator.records("Accounts")
    newest = max(datetime.fromisoformat(row["Modified_Time"]) for row in rows)
    headers = HeaderMap()
    headers.add(GetRecordsHeader.if_modified_since, newest)
    params = {GetRecordsParam.fields: "Account_Name,Modified_Time"}
    unchanged = _records("Accounts", params, headers)
    # 304 with no body: the SDK hands back no object (reference §8).
    assert unchanged is None or unchanged.get_status_code() == 304
    target = rows[7]["id"]
    sdk.emulator.set_field("Accounts", target, "Account_Name", "Edited By Hand AG")
    headers = HeaderMap()
    headers.add(GetRecordsHeader.if_modified_since, newest)
    changed = _records("Accounts", params, headers).get_object()
    assert [(str(r.get_id()), r.get_key_value("Account_Name")) for r in changed.get_data()] == [
        (target, "Edited By Hand AG")
    ]


def test_sdk_updates_records_and_reads_per_record_results(sdk: RunningSandbox) -> None:
    ids = [row["id"] for row in sdk.emulator.records("Accounts")[:3]]
    records = []
    for record_id, rating in zip(ids, ("B", "D", "Z"), strict=True):
        record = Record()
        record.set_id(int(record_id))
        record.add_key_value("Risk_Rating", Choice(rating))
        record.add_key_value("Risk_Score", 42.5)
        records.append(record)
    body = BodyWrapper()
    body.set_data(records)
    body.set_trigger([])
    answer = RecordOperations("Accounts").update_records(body, HeaderMap())
    assert answer.get_status_code() == 207
    results = answer.get_object().get_data()
    assert [type(r).__name__ for r in results] == [
        "SuccessResponse",
        "SuccessResponse",
        "APIException",
    ]
    failed = results[2]
    assert isinstance(failed, APIException)
    assert failed.get_code().get_value() == "INVALID_DATA"
    assert failed.get_details()["api_name"] == "Risk_Rating"
    stored = {row["id"]: row for row in sdk.emulator.records("Accounts")}
    assert [stored[i]["Risk_Rating"] for i in ids[:2]] == ["B", "D"]
    assert stored[ids[0]]["Risk_Score"] == 42.5
    assert stored[ids[2]]["Risk_Rating"] != "Z"
    assert sdk.emulator.writes_log[-1]["trigger"] == []  # the SDK sent "trigger": []


def test_sdk_creates_and_closes_a_task(sdk: RunningSandbox) -> None:
    account = sdk.emulator.records("Accounts")[0]
    task = Record()
    task.add_key_value("Subject", "Credit risk: invoices 90+ days past due")
    task.add_key_value("Status", Choice("Not Started"))
    task.add_key_value("Priority", Choice("High"))
    task.add_key_value("Due_Date", date(2026, 12, 5))
    what = Record()
    what.set_id(int(account["id"]))
    task.add_key_value("What_Id", what)
    task.add_key_value("$se_module", "Accounts")
    body = BodyWrapper()
    body.set_data([task])
    body.set_trigger([])
    created = RecordOperations("Tasks").create_records(body, HeaderMap())
    assert created.get_status_code() == 201
    result = created.get_object().get_data()[0]
    assert isinstance(result, SuccessResponse)
    task_id = str(result.get_details()["id"])
    stored = next(t for t in sdk.emulator.tasks() if t["id"] == task_id)
    assert stored["What_Id"]["id"] == account["id"] and stored["$se_module"] == "Accounts"
    assert (stored["Due_Date"], stored["Status"], stored["Priority"]) == (
        "2026-12-05",
        "Not Started",
        "High",
    )
    close = Record()
    close.set_id(int(task_id))
    close.add_key_value("Status", Choice("Completed"))
    body = BodyWrapper()
    body.set_data([close])
    body.set_trigger([])
    closed = RecordOperations("Tasks").update_records(body, HeaderMap())
    assert closed.get_status_code() == 200
    stored = next(t for t in sdk.emulator.tasks() if t["id"] == task_id)
    assert stored["Status"] == "Completed" and stored["Closed_Time"]


def test_sdk_does_not_refresh_a_token_the_api_refused(sdk: RunningSandbox) -> None:
    params = {GetRecordsParam.fields: "Account_Name", GetRecordsParam.per_page: 1}
    assert isinstance(_records("Accounts", params).get_object(), ResponseWrapper)
    sdk.emulator.expire_tokens()
    refused = _records("Accounts", params)
    # The SDK refreshes only by its own expiry clock, never on 401 (reference §8).
    assert refused.get_status_code() == 401
    assert refused.get_object().get_code().get_value() == "INVALID_TOKEN"
