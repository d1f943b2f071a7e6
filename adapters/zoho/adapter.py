"""Zoho CRM adapter: the CrmAdapter protocol over the thin REST v8 client."""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from adapters._http import cancellable_sleep
from adapters._tasks import chunks, create_once, task_rejected
from connector.errors import CrmError, FatalCrmError, QuotaExhaustedError, RetriableCrmError
from connector.models import (
    CrmRates,
    RawRecord,
    RecordChange,
    TaskAction,
    TaskPriority,
    TaskState,
    WriteResult,
)
from connector.protocol import (
    AdapterCapabilities,
    ApiUsage,
    FieldDescription,
    FieldSpec,
    KeyValueStore,
    MissingField,
    ObjectDescription,
    append_task_comment,
    find_task_marker,
    with_task_marker,
)
from connector.redaction import redact

from . import coql, setup_steps
from .bulk import BulkReader, BulkReadFailed
from .client import PER_PAGE, ZohoClient
from .errors import record_outcome, write_reason
from .fields import create_fields
from .settings import ZohoSettings

log = logging.getLogger("crm_risk.zoho")

MAX_WRITE_BATCH = 100  # PUT/POST /crm/v8/{module}: at most 100 records per call (reference §5.1)
MAX_FIELDS_PER_CALL = 50  # `fields` on list reads and COQL select columns (reference §3.1, §3.2)
MODIFIED = "Modified_Time"

# Zoho data_type -> the canonical family the mapping checks against (reference §7).
FAMILIES: dict[str, str] = {
    "text": "string",
    "email": "string",
    "phone": "string",
    "website": "string",
    "textarea": "text",
    "mediumtext": "text",
    "integer": "integer",
    "long": "integer",
    "bigint": "id",
    "double": "number",
    "decimal": "number",
    "currency": "currency",
    "percent": "percent",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
    "picklist": "picklist",
    "lookup": "reference",
    "ownerlookup": "reference",
    "userlookup": "reference",
    "autonumber": "other",
}
# Never writable, whatever read_only says: Zoho computes them.
_COMPUTED_TYPES = frozenset({"formula", "autonumber", "rollup_summary"})

PRIORITY_VALUES: dict[TaskPriority, str] = {
    TaskPriority.HIGH: "High",
    TaskPriority.NORMAL: "Normal",
    TaskPriority.LOW: "Low",
}
ZOHO_EMPTY_CHOICE = "-None-"
# Zoho's default picklist also has Highest and Lowest [A]; read them back onto our three levels.
_PRIORITY_BACK = {"highest": TaskPriority.HIGH, "lowest": TaskPriority.LOW}
TASK_COLUMNS = ("id", "Description", "Status", "Owner", "Priority", "What_Id")


def _parse_time(value: Any) -> datetime | None:
    """Zoho datetimes carry the API user's offset (+03:00); compare them as UTC instants."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def if_modified_since(since: datetime) -> str:
    """The If-Modified-Since value for a closed start at `since`.

    The header has second precision and Zoho returns records modified *after* it, so we ask from
    one second before the floored instant and drop what is older than `since` ourselves.
    """
    floored = since.astimezone(UTC).replace(microsecond=0) - timedelta(seconds=1)
    return floored.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def json_value(value: Any) -> Any:
    """A canonical value as Zoho wants it on the wire: money and numbers as JSON numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return value


def columns_for(fields: Iterable[str]) -> list[str]:
    """Top-level field API names to request: "Owner.id" means the lookup "Owner"; id comes anyway."""
    columns = [MODIFIED]
    for name in fields:
        head = name.split(".", 1)[0]
        if head and head != "id" and head not in columns:
            columns.append(head)
    return columns


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
        self.client = ZohoClient(settings, state=state, session=session, sleep=sleep, cancel=cancel)
        self._sleep = sleep
        options = settings.options
        # Without "trigger": [] every write fires the org's workflows, approvals and blueprints.
        self.trigger = list(options.trigger)
        self.task_parent_module = options.task_parent_module
        self.task_open_status = options.task_open_status
        self.task_closed_status = options.task_closed_status
        self.task_closed_statuses = frozenset(
            options.task_closed_statuses or [self.task_closed_status]
        )
        # "account": COQL on Tasks by What_Id for the accounts we know; "scan": read every task.
        self.task_lookup: str = options.task_lookup
        self.priority_values = {
            TaskPriority(key): value for key, value in options.task_priority_values.items()
        } or dict(PRIORITY_VALUES)
        self._priority_back = {value.lower(): key for key, value in self.priority_values.items()}
        for value, priority in _PRIORITY_BACK.items():
            self._priority_back.setdefault(value, priority)
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
                described = self._field(item)
                fields[described.name] = described
        if not fields and response.status_code != 204:
            raise FatalCrmError(f"Zoho module {crm_object} has no field metadata", code="NO_FIELDS")
        # The record id is not always listed among the fields; mappings name it as "id".
        fields.setdefault("id", FieldDescription(name="id", type="bigint", family="id"))
        return ObjectDescription(name=crm_object, fields=fields, label=crm_object)

    @staticmethod
    def _field(item: dict[str, Any]) -> FieldDescription:
        data_type = str(item.get("data_type") or "")
        family = FAMILIES.get(data_type, "other")
        formula = item.get("formula")
        if data_type == "formula" and isinstance(formula, dict):
            family = FAMILIES.get(str(formula.get("return_type") or ""), "other")
        writable = not (
            item.get("read_only") or item.get("field_read_only") or data_type in _COMPUTED_TYPES
        )
        # Every Zoho picklist starts with the built-in "-None-" option: it is the empty choice
        # (a record with it reads as null), not a value records carry, so it is left out.
        picklist = tuple(
            str(value.get("actual_value"))
            for value in item.get("pick_list_values") or []
            if isinstance(value, dict)
            and value.get("actual_value") is not None
            and value.get("actual_value") != ZOHO_EMPTY_CHOICE
        )
        length = item.get("length")
        scale = item.get("decimal_place")
        return FieldDescription(
            name=str(item["api_name"]),
            type=data_type,
            label=str(item.get("field_label") or item.get("display_label") or ""),
            updateable=writable,
            createable=writable,
            nillable=not item.get("system_mandatory"),
            length=int(length) if isinstance(length, int) else None,
            scale=int(scale) if isinstance(scale, int) else None,
            picklist_values=picklist,
            custom=bool(item.get("custom_field")),
            family=family,
        )

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
            modified = _parse_time(row.get(MODIFIED))
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
                when = _parse_time(row.get("deleted_time"))
                if row.get("id") is None or when is None or when < since:
                    continue
                yield RawRecord(crm_id=str(row["id"]), modified_at=when, deleted=True)

    def _coql_rows(
        self, module: str, columns: Sequence[str], ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Rows by id for up to any number of ids and columns: 50 ids and 49 columns + id a call."""
        joined: dict[str, dict[str, Any]] = {}
        wanted = [column for column in columns if column != "id"]
        for id_chunk in chunks(list(dict.fromkeys(ids)), coql.MAX_IN_VALUES):
            for column_chunk in chunks(wanted or [MODIFIED], coql.MAX_COLUMNS - 1):
                query = coql.select(
                    module,
                    ["id", *column_chunk],
                    coql.in_list("id", id_chunk),
                    limit=len(id_chunk),
                )
                rows, _more = self.client.coql(query, limit=len(id_chunk))
                for row in rows:
                    if row.get("id") is not None:
                        joined.setdefault(str(row["id"]), {}).update(row)
        return joined

    def _join_columns(
        self, crm_object: str, columns: Sequence[str], rows: list[dict[str, Any]]
    ) -> None:
        extra = self._coql_rows(
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
            rows = self._coql_rows(crm_object, columns, id_chunk)
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
            results.extend(self._match([change.crm_id for change in batch], elements))
        return results

    @staticmethod
    def _match(
        expected: Sequence[str | None],
        elements: list[Any] | None,
        keys: Sequence[str] | None = None,
    ) -> list[WriteResult]:
        """Pair a batch answer with its requests by position, checking details.id when given."""
        keys = keys or [""] * len(expected)
        if elements is None or len(elements) != len(expected):
            got = "no" if elements is None else str(len(elements))
            return [
                WriteResult(
                    crm_id=record_id,
                    status="unknown",
                    error_code="RESULT_MISMATCH",
                    message=f"Zoho answered {got} results for {len(expected)} records",
                    retriable=True,
                    key=key,
                )
                for record_id, key in zip(expected, keys, strict=True)
            ]
        results = []
        for record_id, key, element in zip(expected, keys, elements, strict=True):
            outcome = record_outcome(element)
            if record_id is not None and outcome.record_id not in (None, record_id):
                results.append(
                    WriteResult(
                        crm_id=record_id,
                        status="unknown",
                        error_code="RESULT_MISMATCH",
                        message="Zoho's result names another record",
                        retriable=True,
                        key=key,
                    )
                )
            elif outcome.ok:
                results.append(
                    WriteResult(crm_id=record_id or outcome.record_id, status="ok", key=key)
                )
            else:
                results.append(
                    WriteResult(
                        crm_id=record_id,
                        status="rejected",
                        error_code=outcome.code,
                        reason=write_reason(outcome.code, outcome.fields),
                        message=outcome.message,
                        fields=outcome.fields,
                        retriable=outcome.retriable,
                        key=key,
                    )
                )
        return results

    # -- tasks ------------------------------------------------------------------------------

    def _task_body(self, task: TaskAction) -> dict[str, Any]:
        description = with_task_marker(task.description, task.dedupe_key)
        body: dict[str, Any] = {
            "Subject": task.subject or f"Credit risk follow-up: {task.rule}",
            "Status": self.task_open_status,
            "Priority": self.priority_values[task.priority],
            "Description": description,
        }
        if task.account_id:  # a digest task hangs on no account
            body["What_Id"] = {"id": task.account_id}
            body["$se_module"] = self.task_parent_module
        if task.due_date is not None:
            body["Due_Date"] = task.due_date.isoformat()
        if task.owner_id:
            body["Owner"] = {"id": task.owner_id}
        return body

    def create_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Create tasks at most once per dedupe key.

        Zoho has no idempotency key, so the shared flow (adapters/_tasks.py) looks existing
        tasks up by the marker in their description first, sends creates without automatic
        retry, and when an answer is lost looks again to learn whether it landed ("unknown" if
        it cannot tell).
        """
        return create_once(tasks, self, batch_size=MAX_WRITE_BATCH)

    def find_created(self, tasks: Sequence[TaskAction]) -> dict[str, TaskState]:
        """Our tasks for these actions, looked up on their accounts."""
        # A task on no account (a digest) is found by scanning, not by What_Id.
        return self.find_tasks({task.dedupe_key: task.account_id or None for task in tasks})

    def send_creates(self, batch: Sequence[TaskAction]) -> list[WriteResult]:
        """One POST /Tasks for the batch; every result "unknown" when the answer was lost."""
        try:
            elements = self._create_once(batch)
        except QuotaExhaustedError:
            raise
        except RetriableCrmError as exc:
            log.warning("Zoho task create answer lost (%s); looking the tasks up", redact(str(exc)))
            elements = None
        return self._match([None] * len(batch), elements, [task.dedupe_key for task in batch])

    def _create_once(self, batch: Sequence[TaskAction]) -> list[Any] | None:
        policy = self.client.http.policy
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.client.send_batch(
                    "POST",
                    "Tasks",
                    [self._task_body(task) for task in batch],
                    self.trigger,
                    retry=False,
                )
            except RetriableCrmError as exc:
                # A 429 means Zoho did not run the call, so only then is a resend safe.
                if exc.status != 429 or attempt > policy.max_retries:
                    raise
                self._sleep(policy.delay(attempt, None))

    def find_tasks(self, tasks: Mapping[str, str | None]) -> dict[str, TaskState]:
        """Tasks carrying our marker, by dedupe key.

        COQL cannot filter on multi-line fields such as Description ("You cannot use multi-line
        fields ... in criteria", COQL limitations page), so the marker is matched here. Candidates
        are the tasks of the accounts the keys belong to (COQL `What_Id in (...)`), or, with
        task_lookup = "scan" or when an account is not given, every task paged by id.

        Args:
            tasks: dedupe key -> the account the task was opened on (None when unknown).
        """
        wanted = set(tasks)
        if not wanted:
            return {}
        accounts = set(tasks.values())
        rows: Iterable[dict[str, Any]]
        if self.task_lookup == "scan" or None in accounts:
            rows = self._scan_tasks()
        else:
            try:
                # Materialised so a refused query is caught here, not half-way through.
                rows = list(self._tasks_of([a for a in accounts if a is not None]))
            except FatalCrmError as exc:
                if exc.code not in ("INVALID_QUERY", "SYNTAX_ERROR"):
                    raise
                log.warning(
                    "Zoho refused COQL on Tasks.What_Id (%s); finding tasks by scanning instead",
                    exc.code,
                )
                self.task_lookup = "scan"
                rows = self._scan_tasks()
        found: dict[str, TaskState] = {}
        for row in rows:
            state = self._task_state(row)
            if state is None or state.dedupe_key not in wanted:
                continue
            key = state.dedupe_key
            # Two tasks with one key can only come from outside; keep the oldest, deterministically.
            if key in found and int(found[key].crm_task_id) < int(state.crm_task_id):
                continue
            found[key] = state
        return found

    def open_tasks(self) -> Iterator[TaskState]:
        """TaskScanner: every open task carrying our marker (COQL on Status, keyset by id)."""
        closed = ", ".join(coql.quote(status) for status in sorted(self.task_closed_statuses))
        last: str | None = None
        while True:
            criteria = [f"Status not in ({closed})"]
            if last is not None:
                criteria.append(f"id > {coql.quote(last)}")
            where = coql.all_of(criteria)
            query = coql.select(
                "Tasks", TASK_COLUMNS, where, order_by="id asc", limit=coql.MAX_LIMIT
            )
            rows, more = self.client.coql(query, limit=coql.MAX_LIMIT)
            for row in rows:
                state = self._task_state(row)
                if state is not None:
                    yield state
            if not more or not rows:
                return
            last = str(rows[-1]["id"])

    def _task_state(self, row: dict[str, Any]) -> TaskState | None:
        key = find_task_marker(str(row.get("Description") or ""))
        if key is None or row.get("id") is None:
            return None
        owner = row.get("Owner")
        return TaskState(
            crm_task_id=str(row["id"]),
            dedupe_key=key,
            is_closed=str(row.get("Status") or "") in self.task_closed_statuses,
            owner_id=str(owner["id"]) if isinstance(owner, dict) and owner.get("id") else None,
            priority=self._priority_back.get(str(row.get("Priority") or "").lower()),
        )

    def _tasks_of(self, accounts: Sequence[str]) -> Iterator[dict[str, Any]]:
        # What_Id is a multi-module lookup; COQL compares lookups by id [A: not confirmed for
        # What_Id on a live org; task_lookup = "scan" avoids it].
        for chunk in chunks(sorted(accounts), coql.MAX_IN_VALUES):
            offset = 0
            while True:
                query = coql.select(
                    "Tasks",
                    TASK_COLUMNS,
                    coql.in_list("What_Id", chunk),
                    limit=coql.MAX_LIMIT,
                    offset=offset,
                )
                rows, more = self.client.coql(query, limit=coql.MAX_LIMIT)
                yield from rows
                if not more or not rows:
                    break
                offset += len(rows)

    def _scan_tasks(self) -> Iterator[dict[str, Any]]:
        # Keyset paging by id passes COQL's 100,000-row offset reach (reference §3.2).
        last: str | None = None
        while True:
            where = "id is not null" if last is None else f"id > {coql.quote(last)}"
            query = coql.select(
                "Tasks", TASK_COLUMNS, where, order_by="id asc", limit=coql.MAX_LIMIT
            )
            rows, more = self.client.coql(query, limit=coql.MAX_LIMIT)
            yield from rows
            if not more or not rows:
                return
            last = str(rows[-1]["id"])

    def update_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Complete (Status), escalate (Priority, Owner) or comment on (append to Description)."""
        results: list[WriteResult | None] = [None] * len(tasks)
        commented = [t.crm_task_id for t in tasks if t.action == "comment" and t.crm_task_id]
        current = self._coql_rows("Tasks", ["Description"], commented) if commented else {}
        sendable: list[tuple[int, dict[str, Any]]] = []
        for index, task in enumerate(tasks):
            task_id = task.crm_task_id
            if not task_id:
                results[index] = task_rejected(task, "MISSING_TASK_ID", "no CRM task id")
                continue
            data: dict[str, Any] = {"id": task_id}
            if task.action == "complete":
                data["Status"] = self.task_closed_status
            elif task.action == "escalate":
                data["Priority"] = self.priority_values[task.priority]
                if task.owner_id:
                    data["Owner"] = {"id": task.owner_id}
            elif task.action == "comment":
                if task_id not in current:
                    results[index] = task_rejected(task, "NOT_FOUND", "task not found")
                    continue
                data["Description"] = append_task_comment(
                    str(current[task_id].get("Description") or ""),
                    task.description,
                    task.dedupe_key,
                )
            else:
                results[index] = task_rejected(task, "UNSUPPORTED", task.action)
                continue
            sendable.append((index, data))
        for batch in chunks(sendable, MAX_WRITE_BATCH):
            elements = self.client.send_batch(
                "PUT", "Tasks", [data for _, data in batch], self.trigger
            )
            matched = self._match(
                [data["id"] for _, data in batch],
                elements,
                [tasks[index].dedupe_key for index, _ in batch],
            )
            for (index, _), result in zip(batch, matched, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def delete_tasks(self, task_ids: Sequence[str]) -> list[WriteResult]:
        """TaskDeleter: DELETE /Tasks?ids=..., 100 per call, one result per id."""
        results: list[WriteResult] = []
        for batch in chunks(list(task_ids), MAX_WRITE_BATCH):
            response = self.client.request("DELETE", "Tasks", params={"ids": ",".join(batch)})
            body = self.client.body(response)
            elements = body.get("data") if isinstance(body, dict) else None
            results.extend(
                self._match(list(batch), elements if isinstance(elements, list) else None)
            )
        return results

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
