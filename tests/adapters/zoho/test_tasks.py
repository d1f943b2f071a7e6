"""Tasks: created at most once per dedupe key (even after a lost answer), found, completed, escalated."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import requests
import responses

from adapters.zoho import ZohoAdapter
from connector.models import TaskAction, TaskPriority
from connector.protocol import task_marker

from ._support import API

ACCOUNT = "6493490000001291001"
TASK_ID = "6493490000009000001"


def action(key: str = "acme:6493490000001291001:past_due:1", **extra: Any) -> TaskAction:
    values: dict[str, Any] = {
        "action": "create",
        "account_id": ACCOUNT,
        "rule": "past_due",
        "dedupe_key": key,
        "subject": "Invoices 95 days past due",
        "description": "Please call the customer.",
        "owner_id": "6493490000000486001",
        "due_date": date(2025, 11, 30),
        "priority": TaskPriority.HIGH,
    }
    values.update(extra)
    return TaskAction(**values)


def task_row(key: str, task_id: str = TASK_ID, status: str = "Not Started") -> dict[str, Any]:
    return {
        "id": task_id,
        "Description": f"Please call.\n\n{task_marker(key)}",
        "Status": status,
        "Owner": {"id": "6493490000000486001"},
        "Priority": "High",
        "What_Id": {"id": ACCOUNT},
    }


def coql_answer(
    mock: responses.RequestsMock, rows: list[dict[str, Any]], more: bool = False
) -> None:
    mock.post(
        f"{API}/coql", json={"data": rows, "info": {"count": len(rows), "more_records": more}}
    )


def created(task_id: str = TASK_ID) -> dict[str, Any]:
    return {
        "data": [
            {
                "code": "SUCCESS",
                "details": {"id": task_id},
                "message": "record added",
                "status": "success",
            }
        ]
    }


def test_create_sends_the_documented_body(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.post(f"{API}/coql", status=204)
    mock.post(f"{API}/Tasks", status=201, json=created())
    results = adapter.create_tasks([action()])
    assert results[0].status == "ok" and results[0].crm_id == TASK_ID
    assert results[0].key == "acme:6493490000001291001:past_due:1"
    lookup = json.loads(mock.calls[1].request.body)["select_query"]
    assert "from Tasks where What_Id in ('6493490000001291001')" in lookup
    body = json.loads(mock.calls[2].request.body)
    assert body["trigger"] == []
    assert body["data"] == [
        {
            "Subject": "Invoices 95 days past due",
            "Status": "Not Started",
            "Priority": "High",
            "What_Id": {"id": ACCOUNT},
            "$se_module": "Accounts",
            "Description": "Please call the customer.\n\n[crm-risk:acme:6493490000001291001:past_due:1]",
            "Due_Date": "2025-11-30",
            "Owner": {"id": "6493490000000486001"},
        }
    ]


def test_owner_is_omitted_when_unknown(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.post(f"{API}/coql", status=204)
    mock.post(f"{API}/Tasks", status=201, json=created())
    adapter.create_tasks([action(owner_id=None, priority=TaskPriority.LOW)])
    sent = json.loads(mock.calls[2].request.body)["data"][0]
    assert "Owner" not in sent and sent["Priority"] == "Low"


def test_existing_task_is_not_created_again(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    key = "acme:6493490000001291001:past_due:1"
    coql_answer(mock, [task_row("other:key"), task_row(key)])
    results = adapter.create_tasks([action(key), action(key)])
    assert [(r.status, r.crm_id) for r in results] == [("ok", TASK_ID), ("ok", TASK_ID)]
    assert not any(c.request.url == f"{API}/Tasks" for c in mock.calls)


def test_lost_create_answer_is_settled_by_lookup(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    key = "acme:6493490000001291001:past_due:1"
    mock.post(f"{API}/coql", status=204)
    mock.post(f"{API}/Tasks", body=requests.ConnectionError("connection reset after commit"))
    coql_answer(mock, [task_row(key)])
    results = adapter.create_tasks([action(key)])
    assert results[0].status == "ok" and results[0].crm_id == TASK_ID
    assert sum(1 for c in mock.calls if c.request.url == f"{API}/Tasks") == 1  # never re-sent


def test_lost_create_answer_not_found_is_unknown(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.post(f"{API}/coql", status=204)
    mock.post(f"{API}/Tasks", status=502)
    mock.post(f"{API}/coql", status=204)
    results = adapter.create_tasks([action()])
    assert results[0].status == "unknown" and results[0].retriable
    assert sum(1 for c in mock.calls if c.request.url == f"{API}/Tasks") == 1


def test_create_is_resent_only_after_429(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok, sleeps: list[float]
) -> None:
    token_ok()
    mock.post(f"{API}/coql", status=204)
    mock.post(
        f"{API}/Tasks",
        status=429,
        json={"code": "TOO_MANY_REQUESTS", "details": {}, "message": "x", "status": "error"},
    )
    mock.post(f"{API}/Tasks", status=201, json=created())
    assert adapter.create_tasks([action()])[0].status == "ok"
    assert len(sleeps) == 1


def test_rejected_create(mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok) -> None:
    token_ok()
    mock.post(f"{API}/coql", status=204)
    mock.post(
        f"{API}/Tasks",
        status=400,
        json={
            "data": [
                {
                    "code": "INVALID_DATA",
                    "details": {"api_name": "What_Id"},
                    "message": "invalid data",
                    "status": "error",
                }
            ]
        },
    )
    result = adapter.create_tasks([action()])[0]
    assert (result.status, result.error_code, result.fields) == (
        "rejected",
        "INVALID_DATA",
        ("What_Id",),
    )


def test_find_tasks_scans_by_id_when_the_account_is_unknown(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    coql_answer(mock, [task_row("conf:1:x:1", "6493490000009000001")], more=True)
    coql_answer(mock, [task_row("conf:1:x:2", "6493490000009000002", status="Completed")])
    found = adapter.find_tasks(dict.fromkeys(["conf:1:x:1", "conf:1:x:2", "conf:1:x:3"]))
    assert set(found) == {"conf:1:x:1", "conf:1:x:2"}
    assert not found["conf:1:x:1"].is_closed and found["conf:1:x:2"].is_closed
    assert found["conf:1:x:1"].priority == TaskPriority.HIGH
    assert found["conf:1:x:1"].owner_id == "6493490000000486001"
    first, second = (json.loads(c.request.body)["select_query"] for c in mock.calls[1:])
    assert "where id is not null order by id asc limit 2000" in first
    assert "where id > '6493490000009000001' order by id asc" in second


def test_update_tasks(mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok) -> None:
    token_ok()
    coql_answer(mock, [{"id": "3", "Description": "Call them.\n\n[crm-risk:k3]"}])
    puts: list[Any] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        data = json.loads(request.body)["data"]
        puts.append(data)
        return (
            200,
            {},
            json.dumps({"data": [{"code": "SUCCESS", "details": {"id": d["id"]}} for d in data]}),
        )

    mock.add_callback(responses.PUT, f"{API}/Tasks", callback=answer)
    tasks = [
        action("k1", action="complete", crm_task_id="1"),
        action("k2", action="escalate", crm_task_id="2", owner_id="77", priority=TaskPriority.HIGH),
        action(
            "k3", action="comment", crm_task_id="3", description="The cause cleared on 2025-12-01."
        ),
        action("k4", action="complete", crm_task_id=None),
    ]
    results = adapter.update_tasks(tasks)
    assert [r.status for r in results] == ["ok", "ok", "ok", "rejected"]
    assert [r.key for r in results] == ["k1", "k2", "k3", "k4"]
    assert puts == [
        [
            {"id": "1", "Status": "Completed"},
            {"id": "2", "Priority": "High", "Owner": {"id": "77"}},
            {
                "id": "3",
                "Description": "Call them.\n\nThe cause cleared on 2025-12-01.\n\n[crm-risk:k3]",
            },
        ]
    ]


def test_what_id_lookup_refused_falls_back_to_a_scan(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    key = "acme:6493490000001291001:past_due:1"
    mock.post(
        f"{API}/coql",
        status=400,
        json={
            "code": "INVALID_QUERY",
            "details": {},
            "message": "column given seems to be invalid",
            "status": "error",
        },
    )
    coql_answer(mock, [task_row(key)])
    assert adapter.find_tasks({key: "6493490000001291001"})[key].crm_task_id == TASK_ID
    assert adapter.tasks.lookup == "scan"
    assert "id is not null" in json.loads(mock.calls[-1].request.body)["select_query"]


def test_first_attempts_skip_the_lookup(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.post(f"{API}/Tasks", status=201, json=created())
    results = adapter.create_tasks([action(first_attempt=True)])
    assert results[0].status == "ok"
    assert not [call for call in mock.calls if call.request.url.endswith("/coql")]
