"""Zoho CRM adapter: the CrmAdapter protocol over the thin REST v8 client."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests

from adapters._http import Wiring, cancellable_sleep
from adapters._tasks import chunks
from connector.errors import CrmError, FatalCrmError
from connector.models import CrmRates, RawRecord, RecordChange, TaskAction, TaskState, WriteResult
from connector.protocol import (
    AdapterCapabilities,
    ApiUsage,
    FieldDescription,
    FieldSpec,
    KeyValueStore,
    MissingField,
    ObjectDescription,
)

from . import coql, setup_steps
from .bulk import BulkReader, BulkReadFailed
from .client import MAX_WRITE_BATCH, PER_PAGE, ZohoClient
from .fields import create_fields
from .results import match_results
from .settings import ZohoSettings
from .tasks import ZohoTasks
from .values import (
    MODIFIED,
    columns_for,
    field_description,
    if_modified_since,
    json_value,
    parse_time,
)

log = logging.getLogger("crm_risk.zoho")

MAX_FIELDS_PER_CALL = 50  # `fields` on list reads and COQL select columns (reference §3.1, §3.2)


def _sort_key(record: RawRecord) -> tuple[datetime, str]:
    return (record.modified_at, record.crm_id)


def in_order(pages: Iterable[list[RawRecord]]) -> Iterator[RawRecord]:
    """Yield records ascending by (modified_at, id) from pages Zoho sorted by Modified_Time only.

    Zoho documents no tie order for equal Modified_Time values (second precision), so the records
    sharing the last timestamp of a page are held back until a later timestamp shows up: a tie
    split across pages is yielded whole, sorted by id. We rely on Zoho's paging over one sorted
    query returning every record once; a record edited during the read moves to the end (new
    timestamp) and is also read on the next run. Duplicates at a boundary are dropped.
    """
    held: dict[tuple[str, datetime], RawRecord] = {}
    for page in pages:
        for record in page:
            held[(record.crm_id, record.modified_at)] = record
        if not held:
            continue
        pool = sorted(held.values(), key=_sort_key)
        newest = pool[-1].modified_at
        cut = next(index for index, record in enumerate(pool) if record.modified_at == newest)
        yield from pool[:cut]
        held = {(record.crm_id, record.modified_at): record for record in pool[cut:]}
    yield from sorted(held.values(), key=_sort_key)


class ZohoAdapter:
    """CrmAdapter for Zoho CRM through REST v8 (no Zoho SDK at run time; reference §8)."""

    settings_model = ZohoSettings

    def field_plan_text(self, missing: Sequence[MissingField]) -> str:
        """The fields to create in Zoho CRM's setup screens, module by module."""
        return setup_steps.field_plan_text(missing)

    def field_line(self, item: MissingField) -> str:
        """One field `--apply` creates, in Zoho's words (no LongTextArea, no field-level security)."""
        return setup_steps.field_line(item)

    def __init__(
        self,
        settings: ZohoSettings,
        *,
        state: KeyValueStore | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        cancel: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        # Every wait (back-off, token throttle, bulk polls) ends at once when a stop is requested.
        sleep = cancellable_sleep(sleep, cancel)
        self.client = ZohoClient(settings, Wiring(state, session, sleep, cancel=cancel))
        options = settings.options
        # Without "trigger": [] every write fires the org's workflows, approvals and blueprints.
        self.trigger = list(options.trigger)
        self.tasks = ZohoTasks(self.client, options, sleep)
        # First full sync of a module with >= bulk_read_threshold records (default 10,000;
        # 0 turns it off) goes through Zoho's Bulk Read API (bulk.py).
        self.bulk = BulkReader(self.client, options, sleep)
        self.capabilities = AdapterCapabilities(
            name="zoho",
            # `write_batch` (≤ 100): smaller updates for orgs whose workflows make them slow.
            max_write_batch=min(MAX_WRITE_BATCH, options.write_batch),
            max_read_page=PER_PAGE,
            supports_tasks=True,
            max_concurrency=self.client.max_concurrency,
        )

    # -- metadata ---------------------------------------------------------------------------

    def describe(self, crm_object: str) -> ObjectDescription:
        """Field metadata from GET /crm/v8/settings/fields?module=X.

        Raises:
            FatalCrmError: the module does not exist (Zoho: 400 INVALID_MODULE).
        """
        response = self.client.request("GET", "settings/fields", params={"module": crm_object})
        body = self.client.body(response)
        raw_fields = body.get("fields") if isinstance(body, dict) else None
        fields: dict[str, FieldDescription] = {}
        for item in raw_fields or []:
            if isinstance(item, dict) and item.get("api_name"):
                described = field_description(item)
                fields[described.name] = described
        if not fields and response.status_code != 204:
            raise FatalCrmError(f"Zoho module {crm_object} has no field metadata", code="NO_FIELDS")
        # The record id is not always listed among the fields; mappings name it as "id".
        fields.setdefault("id", FieldDescription(name="id", type="bigint", family="id"))
        return ObjectDescription(name=crm_object, fields=fields, label=crm_object)

    # -- reads ------------------------------------------------------------------------------

    def read_changed(
        self, crm_object: str, fields: Sequence[str], since: datetime | None
    ) -> Iterator[RawRecord]:
        """Records modified at or after `since`, ascending by (Modified_Time, id), page by page.

        GET /crm/v8/{module} sorted by Modified_Time ascending with If-Modified-Since; more than
        50 fields are read in further COQL calls joined by id. With `since`, records deleted
        since then (GET /{module}/deleted) are merged in by deletion time, with deleted=True.
        """
        columns = columns_for(fields)
        first, rest = columns[:MAX_FIELDS_PER_CALL], columns[MAX_FIELDS_PER_CALL:]
        params = {"fields": ",".join(first), "sort_by": MODIFIED, "sort_order": "asc"}

        def live_pages(start: datetime | None) -> Generator[list[RawRecord], None, None]:
            headers = {"If-Modified-Since": if_modified_since(start)} if start else None
            for rows in self.client.pages(crm_object, params, headers=headers):
                if rest:
                    self._join_columns(crm_object, rest, rows)
                yield self._records(rows, start)

        if since is None:
            # A first page that is not full is the whole module: no count call is spent then.
            pages = live_pages(None)
            head = next(pages, None)
            live = in_order(itertools.chain([head] if head else [], pages))
            cutoff = self.bulk.wanted(crm_object) if head and len(head) >= PER_PAGE else None
            if cutoff is not None:
                pages.close()
                families = {n: f.family for n, f in self.describe(crm_object).fields.items()}
                try:
                    yield from self.bulk.records(crm_object, columns, families, cutoff)
                except BulkReadFailed as exc:
                    # Nothing was yielded yet (bulk.py fetches every page first): read all by REST.
                    log.warning("Zoho bulk read failed (%s); reading by REST instead", exc.code)
                    yield from in_order(live_pages(None))
                    return
                # What changed from the cutoff on, edits made during the export included.
                yield from in_order(live_pages(cutoff))
                return
            yield from live
            return
        live = in_order(live_pages(since))
        # Deletions since the watermark are few; they are read first and merged by time.
        deleted = sorted(self._deleted(crm_object, since), key=_sort_key)
        yield from heapq.merge(live, deleted, key=_sort_key)

    def _records(self, rows: Iterable[dict[str, Any]], since: datetime | None) -> list[RawRecord]:
        records = []
        for row in rows:
            modified = parse_time(row.get(MODIFIED))
            if row.get("id") is None or modified is None:
                log.warning("skipping a Zoho record without id or Modified_Time")
                continue
            # If-Modified-Since was widened to whole seconds: the closed start is applied here.
            if since is not None and modified < since:
                continue
            records.append(RawRecord(crm_id=str(row["id"]), modified_at=modified, fields=row))
        return records

    def _deleted(self, crm_object: str, since: datetime) -> Iterator[RawRecord]:
        headers = {"If-Modified-Since": if_modified_since(since)}
        for rows in self.client.pages(f"{crm_object}/deleted", {"type": "all"}, headers=headers):
            for row in rows:
                when = parse_time(row.get("deleted_time"))
                if row.get("id") is None or when is None or when < since:
                    continue
                yield RawRecord(crm_id=str(row["id"]), modified_at=when, deleted=True)

    def _join_columns(
        self, crm_object: str, columns: Sequence[str], rows: list[dict[str, Any]]
    ) -> None:
        extra = self.client.coql_rows(
            crm_object, columns, [str(row["id"]) for row in rows if "id" in row]
        )
        for row in rows:
            row.update(extra.get(str(row.get("id")), {}))

    def read_by_ids(
        self, crm_object: str, fields: Sequence[str], ids: Sequence[str]
    ) -> Iterator[RawRecord]:
        """Current state of the given records via COQL `id in (...)`: one credit per 50 ids."""
        columns = columns_for(fields)
        for id_chunk in chunks(list(dict.fromkeys(ids)), coql.MAX_IN_VALUES):
            rows = self.client.coql_rows(crm_object, columns, id_chunk)
            yield from self._records((rows[i] for i in id_chunk if i in rows), None)

    # -- writes -----------------------------------------------------------------------------

    def write(self, crm_object: str, changes: Sequence[RecordChange]) -> list[WriteResult]:
        """PUT /crm/v8/{module} in batches of 100; only elements with code SUCCESS are "ok"."""
        results: list[WriteResult] = []
        for batch in chunks(list(changes), MAX_WRITE_BATCH):
            data = [
                {"id": change.crm_id, **{k: json_value(v) for k, v in change.fields.items()}}
                for change in batch
            ]
            elements = self.client.send_batch("PUT", crm_object, data, self.trigger)
            results.extend(match_results([change.crm_id for change in batch], elements))
        return results

    # -- tasks ------------------------------------------------------------------------------

    def create_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Create tasks at most once per dedupe key, by the marker in their description (tasks.py)."""
        return self.tasks.create(tasks)

    def find_tasks(self, tasks: Mapping[str, str | None]) -> dict[str, TaskState]:
        """Tasks carrying our marker, by dedupe key (key -> its account, None when unknown)."""
        return self.tasks.find(tasks)

    def open_tasks(self) -> Iterator[TaskState]:
        """TaskScanner: every open task carrying our marker (COQL on Status, keyset by id)."""
        return self.tasks.open_tasks()

    def update_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Complete (Status), escalate (Priority, Owner) or comment on (append to Description)."""
        return self.tasks.update(tasks)

    def delete_tasks(self, task_ids: Sequence[str]) -> list[WriteResult]:
        """TaskDeleter: DELETE /Tasks?ids=..., 100 per call, one result per id."""
        return self.tasks.delete(task_ids)

    # -- field setup ------------------------------------------------------------------------

    def create_fields(self, crm_object: str, fields: Sequence[FieldSpec]) -> list[WriteResult]:
        """FieldCreator: create custom fields via POST settings/fields (fields.py); same order."""
        return create_fields(self.client, crm_object, fields)

    # -- currencies -------------------------------------------------------------------------

    def currencies(self) -> CrmRates:
        """CurrencySource: GET /org/currencies (rates per one unit of the home currency).

        Without multi-currency (editions below Enterprise) Zoho answers 403; the org's own
        currency (GET /org) is then the only one.
        """
        try:
            response = self.client.request("GET", "org/currencies")
        except CrmError as exc:
            if exc.code not in ("CURRENCIES_NOT_ENABLED", "FEATURE_NOT_SUPPORTED"):
                raise
            body = self.client.body(self.client.request("GET", "org"))
            org = (body or {}).get("org") or [{}]
            code = org[0].get("iso_code") if isinstance(org[0], dict) else None
            return CrmRates(reference=str(code) if code else None)
        body = self.client.body(response) or {}
        rows = [row for row in body.get("currencies") or [] if isinstance(row, dict)]
        reference = next((str(row["iso_code"]) for row in rows if row.get("is_base")), None)
        rates = {}
        for row in rows:
            try:
                rate = Decimal(str(row.get("exchange_rate")))
            except ArithmeticError:
                continue
            if row.get("iso_code") and rate.is_finite() and rate > 0:
                rates[str(row["iso_code"])] = rate
        return CrmRates(reference=reference, rates=rates)

    # -- credentials ------------------------------------------------------------------------

    def verify_credentials(self) -> None:
        """CredentialVerifier: a fresh refresh-token exchange, ignoring any cached token."""
        self.client.auth.verify()

    # -- usage ------------------------------------------------------------------------------

    def usage(self) -> ApiUsage:
        """Calls by endpoint and the credits left as Zoho last reported (X-API-CREDITS-REMAINING)."""
        return ApiUsage(
            calls=self.client.calls(),
            remaining=self.client.remaining_estimate(),
            limit=self.settings.options.daily_credits,
        )

    def close(self) -> None:
        """Close the HTTP session this adapter opened."""
        self.client.close()
