"""Zoho follow-up Tasks: create once by the marker in the description, find, escalate, comment, close."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from adapters._tasks import chunks, create_once, task_rejected
from connector.errors import FatalCrmError, QuotaExhaustedError, RetriableCrmError
from connector.models import TaskAction, TaskPriority, TaskState, WriteResult
from connector.protocol import append_task_comment, find_task_marker, with_task_marker
from connector.redaction import redact

from . import coql
from .client import MAX_WRITE_BATCH, ZohoClient
from .results import match_results
from .settings import ZohoOptions

log = logging.getLogger("crm_risk.zoho")

PRIORITY_VALUES: dict[TaskPriority, str] = {
    TaskPriority.HIGH: "High",
    TaskPriority.NORMAL: "Normal",
    TaskPriority.LOW: "Low",
}
# Zoho's default picklist also has Highest and Lowest [A]; read them back onto our three levels.
_PRIORITY_BACK = {"highest": TaskPriority.HIGH, "lowest": TaskPriority.LOW}
TASK_COLUMNS = ("id", "Description", "Status", "Owner", "Priority", "What_Id")


class ZohoTasks:
    """Task calls for one connection, with the task options of its settings."""

    def __init__(
        self, client: ZohoClient, options: ZohoOptions, sleep: Callable[[float], None]
    ) -> None:
        self.client = client
        self._sleep = sleep
        # Without "trigger": [] every write fires the org's workflows, approvals and blueprints.
        self.trigger = list(options.trigger)
        self.task_parent_module = options.task_parent_module
        self.task_open_status = options.task_open_status
        self.task_closed_status = options.task_closed_status
        self.task_closed_statuses = frozenset(
            options.task_closed_statuses or [self.task_closed_status]
        )
        # "account": COQL on Tasks by What_Id for the accounts we know; "scan": read every task.
        self.lookup: str = options.task_lookup
        self.priority_values = {
            TaskPriority(key): value for key, value in options.task_priority_values.items()
        } or dict(PRIORITY_VALUES)
        self._priority_back = {value.lower(): key for key, value in self.priority_values.items()}
        for value, priority in _PRIORITY_BACK.items():
            self._priority_back.setdefault(value, priority)

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

    def create(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
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
        return self.find({task.dedupe_key: task.account_id or None for task in tasks})

    def send_creates(self, batch: Sequence[TaskAction]) -> list[WriteResult]:
        """One POST /Tasks for the batch; every result "unknown" when the answer was lost."""
        try:
            elements = self._create_once(batch)
        except QuotaExhaustedError:
            raise
        except RetriableCrmError as exc:
            log.warning("Zoho task create answer lost (%s); looking the tasks up", redact(str(exc)))
            elements = None
        return match_results([None] * len(batch), elements, [task.dedupe_key for task in batch])

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

    def find(self, tasks: Mapping[str, str | None]) -> dict[str, TaskState]:
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
        if self.lookup == "scan" or None in accounts:
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
                self.lookup = "scan"
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

    def update(self, tasks: Sequence[TaskAction]) -> list[WriteResult]:
        """Complete (Status), escalate (Priority, Owner) or comment on (append to Description)."""
        results: list[WriteResult | None] = [None] * len(tasks)
        commented = [t.crm_task_id for t in tasks if t.action == "comment" and t.crm_task_id]
        current = self.client.coql_rows("Tasks", ["Description"], commented) if commented else {}
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
            matched = match_results(
                [data["id"] for _, data in batch],
                elements,
                [tasks[index].dedupe_key for index, _ in batch],
            )
            for (index, _), result in zip(batch, matched, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def delete(self, task_ids: Sequence[str]) -> list[WriteResult]:
        """TaskDeleter: DELETE /Tasks?ids=..., 100 per call, one result per id."""
        results: list[WriteResult] = []
        for batch in chunks(list(task_ids), MAX_WRITE_BATCH):
            response = self.client.request("DELETE", "Tasks", params={"ids": ",".join(batch)})
            body = self.client.body(response)
            elements = body.get("data") if isinstance(body, dict) else None
            results.extend(
                match_results(list(batch), elements if isinstance(elements, list) else None)
            )
        return results


__all__ = ["PRIORITY_VALUES", "TASK_COLUMNS", "ZohoTasks"]
