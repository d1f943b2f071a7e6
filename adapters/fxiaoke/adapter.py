"""Fxiaoke (纷享销客) adapter: the CrmAdapter protocol over the Open API's object query/update/create/describe.

Accounts are `AccountObj`; receivables are `PaymentPlanObj` (回款计划: planned amount and date,
actual amount, status incomplete/completed/overdue), to which the adapter adds two read-only
fields computed from the payments booked against each plan (`OrderPaymentObj`, 回款明细):
`connector__open_amount` (planned minus collected) and `connector__paid_date` (the last payment's
date once the plan is complete). Follow-ups are sales records (tasks.py).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import requests

from adapters._http import cancellable_sleep
from adapters._paging import OffsetRequest, OffsetThenKeyset, offset_then_keyset
from connector.errors import CrmError, FatalCrmError
from connector.models import (
    CrmRates,
    RawRecord,
    RecordChange,
    TaskAction,
    TaskState,
    WriteResult,
)
from connector.protocol import (
    AdapterCapabilities,
    ApiUsage,
    FieldDescription,
    KeyValueStore,
    MissingField,
    ObjectDescription,
)

from .client import MAX_LIMIT, FxiaokeClient
from .fields import instructions
from .paging import ORDER, TIME, changed_pages, row_key
from .settings import FxiaokeSettings, resolve
from .tasks import FollowUps
from .values import (
    FxFieldInfo,
    field_description,
    field_info,
    from_ms,
    read_value,
    refused_fields,
    write_value,
)

log = logging.getLogger("crm_risk.fxiaoke")

PLAN_OBJECT = "PaymentPlanObj"
PAYMENT_LINE_OBJECT = "OrderPaymentObj"
OPEN_AMOUNT = "connector__open_amount"
PAID_DATE = "connector__paid_date"
# Update is one record per call; a write() of this many records makes this many calls.
MAX_WRITE_BATCH = 50
# Codes of a whole call that no single record caused: raised, never reported per record.
_CALL_CODES = frozenset({"10006", "10013"})
# The highest `offset` a query takes (errorCode 10013 past it; deep-paging.html).
MAX_OFFSET = 10_000


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _money(value: Any) -> Decimal | None:
    try:
        return None if value in (None, "") else Decimal(str(value))
    except InvalidOperation:
        return None


class FxiaokeAdapter:
    """CrmAdapter for Fxiaoke (ShareCRM) through Open API v2 (no SDK exists; reference §11)."""

    settings_model = FxiaokeSettings

    def __init__(
        self,
        settings: FxiaokeSettings,
        *,
        state: KeyValueStore | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        cancel: threading.Event | None = None,
    ) -> None:
        self.settings = resolve(settings)
        sleep = cancellable_sleep(sleep, cancel)
        self.client = FxiaokeClient(
            self.settings,
            verify_tls=settings.verify_tls,
            ca_bundle=settings.ca_bundle,
            timeout=settings.timeout_seconds,
            deadline=settings.deadline_seconds,
            max_retries=settings.max_retries,
            state=state,
            session=session,
            sleep=sleep,
            clock=clock,
            cancel=cancel,
        )
        self.zone = ZoneInfo(self.settings.options.time_zone)
        self._described: dict[str, dict[str, Any]] = {}
        options = self.settings.options
        self.follow_ups = FollowUps(
            self.client, options, lambda: self._infos(options.task_object), self.zone, sleep
        )
        self.capabilities = AdapterCapabilities(
            name="fxiaoke",
            max_write_batch=min(MAX_WRITE_BATCH, options.write_batch),
            max_read_page=options.page_size,
            supports_tasks=True,
            max_concurrency=options.max_concurrency,
        )

    # -- metadata ---------------------------------------------------------------------------

    def _describe_raw(self, crm_object: str) -> dict[str, Any]:
        cached = self._described.get(crm_object)
        if cached is not None:
            return cached
        try:
            answer = self.client.call(
                "/cgi/crm/v2/object/describe",
                {"data": {"apiName": crm_object, "includeDetail": False}},
            )
        except FatalCrmError as exc:
            raise FatalCrmError(
                f"Fxiaoke has no object {crm_object!r}, or the app cannot see it ({exc.message})",
                code=exc.code,
            ) from exc
        data = answer.get("data")
        describe = data.get("describe") if isinstance(data, dict) else None
        if (
            not isinstance(describe, dict)
            or not isinstance(describe.get("fields"), dict)
            or not describe["fields"]
        ):
            raise FatalCrmError(
                f"Fxiaoke object {crm_object} has no field description", code="NO_FIELDS"
            )
        self._described[crm_object] = describe
        return describe

    def _infos(self, crm_object: str) -> dict[str, FxFieldInfo]:
        fields = self._describe_raw(crm_object)["fields"]
        return {name: field_info(raw) for name, raw in fields.items() if isinstance(raw, dict)}

    def describe(self, crm_object: str) -> ObjectDescription:
        """Fields from `POST /cgi/crm/v2/object/describe` (data.apiName; the current manual).

        Raises:
            FatalCrmError: the object does not exist or the app cannot see it.
        """
        self._described.pop(crm_object, None)  # describe is the fresh look `check` relies on
        describe = self._describe_raw(crm_object)
        fields = {
            name: field_description(raw)
            for name, raw in describe["fields"].items()
            if isinstance(raw, dict)
        }
        if "owner" in fields:
            fields["owner.id"] = FieldDescription(
                name="owner.id", type="employee", label="负责人", family="reference"
            )
        if crm_object == PLAN_OBJECT:
            fields[OPEN_AMOUNT] = FieldDescription(
                name=OPEN_AMOUNT,
                type="currency",
                label="未回款金额 (computed)",
                family="currency",
                scale=2,
            )
            fields[PAID_DATE] = FieldDescription(
                name=PAID_DATE, type="date", label="回款日期 (computed)", family="date"
            )
        return ObjectDescription(
            name=crm_object, fields=fields, label=str(describe.get("display_name") or crm_object)
        )

    # -- reads ------------------------------------------------------------------------------

    def _projection(self, crm_object: str, fields: Sequence[str]) -> list[str]:
        wanted = ["_id", TIME]
        for name in fields:
            head = name.split(".", 1)[0]
            if head in (OPEN_AMOUNT, PAID_DATE):
                head = "plan_payment_amount" if head == OPEN_AMOUNT else "plan_payment_status"
                for extra in (
                    "plan_payment_amount",
                    "actual_payment_amount",
                    "plan_payment_status",
                ):
                    if extra not in wanted:
                        wanted.append(extra)
            if head and head not in wanted:
                wanted.append(head)
        gone = [name for name in wanted if name not in self._infos(crm_object)]
        if gone:
            # [A] Whether a query names an unknown projected field is not documented (the
            # sandbox leaves it out silently); describe says it plainly, so the read stops here
            # and the engine matches the field to the mapping (exit 78), rather than reading
            # every record without it.
            raise FatalCrmError(
                f"Fxiaoke {crm_object} has no field {', '.join(gone)} any more (describe); "
                "it was deleted or renamed since the mapping was checked",
                code="FIELD_GONE",
            )
        return wanted

    def _record(
        self, crm_object: str, row: dict[str, Any], infos: dict[str, FxFieldInfo]
    ) -> RawRecord | None:
        modified = from_ms(row.get(TIME))
        if row.get("_id") is None or modified is None:
            log.warning("skipping an Fxiaoke %s row without _id or last_modified_time", crm_object)
            return None
        fields = {
            name: read_value(infos.get(name), value, self.zone) for name, value in row.items()
        }
        for name, value in row.items():
            info = infos.get(name)
            if info is not None and info.type == "employee" and isinstance(value, list):
                # Employee fields are id lists; a mapping reads the first as `<field>.id`.
                first = str(value[0]) if value else None
                fields[name] = {"id": first, "ids": [str(item) for item in value]}
                fields[f"{name}.id"] = first
        return RawRecord(crm_id=str(row["_id"]), modified_at=modified, fields=fields)

    def _records(
        self, crm_object: str, rows: list[dict[str, Any]], wanted: Sequence[str]
    ) -> list[RawRecord]:
        infos = self._infos(crm_object)
        if crm_object == PLAN_OBJECT and {OPEN_AMOUNT, PAID_DATE} & {
            w.split(".")[0] for w in wanted
        }:
            self._add_payments(rows)
        out = []
        for row in rows:
            record = self._record(crm_object, row, infos)
            if record is not None:
                out.append(record)
        return out

    def _add_payments(self, plans: list[dict[str, Any]]) -> None:
        """Open amount and paid date per plan from the payment lines booked against it."""
        ids = [str(row["_id"]) for row in plans if row.get("_id")]
        last_paid: dict[str, int] = {}
        for chunk in _chunks(ids, MAX_LIMIT):
            filters = [
                {"field_name": "payment_plan_id", "operator": "IN", "field_values": list(chunk)}
            ]
            for page in self.client.pages_by_id(
                PAYMENT_LINE_OBJECT,
                filters,
                ["_id", "payment_plan_id", "payment_time", "payment_amount"],
            ):
                for line in page:
                    plan_id = str(line.get("payment_plan_id") or "")
                    when = line.get("payment_time")
                    if plan_id and isinstance(when, int):
                        last_paid[plan_id] = max(last_paid.get(plan_id, when), when)
        for row in plans:
            planned = _money(row.get("plan_payment_amount"))
            collected = _money(row.get("actual_payment_amount")) or Decimal(0)
            open_amount = None if planned is None else max(Decimal(0), planned - collected)
            row[OPEN_AMOUNT] = (
                None if open_amount is None else str(open_amount.quantize(Decimal("0.01")))
            )
            complete = row.get("plan_payment_status") == "completed" or open_amount == 0
            paid = from_ms(last_paid.get(str(row.get("_id")))) if complete else None
            row[PAID_DATE] = None if paid is None else paid.astimezone(self.zone).date().isoformat()

    def read_changed(
        self, crm_object: str, fields: Sequence[str], since: datetime | None
    ) -> Iterator[RawRecord]:
        """Records modified at or after `since`, ascending by (last_modified_time, _id), page by page.

        Offset pages up to the 10,000 cap, each checked against the last row read, then key pages
        (paging.py) on `last_modified_time` in epoch ms; with `since`, records invalidated (作废)
        since then are merged in with deleted=True.
        """
        projection = self._projection(crm_object, fields)
        size = self.settings.options.page_size
        base = (
            []
            if since is None
            else [{"field_name": TIME, "operator": "GTE", "field_values": [self._ms(since)]}]
        )

        def query(
            filters: list[dict[str, Any]], orders: list[dict[str, Any]]
        ) -> list[dict[str, Any]]:
            return self.client.query(
                crm_object, filters=filters, orders=orders, projection=projection, limit=size
            )

        def by_offset(request: OffsetRequest) -> list[dict[str, Any]]:
            return self.client.query(
                crm_object,
                filters=base,
                orders=ORDER,
                projection=projection,
                limit=request.limit,
                offset=request.offset,
            )

        paginator = OffsetThenKeyset(row_key, max_limit=size, max_offset=MAX_OFFSET)

        def by_key(after: tuple[int, str] | None) -> Iterator[list[dict[str, Any]]]:
            log.info(
                "Fxiaoke %s: offset pages ended (%s) after %s; reading on by key",
                crm_object,
                paginator.handover,
                after,
            )
            return changed_pages(query, base, size, after)

        live = (
            record
            for page in offset_then_keyset(paginator, by_offset, by_key)
            for record in self._records(crm_object, page, fields)
        )
        if since is None:
            yield from live
            return
        deleted = sorted(
            self._invalidated(crm_object, base), key=lambda r: (r.modified_at, r.crm_id)
        )
        yield from heapq.merge(live, deleted, key=lambda r: (r.modified_at, r.crm_id))

    @staticmethod
    def _ms(moment: datetime) -> int:
        # A closed start: ms precision, floored, so nothing at `since` is missed.
        return int(moment.timestamp() * 1000)

    def _invalidated(self, crm_object: str, base: list[dict[str, Any]]) -> Iterator[RawRecord]:
        # [A] Invalidated records leave the list; asking for life_status brings them back.
        filters = [
            *base,
            {"field_name": "life_status", "operator": "EQ", "field_values": ["invalid"]},
        ]
        for page in self.client.pages_by_id(crm_object, filters, ["_id", TIME]):
            for row in page:
                modified = from_ms(row.get(TIME))
                if row.get("_id") is not None and modified is not None:
                    yield RawRecord(crm_id=str(row["_id"]), modified_at=modified, deleted=True)

    def read_by_ids(
        self, crm_object: str, fields: Sequence[str], ids: Sequence[str]
    ) -> Iterator[RawRecord]:
        """Current state of the given records: `_id IN (...)`, 100 ids a call."""
        projection = self._projection(crm_object, fields)
        for chunk in _chunks(list(dict.fromkeys(ids)), MAX_LIMIT):
            rows = self.client.query(
                crm_object,
                filters=[{"field_name": "_id", "operator": "IN", "field_values": list(chunk)}],
                orders=[{"fieldName": "_id", "isAsc": True}],
                projection=projection,
                limit=MAX_LIMIT,
            )
            yield from self._records(crm_object, rows, fields)

    # -- writes -----------------------------------------------------------------------------

    def write(self, crm_object: str, changes: Sequence[RecordChange]) -> list[WriteResult]:
        """One `/data/update` per record (the API has no batch update); "ok" only on errorCode 0.

        Flags at the top level, as the manual's update page shows: `triggerApprovalFlow` false
        (an approval would lock the account and hold the change), `triggerWorkFlow` as configured.
        """
        infos = self._infos(crm_object)
        results = []
        fresh: dict[str, FxFieldInfo] | None = None  # describe read again after a refusal
        for change in changes:
            try:
                values = {
                    name: write_value(infos.get(name), value, self.zone)
                    for name, value in change.fields.items()
                }
            except (ValueError, TypeError) as exc:
                results.append(
                    WriteResult(
                        crm_id=change.crm_id,
                        status="rejected",
                        error_code="BAD_VALUE",
                        message=str(exc),
                    )
                )
                continue
            body = {
                "triggerApprovalFlow": False,
                "triggerWorkFlow": self.settings.options.trigger_workflow,
                "data": {
                    "object_data": {"_id": change.crm_id, "dataObjectApiName": crm_object, **values}
                },
            }
            try:
                self.client.call(self.client.path_for(crm_object, "update"), body)
            except FatalCrmError as exc:
                if exc.code in _CALL_CODES:
                    raise
                if fresh is None:
                    self.describe(crm_object)  # drops the cached describe and reads it again
                    fresh = self._infos(crm_object)
                results.append(self._rejected(change, exc, refused_fields(values, fresh)))
                continue
            results.append(WriteResult(crm_id=change.crm_id, status="ok"))
        return results

    @staticmethod
    def _rejected(change: RecordChange, error: CrmError, fields: tuple[str, ...]) -> WriteResult:
        # The API names a field only in message text, which the manual says not to parse; the
        # fields named here are those the object's describe, read again, no longer takes. With
        # none, the whole record is retried next run (a lock, a validation rule).
        return WriteResult(
            crm_id=change.crm_id,
            status="rejected",
            error_code=error.code or "REJECTED",
            message=str(error),
            fields=fields,
            retriable=not fields,
        )

    # -- tasks ------------------------------------------------------------------------------

    def create_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Sales records at most once per dedupe key (tasks.py)."""
        return self.follow_ups.create(tasks)

    def update_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Complete, escalate or comment on follow-ups; same order."""
        return self.follow_ups.update(tasks)

    def find_tasks(self, tasks: Mapping[str, str | None]) -> dict[str, TaskState]:
        """TaskFinder: follow-ups carrying our marker, by dedupe key (looked up by marker text)."""
        return self.follow_ups.find(list(tasks))

    def open_tasks(self) -> Iterator[TaskState]:
        """TaskScanner: every open follow-up carrying our marker."""
        return self.follow_ups.open_states()

    def delete_tasks(self, task_ids: Sequence[str]) -> list[WriteResult]:
        """TaskDeleter: invalidate (作废) the records; an already invalid one is rejected."""
        return self.follow_ups.invalidate(task_ids)

    # -- field setup ------------------------------------------------------------------------

    def field_plan_text(self, missing: Sequence[MissingField]) -> str:
        """FieldPlanText: the fields to create, in Chinese and English (fields.py), with the
        follow-up fields the adapter needs itself (checked with describe)."""

        def task_fields() -> set[str] | None:
            try:
                return set(self._describe_raw(self.settings.options.task_object)["fields"])
            except FatalCrmError:
                return None

        return instructions(missing, self.settings.options, task_fields)

    # -- currencies -------------------------------------------------------------------------

    def currencies(self) -> CrmRates:
        """CurrencySource: the tenant's one currency (CNY unless options.currency says else).

        The manual lists currency APIs (币种相关接口) whose shapes could not be confirmed; records
        in another currency are refused by the mapping rather than added up at a guessed rate.
        """
        return CrmRates(reference=self.settings.options.currency)

    # -- credentials and usage --------------------------------------------------------------

    def verify_credentials(self) -> None:
        """CredentialVerifier: a fresh token exchange, ignoring the cache."""
        self.client.auth.verify()

    def usage(self) -> ApiUsage:
        """Calls by endpoint; Fxiaoke reports no quota left (only 30002 when it is gone)."""
        return ApiUsage(calls=self.client.calls(), remaining=None, limit=None)

    def close(self) -> None:
        """Close the HTTP session this adapter opened."""
        self.client.close()
