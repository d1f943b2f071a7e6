"""Follow-ups in Fxiaoke as sales records (ActiveRecordObj, 销售记录), created at most once per dedupe key.

Creating a sales record is first-party documented (developer.fxiaoke.com .../ActiveRecordObj/add.html);
the "Task Todo API" (任务待办) is listed in the manual but its page could not be read, so it is
not used. A sales record has no state of its own: a custom select field (`task_status_field`,
待处理/已完成, which `fields plan` lists) says whether the follow-up is open. Writes carry no
idempotency key, so our marker line `[crm-risk:<key>]` ends the text and is looked up (`LIKE`)
before a create is resent; a create is never resent blindly.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from adapters._tasks import create_once, task_rejected
from connector.errors import CrmError, FatalCrmError, QuotaExhaustedError, RetriableCrmError
from connector.models import TaskAction, TaskPriority, TaskState, WriteResult
from connector.protocol import (
    TASK_MARKER_PREFIX,
    append_task_comment,
    find_task_marker,
    with_task_marker,
)
from connector.redaction import redact

from .client import FxiaokeClient
from .errors import NOT_EXECUTED
from .settings import FxiaokeOptions
from .values import FxFieldInfo, date_to_ms

log = logging.getLogger("crm_risk.fxiaoke")

PRIORITY_TEXT = {
    TaskPriority.HIGH: "高 high",
    TaskPriority.NORMAL: "中 normal",
    TaskPriority.LOW: "低 low",
}
_PRIORITY_LINE = re.compile(r"^优先级 Priority: (高 high|中 normal|低 low)$", re.MULTILINE)
_PRIORITY_BACK = {text: priority for priority, text in PRIORITY_TEXT.items()}
# Above this many keys one scan of every marked record is cheaper than a look-up per key.
LOOKUP_PER_KEY_UP_TO = 5
CREATE_ATTEMPTS = 4


def _code(error: CrmError) -> int | None:
    return int(error.code) if error.code.lstrip("-").isdigit() else None


class FollowUps:
    """create/find/update/scan/invalidate of follow-up sales records for one connection."""

    def __init__(
        self,
        client: FxiaokeClient,
        options: FxiaokeOptions,
        fields: Callable[[], dict[str, FxFieldInfo]],
        zone: Any,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.options = options
        self._fields = fields
        self.zone = zone
        self.sleep = sleep
        self.obj = options.task_object
        self.text = options.task_text_field
        self.status = options.task_status_field
        # Keys whose create answer was lost: their look-up may fail without stopping the batch.
        self._lost: set[str] = set()

    # -- the record's shape -----------------------------------------------------------------

    def _status_value(self, label: str) -> str:
        info = self._fields().get(self.status)
        if info is None:
            raise FatalCrmError(
                f"{self.obj} has no field {self.status} (跟进状态): create it as a single-select "
                f"with options {self.options.task_open_label}/{self.options.task_done_label} "
                "(`crm-risk fields plan` lists it), or set options.task_status_field",
                code="NO_STATUS_FIELD",
            )
        return str(info.value_of(label))

    def _text(self, task: TaskAction, body: str | None = None) -> str:
        lines = [task.subject] if task.subject else []
        lines.append(f"优先级 Priority: {PRIORITY_TEXT[task.priority]}")
        if body is None:
            body = task.description
        if body:
            lines.append(body)
        return with_task_marker("\n".join(lines), task.dedupe_key)

    def _create_body(self, task: TaskAction) -> dict[str, Any]:
        data: dict[str, Any] = {
            "dataObjectApiName": self.obj,
            self.text: self._text(task),
            self.status: self._status_value(self.options.task_open_label),
        }
        if task.account_id:  # a digest (an owner's or the approvals list) hangs on no account
            data["related_object_data"] = [
                {"describe_api_name": "AccountObj", "id": task.account_id}
            ]
        if task.owner_id:
            data["owner"] = [task.owner_id]
        due = self.options.task_due_field
        if task.due_date is not None and due and due in self._fields():
            data[due] = date_to_ms(task.due_date, self.zone)
        return {
            # Documented top-level flags (add.html): no approval, workflows as configured.
            "triggerApprovalFlow": False,
            "triggerWorkFlow": self.options.trigger_workflow,
            "data": {"object_data": data},
        }

    def _state(self, row: dict[str, Any]) -> TaskState | None:
        text = str(row.get(self.text) or "")
        key = find_task_marker(text)
        if key is None or row.get("_id") is None:
            return None
        owner = row.get("owner")
        found = _PRIORITY_LINE.search(text)
        return TaskState(
            crm_task_id=str(row["_id"]),
            dedupe_key=key,
            is_closed=row.get(self.status) == self._status_value(self.options.task_done_label),
            owner_id=str(owner[0]) if isinstance(owner, list) and owner else None,
            priority=_PRIORITY_BACK.get(found.group(1)) if found else None,
        )

    # -- look-ups ---------------------------------------------------------------------------

    def _projection(self) -> list[str]:
        return ["_id", self.text, self.status, "owner", "create_time"]

    def _marked(
        self, needle: str, extra: Sequence[dict[str, Any]] = ()
    ) -> Iterator[dict[str, Any]]:
        filters = [{"field_name": self.text, "operator": "LIKE", "field_values": [needle]}, *extra]
        for page in self.client.pages_by_id(self.obj, filters, self._projection()):
            yield from page

    def find(self, dedupe_keys: Sequence[str]) -> dict[str, TaskState]:
        """Records carrying our marker for these keys (the oldest wins if a key is found twice)."""
        wanted = set(dedupe_keys)
        if not wanted:
            return {}
        rows: Iterable[dict[str, Any]]
        if len(wanted) <= LOOKUP_PER_KEY_UP_TO:
            rows = (
                row for key in sorted(wanted) for row in self._marked(f"{TASK_MARKER_PREFIX}{key}]")
            )
        else:
            rows = self._marked(TASK_MARKER_PREFIX)
        found: dict[str, tuple[int, TaskState]] = {}
        for row in rows:
            state = self._state(row)
            if state is None or state.dedupe_key not in wanted:
                continue  # LIKE is "contains": a longer key with this prefix is not ours
            created = int(row.get("create_time") or 0)
            held = found.get(state.dedupe_key)
            if held is None or (created, state.crm_task_id) < (held[0], held[1].crm_task_id):
                found[state.dedupe_key] = (created, state)
        return {key: state for key, (_, state) in found.items()}

    def open_states(self) -> Iterator[TaskState]:
        """Every open follow-up carrying a marker (TaskScanner)."""
        done = self._status_value(self.options.task_done_label)
        for row in self._marked(
            TASK_MARKER_PREFIX,
            [{"field_name": self.status, "operator": "N", "field_values": [done]}],
        ):
            state = self._state(row)
            if state is not None and not state.is_closed:
                yield state

    # -- writes -----------------------------------------------------------------------------

    def create(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """At most one record per dedupe key (the shared create-once flow, one record a call)."""
        return create_once(tasks, self, batch_size=1)

    def find_created(self, tasks: Sequence[TaskAction]) -> dict[str, TaskState]:
        """TaskCreateSteps: our records for these actions, by dedupe key.

        Settling a lost answer, a look-up that fails too leaves the create "unknown" (looked up
        again next run, never resent); before any create, such a failure stops the batch.
        """
        keys = [task.dedupe_key for task in tasks]
        settling = bool(keys) and all(key in self._lost for key in keys)
        try:
            return self.find(keys)
        except RetriableCrmError:
            if not settling:
                raise
            return {}
        finally:
            self._lost.difference_update(keys)

    def send_creates(self, batch: Sequence[TaskAction]) -> list[WriteResult]:
        """TaskCreateSteps: one create call per record; resent only where the server says it
        did not run it (Fxiaoke has no idempotency key), otherwise "unknown" and looked up."""
        return [self._send_one(task) for task in batch]

    def _send_one(self, task: TaskAction) -> WriteResult:
        key = task.dedupe_key
        body = self._create_body(task)
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self.client.call(
                    self.client.path_for(self.obj, "create"), body, retry=False
                )
            except QuotaExhaustedError:
                raise
            except RetriableCrmError as exc:
                if _code(exc) in NOT_EXECUTED and attempt < CREATE_ATTEMPTS:
                    # The server refused before running the call: sending again is safe.
                    self.sleep(exc.retry_after or 1.0)
                    continue
                # The record may or may not exist (a lost answer, a timeout): look, never resend.
                log.warning(
                    "Fxiaoke create answer lost (%s); looking the follow-up up", redact(str(exc))
                )
                return self._lost_answer(key, exc.code or "LOST", str(exc))
            except FatalCrmError as exc:
                return WriteResult(
                    crm_id=None, status="rejected", error_code=exc.code, message=str(exc), key=key
                )
            data_id = answer.get("dataId")
            if not data_id:
                return self._lost_answer(
                    key, "NO_DATA_ID", "Fxiaoke confirmed the create without a dataId"
                )
            return WriteResult(crm_id=str(data_id), status="ok", key=key)

    def _lost_answer(self, key: str, code: str, message: str) -> WriteResult:
        self._lost.add(key)
        return WriteResult(
            crm_id=None, status="unknown", error_code=code, message=message, retriable=True, key=key
        )

    def update(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Complete (status), escalate (owner, priority line) or comment on (append) follow-ups."""
        results: list[WriteResult] = []
        for task in tasks:
            if not task.crm_task_id:
                results.append(task_rejected(task, "MISSING_TASK_ID", "no CRM task id"))
                continue
            fields: dict[str, Any] = {}
            if task.action == "complete":
                fields[self.status] = self._status_value(self.options.task_done_label)
            elif task.action in ("escalate", "comment"):
                current = self._current_text(task.crm_task_id)
                if current is None:
                    results.append(task_rejected(task, "NOT_FOUND", "follow-up not found"))
                    continue
                if task.action == "escalate":
                    fields[self.text] = _PRIORITY_LINE.sub(
                        f"优先级 Priority: {PRIORITY_TEXT[task.priority]}", current, count=1
                    )
                    if task.owner_id:
                        fields["owner"] = [task.owner_id]
                else:
                    fields[self.text] = append_task_comment(
                        current, task.description, task.dedupe_key
                    )
            else:
                results.append(task_rejected(task, "UNSUPPORTED", task.action))
                continue
            results.append(self._update_one(task, fields))
        return results

    def _current_text(self, record_id: str) -> str | None:
        rows = self.client.query(
            self.obj,
            filters=[{"field_name": "_id", "operator": "EQ", "field_values": [record_id]}],
            orders=[],
            projection=["_id", self.text],
            limit=1,
        )
        return str(rows[0].get(self.text) or "") if rows else None

    def _update_one(self, task: TaskAction, fields: dict[str, Any]) -> WriteResult:
        body = {
            "triggerApprovalFlow": False,
            "triggerWorkFlow": self.options.trigger_workflow,
            "data": {
                "object_data": {"_id": task.crm_task_id, "dataObjectApiName": self.obj, **fields}
            },
        }
        try:
            self.client.call(self.client.path_for(self.obj, "update"), body)
        except FatalCrmError as exc:
            return task_rejected(task, exc.code, str(exc))
        return WriteResult(crm_id=task.crm_task_id, status="ok", key=task.dedupe_key)

    def invalidate(self, record_ids: Sequence[str]) -> list[WriteResult]:
        """Invalidate (作废) follow-ups: the API deletes only invalidated records, and we never delete."""
        results = []
        for record_id in record_ids:
            body = {"data": {"dataObjectApiName": self.obj, "object_data_id": record_id}}
            try:
                self.client.call(self.client.path_for(self.obj, "invalid"), body)
            except FatalCrmError as exc:
                results.append(
                    WriteResult(
                        crm_id=record_id, status="rejected", error_code=exc.code, message=str(exc)
                    )
                )
                continue
            results.append(WriteResult(crm_id=record_id, status="ok"))
        return results
