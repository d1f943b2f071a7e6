"""Collection writes: per-record results by position, count mismatch, batches of 200, row locks, redaction."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
import responses

from connector.errors import FatalCrmError, RetriableCrmError
from connector.models import RecordChange
from tests.adapters.salesforce._support import BASE, TOKEN, add_token, fixture, sf_id

COLLECTIONS = f"{BASE}/composite/sobjects"


def changes(count: int, score: int = 5) -> list[RecordChange]:
    return [
        RecordChange(crm_id=sf_id("001", n), fields={"Risk_Score__c": Decimal(score)})
        for n in range(1, count + 1)
    ]


def ok(record_id: str) -> dict:
    return {"id": record_id, "success": True, "errors": []}


def locked(record_id: str) -> dict:
    return {
        "id": record_id,
        "success": False,
        "errors": [
            {
                "statusCode": "UNABLE_TO_LOCK_ROW",
                "message": "unable to obtain exclusive access to this record",
                "fields": [],
            }
        ],
    }


def test_default_capabilities(adapter) -> None:
    caps = adapter.capabilities
    assert (caps.name, caps.max_write_batch, caps.max_read_page) == ("salesforce", 200, 2000)
    assert not adapter.bulk_write and adapter.bulk_read_threshold == 10_000
    assert adapter.tasks.external_id_field is None


def test_partial_failure_marks_only_the_confirmed_records_ok(rsps, adapter) -> None:
    add_token(rsps)
    call = rsps.add(responses.PATCH, COLLECTIONS, json=fixture("composite_sobjects__partial"))
    batch = [
        RecordChange(
            crm_id=sf_id("001", 1),
            fields={"Risk_Score__c": Decimal("42.5"), "Risk_Scored_On__c": date(2026, 11, 28)},
        ),
        RecordChange(crm_id=sf_id("001", 2), fields={"Risk_Score__c": Decimal(500)}),
        RecordChange(crm_id=sf_id("001", 3), fields={"Risk_Rating__c": None}),
    ]
    results = adapter.write("Account", batch)
    assert [r.status for r in results] == ["ok", "rejected", "ok"]
    assert [r.crm_id for r in results] == [c.crm_id for c in batch]
    assert results[1].error_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert results[1].fields == ("Risk_Score__c",)
    assert not results[1].retriable
    sent = json.loads(call.calls[0].request.body)
    assert sent["allOrNone"] is False
    assert sent["records"][0] == {
        "attributes": {"type": "Account"},
        "id": sf_id("001", 1),
        "Risk_Score__c": 42.5,
        "Risk_Scored_On__c": "2026-11-28",
    }
    assert sent["records"][1]["Risk_Score__c"] == 500
    assert sent["records"][2]["Risk_Rating__c"] is None  # null clears the field


def test_a_count_mismatch_makes_every_record_unknown(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(responses.PATCH, COLLECTIONS, json=fixture("composite_sobjects__short"))
    results = adapter.write("Account", changes(3))
    assert [r.status for r in results] == ["unknown"] * 3
    assert {r.error_code for r in results} == {"RESULT_COUNT_MISMATCH"}


def test_results_for_other_ids_are_not_trusted(rsps, adapter) -> None:
    add_token(rsps)
    rsps.add(responses.PATCH, COLLECTIONS, json=[ok(sf_id("001", 2)), ok(sf_id("001", 1))])
    assert [r.status for r in adapter.write("Account", changes(2))] == ["unknown", "unknown"]


def test_batches_hold_at_most_200_records(rsps, adapter) -> None:
    sizes = []

    def answer(request):
        records = json.loads(request.body)["records"]
        sizes.append(len(records))
        return 200, {}, json.dumps([ok(r["id"]) for r in records])

    add_token(rsps)
    rsps.add_callback(responses.PATCH, COLLECTIONS, callback=answer)
    results = adapter.write("Account", changes(450))
    assert sizes == [200, 200, 50]
    assert all(r.status == "ok" for r in results)


def test_locked_rows_are_retried_alone_with_back_off(rsps, adapter, sleeps) -> None:
    ids = [c.crm_id for c in changes(4)]
    add_token(rsps)
    first = rsps.add(
        responses.PATCH, COLLECTIONS, json=[ok(ids[0]), locked(ids[1]), ok(ids[2]), locked(ids[3])]
    )
    results = None

    def second_answer(request):
        records = json.loads(request.body)["records"]
        return 200, {}, json.dumps([ok(r["id"]) for r in records])

    rsps.add_callback(responses.PATCH, COLLECTIONS, callback=second_answer)
    # responses hands out the first registration until it is used, then the callback.
    results = adapter.write("Account", changes(4))
    assert first.call_count == 1
    retried = [
        json.loads(c.request.body)["records"] for c in rsps.calls if c.request.method == "PATCH"
    ][1:]
    assert [[r["id"] for r in batch] for batch in retried] == [[ids[1]], [ids[3]]]  # halved batches
    assert [r.status for r in results] == ["ok"] * 4
    assert len(sleeps) == 1


def test_rows_still_locked_after_the_retries_are_rejected_as_retriable(
    rsps, make_adapter, sleeps
) -> None:
    adapter = make_adapter(options={"lock_retries": 2})
    record_id = sf_id("001", 1)
    add_token(rsps)
    call = rsps.add(responses.PATCH, COLLECTIONS, json=[locked(record_id)])
    results = adapter.write("Account", changes(1))
    assert call.call_count == 3  # first try plus two retries
    assert len(sleeps) == 2
    assert results[0].status == "rejected"
    assert results[0].error_code == "UNABLE_TO_LOCK_ROW"
    assert results[0].retriable


def test_transient_failure_of_the_whole_call_raises_after_retries(rsps, adapter, sleeps) -> None:
    add_token(rsps)
    call = rsps.add(
        responses.PATCH,
        COLLECTIONS,
        status=503,
        json=[{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}],
    )
    with pytest.raises(RetriableCrmError):
        adapter.write("Account", changes(2))
    assert call.call_count == 4  # max_retries=3
    assert len(sleeps) == 3


def test_no_token_in_any_error_text(rsps, adapter) -> None:
    add_token(rsps)
    echo = [
        {"errorCode": "MALFORMED_REQUEST", "message": f"bad request with session {TOKEN} attached"}
    ]
    rsps.add(responses.PATCH, COLLECTIONS, status=400, json=echo)
    with pytest.raises(FatalCrmError) as caught:
        adapter.write("Account", changes(1))
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value.args)
    assert TOKEN not in repr(adapter.client.token)


def test_record_messages_are_redacted(rsps, adapter) -> None:
    add_token(rsps)
    failure = {
        "success": False,
        "errors": [
            {
                "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "message": f"rule saw {TOKEN}",
                "fields": [],
            }
        ],
    }
    rsps.add(responses.PATCH, COLLECTIONS, json=[failure])
    result = adapter.write("Account", changes(1))[0]
    assert result.status == "rejected"
    assert TOKEN not in result.message


def test_a_long_refusal_is_kept_whole_with_its_cause_at_the_end(rsps, adapter) -> None:
    # Issue 22, point 6: v1 cut messages at 300 characters, before Salesforce names the cause.
    preamble = "Validation of the record failed in several steps: " + "x" * 600
    cause = "bad value for restricted picklist field: D"
    add_token(rsps)
    rsps.add(
        responses.PATCH,
        COLLECTIONS,
        json=[
            {
                "id": sf_id("001", 1),
                "success": False,
                "errors": [
                    {
                        "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        "message": f"{preamble} {cause}",
                        "fields": ["Risk_Rating__c"],
                    }
                ],
            }
        ],
    )

    [result] = adapter.write("Account", changes(1))

    assert result.status == "rejected"
    assert result.message.endswith(cause)
    assert result.fields == ("Risk_Rating__c",)


def test_a_long_request_error_keeps_the_cause(rsps, adapter) -> None:
    query = "SELECT " + ", ".join(f"Field_{n}__c" for n in range(60)) + " FROM Account"
    add_token(rsps)
    rsps.add(
        responses.PATCH,
        COLLECTIONS,
        status=400,
        json=[
            {
                "message": f"\n{query}\n ^\nERROR at Row:1:Column:8\nNo such column 'Risk_Reasons__c'",
                "errorCode": "INVALID_FIELD",
            }
        ],
    )

    with pytest.raises(FatalCrmError) as raised:
        adapter.write("Account", changes(1))

    assert "No such column 'Risk_Reasons__c'" in str(raised.value)
