"""Writes: batches of 100 with trigger [], per-record results, 207, count mismatch, 429, quota."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses

from adapters.zoho import ZohoAdapter
from connector.errors import FatalCrmError, QuotaExhaustedError, RetriableCrmError
from connector.models import RecordChange

from ._support import API, load

IDS = ["6493490000001291001", "6493490000001291002", "6493490000001291003", "6493490000001291004"]


def success(record_id: str) -> dict[str, Any]:
    return {
        "code": "SUCCESS",
        "details": {"id": record_id},
        "message": "record updated",
        "status": "success",
    }


def test_mixed_207_is_read_record_by_record(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.put(f"{API}/Accounts", status=207, json=load("accounts_put__mixed"))
    changes = [RecordChange(crm_id=i, fields={"Risk_Score": 10}) for i in IDS]
    results = adapter.write("Accounts", changes)
    assert [r.status for r in results] == ["ok", "rejected", "rejected", "rejected"]
    assert [r.crm_id for r in results] == IDS
    assert results[1].error_code == "INVALID_DATA" and results[1].fields == ("Risk_Score",)
    assert results[2].error_code == "RECORD_LOCKED" and results[2].retriable
    assert results[3].error_code == "MANDATORY_NOT_FOUND" and results[3].fields == ("Account_Name",)
    assert not results[1].retriable


def test_body_uses_trigger_and_json_numbers(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.put(f"{API}/Accounts", json={"data": [success(IDS[0])]})
    adapter.write(
        "Accounts",
        [
            RecordChange(
                crm_id=IDS[0],
                fields={
                    "Credit_Limit": Decimal("25000.50"),
                    "Risk_Score": Decimal(612),
                    "Risk_Rating": "B",
                },
            )
        ],
    )
    body = json.loads(mock.calls[-1].request.body)
    assert body == {
        "data": [{"id": IDS[0], "Credit_Limit": 25000.5, "Risk_Score": 612, "Risk_Rating": "B"}],
        "trigger": [],
    }


def test_trigger_is_configurable(mock: responses.RequestsMock, make_adapter, token_ok) -> None:
    token_ok()
    adapter = make_adapter(options={"trigger": ["workflow"]})
    mock.put(f"{API}/Accounts", json={"data": [success(IDS[0])]})
    adapter.write("Accounts", [RecordChange(crm_id=IDS[0], fields={"Risk_Score": 1})])
    assert json.loads(mock.calls[-1].request.body)["trigger"] == ["workflow"]


def test_batches_of_100(mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok) -> None:
    token_ok()
    sizes: list[int] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        data = json.loads(request.body)["data"]
        sizes.append(len(data))
        return 200, {}, json.dumps({"data": [success(d["id"]) for d in data]})

    mock.add_callback(responses.PUT, f"{API}/Accounts", callback=answer)
    changes = [RecordChange(crm_id=str(1000 + i), fields={"Risk_Score": i}) for i in range(250)]
    results = adapter.write("Accounts", changes)
    assert sizes == [100, 100, 50]
    assert all(r.status == "ok" for r in results) and len(results) == 250
    assert adapter.capabilities.max_write_batch == 100


def test_count_mismatch_makes_every_record_unknown(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.put(f"{API}/Accounts", json={"data": [success(IDS[0])]})
    results = adapter.write(
        "Accounts", [RecordChange(crm_id=i, fields={"Risk_Score": 1}) for i in IDS[:2]]
    )
    assert [r.status for r in results] == ["unknown", "unknown"]


def test_result_naming_another_record_is_unknown(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.put(f"{API}/Accounts", json={"data": [success(IDS[1]), success(IDS[1])]})
    results = adapter.write(
        "Accounts", [RecordChange(crm_id=i, fields={"Risk_Score": 1}) for i in IDS[:2]]
    )
    assert [r.status for r in results] == ["unknown", "ok"]


def test_whole_request_error_raises(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.put(f"{API}/Accounts", status=400, json=load("api__limit_exceeded"))
    with pytest.raises(FatalCrmError):
        adapter.write("Accounts", [RecordChange(crm_id=IDS[0], fields={"Risk_Score": 1})])


def test_429_backs_off_exponentially_with_jitter(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok, sleeps: list[float]
) -> None:
    token_ok()
    for _ in range(3):
        mock.put(f"{API}/Accounts", status=429, json=load("api__too_many_requests"))
    mock.put(f"{API}/Accounts", json={"data": [success(IDS[0])]})
    results = adapter.write("Accounts", [RecordChange(crm_id=IDS[0], fields={"Risk_Score": 1})])
    assert results[0].status == "ok"
    assert len(sleeps) == 3
    for attempt, waited in enumerate(sleeps, start=1):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= waited <= ceiling


def test_429_after_all_retries_is_retriable(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    for _ in range(4):
        mock.put(f"{API}/Accounts", status=429, json=load("api__too_many_requests"))
    with pytest.raises(RetriableCrmError) as caught:
        adapter.write("Accounts", [RecordChange(crm_id=IDS[0], fields={"Risk_Score": 1})])
    assert caught.value.status == 429 and caught.value.exit_code == 75


def test_connection_drop_is_retried(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.put(f"{API}/Accounts", body=requests.ConnectionError("reset"))
    mock.put(f"{API}/Accounts", json={"data": [success(IDS[0])]})
    assert (
        adapter.write("Accounts", [RecordChange(crm_id=IDS[0], fields={"Risk_Score": 1})])[0].status
        == "ok"
    )


def test_quota_stops_the_run_before_the_next_call(
    mock: responses.RequestsMock, make_adapter, token_ok
) -> None:
    token_ok()
    adapter = make_adapter(api_budget_share=0.5)
    for remaining in (1000, 700, 499):
        mock.put(
            f"{API}/Accounts",
            json={"data": [success(IDS[0])]},
            headers={"X-API-CREDITS-REMAINING": str(remaining)},
        )
    change = [RecordChange(crm_id=IDS[0], fields={"Risk_Score": 1})]
    for _ in range(3):
        adapter.write("Accounts", change)
    assert adapter.usage().remaining == 499
    with pytest.raises(QuotaExhaustedError) as caught:
        adapter.write("Accounts", change)  # no fourth PUT registered: the call is never sent
    assert caught.value.exit_code == 75
    usage = adapter.usage()
    assert usage.calls["PUT /crm/v8/Accounts"] == 3
    assert usage.calls["POST oauth/v2/token"] == 1


def test_credit_budget_option(mock: responses.RequestsMock, make_adapter, token_ok) -> None:
    token_ok()
    adapter = make_adapter(options={"credit_budget": 1})
    mock.put(f"{API}/Accounts", json={"data": [success(IDS[0])]})
    change = [RecordChange(crm_id=IDS[0], fields={"Risk_Score": 1})]
    adapter.write("Accounts", change)
    with pytest.raises(QuotaExhaustedError):
        adapter.write("Accounts", change)
