"""Bulk API 2.0: query pages via Sforce-Locator parse to exactly what REST returns; ingest results."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal
from typing import Any

import responses

from connector.models import RecordChange
from tests.adapters.salesforce._support import BASE, add_token, fixture, record

QUERY = re.compile(rf"^{re.escape(BASE)}/query/\?")
COLUMNS = [
    "Id",
    "SystemModstamp",
    "Name",
    "AnnualRevenue",
    "NumberOfEmployees",
    "Risk_Score__c",
    "Credit_Hold__c",
    "Risk_Scored_On__c",
    "Owner.IsActive",
    "Owner.Name",
]
FIELDS = COLUMNS[2:]


def owner(active: bool, name: str) -> dict[str, Any]:
    return {
        "attributes": {"type": "User", "url": "/services/data/v62.0/sobjects/User/005x"},
        "IsActive": active,
        "Name": name,
    }


# What REST returns for five accounts: numbers, nulls, booleans, dates, datetimes, lookups.
REST_RECORDS = [
    record(
        "Account",
        1,
        "2026-11-20T10:00:00.000+0000",
        Name="Acme, Inc.",
        AnnualRevenue=15000000.0,
        NumberOfEmployees=120,
        Risk_Score__c=42.5,
        Credit_Hold__c=False,
        Risk_Scored_On__c="2026-11-01",
        Owner=owner(True, "Ann"),
    ),
    record(
        "Account",
        2,
        "2026-11-20T10:00:00.000+0000",
        Name='Quote "Q" GmbH',
        AnnualRevenue=None,
        NumberOfEmployees=None,
        Risk_Score__c=None,
        Credit_Hold__c=True,
        Risk_Scored_On__c=None,
        Owner=owner(False, "Bob"),
    ),
    record(
        "Account",
        3,
        "2026-11-20T10:00:01.250+0000",
        Name="Línea\nDos SL",
        AnnualRevenue=0.0,
        NumberOfEmployees=0,
        Risk_Score__c=0.0,
        Credit_Hold__c=False,
        Risk_Scored_On__c="2026-01-31",
        Owner=None,
    ),
    record(
        "Account",
        4,
        "2026-11-21T00:00:00.000+0000",
        Name="Four",
        AnnualRevenue=1.5,
        NumberOfEmployees=7,
        Risk_Score__c=99.0,
        Credit_Hold__c=False,
        Risk_Scored_On__c=None,
        Owner=owner(True, "Cy"),
    ),
    record(
        "Account",
        5,
        "2026-11-22T08:30:00.999+0000",
        Name="Five",
        AnnualRevenue=None,
        NumberOfEmployees=3,
        Risk_Score__c=1.0,
        Credit_Hold__c=True,
        Risk_Scored_On__c="2026-12-24",
        Owner=owner(True, "Di"),
    ),
]


def bulk_cell(value: Any) -> str:
    """How Bulk API 2.0 writes a value: text, empty for null, Z for UTC datetimes."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.endswith("+0000"):
        return value[:-5] + "Z"
    return str(value)


def bulk_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        cells = []
        for column in COLUMNS:
            value: Any = row
            for part in column.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            cells.append(bulk_cell(value))
        writer.writerow(cells)
    return buffer.getvalue()


def test_bulk_query_parses_to_the_same_records_as_rest(rsps, make_adapter, sleeps) -> None:
    add_token(rsps)
    rsps.add(responses.GET, QUERY, json={"totalSize": 5, "done": True, "records": REST_RECORDS})
    rest = list(make_adapter().read_changed("Account", FIELDS, None))

    bulky = make_adapter(options={"bulk_read_threshold": 3, "bulk_page_size": 3})
    first_page = rsps.add(
        responses.GET,
        QUERY,
        json={
            "totalSize": 5,
            "done": False,
            "nextRecordsUrl": "/services/data/v62.0/query/01gX-2000",
            "records": REST_RECORDS[:2],
        },
    )
    create = rsps.add(
        responses.POST, f"{BASE}/jobs/query", json={"id": "750JOB", "state": "UploadComplete"}
    )
    rsps.add(
        responses.GET, f"{BASE}/jobs/query/750JOB", json={"id": "750JOB", "state": "InProgress"}
    )
    rsps.add(
        responses.GET, f"{BASE}/jobs/query/750JOB", json={"id": "750JOB", "state": "JobComplete"}
    )
    rsps.add(responses.GET, f"{BASE}/sobjects/Account/describe", json=fixture("describe__account"))
    rsps.add(responses.GET, f"{BASE}/sobjects/User/describe", json=fixture("describe__user"))
    pages = []

    def results(request):
        locator = request.params.get("locator")
        pages.append((locator, request.params.get("maxRecords")))
        if locator is None:
            return (
                200,
                {"Sforce-Locator": "LOC3", "Sforce-NumberOfRecords": "3"},
                bulk_csv(REST_RECORDS[:3]),
            )
        return (
            200,
            {"Sforce-Locator": "null", "Sforce-NumberOfRecords": "2"},
            bulk_csv(REST_RECORDS[3:]),
        )

    rsps.add_callback(responses.GET, f"{BASE}/jobs/query/750JOB/results", callback=results)
    via_bulk = list(bulky.read_changed("Account", FIELDS, None))

    assert [r.fields for r in via_bulk] == [r.fields for r in rest]
    assert [r.modified_at for r in via_bulk] == [r.modified_at for r in rest]
    assert via_bulk[2].fields["Owner"] is None
    assert via_bulk[0].fields["Owner"] == {"IsActive": True, "Name": "Ann"}
    assert pages == [(None, "3"), ("LOC3", "3")]
    assert first_page.call_count == 1  # the REST cursor is abandoned, not paged through
    job = json.loads(create.calls[0].request.body)
    assert job["operation"] == "query"
    assert job["query"].startswith("SELECT Id, SystemModstamp, Name, AnnualRevenue")
    assert sleeps == [1.0]  # one poll wait before JobComplete


def results_csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    return buffer.getvalue()


def test_bulk_ingest_matches_results_by_id(rsps, make_adapter) -> None:
    adapter = make_adapter(options={"bulk_write": True, "bulk_write_threshold": 3})
    assert adapter.capabilities.max_write_batch == 10_000
    ids = [f"001{n:012d}AAA" for n in range(1, 6)]
    changes = [
        RecordChange(crm_id=i, fields={"Risk_Score__c": Decimal(n * 10)})
        for n, i in enumerate(ids, 1)
    ]
    changes[2] = RecordChange(crm_id=ids[2], fields={"Risk_Score__c": None, "Risk_Rating__c": "B"})
    add_token(rsps)
    rsps.add(responses.POST, f"{BASE}/jobs/ingest", json={"id": "750ING", "state": "Open"})
    upload = rsps.add(responses.PUT, f"{BASE}/jobs/ingest/750ING/batches", status=201)
    rsps.add(
        responses.PATCH,
        f"{BASE}/jobs/ingest/750ING",
        json={"id": "750ING", "state": "UploadComplete"},
    )
    rsps.add(
        responses.GET, f"{BASE}/jobs/ingest/750ING", json={"id": "750ING", "state": "JobComplete"}
    )
    rsps.add(
        responses.GET,
        f"{BASE}/jobs/ingest/750ING/successfulResults",
        body=results_csv(
            ["sf__Id", "sf__Created", "Id"], [[ids[2], "false", ids[2]], [ids[0], "false", ids[0]]]
        ),
    )
    rsps.add(
        responses.GET,
        f"{BASE}/jobs/ingest/750ING/failedResults",
        body=results_csv(
            ["sf__Id", "sf__Error", "Id"],
            [
                [ids[1], "FIELD_CUSTOM_VALIDATION_EXCEPTION:Score too high:Risk_Score__c", ids[1]],
                [
                    ids[3],
                    "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--",
                    ids[3],
                ],
            ],
        ),
    )
    # The locked record is retried alone through sObject Collections.
    retry = rsps.add(
        responses.PATCH,
        f"{BASE}/composite/sobjects",
        json=[{"id": ids[3], "success": True, "errors": []}],
    )
    results = adapter.write("Account", changes)
    assert [r.status for r in results] == ["ok", "rejected", "ok", "ok", "unknown"]
    assert results[1].error_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert results[1].fields == ("Risk_Score__c",)
    assert not results[1].retriable
    uploaded = upload.calls[0].request.body.decode()
    assert uploaded.splitlines()[0] == "Id,Risk_Rating__c,Risk_Score__c"
    assert uploaded.splitlines()[3] == f"{ids[2]},B,#N/A"  # null travels as #N/A
    assert uploaded.splitlines()[1] == f"{ids[0]},,10"  # an absent field stays untouched
    assert [r["id"] for r in json.loads(retry.calls[0].request.body)["records"]] == [ids[3]]
