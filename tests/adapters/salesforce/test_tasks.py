"""Tasks: create once per dedupe key (even when the answer is lost), upsert by external id, close, comment."""

from __future__ import annotations

import json
import re
from datetime import date

import requests
import responses

from connector.models import TaskAction, TaskPriority
from connector.protocol import task_marker
from tests.adapters.salesforce._support import BASE, add_token, fixture, sf_id, soql_of

QUERY = re.compile(rf"^{re.escape(BASE)}/query/\?")
ACCOUNT = sf_id("001", 7)
USER = "005000000000001AAA"


def action(key: str = "acme_sf:001:past_due:1", **overrides) -> TaskAction:
    values = {
        "action": "create",
        "account_id": ACCOUNT,
        "rule": "past_due",
        "dedupe_key": key,
        "subject": "Invoices 95 days past due",
        "description": "Please call the customer.",
        "priority": TaskPriority.HIGH,
        "due_date": date(2026, 12, 5),
    }
    values.update(overrides)
    return TaskAction(**values)


def task_row(number: int, key: str | None, closed: bool = False) -> dict:
    description = f"Call them.\n\n{task_marker(key)}" if key else "Someone else's task"
    return {
        "attributes": {"type": "Task"},
        "Id": sf_id("00T", number),
        "Description": description,
        "IsClosed": closed,
        "OwnerId": USER,
        "Priority": "High",
        "Status": "Completed" if closed else "Not Started",
        "WhatId": ACCOUNT,
    }


def page(rows: list[dict]) -> dict:
    return {"totalSize": len(rows), "done": True, "records": rows}


def test_create_sends_the_documented_fields_after_looking_for_an_existing_task(
    rsps, adapter
) -> None:
    add_token(rsps)
    lookup = rsps.add(responses.GET, QUERY, json=page([task_row(1, None)]))
    create = rsps.add(
        responses.POST,
        f"{BASE}/sobjects/Task/",
        status=201,
        json={"id": sf_id("00T", 9), "success": True, "errors": []},
    )
    results = adapter.create_tasks([action()])
    assert [(r.status, r.crm_id, r.key) for r in results] == [
        ("ok", sf_id("00T", 9), "acme_sf:001:past_due:1")
    ]
    text = soql_of(lookup.calls[0].request)
    assert f"CreatedById = '{USER}'" in text and f"WhatId IN ('{ACCOUNT}')" in text
    body = json.loads(create.calls[0].request.body)
    assert body == {
        "WhatId": ACCOUNT,
        "Subject": "Invoices 95 days past due",
        "Priority": "High",
        "Status": "Not Started",
        "Description": "Please call the customer.\n\n[crm-risk:acme_sf:001:past_due:1]",
        "ActivityDate": "2026-12-05",
    }
    assert "OwnerId" not in body  # None leaves Salesforce's default owner


def test_owner_and_priority_are_mapped(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(responses.GET, QUERY, json=page([]))
    create = rsps.add(
        responses.POST,
        f"{BASE}/sobjects/Task/",
        status=201,
        json={"id": sf_id("00T", 9), "success": True, "errors": []},
    )
    adapter.create_tasks([action(owner_id=USER, priority=TaskPriority.LOW)])
    body = json.loads(create.calls[0].request.body)
    assert (body["OwnerId"], body["Priority"]) == (USER, "Low")


def test_an_existing_task_is_reused_not_created_again(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(responses.GET, QUERY, json=page([task_row(3, "acme_sf:001:past_due:1")]))
    results = adapter.create_tasks([action()])
    assert [(r.status, r.crm_id) for r in results] == [("ok", sf_id("00T", 3))]


def test_a_lost_create_answer_is_settled_by_looking_again(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(responses.GET, QUERY, json=page([]))
    create = rsps.add(
        responses.POST,
        f"{BASE}/sobjects/Task/",
        body=requests.ConnectionError("reset after commit"),
    )
    rsps.add(responses.GET, QUERY, json=page([task_row(4, "acme_sf:001:past_due:1")]))
    results = adapter.create_tasks([action()])
    assert create.call_count == 1  # never blindly re-sent
    assert [(r.status, r.crm_id) for r in results] == [("ok", sf_id("00T", 4))]


def test_a_lost_create_that_did_not_land_is_unknown(rsps, adapter, sleeps) -> None:
    add_token(rsps)
    lookups = rsps.add(responses.GET, QUERY, json=page([]))
    create = rsps.add(
        responses.POST,
        f"{BASE}/sobjects/Task/",
        status=503,
        json=[{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}],
    )
    results = adapter.create_tasks([action()])
    assert create.call_count == 1
    assert lookups.call_count == 2
    assert results[0].status == "unknown" and results[0].retriable
    assert sleeps == []


def test_a_refused_create_is_rejected_with_its_code(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(responses.GET, QUERY, json=page([]))
    refusal = [
        {
            "message": "operation performed with inactive user",
            "errorCode": "INACTIVE_OWNER_OR_USER",
            "fields": ["OwnerId"],
        }
    ]
    rsps.add(responses.POST, f"{BASE}/sobjects/Task/", status=400, json=refusal)
    result = adapter.create_tasks([action(owner_id=USER)])[0]
    assert (result.status, result.error_code, result.fields) == (
        "rejected",
        "INACTIVE_OWNER_OR_USER",
        ("OwnerId",),
    )


def test_external_id_field_upserts_by_key(rsps, make_adapter) -> None:
    adapter = make_adapter(options={"task_external_id_field": "Crm_Risk_Key__c"})
    assert adapter.tasks.external_id_field == "Crm_Risk_Key__c"
    add_token(rsps)
    lookup = rsps.add(responses.GET, QUERY, json=page([]))
    upsert = rsps.add(
        responses.PATCH,
        f"{BASE}/sobjects/Task/Crm_Risk_Key__c/acme_sf%3A001%3Apast_due%3A1",
        status=201,
        json={"id": sf_id("00T", 5), "success": True, "created": True, "errors": []},
    )
    results = adapter.create_tasks([action()])
    assert [(r.status, r.crm_id) for r in results] == [("ok", sf_id("00T", 5))]
    assert "WHERE Crm_Risk_Key__c IN ('acme_sf:001:past_due:1')" in soql_of(lookup.calls[0].request)
    assert upsert.call_count == 1


def test_find_tasks_parses_markers_and_stops_paging_when_all_are_found(rsps, adapter) -> None:
    add_token(rsps)
    first = {
        "totalSize": 400,
        "done": False,
        "nextRecordsUrl": "/services/data/v62.0/query/01gTASKS-2000",
        "records": [task_row(1, None), task_row(2, "k:1", closed=True), task_row(3, "k:2")],
    }
    rsps.add(responses.GET, QUERY, json=first)  # no second page registered: it must not be read
    found = adapter.find_tasks(dict.fromkeys(["k:1", "k:2"]))
    assert {k: (s.crm_task_id, s.is_closed, s.priority) for k, s in found.items()} == {
        "k:1": (sf_id("00T", 2), True, TaskPriority.HIGH),
        "k:2": (sf_id("00T", 3), False, TaskPriority.HIGH),
    }


def test_complete_sets_the_closed_status_from_describe(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(
        responses.GET, f"{BASE}/sobjects/Task/describe", json=fixture("describe__task_completed")
    )
    patch = rsps.add(
        responses.PATCH,
        f"{BASE}/composite/sobjects",
        json=[{"id": sf_id("00T", 2), "success": True, "errors": []}],
    )
    results = adapter.update_tasks([action(action="complete", crm_task_id=sf_id("00T", 2))])
    assert [(r.status, r.key) for r in results] == [("ok", "acme_sf:001:past_due:1")]
    sent = json.loads(patch.calls[0].request.body)["records"]
    assert sent == [{"attributes": {"type": "Task"}, "id": sf_id("00T", 2), "Status": "Completed"}]


def test_a_renamed_closed_status_is_read_from_task_status(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(
        responses.GET, f"{BASE}/sobjects/Task/describe", json=fixture("describe__task_renamed")
    )
    status_query = rsps.add(
        responses.GET,
        QUERY,
        json=page([{"attributes": {"type": "TaskStatus"}, "MasterLabel": "Done"}]),
    )
    patch = rsps.add(
        responses.PATCH,
        f"{BASE}/composite/sobjects",
        json=[{"id": sf_id("00T", 2), "success": True, "errors": []}],
    )
    adapter.update_tasks([action(action="complete", crm_task_id=sf_id("00T", 2))])
    assert "FROM TaskStatus WHERE IsClosed = true" in soql_of(status_query.calls[0].request)
    assert json.loads(patch.calls[0].request.body)["records"][0]["Status"] == "Done_Closed"


def test_escalate_and_comment_go_in_one_collection_call(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(responses.GET, QUERY, json=page([task_row(2, "k:2")]))
    patch = rsps.add(
        responses.PATCH,
        f"{BASE}/composite/sobjects",
        json=[
            {"id": sf_id("00T", 1), "success": True, "errors": []},
            {"id": sf_id("00T", 2), "success": True, "errors": []},
        ],
    )
    results = adapter.update_tasks(
        [
            action(
                "k:1",
                action="escalate",
                crm_task_id=sf_id("00T", 1),
                owner_id=USER,
                subject="Now 120 days",
            ),
            action(
                "k:2",
                action="comment",
                crm_task_id=sf_id("00T", 2),
                description="The cause cleared.",
            ),
        ]
    )
    assert [r.status for r in results] == ["ok", "ok"]
    sent = json.loads(patch.calls[0].request.body)["records"]
    assert sent[0] == {
        "attributes": {"type": "Task"},
        "id": sf_id("00T", 1),
        "Priority": "High",
        "OwnerId": USER,
        "Subject": "Now 120 days",
    }
    assert sent[1]["Description"] == "Call them.\n\nThe cause cleared.\n\n[crm-risk:k:2]"


def test_many_creates_go_in_one_collection_call_with_per_record_results(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(responses.GET, QUERY, json=page([]))
    create = rsps.add(
        responses.POST,
        f"{BASE}/composite/sobjects",
        json=[
            {"id": sf_id("00T", 21), "success": True, "errors": []},
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                        "message": "Owner inactive",
                        "fields": ["OwnerId"],
                    }
                ],
            },
            {"id": sf_id("00T", 23), "success": True, "errors": []},
        ],
    )
    tasks = [action(f"k:{n}") for n in range(3)]
    results = adapter.create_tasks(tasks)
    assert [(r.status, r.key) for r in results] == [
        ("ok", "k:0"),
        ("rejected", "k:1"),
        ("ok", "k:2"),
    ]
    assert results[1].error_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert results[1].fields == ("OwnerId",)
    assert len(create.calls) == 1
    body = json.loads(create.calls[0].request.body)
    assert body["allOrNone"] is False
    assert [record["attributes"] for record in body["records"]] == [{"type": "Task"}] * 3


def test_lost_collection_answer_is_settled_by_looking_up_the_markers(rsps, adapter) -> None:
    add_token(rsps)
    lookups = [page([]), page([task_row(31, "k:0")])]
    rsps.add_callback(
        responses.GET, QUERY, callback=lambda request: (200, {}, json.dumps(lookups.pop(0)))
    )
    create = rsps.add(
        responses.POST, f"{BASE}/composite/sobjects", body=requests.ConnectionError("reset")
    )
    results = adapter.create_tasks([action("k:0"), action("k:1")])
    assert [(r.status, r.crm_id) for r in results] == [("ok", sf_id("00T", 31)), ("unknown", None)]
    assert len(create.calls) == 1, "a create whose answer was lost is never blindly resent"


def test_first_attempts_skip_the_lookup(rsps, adapter) -> None:
    add_token(rsps)
    create = rsps.add(
        responses.POST,
        f"{BASE}/composite/sobjects",
        json=[
            {"id": sf_id("00T", 41), "success": True, "errors": []},
            {"id": sf_id("00T", 42), "success": True, "errors": []},
        ],
    )
    results = adapter.create_tasks(
        [action("k:a", first_attempt=True), action("k:b", first_attempt=True)]
    )
    assert [r.status for r in results] == ["ok", "ok"]
    assert len(create.calls) == 1  # and no query: responses fails on an unregistered GET
