"""Bulk API 2.0: query jobs streamed page by page (Sforce-Locator), ingest jobs for large updates."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import requests

from adapters.salesforce.client import SalesforceClient
from adapters.salesforce.errors import parse_bulk_error
from adapters.salesforce.values import CsvRowConverter, csv_value
from connector.errors import FatalCrmError, RetriableCrmError
from connector.models import RecordChange, WriteResult
from connector.redaction import redact

DONE_STATES = frozenset({"JobComplete", "Failed", "Aborted"})


def wait_for_job(
    client: SalesforceClient,
    path: str,
    *,
    first_delay: float = 1.0,
    max_delay: float = 10.0,
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """Poll a job until it is done; the delay doubles up to max_delay (injected sleep in tests).

    Raises:
        RetriableCrmError: the job did not finish within `timeout` seconds of polling.
    """
    delay = first_delay
    waited = 0.0
    while True:
        job: dict[str, Any] = client.json("GET", path)
        if job.get("state") in DONE_STATES:
            return job
        if waited >= timeout:
            raise RetriableCrmError(
                f"Salesforce Bulk job {job.get('id')} still {job.get('state')} after {waited:.0f}s",
                code="BULK_TIMEOUT",
            )
        client.sleep(delay)
        waited += delay
        delay = min(max_delay, delay * 2)


def query(
    client: SalesforceClient,
    soql: str,
    *,
    include_deleted: bool,
    page_size: int,
    types_for: Callable[[list[str]], Mapping[str, str]],
    poll: Mapping[str, float] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run a Bulk 2.0 query job and yield REST-shaped records, one result page at a time.

    Args:
        client: the connection.
        soql: the query (ORDER BY is kept, so records come oldest first as over REST).
        include_deleted: queryAll, so soft-deleted rows come back with IsDeleted.
        page_size: maxRecords per result page; only one page is held in memory.
        types_for: column names -> Salesforce field types (from describe), to type CSV text.
        poll: optional wait_for_job settings.

    Raises:
        FatalCrmError: the job failed or was aborted.
    """
    job = client.json(
        "POST",
        "jobs/query",
        json={
            "operation": "queryAll" if include_deleted else "query",
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        },
    )
    job_id = str(job["id"])
    done = wait_for_job(client, f"jobs/query/{job_id}", **dict(poll or {}))
    if done.get("state") != "JobComplete":
        raise FatalCrmError(
            redact(
                f"Salesforce Bulk query job {job_id} {done.get('state')}: "
                f"{done.get('errorMessage', '')}"
            ),
            code="BULK_JOB_FAILED",
        )
    locator: str | None = None
    converter: CsvRowConverter | None = None
    while True:
        params: dict[str, Any] = {"maxRecords": page_size}
        if locator:
            params["locator"] = locator
        response = client.request(
            "GET", f"jobs/query/{job_id}/results", params=params, headers={"Accept": "text/csv"}
        )
        # Every page repeats the header row (simple-salesforce #765).
        reader = csv.reader(io.StringIO(_utf8(response).replace("\x00", "")))
        header = next(reader, None)
        if header is not None:
            if converter is None or converter.columns != header:
                converter = CsvRowConverter(header, types_for(header))
            for row in reader:
                if row:
                    yield converter.convert(row)
        locator = response.headers.get("Sforce-Locator")
        if not locator or locator == "null":
            return


def _utf8(response: requests.Response) -> str:
    # Bulk CSV is UTF-8, but text/csv without a charset makes requests guess ISO-8859-1.
    return response.content.decode("utf-8-sig", errors="replace")


def _csv_text(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def _read_results(client: SalesforceClient, path: str) -> list[dict[str, str]]:
    response = client.request("GET", path, headers={"Accept": "text/csv"})
    return list(csv.DictReader(io.StringIO(_utf8(response))))


def update(
    client: SalesforceClient,
    crm_object: str,
    changes: Sequence[RecordChange],
    *,
    poll: Mapping[str, float] | None = None,
) -> list[WriteResult]:
    """Update records with one Bulk 2.0 ingest job; results matched by record id.

    Result files are not in input order (reference §1.10), so successfulResults and
    failedResults are keyed on sf__Id (or our Id column). A record in neither is "unknown".
    """
    columns = ["Id", *sorted({name for change in changes for name in change.fields})]
    rows = [
        [
            change.crm_id,
            *(
                csv_value(change.fields.get(name)) if name in change.fields else ""
                for name in columns[1:]
            ),
        ]
        for change in changes
    ]
    job = client.json(
        "POST",
        "jobs/ingest",
        json={
            "object": crm_object,
            "operation": "update",
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        },
    )
    job_id = str(job["id"])
    client.request(
        "PUT",
        f"jobs/ingest/{job_id}/batches",
        data=_csv_text(columns, rows).encode("utf-8"),
        headers={"Content-Type": "text/csv"},
    )
    client.json("PATCH", f"jobs/ingest/{job_id}", json={"state": "UploadComplete"})
    wait_for_job(client, f"jobs/ingest/{job_id}", **dict(poll or {}))
    succeeded = {
        (row.get("sf__Id") or row.get("Id") or ""): row
        for row in _read_results(client, f"jobs/ingest/{job_id}/successfulResults")
    }
    failed = {
        (row.get("sf__Id") or row.get("Id") or ""): row
        for row in _read_results(client, f"jobs/ingest/{job_id}/failedResults")
    }
    results: list[WriteResult] = []
    for change in changes:
        if change.crm_id in failed:
            error = parse_bulk_error(failed[change.crm_id].get("sf__Error", ""))
            results.append(
                WriteResult(
                    crm_id=change.crm_id,
                    status="rejected",
                    error_code=error.code,
                    message=redact(error.message),
                    fields=error.fields,
                    retriable=error.code == "UNABLE_TO_LOCK_ROW",
                )
            )
        elif change.crm_id in succeeded:
            results.append(WriteResult(crm_id=change.crm_id, status="ok"))
        else:
            results.append(
                WriteResult(
                    crm_id=change.crm_id,
                    status="unknown",
                    error_code="BULK_RESULT_MISSING",
                    message=f"record not in the results of Bulk job {job_id}",
                    retriable=True,
                )
            )
    return results
