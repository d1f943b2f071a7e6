"""Zoho Bulk Read (responses): job lifecycle, FAILED job -> REST, several pages, CSV -> REST JSON shapes."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from adapters.zoho import ZohoAdapter
from adapters.zoho.bulk import convert

from ._support import API, BASE, T0, stamp

BULK = f"{BASE}/crm/bulk/v8/read"
DATE = "Fri, 10 Jan 2025 12:00:00 GMT"  # the cutoff is this minus the 60 s margin
FIELDS_META = {
    "fields": [
        {"api_name": "Account_Name", "data_type": "lookup"},
        {"api_name": "Owner", "data_type": "ownerlookup"},
        {"api_name": "Grand_Total", "data_type": "formula", "formula": {"return_type": "currency"}},
        {"api_name": "Paid", "data_type": "boolean"},
        {"api_name": "Days", "data_type": "integer"},
        {"api_name": "Due_Date", "data_type": "date"},
        {"api_name": "Status", "data_type": "picklist"},
        {"api_name": "Modified_Time", "data_type": "datetime"},
    ]
}
COLUMNS = [
    "Modified_Time",
    "Account_Name",
    "Owner",
    "Grand_Total",
    "Paid",
    "Days",
    "Due_Date",
    "Status",
]
FIELDS = ["Account_Name.id", "Owner.id", "Grand_Total", "Paid", "Days", "Due_Date", "Status"]


def rest_row(i: int) -> dict[str, Any]:
    return {
        "id": str(9_000_000 + i),
        "Modified_Time": stamp(T0 + timedelta(seconds=i // 3)),
        "Account_Name": {"id": str(5_000 + i % 7), "name": f"Acc {i % 7}"},
        "Owner": {"id": "77", "name": "Anna", "email": "anna@example.com"},
        "Grand_Total": 100.5 + i,
        "Paid": i % 2 == 0,
        "Days": i,
        "Due_Date": "2025-02-01",
        "Status": None if i % 5 == 0 else "Sent",
    }


def zipped_csv(rows: list[dict[str, Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", *COLUMNS])
    for row in rows:
        cells = [row["id"]]
        for column in COLUMNS:
            value = row[column]
            if isinstance(value, dict):
                value = value["id"]
            elif isinstance(value, bool):
                value = "true" if value else "false"
            cells.append("" if value is None else str(value))
        writer.writerow(cells)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("job.csv", text.getvalue())
    return buffer.getvalue()


def list_page(rows: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {
        "data": rows,
        "info": {"per_page": 200, "count": len(rows), "page": 1, "more_records": more},
    }


def register_common(mock: responses.RequestsMock, rows: list[dict[str, Any]]) -> None:
    mock.get(f"{API}/Invoices/actions/count", json={"count": len(rows)}, headers={"Date": DATE})
    mock.get(f"{API}/settings/fields", json=FIELDS_META)


def status(job_id: str, state: str, page: int = 1, count: int = 0, more: bool = False) -> Any:
    item: dict[str, Any] = {"id": job_id, "operation": "read", "state": state}
    if state == "COMPLETED":
        item["result"] = {
            "page": page,
            "count": count,
            "download_url": f"/crm/bulk/v8/read/{job_id}/result",
            "per_page": 200000,
            "more_records": more,
        }
    return {"data": [item]}


def created(job_id: str) -> Any:
    return {
        "data": [
            {
                "status": "success",
                "code": "ADDED_SUCCESSFULLY",
                "message": "Added successfully.",
                "details": {"id": job_id, "operation": "read", "state": "ADDED"},
            }
        ],
        "info": {},
    }


def test_csv_cells_become_rest_json_shapes() -> None:
    assert convert("", "string") is None
    assert convert("123", "reference") == {"id": "123"}
    assert convert("true", "boolean") is True and convert("false", "boolean") is False
    assert convert("12", "integer") == 12
    assert convert("100.5", "currency") == 100.5 and convert("7", "number") == 7.0
    assert convert("2025-02-01", "date") == "2025-02-01"


def test_job_lifecycle_yields_rest_identical_records_in_order(
    mock: responses.RequestsMock, make_adapter, token_ok, sleeps: list[float]
) -> None:
    token_ok()
    rows = [rest_row(i) for i in range(300)]
    mock.get(f"{API}/Invoices", json=list_page(rows[:200], True))  # first page: full, more
    register_common(mock, rows)
    sent: list[Any] = []

    def create(request: Any) -> tuple[int, dict[str, str], str]:
        sent.append(json.loads(request.body))
        return 201, {}, json.dumps(created("11"))

    mock.add_callback(responses.POST, BULK, callback=create)
    mock.get(f"{BULK}/11", json=status("11", "ADDED"))
    mock.get(f"{BULK}/11", json=status("11", "IN PROGRESS"))
    mock.get(f"{BULK}/11", json=status("11", "COMPLETED", count=300))
    shuffled = rows[150:] + rows[:150]  # the export has no order
    mock.get(f"{BULK}/11/result", body=zipped_csv(shuffled), content_type="application/zip")
    mock.get(f"{API}/Invoices", status=304)  # nothing changed since the cutoff
    adapter: ZohoAdapter = make_adapter(
        options={"bulk_poll_seconds": 7, "bulk_read_threshold": 250}
    )

    got = list(adapter.read_changed("Invoices", FIELDS, None))

    query = sent[0]["query"]
    assert query["module"] == {"api_name": "Invoices"}
    assert query["fields"][0] == "id" and set(query["fields"]) == {"id", *COLUMNS}
    assert query["page"] == 1
    assert query["criteria"] == {
        "field": {"api_name": "Modified_Time"},
        "comparator": "less_than",
        "value": "2025-01-10T11:59:00+00:00",
    }
    assert sleeps == [7, 7, 7]
    assert [r.crm_id for r in got] == [row["id"] for row in rows]
    for record, row in zip(got, rows, strict=True):
        want = dict(row)
        want["Account_Name"] = {"id": row["Account_Name"]["id"]}
        want["Owner"] = {"id": "77"}
        assert record.fields == want
    last_rest = mock.calls[-1].request
    assert last_rest.headers["If-Modified-Since"] == "2025-01-10T11:58:59+00:00"
    assert adapter.bulk.threshold == 250


def test_failed_job_falls_back_to_rest(
    mock: responses.RequestsMock, make_adapter, token_ok
) -> None:
    token_ok()
    rows = [rest_row(i) for i in range(250)]
    mock.get(f"{API}/Invoices", json=list_page(rows[:200], True))
    register_common(mock, rows)
    mock.post(BULK, status=201, json=created("12"))
    mock.get(f"{BULK}/12", json=status("12", "FAILED"))
    mock.get(f"{API}/Invoices", json=list_page(rows[:200], True))
    mock.get(f"{API}/Invoices", json=list_page(rows[200:], False))
    adapter: ZohoAdapter = make_adapter(options={"bulk_read_threshold": 250})

    got = list(adapter.read_changed("Invoices", FIELDS, None))

    assert [r.crm_id for r in got] == [row["id"] for row in rows]
    assert got[0].fields["Owner"] == rows[0]["Owner"]  # REST shapes, name and email included
    pages = [
        parse_qs(urlsplit(c.request.url).query).get("page")
        for c in mock.calls
        if "/crm/v8/Invoices?" in c.request.url
    ]
    assert pages == [["1"], ["1"], ["2"]]


def test_several_pages_are_merged_in_order(
    mock: responses.RequestsMock, make_adapter, token_ok
) -> None:
    token_ok()
    rows = [rest_row(i) for i in range(400)]
    mock.get(f"{API}/Invoices", json=list_page(rows[:200], True))
    register_common(mock, rows)
    pages_asked: list[int] = []

    def create(request: Any) -> tuple[int, dict[str, str], str]:
        page = json.loads(request.body)["query"]["page"]
        pages_asked.append(page)
        return 201, {}, json.dumps(created(str(20 + page)))

    mock.add_callback(responses.POST, BULK, callback=create)
    # Zoho pages by its own order: even rows on page 1, odd rows on page 2.
    mock.get(f"{BULK}/21", json=status("21", "COMPLETED", 1, 200, more=True))
    mock.get(f"{BULK}/21/result", body=zipped_csv(rows[::2]), content_type="application/zip")
    mock.get(f"{BULK}/22", json=status("22", "COMPLETED", 2, 200, more=False))
    mock.get(f"{BULK}/22/result", body=zipped_csv(rows[1::2]), content_type="application/zip")
    mock.get(f"{API}/Invoices", status=304)
    adapter: ZohoAdapter = make_adapter(
        options={"bulk_read_threshold": 300, "bulk_poll_seconds": 0}
    )

    got = list(adapter.read_changed("Invoices", FIELDS, None))

    assert pages_asked == [1, 2]
    assert [r.crm_id for r in got] == [row["id"] for row in rows]
    keys = [(r.modified_at, r.crm_id) for r in got]
    assert keys == sorted(keys)


@pytest.mark.parametrize("count", [199, 249])
def test_below_the_threshold_stays_on_rest(
    mock: responses.RequestsMock, make_adapter, token_ok, count: int
) -> None:
    token_ok()
    rows = [rest_row(i) for i in range(count)]
    if count < 200:
        mock.get(f"{API}/Invoices", json=list_page(rows, False))  # one short page: no count call
    else:
        mock.get(f"{API}/Invoices", json=list_page(rows[:200], True))
        mock.get(f"{API}/Invoices/actions/count", json={"count": count})
        mock.get(f"{API}/Invoices", json=list_page(rows[200:], False))
    adapter: ZohoAdapter = make_adapter(options={"bulk_read_threshold": 250})
    assert len(list(adapter.read_changed("Invoices", FIELDS, None))) == count
