"""An in-memory CRM that honours the CrmAdapter protocol, for engine tests without HTTP."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from connector.errors import RetriableCrmError
from connector.models import RawRecord, RecordChange, TaskAction, TaskState, WriteResult
from connector.protocol import (
    AdapterCapabilities,
    ApiUsage,
    ConnectionSettings,
    FieldDescription,
    ObjectDescription,
    append_task_comment,
    find_task_marker,
    with_task_marker,
)

T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)

ACCOUNT_FIELDS = {
    "Id": "id",
    "Name": "string",
    "OwnerId": "reference",
    "Currency": "string",
    "Industry": "string",
    "Country": "string",
    "CreatedDate": "datetime",
    "PaymentTerms": "integer",
    "CreditLimit": "currency",
    "ManualOverride": "boolean",
    "RiskScore": "number",
    "RiskBand": "picklist",
    "RiskLevel": "picklist",
    "RiskReasons": "text",
    "RecommendedLimit": "currency",
    "RiskReviewedAt": "datetime",
}
INVOICE_FIELDS = {
    "Id": "id",
    "Number": "string",
    "AccountId": "reference",
    "IssueDate": "date",
    "DueDate": "date",
    "Amount": "currency",
    "OpenAmount": "currency",
    "Currency": "string",
    "PaidDate": "date",
    "Status": "picklist",
}
READ_ONLY = {"Id", "CreatedDate"}


@dataclass
class FakeCrm:
    """The CRM's data: records per object, tasks, and a clock that ticks on every write."""

    records: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {"Account": {}, "Invoice": {}}
    )
    deleted: dict[str, dict[str, datetime]] = field(
        default_factory=lambda: {"Account": {}, "Invoice": {}}
    )
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock: datetime = T0
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def put(self, obj: str, record_id: str, **values: Any) -> None:
        """Create or edit a record as a person would in the CRM (bumps the modification time)."""
        record = self.records[obj].setdefault(record_id, {"Id": record_id})
        record.update(values)
        record["_modified"] = self.tick()

    def delete(self, obj: str, record_id: str) -> None:
        self.records[obj].pop(record_id, None)
        self.deleted[obj][record_id] = self.tick()

    def open_tasks(self) -> list[dict[str, Any]]:
        return [task for task in self.tasks.values() if task["Status"] != "Completed"]


class FakeSettings(ConnectionSettings):
    """The settings a `kind = "fake"` connection may carry (tests hand the adapter in themselves)."""

    auth: str = "refresh_token"
    # Which org: the mapping check remembered for one is not trusted for another.
    base_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    private_key: SecretStr | None = None


class FakeAdapter:
    """CrmAdapter over a FakeCrm, with knobs to inject rejections, lost responses and crashes."""

    settings_model = FakeSettings

    def __init__(self, crm: FakeCrm, *, batch: int = 3) -> None:
        self.crm = crm
        self.capabilities = AdapterCapabilities(name="fake", max_write_batch=batch, max_read_page=5)
        self.calls: Counter[str] = Counter()
        self.reject: dict[str, str] = {}
        self.lose_next_create_response = False
        self.write_requests: list[list[RecordChange]] = []
        self.inactive_users: set[str] = set()
        self.first_attempts: dict[str, list[bool]] = {}
        self.closed = False

    def describe(self, crm_object: str) -> ObjectDescription:
        self.calls["describe"] += 1
        spec = ACCOUNT_FIELDS if crm_object == "Account" else INVOICE_FIELDS
        fields = {
            name: FieldDescription(
                name=name,
                type=kind,
                family=kind if kind != "reference" else "reference",
                updateable=name not in READ_ONLY,
                createable=name not in READ_ONLY,
                length=4000
                if kind == "text"
                else (255 if kind in ("string", "picklist") else None),
                picklist_values=(
                    "A",
                    "B",
                    "C",
                    "D",
                    "E",
                    "Low",
                    "Medium",
                    "High",
                    "Critical",
                    "Open",
                    "Paid",
                    "Draft",
                    "Void",
                    "Disputed",
                    "Written Off",
                    "Partially Paid",
                )
                if kind == "picklist"
                else (),
            )
            for name, kind in spec.items()
        }
        return ObjectDescription(name=crm_object, fields=fields)

    def read_changed(
        self, crm_object: str, fields: Sequence[str], since: datetime | None
    ) -> Iterator[RawRecord]:
        rows = [
            (record["_modified"], record_id, record)
            for record_id, record in self.crm.records[crm_object].items()
            if since is None or record["_modified"] >= since
        ]
        if since is not None:
            rows += [
                (when, record_id, None)
                for record_id, when in self.crm.deleted[crm_object].items()
                if when >= since
            ]
        rows.sort(key=lambda row: (row[0], row[1]))
        page_size = self.capabilities.max_read_page
        for start in range(0, max(1, len(rows)), page_size):
            self.calls[f"read {crm_object}"] += 1
            for when, record_id, record in rows[start : start + page_size]:
                if record is None:
                    yield RawRecord(crm_id=record_id, modified_at=when, deleted=True)
                else:
                    yield RawRecord(
                        crm_id=record_id,
                        modified_at=when,
                        fields={
                            name: record.get(name)
                            for name in fields
                            if name in record or name == "Id"
                        },
                    )

    def read_by_ids(
        self, crm_object: str, fields: Sequence[str], ids: Sequence[str]
    ) -> Iterator[RawRecord]:
        self.calls[f"read {crm_object}"] += 1
        for record_id in ids:
            record = self.crm.records[crm_object].get(record_id)
            if record is not None:
                yield RawRecord(
                    crm_id=record_id,
                    modified_at=record["_modified"],
                    fields={n: record.get(n) for n in fields},
                )

    def write(self, crm_object: str, changes: Sequence[RecordChange]) -> list[WriteResult]:
        assert len(changes) <= self.capabilities.max_write_batch
        self.calls[f"write {crm_object}"] += 1
        self.write_requests.append(list(changes))
        results = []
        for change in changes:
            code = self.reject.get(change.crm_id)
            if code:
                results.append(
                    WriteResult(
                        crm_id=change.crm_id,
                        status="rejected",
                        error_code=code,
                        message="rejected by fake",
                    )
                )
                continue
            unknown = [
                name for name in change.fields if name not in ACCOUNT_FIELDS or name in READ_ONLY
            ]
            if unknown:
                results.append(
                    WriteResult(
                        crm_id=change.crm_id,
                        status="rejected",
                        error_code="INVALID_FIELD",
                        fields=tuple(unknown),
                    )
                )
                continue
            self.crm.put(crm_object, change.crm_id, **change.fields)
            results.append(WriteResult(crm_id=change.crm_id, status="ok"))
        return results

    def create_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        for task in tasks:
            self.first_attempts.setdefault(task.dedupe_key, []).append(task.first_attempt)
        existing = self.find_tasks({task.dedupe_key: task.account_id for task in tasks})
        results = []
        for task in tasks:
            if task.dedupe_key in existing:
                results.append(
                    WriteResult(
                        crm_id=existing[task.dedupe_key].crm_task_id,
                        status="ok",
                        key=task.dedupe_key,
                        existed=True,
                    )
                )
                continue
            if task.owner_id in self.inactive_users:
                results.append(
                    WriteResult(
                        crm_id=None,
                        status="rejected",
                        error_code="INVALID_DATA",
                        reason="owner_unavailable",
                        fields=("Owner",),
                        key=task.dedupe_key,
                    )
                )
                continue
            self.calls["create task"] += 1
            task_id = f"T{next(self.crm.ids)}"
            self.crm.tasks[task_id] = {
                "Id": task_id,
                "WhatId": task.account_id,
                "OwnerId": task.owner_id,
                "Subject": task.subject,
                "Priority": task.priority.value,
                "Status": "Not Started",
                "Description": with_task_marker(task.description, task.dedupe_key),
            }
            if self.lose_next_create_response:
                self.lose_next_create_response = False
                raise RetriableCrmError(
                    "read timed out after the CRM created the task", code="CONNECTION"
                )
            results.append(WriteResult(crm_id=task_id, status="ok", key=task.dedupe_key))
        return results

    def update_tasks(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        self.calls["update task"] += 1
        results = []
        for task in tasks:
            stored = self.crm.tasks.get(task.crm_task_id or "")
            if stored is None:
                results.append(
                    WriteResult(crm_id=task.crm_task_id, status="rejected", error_code="NOT_FOUND")
                )
                continue
            if task.action == "complete":
                stored["Status"] = "Completed"
            elif task.action == "escalate":
                stored["Priority"] = task.priority.value
                if task.owner_id:
                    stored["OwnerId"] = task.owner_id
            else:
                stored["Description"] = append_task_comment(
                    stored["Description"], task.description, task.dedupe_key
                )
            results.append(WriteResult(crm_id=task.crm_task_id, status="ok", key=task.dedupe_key))
        return results

    def open_tasks(self) -> Iterator[TaskState]:
        self.calls["scan tasks"] += 1
        for task in self.crm.tasks.values():
            key = find_task_marker(task["Description"])
            if key and task["Status"] != "Completed":
                yield TaskState(
                    crm_task_id=task["Id"],
                    dedupe_key=key,
                    is_closed=False,
                    owner_id=task["OwnerId"],
                )

    def find_tasks(self, tasks: Mapping[str, str | None]) -> dict[str, TaskState]:
        dedupe_keys = list(tasks)
        self.calls["find tasks"] += 1
        wanted = set(dedupe_keys)
        found = {}
        for task in self.crm.tasks.values():
            key = find_task_marker(task["Description"])
            if key in wanted:
                found[key] = TaskState(
                    crm_task_id=task["Id"],
                    dedupe_key=key,
                    is_closed=task["Status"] == "Completed",
                    owner_id=task["OwnerId"],
                )
        return found

    def usage(self) -> ApiUsage:
        return ApiUsage(calls=dict(self.calls))

    def close(self) -> None:
        self.closed = True
