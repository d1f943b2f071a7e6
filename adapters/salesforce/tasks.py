"""Follow-up Tasks: idempotent create by dedupe marker (or external-id upsert), escalate, comment, close."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from adapters._tasks import chunks, create_once
from adapters.salesforce import soql
from adapters.salesforce.client import SalesforceClient
from adapters.salesforce.errors import SalesforceRequestError
from adapters.salesforce.settings import SalesforceOptions
from connector.errors import RetriableCrmError
from connector.models import RecordChange, TaskAction, TaskPriority, TaskState, WriteResult
from connector.protocol import append_task_comment, find_task_marker, with_task_marker
from connector.redaction import redact

PRIORITIES = {TaskPriority.LOW: "Low", TaskPriority.NORMAL: "Normal", TaskPriority.HIGH: "High"}
_PRIORITY_BACK = {label.lower(): canonical for canonical, label in PRIORITIES.items()}
OPEN_STATUS = "Not Started"
# Account ids per IN (...) list: SOQL travels in the URL (16 KB cap, reference §2.1).
ID_CHUNK = 200

WriteFn = Callable[[str, Sequence[RecordChange]], list[WriteResult]]


def _unconfirmed(task: TaskAction, code: str, message: str) -> WriteResult:
    return WriteResult(
        crm_id=None,
        status="unknown",
        error_code=code,
        message=redact(message),
        retriable=True,
        key=task.dedupe_key,
    )


def describe_with_marker(description: str, key: str) -> str:
    """The task description (user text escaped), ending with the dedupe marker on its own line."""
    return with_task_marker(description, key)


def append_comment(current: str | None, comment: str, key: str) -> str:
    """Add a comment to a description, keeping our marker as its last line."""
    return append_task_comment(current, comment, key)


# sObject Collections accept at most 200 records per call.
COLLECTION_SIZE = 200


class TaskService:
    """Task calls for one connection; writes go through the adapter's collection writer."""

    def __init__(
        self,
        client: SalesforceClient,
        write: WriteFn,
        *,
        options: SalesforceOptions,
        closed_status: Callable[[], str],
    ) -> None:
        self.client = client
        self.write = write
        self.external_id_field: str | None = options.task_external_id_field or None
        self.open_status = options.task_open_status or OPEN_STATUS
        self.closed_status = closed_status

    # -- find ---------------------------------------------------------------------------------

    def _state(self, record: Mapping[str, Any], key: str) -> TaskState:
        priority = _PRIORITY_BACK.get(str(record.get("Priority") or "").lower())
        return TaskState(
            crm_task_id=str(record["Id"]),
            dedupe_key=key,
            is_closed=bool(record.get("IsClosed")),
            owner_id=record.get("OwnerId"),
            priority=priority,
        )

    def find(
        self, dedupe_keys: Sequence[str], account_ids: Sequence[str] = ()
    ) -> dict[str, TaskState]:
        """Tasks carrying our marker for the given keys.

        With an external-id field the lookup is exact and indexed. Without one, Description
        (a long text area) cannot be filtered in SOQL, so we read the tasks the integration
        user created (on the given accounts, when known), newest first, parse the marker
        client-side and stop paging once every key is found.
        """
        wanted = {key for key in dedupe_keys if key}
        found: dict[str, TaskState] = {}
        if not wanted:
            return found
        if self.external_id_field:
            field = self.external_id_field
            for chunk in chunks(sorted(wanted), ID_CHUNK):
                for page in self.client.query_pages(soql.tasks_by_external_id(field, chunk)):
                    for record in page.get("records", []):
                        key = str(record.get(field) or "")
                        if key in wanted and key not in found:
                            found[key] = self._state(record, key)
            return found
        user_id = self.client.user_id
        account_chunks: list[Sequence[str]] = (
            list(chunks(sorted(set(account_ids)), ID_CHUNK)) if account_ids else [()]
        )
        for accounts in account_chunks:
            for page in self.client.query_pages(soql.tasks_created_by(user_id, accounts)):
                for record in page.get("records", []):
                    marker = find_task_marker(record.get("Description"))
                    if marker is not None and marker in wanted and marker not in found:
                        found[marker] = self._state(record, marker)
                if wanted <= found.keys():
                    return found
        return found

    def open_tasks(self) -> Iterator[TaskState]:
        """Every open task carrying our marker (or external-id key), in one paged query."""
        field = self.external_id_field
        query = soql.open_tasks_created_by(None if field else self.client.user_id, field)
        for page in self.client.query_pages(query):
            for record in page.get("records", []):
                key = (
                    str(record.get(field) or "")
                    if field
                    else find_task_marker(record.get("Description"))
                )
                if key:
                    yield self._state(record, key)

    # -- create -------------------------------------------------------------------------------

    def _body(self, task: TaskAction) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Subject": task.subject[:255],
            "Priority": PRIORITIES[task.priority],
            "Status": self.open_status,
            "Description": describe_with_marker(task.description, task.dedupe_key),
        }
        if task.account_id:  # a digest task hangs on no account
            body["WhatId"] = task.account_id
        if task.owner_id:
            body["OwnerId"] = task.owner_id
        if task.due_date is not None:
            body["ActivityDate"] = task.due_date.isoformat()
        return body

    def create(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Create tasks that do not exist yet; never a second task for one dedupe key.

        The shared flow (adapters/_tasks.py) looks existing tasks up first (one query per 200
        accounts), sends creates without automatic retry and looks again after a lost answer.
        """
        return create_once(tasks, self, batch_size=COLLECTION_SIZE)

    def find_created(self, tasks: Sequence[TaskAction]) -> dict[str, TaskState]:
        """Our tasks for these actions, looked up on their accounts."""
        accounts = [task.account_id for task in tasks]
        # A task on no account (a digest) can be anywhere: look among all of ours.
        return self.find([task.dedupe_key for task in tasks], [] if "" in accounts else accounts)

    def send_creates(self, batch: Sequence[TaskAction]) -> list[WriteResult]:
        """Upserts by external id, one sObject Collections call, or a single create."""
        if self.external_id_field:
            return [self._upsert(task) for task in batch]
        if len(batch) > 1:
            # sObject Collections: up to 200 creates per call instead of one call per task.
            return self._create_collection(batch)
        return [self._create(task) for task in batch]

    def _create_collection(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        body = {
            "allOrNone": False,
            "records": [{"attributes": {"type": "Task"}, **self._body(task)} for task in tasks],
        }
        try:
            answer = self.client.json("POST", "composite/sobjects", json=body, retry=False)
        except SalesforceRequestError as exc:
            return [self._rejected(task, exc) for task in tasks]
        except RetriableCrmError as exc:
            return [_unconfirmed(t, exc.code or "CREATE_UNCONFIRMED", exc.message) for t in tasks]
        if not isinstance(answer, list) or len(answer) != len(tasks):
            # Results cannot be matched to requests: the flow finds out what landed, by marker.
            return [_unconfirmed(t, "RESULT_COUNT_MISMATCH", "result count differs") for t in tasks]
        results = []
        for task, item in zip(tasks, answer, strict=True):
            if isinstance(item, dict) and item.get("success") and item.get("id"):
                results.append(
                    WriteResult(crm_id=str(item["id"]), status="ok", key=task.dedupe_key)
                )
                continue
            errors = item.get("errors") if isinstance(item, dict) else None
            first = (
                errors[0]
                if isinstance(errors, list) and errors and isinstance(errors[0], dict)
                else {}
            )
            results.append(
                WriteResult(
                    crm_id=None,
                    status="rejected",
                    error_code=str(first.get("statusCode") or "REJECTED"),
                    message=redact(str(first.get("message") or "")),
                    fields=tuple(str(f) for f in first.get("fields") or ()),
                    retriable=first.get("statusCode") == "UNABLE_TO_LOCK_ROW",
                    key=task.dedupe_key,
                )
            )
        return results

    def _rejected(self, task: TaskAction, exc: SalesforceRequestError) -> WriteResult:
        return WriteResult(
            crm_id=None,
            status="rejected",
            error_code=exc.code or "REJECTED",
            message=redact(exc.message),
            fields=exc.fields,
            key=task.dedupe_key,
        )

    def _create(self, task: TaskAction) -> WriteResult:
        try:
            created = self.client.json("POST", "sobjects/Task/", json=self._body(task), retry=False)
        except SalesforceRequestError as exc:
            return self._rejected(task, exc)
        except RetriableCrmError as exc:
            # The create may have landed before the answer was lost: the flow looks it up.
            return _unconfirmed(task, exc.code or "CREATE_UNCONFIRMED", exc.message)
        return WriteResult(crm_id=str(created["id"]), status="ok", key=task.dedupe_key)

    def _upsert(self, task: TaskAction) -> WriteResult:
        field = self.external_id_field
        assert field is not None
        # Upsert by external id is idempotent, so ordinary retries are safe here.
        path = f"sobjects/Task/{field}/{quote(task.dedupe_key, safe='')}"
        try:
            answer = self.client.json("PATCH", path, json=self._body(task))
        except SalesforceRequestError as exc:
            return self._rejected(task, exc)
        task_id = (answer or {}).get("id")
        if not task_id:  # 204 without a body (older API versions): read the id back
            state = self.find([task.dedupe_key]).get(task.dedupe_key)
            task_id = state.crm_task_id if state else None
        if not task_id:
            return WriteResult(
                crm_id=None,
                status="unknown",
                error_code="UPSERT_UNCONFIRMED",
                retriable=True,
                key=task.dedupe_key,
            )
        return WriteResult(crm_id=str(task_id), status="ok", key=task.dedupe_key)

    # -- delete -------------------------------------------------------------------------------

    def delete(self, task_ids: Sequence[str]) -> list[WriteResult]:
        """Delete tasks through sObject Collections, 200 ids per call, one result per id."""
        results: list[WriteResult] = []
        for chunk in chunks(list(task_ids), COLLECTION_SIZE):
            answer = self.client.json(
                "DELETE",
                "composite/sobjects",
                params={"ids": ",".join(chunk), "allOrNone": "false"},
            )
            items = answer if isinstance(answer, list) and len(answer) == len(chunk) else None
            for index, task_id in enumerate(chunk):
                item = items[index] if items is not None else None
                if isinstance(item, dict) and item.get("success"):
                    results.append(WriteResult(crm_id=task_id, status="ok"))
                    continue
                errors = item.get("errors") if isinstance(item, dict) else None
                first = errors[0] if isinstance(errors, list) and errors else {}
                results.append(
                    WriteResult(
                        crm_id=task_id,
                        status="rejected" if item is not None else "unknown",
                        error_code=str(first.get("statusCode") or "DELETE_UNCONFIRMED"),
                        message=redact(str(first.get("message") or "")),
                    )
                )
        return results

    # -- update -------------------------------------------------------------------------------

    def update(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Escalate, comment on or complete tasks in one sObject Collections call per 200."""
        descriptions: dict[str, str | None] = {}
        comment_ids = sorted(
            {t.crm_task_id for t in tasks if t.action == "comment" and t.crm_task_id}
        )
        for chunk in chunks(comment_ids, ID_CHUNK):
            for page in self.client.query_pages(soql.tasks_by_ids(chunk)):
                for record in page.get("records", []):
                    descriptions[str(record["Id"])] = record.get("Description")
        results: list[WriteResult | None] = [None] * len(tasks)
        changes: list[RecordChange] = []
        positions: list[int] = []
        for index, task in enumerate(tasks):
            if not task.crm_task_id:
                results[index] = WriteResult(
                    crm_id=None,
                    status="rejected",
                    error_code="MISSING_TASK_ID",
                    message="no CRM task id to update",
                    key=task.dedupe_key,
                )
                continue
            fields: dict[str, Any] = {}
            if task.action == "escalate":
                fields["Priority"] = PRIORITIES[task.priority]
                if task.owner_id:
                    fields["OwnerId"] = task.owner_id
                if task.subject:
                    fields["Subject"] = task.subject[:255]
            elif task.action == "complete":
                fields["Status"] = self.closed_status()
            elif task.action == "comment":
                fields["Description"] = append_comment(
                    descriptions.get(task.crm_task_id), task.description, task.dedupe_key
                )
            else:  # "create" sent to update: nothing sensible to do
                results[index] = WriteResult(
                    crm_id=task.crm_task_id,
                    status="rejected",
                    error_code="UNSUPPORTED_ACTION",
                    message=f"update_tasks cannot {task.action}",
                    key=task.dedupe_key,
                )
                continue
            changes.append(RecordChange(crm_id=task.crm_task_id, fields=fields))
            positions.append(index)
        if changes:
            written = self.write("Task", changes)
            for index, result in zip(positions, written, strict=True):
                results[index] = result.model_copy(update={"key": tasks[index].dedupe_key})
        return [result for result in results if result is not None]
