"""Zoho Bulk Read for the first full sync: create a job, poll it, stream the CSV out of the ZIP.

API (Zoho v8 Bulk Read pages: overview, create-job, job-details, download-result, limitations):
- POST {api-domain}/crm/bulk/v8/read {"query": {"module": {"api_name"}, "fields", "criteria",
  "page"}} -> data[0].details.id, state ADDED;
- GET /crm/bulk/v8/read/{id} -> data[0].state ADDED | QUEUED | IN PROGRESS | COMPLETED | FAILED
  and, when COMPLETED, result {page, count, download_url, per_page, more_records};
- GET the download_url (/crm/bulk/v8/read/{id}/result) -> a ZIP holding one CSV; at most
  200,000 records a page, the next page is a new job with "page": N + 1.
Not verified against a live org [A]: the CSV's value formats (lookups as the linked id, booleans
`true`/`false`, empty cells as nulls, datetimes in the REST format), the credit cost of a job
(`bulk_job_credits`, default 50), and the criteria comparator `less_than` on Modified_Time.

Ordering: Zoho documents no export order and no sort, so each page is sorted by
(Modified_Time, id) into a temporary file and the pages are merged; only one page is held in
memory at a time. The job only asks for records modified before a cutoff (the server's Date
header minus a margin) and the caller reads what changed from the cutoff on through REST, so
edits made during the export are not lost and the whole stream stays ascending. A record
deleted or edited between two page jobs shifts Zoho's offset paging by one [A]; this only
matters above 200,000 records and is logged when the page counts disagree.
"""

from __future__ import annotations

import csv
import email.utils
import heapq
import io
import json
import logging
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import requests

from connector.errors import AuthError, CrmError, FatalCrmError, QuotaExhaustedError
from connector.models import RawRecord

from .client import ZohoClient
from .settings import ZohoOptions
from .values import MODIFIED, parse_time

log = logging.getLogger("crm_risk.zoho")

BULK_PATH = "/crm/bulk/v8/read"
_DECIMALS = frozenset({"number", "currency", "percent"})


class BulkReadFailed(CrmError):
    """A bulk read job ended FAILED, never completed, or its file was unreadable: read via REST."""


def convert(value: str, family: str) -> Any:
    """One CSV cell as the REST API's JSON value for a field of that type family (describe())."""
    if value == "":
        return None
    if family == "reference":
        # REST gives {"id", "name"(, "email")}; the export has the id only [A].
        return {"id": value}
    if family == "boolean":
        return value.strip().lower() == "true"
    if family == "integer":
        try:
            return int(value)
        except ValueError:
            return float(value)
    if family in _DECIMALS:
        return float(value)
    return value


class BulkReader:
    """Runs bulk read jobs for one client; `wanted` decides, `records` reads."""

    def __init__(
        self,
        client: ZohoClient,
        options: ZohoOptions,
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self._sleep = sleep
        # None or 0 switches bulk reads off.
        self.threshold = options.bulk_read_threshold or 0
        self.poll_seconds = options.bulk_poll_seconds
        self.max_polls = options.bulk_max_polls
        self.job_credits = options.bulk_job_credits
        self.margin = timedelta(seconds=options.bulk_cutoff_margin_seconds)

    # -- plumbing -------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        sink: IO[bytes] | None = None,
        credits: int = 1,
    ) -> requests.Response:
        """One authenticated call outside /crm/v8/, through the client's one send path."""
        headers = {} if json_body is None else {"Content-Type": "application/json"}
        return self.client.send(
            method,
            url,
            credits=credits,
            headers=headers,
            data=None if json_body is None else json.dumps(json_body),
            sink=sink,
            # A result ZIP can be large: ten times the deadline of an API call.
            deadline=self.client.http.deadline * 10 if sink is not None else None,
        )

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.client.api_base}{path}"

    # -- decision -------------------------------------------------------------------------

    def wanted(self, module: str) -> datetime | None:
        """The cutoff for a bulk read of `module`, or None when REST paging is cheaper.

        GET /crm/v8/{module}/actions/count gives the record count (one credit); its Date header
        gives the server's clock for the cutoff.
        """
        if self.threshold <= 0:
            return None
        try:
            # No automatic retry: when the count cannot be had at once, REST paging (always
            # correct, only dearer) is the answer rather than waiting on a nice-to-have.
            response = self.client.request("GET", f"{module}/actions/count", retry=False)
            body = self.client.body(response)
        except (AuthError, QuotaExhaustedError):
            raise
        except CrmError as exc:
            log.info("Zoho record count for %s unavailable (%s); reading by REST", module, exc.code)
            return None
        count = body.get("count") if isinstance(body, dict) else None
        if not isinstance(count, int) or count < self.threshold:
            return None
        now = None
        date_header = response.headers.get("Date")
        if date_header:
            try:
                now = email.utils.parsedate_to_datetime(date_header)
            except (TypeError, ValueError):
                now = None
        if now is None or now.tzinfo is None:
            now = datetime.now(UTC)
        cutoff = now.astimezone(UTC).replace(microsecond=0) - self.margin
        log.info("Zoho %s holds %d records: first full sync through Bulk Read", module, count)
        return cutoff

    # -- reading --------------------------------------------------------------------------

    def records(
        self,
        module: str,
        columns: Sequence[str],
        families: Mapping[str, str],
        cutoff: datetime,
    ) -> Iterator[RawRecord]:
        """Every record modified before `cutoff`, ascending by (Modified_Time, id).

        All pages are fetched (each sorted to a temporary file) before the first record is
        yielded, so a failed job can still fall back to REST cleanly.

        Raises:
            BulkReadFailed: a job failed or never completed; nothing was yielded.
        """
        wanted = ["id", *[column for column in columns if column != "id"]]
        criteria = {
            "field": {"api_name": MODIFIED},
            "comparator": "less_than",
            "value": cutoff.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        }
        files: list[IO[str]] = []
        try:
            page = 1
            while True:
                result = self._run_job(module, wanted, criteria, page)
                files.append(self._sorted_page(result, families))
                if not result.get("more_records"):
                    break
                page += 1
            for handle in files:
                handle.seek(0)
            merged = heapq.merge(*(self._records_in(handle) for handle in files), key=_key)
            yield from merged
        finally:
            for handle in files:
                handle.close()

    def _run_job(
        self, module: str, fields: Sequence[str], criteria: Mapping[str, Any], page: int
    ) -> dict[str, Any]:
        query = {
            "module": {"api_name": module},
            "fields": list(fields),
            "criteria": dict(criteria),
            "page": page,
        }
        response = self._call(
            "POST", self._url(BULK_PATH), json_body={"query": query}, credits=self.job_credits
        )
        body = self.client.body(response)
        try:
            job_id = str(body["data"][0]["details"]["id"])
        except (KeyError, IndexError, TypeError):
            raise FatalCrmError(
                "Zoho answered a bulk read job request without a job id", code="BAD_BODY"
            ) from None
        for _ in range(self.max_polls):
            self._sleep(self.poll_seconds)
            status = self.client.body(self._call("GET", self._url(f"{BULK_PATH}/{job_id}")))
            item = (status or {}).get("data", [{}])[0] if isinstance(status, dict) else {}
            state = str(item.get("state") or "")
            if state == "COMPLETED":
                result = item.get("result")
                if not isinstance(result, dict) or not result.get("download_url"):
                    raise BulkReadFailed("bulk read job completed without a file", code="BAD_BODY")
                return result
            if state == "FAILED":
                raise BulkReadFailed(f"Zoho bulk read job for {module} failed", code="FAILED")
        raise BulkReadFailed(
            f"Zoho bulk read job for {module} did not complete after {self.max_polls} polls",
            code="TIMEOUT",
        )

    def _sorted_page(self, result: Mapping[str, Any], families: Mapping[str, str]) -> IO[str]:
        """Download one page's ZIP to disk, parse its CSV, and write it sorted as JSON lines."""
        with tempfile.TemporaryFile() as archive_file:
            # Streamed to disk within the call's deadline; a cut or reset download is retried.
            self._call("GET", self._url(str(result["download_url"])), sink=archive_file)
            try:
                archive = zipfile.ZipFile(archive_file)
            except zipfile.BadZipFile:
                raise BulkReadFailed(
                    "Zoho bulk read result is not a ZIP", code="BAD_BODY"
                ) from None
            with archive:
                names = [name for name in archive.namelist() if name.lower().endswith(".csv")]
                if len(names) != 1:
                    raise BulkReadFailed("bulk read ZIP holds no single CSV", code="BAD_BODY")
                with archive.open(names[0]) as raw:
                    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                    rows = [self._row(cells, families) for cells in csv.DictReader(text)]
        expected = result.get("count")
        if isinstance(expected, int) and expected != len(rows):
            log.warning("Zoho bulk read page had %d rows, job said %d", len(rows), expected)
        rows = [row for row in rows if row.get("id") and parse_time(row.get(MODIFIED))]
        rows.sort(key=lambda row: (parse_time(row[MODIFIED]), str(row["id"])))
        # Closed by records() once the merge is done (the file outlives this call).
        out = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
        return out

    @staticmethod
    def _row(cells: Mapping[str, str | None], families: Mapping[str, str]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, value in cells.items():
            if name is None:
                continue
            key = "id" if name.lower() == "id" else name
            row[key] = (
                str(value or "") or None
                if key == "id"
                else convert(value or "", families.get(key, "string"))
            )
        return row

    @staticmethod
    def _records_in(handle: IO[str]) -> Iterator[RawRecord]:
        for line in handle:
            row = json.loads(line)
            modified = parse_time(row[MODIFIED])
            assert modified is not None
            yield RawRecord(crm_id=str(row["id"]), modified_at=modified, fields=row)


def _key(record: RawRecord) -> tuple[datetime, str]:
    return record.modified_at, record.crm_id
