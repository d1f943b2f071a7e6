"""The Salesforce CrmAdapter: incremental SOQL and Bulk 2.0 reads, collection writes, tasks, describe."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from adapters._http import Wiring, cancellable_sleep
from adapters.salesforce import bulk, metadata, soql
from adapters.salesforce.client import SalesforceClient
from adapters.salesforce.errors import (
    MAX_MESSAGE,
    RETRIABLE_RECORD_CODES,
    QueryLocatorExpiredError,
    unexpected_answer,
    with_reasons,
)
from adapters.salesforce.ids import normalise_record_id
from adapters.salesforce.settings import SalesforceSettings
from adapters.salesforce.tasks import TaskService
from adapters.salesforce.values import (
    json_value,
    object_description,
    parse_datetime,
    strip_attributes,
)
from connector.errors import CrmError
from connector.models import (
    CrmRates,
    DatedRate,
    RawRecord,
    RecordChange,
    TaskAction,
    TaskState,
    WriteResult,
)
from connector.protocol import (
    AdapterCapabilities,
    ApiUsage,
    KeyValueStore,
    MissingField,
    ObjectDescription,
)
from connector.redaction import redact

# sObject Collections take at most 200 records per call (reference §2.3).
COLLECTION_LIMIT = 200
# REST query pages hold up to 2,000 records (reference §2.1).
QUERY_PAGE = 2000
# Ids per `Id IN (...)` query: SOQL goes in the URL, and URIs over 16 KB fail with 414.
IDS_PER_QUERY = 300
# Consecutive cursor restarts without progress before giving up.
MAX_LOCATOR_RESTARTS = 3


class SalesforceAdapter:
    """CrmAdapter for Salesforce (REST API, sObject Collections, Bulk API 2.0).

    Options (settings.options):
        bulk_read_threshold: switch a read to a Bulk 2.0 query job above this many rows
            (default 10,000; the count is the first REST page's totalSize, which costs no
            extra call, unlike a separate SELECT COUNT()).
        bulk_page_size: maxRecords per Bulk result page (default 50,000).
        query_batch_size: Sforce-Query-Options batchSize hint for REST pages (200-2,000).
        org_usage_stop_share: stop the run once the org as a whole used this share of its
            daily API requests (off by default; api_budget_share bounds this run alone).
        bulk_write: enable Bulk 2.0 ingest (default false). Then max_write_batch becomes
            bulk_write_batch (default 10,000) and a write() of bulk_write_threshold or more
            records (default 2,000) goes through one ingest job; smaller ones use collections.
        lock_retries: UNABLE_TO_LOCK_ROW retries in halving batches (default 3).
        task_external_id_field: a Task text field marked External ID that carries the dedupe
            key (upsert instead of create, exact lookup).
        task_open_status / task_closed_status: override the Task status values.
        jwt_audience: the JWT `aud` claim when it differs from login_url.
        max_concurrency: write batches the engine sends at once (default 4). Salesforce does
            not limit concurrent short requests per org but allows only 25 concurrent requests
            running over 20 s (5 on Developer Edition; reference §6), and parallel updates of
            related records can meet UNABLE_TO_LOCK_ROW (retried in halving batches).
        write_batch: records per collections update (default and most: 200); lower it for
            orgs whose triggers make a 200-record update slow.
    """

    settings_model = SalesforceSettings

    # RecordIdNormaliser: the 15-character ids of the UI are accepted wherever an id is typed.
    normalise_record_id = staticmethod(normalise_record_id)

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        state: KeyValueStore | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        cancel: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        options = settings.options
        self.options = options
        # Every wait (retry back-off, bulk polls) ends at once when a stop is requested.
        sleep = cancellable_sleep(sleep, cancel)
        self.sleep = sleep
        self.client = SalesforceClient(settings, Wiring(state, session, sleep, cancel=cancel))
        self.bulk_read_threshold = options.bulk_read_threshold
        self.bulk_page_size = options.bulk_page_size
        self.bulk_write = options.bulk_write
        self.bulk_write_threshold = options.bulk_write_threshold
        self.lock_retries = options.lock_retries
        self.poll = {
            "first_delay": options.bulk_poll_seconds,
            "timeout": options.bulk_timeout_seconds,
        }
        self.capabilities = AdapterCapabilities(
            name="salesforce",
            max_write_batch=(
                options.bulk_write_batch
                if self.bulk_write
                else min(COLLECTION_LIMIT, options.write_batch)
            ),
            max_read_page=QUERY_PAGE,
            supports_tasks=True,
            # The engine sends distinct accounts in each batch, so parallel batches do not
            # update one record twice; 4 stays far below the 25 (5 on Developer Edition)
            # concurrent long-running requests an org allows (reference §2.7, §6).
            max_concurrency=options.max_concurrency,
        )
        self._describe_cache: dict[str, dict[str, Any]] = {}
        self._closed_status: str | None = None
        self.tasks = TaskService(
            self.client,
            self._write_collections,
            options=options,
            closed_status=self._task_closed_status,
        )

    # -- metadata -----------------------------------------------------------------------------

    def _describe_raw(self, crm_object: str) -> dict[str, Any]:
        key = crm_object.lower()
        if key not in self._describe_cache:
            path = f"sobjects/{soql.check_name(crm_object)}/describe"
            answer = self.client.json("GET", path)
            if (
                not isinstance(answer, dict)
                or not isinstance(answer.get("name"), str)
                or not isinstance(answer.get("fields"), list)
            ):
                raise unexpected_answer(f"describe of {crm_object} without 'name' and 'fields'")
            self._describe_cache[key] = answer
        return self._describe_cache[key]

    def field_plan_files(self, missing: Sequence[MissingField]) -> dict[str, str]:
        """CustomField XML and a permission set in source format (`sf project deploy start`)."""
        return metadata.field_plan_files(missing)

    def field_plan_written(self, files: Mapping[str, str], output: Path) -> str:
        """Fields and permission sets written, and how to deploy them from a Salesforce DX project."""
        return metadata.files_written(files, output)

    def describe(self, crm_object: str) -> ObjectDescription:
        """Field metadata for one sObject (cached for the adapter's life).

        Raises:
            FatalCrmError: the object does not exist or is not visible to the integration user.
        """
        return object_description(self._describe_raw(crm_object))

    def _field_type(self, crm_object: str, column: str) -> str:
        """The describe type of a column, following relationship paths ("Owner.IsActive")."""
        current = crm_object
        *relations, name = column.split(".")
        for relation in relations:
            fields = self._describe_raw(current).get("fields") or []
            match = next(
                (
                    f
                    for f in fields
                    if str(f.get("relationshipName") or "").lower() == relation.lower()
                ),
                None,
            )
            if match is None or not match.get("referenceTo"):
                return "string"
            current = str(match["referenceTo"][0])
        for field in self._describe_raw(current).get("fields") or []:
            if str(field.get("name")).lower() == name.lower():
                return str(field.get("type") or "string")
        return "string"

    # -- reads --------------------------------------------------------------------------------

    @staticmethod
    def _raw(record: dict[str, Any]) -> RawRecord:
        fields = strip_attributes(record)
        return RawRecord(
            crm_id=str(fields["Id"]),
            modified_at=parse_datetime(str(fields[soql.CURSOR_FIELD])),
            fields=fields,
            deleted=bool(fields.get("IsDeleted")),
        )

    def read_changed(
        self, crm_object: str, fields: Sequence[str], since: datetime | None
    ) -> Iterator[RawRecord]:
        """Yield records with SystemModstamp >= since (all when None), oldest first, ties by Id.

        With `since`, queryAll also returns soft-deleted rows, yielded with deleted=True.
        Pages follow nextRecordsUrl; if a cursor expires (INVALID_QUERY_LOCATOR) the read
        continues after the last (SystemModstamp, Id) yielded, so ties are never skipped.
        Above bulk_read_threshold rows (the first page's totalSize) a Bulk 2.0 job is used.
        """
        include_deleted = since is not None
        select = soql.select_list(fields, include_deleted=include_deleted)
        query = soql.changed_since(crm_object, select, since)
        pages = self.client.query_pages(query, include_deleted=include_deleted)
        last: tuple[datetime, str] | None = None
        first_page = True
        restarts = 0
        while True:
            try:
                for page in pages:
                    if first_page:
                        first_page = False
                        if int(page.get("totalSize") or 0) > self.bulk_read_threshold:
                            pages.close()
                            yield from self._bulk_read(crm_object, query, include_deleted)
                            return
                    for record in page.get("records") or []:
                        raw = self._raw(record)
                        last = (raw.modified_at, raw.crm_id)
                        restarts = 0
                        yield raw
                return
            except QueryLocatorExpiredError:
                restarts += 1
                if last is None or restarts > MAX_LOCATOR_RESTARTS:
                    raise
                resumed = soql.changed_since(crm_object, select, since, after=last)
                pages = self.client.query_pages(resumed, include_deleted=include_deleted)

    def _bulk_read(self, crm_object: str, query: str, include_deleted: bool) -> Iterator[RawRecord]:
        for record in bulk.query(
            self.client,
            query,
            include_deleted=include_deleted,
            page_size=self.bulk_page_size,
            types_for=lambda columns: {c: self._field_type(crm_object, c) for c in columns},
            poll=self.poll,
        ):
            yield self._raw(record)

    def read_by_ids(
        self, crm_object: str, fields: Sequence[str], ids: Sequence[str]
    ) -> Iterator[RawRecord]:
        """Yield the current state of the given records; missing or deleted ids are skipped."""
        select = soql.select_list(fields)
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), IDS_PER_QUERY):
            chunk = unique[start : start + IDS_PER_QUERY]
            for page in self.client.query_pages(soql.by_ids(crm_object, select, chunk)):
                for record in page.get("records") or []:
                    yield self._raw(record)

    def read_related(
        self, crm_object: str, fields: Sequence[str], parent_field: str, parent_ids: Sequence[str]
    ) -> Iterator[RawRecord]:
        """Yield the child records of the given parents (Billing's payment allocations)."""
        select = soql.select_list(fields)
        unique = list(dict.fromkeys(parent_ids))
        for start in range(0, len(unique), IDS_PER_QUERY):
            chunk = unique[start : start + IDS_PER_QUERY]
            query = soql.by_parent(crm_object, select, parent_field, chunk)
            for page in self.client.query_pages(query):
                for record in page.get("records") or []:
                    yield self._raw(record)

    # -- writes -------------------------------------------------------------------------------

    def write(self, crm_object: str, changes: Sequence[RecordChange]) -> list[WriteResult]:
        """Update records; one result per change, in order; only confirmed records are "ok".

        Raises:
            RetriableCrmError: a whole call kept failing transiently.
            QuotaExhaustedError: the run's API budget or the org's daily limit is spent.
        """
        if not changes:
            return []
        if self.bulk_write and len(changes) >= self.bulk_write_threshold:
            results = bulk.update(self.client, crm_object, changes, poll=self.poll)
            self._retry_locked(crm_object, changes, results)
            return with_reasons(results)
        return with_reasons(self._write_collections(crm_object, changes))

    def _write_collections(
        self, crm_object: str, changes: Sequence[RecordChange]
    ) -> list[WriteResult]:
        results: list[WriteResult] = []
        for start in range(0, len(changes), COLLECTION_LIMIT):
            results.extend(
                self._collection_call(crm_object, changes[start : start + COLLECTION_LIMIT])
            )
        self._retry_locked(crm_object, changes, results)
        return results

    @staticmethod
    def _is_locked(result: WriteResult) -> bool:
        return result.status == "rejected" and result.error_code in RETRIABLE_RECORD_CODES

    def _retry_locked(
        self, crm_object: str, changes: Sequence[RecordChange], results: list[WriteResult]
    ) -> None:
        """Retry only the row-locked records, with back-off and halving batches (in place)."""
        pending = [index for index, result in enumerate(results) if self._is_locked(result)]
        size = min(COLLECTION_LIMIT, max(1, len(pending)))
        for attempt in range(1, self.lock_retries + 1):
            if not pending:
                return
            size = max(1, size // 2)
            self.sleep(self.client.http.policy.delay(attempt, None))
            still: list[int] = []
            for start in range(0, len(pending), size):
                batch = pending[start : start + size]
                answer = self._collection_call(crm_object, [changes[i] for i in batch])
                for index, result in zip(batch, answer, strict=True):
                    results[index] = result
                    if self._is_locked(result):
                        still.append(index)
            pending = still
        # What is still locked stays "rejected" with retriable=True: the next run tries again.

    def _collection_call(self, crm_object: str, chunk: Sequence[RecordChange]) -> list[WriteResult]:
        """One PATCH composite/sobjects (allOrNone=false); SaveResults matched by position."""
        records = [
            {
                "attributes": {"type": crm_object},
                "id": change.crm_id,
                **{
                    name: json_value(value)
                    for name, value in change.fields.items()
                    if name not in ("Id", "id", "attributes")
                },
            }
            for change in chunk
        ]
        answer = self.client.json(
            "PATCH", "composite/sobjects", json={"allOrNone": False, "records": records}
        )
        if (
            not isinstance(answer, list)
            or len(answer) != len(chunk)
            or not all(isinstance(item, dict) for item in answer)
        ):
            return self._unknown(chunk, "RESULT_COUNT_MISMATCH")
        for change, item in zip(chunk, answer, strict=True):
            returned = str(item.get("id") or "")
            if returned and returned[:15] != change.crm_id[:15]:
                return self._unknown(chunk, "RESULT_ORDER_MISMATCH")
        return [self._save_result(change, item) for change, item in zip(chunk, answer, strict=True)]

    @staticmethod
    def _unknown(chunk: Sequence[RecordChange], code: str) -> list[WriteResult]:
        # Salesforce answered, but not record for record: nothing here may count as written.
        return [
            WriteResult(
                crm_id=change.crm_id,
                status="unknown",
                error_code=code,
                message="the collection answer did not match the request",
                retriable=True,
            )
            for change in chunk
        ]

    @staticmethod
    def _save_result(change: RecordChange, item: dict[str, Any]) -> WriteResult:
        if item.get("success") is True:
            return WriteResult(crm_id=change.crm_id, status="ok")
        errors = item.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
        code = str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN_ERROR")
        return WriteResult(
            crm_id=change.crm_id,
            status="rejected",
            error_code=code,
            message=redact(" ".join(str(first.get("message") or "").split())[:MAX_MESSAGE]),
            fields=tuple(str(name) for name in first.get("fields") or ()),
            retriable=code in RETRIABLE_RECORD_CODES,
        )

    # -- tasks --------------------------------------------------------------------------------

    def _task_closed_status(self) -> str:
        """The Status value that closes a task, read once: option, describe, then TaskStatus."""
        if self._closed_status is not None:
            return self._closed_status
        configured = self.options.task_closed_status
        if configured:
            self._closed_status = str(configured)
            return self._closed_status
        status: dict[str, Any] = next(
            (
                f
                for f in self._describe_raw("Task").get("fields") or []
                if str(f.get("name")) == "Status"
            ),
            {},
        )
        values = [v for v in status.get("picklistValues") or [] if v.get("active", True)]
        by_label = {str(v.get("label")): str(v.get("value")) for v in values}
        if "Completed" in by_label or "Completed" in by_label.values():
            self._closed_status = by_label.get("Completed", "Completed")
            return self._closed_status
        # The org renamed "Completed": ask which statuses close a task (one cheap query).
        for page in self.client.query_pages(soql.closed_task_statuses()):
            for record in page.get("records") or []:
                label = str(record.get("MasterLabel"))
                self._closed_status = by_label.get(label, label)
                return self._closed_status
        self._closed_status = "Completed"
        return self._closed_status

    def create_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Create follow-up tasks idempotently by dedupe key; one result per task, in order."""
        return with_reasons(self.tasks.create(tasks))

    def update_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Escalate, comment on or complete existing tasks; one result per task, in order."""
        return with_reasons(self.tasks.update(tasks))

    def find_tasks(self, tasks: Mapping[str, str | None]) -> dict[str, TaskState]:
        """Tasks this connector created, by dedupe key (key -> account, None when unknown)."""
        accounts = [a for a in tasks.values() if a] if all(tasks.values()) else []
        return self.tasks.find(list(tasks), accounts)

    def open_tasks(self) -> Iterator[TaskState]:
        """TaskScanner: every open task carrying our marker, in one paged query."""
        return self.tasks.open_tasks()

    def delete_tasks(self, task_ids: Sequence[str]) -> list[WriteResult]:
        """TaskDeleter: delete tasks by id (sObject Collections, 200 per call)."""
        return self.tasks.delete(task_ids)

    # -- housekeeping -------------------------------------------------------------------------

    def currencies(self) -> CrmRates:
        """CurrencySource: the corporate currency and rates (CurrencyType, DatedConversionRate).

        CurrencyType holds today's rates (inactive currencies too: records may still carry
        them); DatedConversionRate exists only with advanced currency management, and the
        Organization's DefaultCurrencyIsoCode names the currency of a single-currency org.
        """
        try:
            rows = [
                row
                for page in self.client.query_pages(
                    "SELECT IsoCode, ConversionRate, IsCorporate FROM CurrencyType"
                )
                for row in page.get("records", [])
            ]
        except CrmError as exc:
            if exc.code != "INVALID_TYPE":
                raise
            org = [
                row
                for page in self.client.query_pages(
                    "SELECT DefaultCurrencyIsoCode FROM Organization"
                )
                for row in page.get("records", [])
            ]
            code = org[0].get("DefaultCurrencyIsoCode") if org else None
            return CrmRates(reference=str(code) if code else None)
        reference = next((str(row["IsoCode"]) for row in rows if row.get("IsCorporate")), None)
        rates = {
            str(row["IsoCode"]): Decimal(str(row["ConversionRate"]))
            for row in rows
            if row.get("ConversionRate")
        }
        dated: list[DatedRate] = []
        try:
            for page in self.client.query_pages(
                "SELECT IsoCode, ConversionRate, StartDate, NextStartDate FROM DatedConversionRate"
            ):
                for row in page.get("records", []):
                    if not row.get("ConversionRate") or not row.get("StartDate"):
                        continue
                    following = row.get("NextStartDate")
                    dated.append(
                        DatedRate(
                            currency=str(row["IsoCode"]),
                            start=date.fromisoformat(str(row["StartDate"])),
                            next_start=date.fromisoformat(str(following)) if following else None,
                            rate=Decimal(str(row["ConversionRate"])),
                        )
                    )
        except CrmError as exc:
            if exc.code != "INVALID_TYPE":  # advanced currency management is off
                raise
        return CrmRates(reference=reference, rates=rates, dated=tuple(dated))

    def verify_credentials(self) -> None:
        """CredentialVerifier: a fresh OAuth exchange with the configured flow and secrets."""
        self.client.auth.authenticate()

    def usage(self) -> ApiUsage:
        """Calls made by endpoint and the daily quota Salesforce last reported."""
        return self.client.usage()

    def close(self) -> None:
        """Close the HTTP session this adapter opened."""
        self.client.close()
