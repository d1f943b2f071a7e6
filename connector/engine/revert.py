"""Undo one run from the audit log: restore the field values it replaced and close or delete its tasks.

A field is restored only where the CRM still holds what that run wrote: a value a person (or a
later run) changed since stays, and is listed. Tasks the run created are completed (default) or
deleted; tasks it escalated or completed are left as they are. The revert is a run of its own:
it holds the connection's lease, writes through the same adapter, and is audited and kept in the
run history like any sync.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from connector.engine.adoption import STAMP_TOLERANCE, moment
from connector.errors import ConfigError, ConfigProblem
from connector.mapping import FieldMapping
from connector.models import RecordChange, TaskAction
from connector.planning.planner import normalize
from connector.protocol import CrmAdapter, TaskDeleter
from connector.redaction import redact
from connector.store import SqlStore, TaskLedgerEntry

TaskRevert = Literal["complete", "delete"]


@dataclass(frozen=True)
class FieldRestore:
    """One field of one account: what the run wrote, what it replaced, what the CRM holds now."""

    account_id: str
    field: str
    written: Any
    replaced: Any
    current: Any

    @property
    def still_ours(self) -> bool:
        """Whether the CRM still holds the run's value (else a person or a later run changed it)."""
        written, current = moment(self.written), moment(self.current)
        if written is not None and current is not None:
            # Date-times read back cut to the CRM's precision (a second at most).
            return written - STAMP_TOLERANCE <= current <= written
        return bool(normalize(self.field, self.current) == normalize(self.field, self.written))


@dataclass(frozen=True)
class TaskUndo:
    """A task the run created."""

    account_id: str
    rule: str
    task_id: str


@dataclass
class RevertReport:
    """What a revert did (or, in a dry run, would do)."""

    run_id: str
    reverted_run: str
    connection: str
    dry_run: bool
    task_action: TaskRevert
    restored: list[FieldRestore] = field(default_factory=list)
    kept: list[FieldRestore] = field(default_factory=list)
    tasks: list[TaskUndo] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (what `revert --json` prints and the run history keeps)."""

        def row(item: FieldRestore) -> dict[str, Any]:
            return {
                "account_id": item.account_id,
                "field": item.field,
                "written": _jsonable(item.written),
                "restore_to": _jsonable(item.replaced),
                "now_in_crm": _jsonable(item.current),
            }

        return {
            "run_id": self.run_id,
            "reverted_run": self.reverted_run,
            "connection": self.connection,
            "dry_run": self.dry_run,
            "task_action": self.task_action,
            "restored": [row(item) for item in self.restored],
            "kept_changed_since": [row(item) for item in self.kept],
            "tasks": [
                {"account_id": t.account_id, "rule": t.rule, "task_id": t.task_id}
                for t in self.tasks
            ],
            "failed": self.failed,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def plan_revert(
    store: SqlStore, run_id: str
) -> tuple[str, dict[tuple[str, str], tuple[Any, Any]], list[TaskUndo]]:
    """Read what one run changed from the audit log.

    Returns:
        (connection, {(account, field): (value it replaced, value it wrote)}, tasks it created).

    Raises:
        ConfigError: no audited write carries that run id.
    """
    rows = store.audit(run_id=run_id, limit=10_000_000)
    changes: dict[tuple[str, str], tuple[Any, Any]] = {}
    tasks: list[TaskUndo] = []
    connection = ""
    for row in rows:
        connection = row["connection"]
        if row["object"] == "account" and row["action"] == "update" and row["field"]:
            key = (row["record_id"], row["field"])
            first_old = changes[key][0] if key in changes else row["old_value"]
            changes[key] = (first_old, row["new_value"])
        elif row["object"] == "task" and row["action"] == "task_create":
            task_id = (row["new_value"] or {}).get("task_id")
            if task_id:
                tasks.append(TaskUndo(row["record_id"], str(row["field"]), str(task_id)))
    if not connection:
        raise ConfigError(
            [
                ConfigProblem(
                    "RUN_ID",
                    f"no audited CRM write carries run id {run_id!r}",
                    "pick one from `crm-risk status` or `crm-risk audit`",
                )
            ]
        )
    return connection, changes, tasks


def revert_run(
    *,
    run_id: str,
    adapter: CrmAdapter,
    store: SqlStore,
    mapping: FieldMapping,
    dry_run: bool = False,
    task_action: TaskRevert = "complete",
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RevertReport:
    """Undo one run where the CRM still holds what it wrote.

    Args:
        run_id: the run to undo (as in `status` and `audit`).
        adapter: the connection's adapter.
        store: the state store (its audit log says what the run did).
        mapping: the connection's mapping (CRM names and formats).
        dry_run: read the CRM and report, write nothing.
        task_action: complete or delete the tasks the run created.
        now: the clock.

    Returns:
        What was restored, kept (changed since) and closed, and what the CRM refused.

    Raises:
        ConfigError: no audited write carries that run id, or deleting tasks is not supported.
    """
    connection, changes, tasks = plan_revert(store, run_id)
    if task_action == "delete" and tasks and not isinstance(adapter, TaskDeleter):
        raise ConfigError(
            [ConfigProblem("--tasks", "this CRM adapter cannot delete tasks", "use complete")]
        )
    report = RevertReport(
        run_id=f"revert-{now().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",
        reverted_run=run_id,
        connection=connection,
        dry_run=dry_run,
        task_action=task_action,
        tasks=tasks,
    )
    current = _current_values(adapter, mapping, sorted({account for account, _ in changes}))
    for (account, name), (replaced, written) in sorted(changes.items()):
        item = FieldRestore(account, name, written, replaced, current.get(account, {}).get(name))
        (report.restored if item.still_ours else report.kept).append(item)
    if dry_run:
        return report
    _restore_fields(report, adapter, store, mapping)
    _undo_tasks(report, adapter, store)
    return report


def _current_values(
    adapter: CrmAdapter, mapping: FieldMapping, account_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not account_ids:
        return out
    write_fields = mapping.write_fields()
    records = adapter.read_by_ids(
        mapping.crm_object("account"), mapping.read_fields("account"), account_ids
    )
    for raw in records:
        out[raw.crm_id] = {
            name: mapping.crm_value_to_canonical("account", name, raw) for name in write_fields
        }
    return out


def _restore_fields(
    report: RevertReport, adapter: CrmAdapter, store: SqlStore, mapping: FieldMapping
) -> None:
    by_account: dict[str, list[FieldRestore]] = {}
    for item in report.restored:
        by_account.setdefault(item.account_id, []).append(item)
    accounts = sorted(by_account)
    batch = max(1, adapter.capabilities.max_write_batch)
    for start in range(0, len(accounts), batch):
        chunk = accounts[start : start + batch]
        changes = [
            RecordChange(
                crm_id=account,
                fields=mapping.to_crm_values(
                    "account",
                    {item.field: item.replaced for item in by_account[account]},
                    clear_nulls=True,
                ),
            )
            for account in chunk
        ]
        results = adapter.write(mapping.crm_object("account"), changes)
        for account, result in zip(chunk, results, strict=False):
            items = by_account[account]
            if result.status != "ok":
                report.failed.append(
                    {
                        "account_id": account,
                        "error": result.error_code or result.status,
                        "message": redact(result.message),
                    }
                )
                continue
            values = {item.field: item.replaced for item in items}
            with store.transaction():
                # What we now wrote is the baseline, so the next run sees no person's edit.
                store.record_written(report.connection, account, values, report.run_id)
                store.update_crm_values(report.connection, account, values)
                for item in items:
                    store.append_audit(
                        report.run_id,
                        report.connection,
                        obj="account",
                        record_id=account,
                        action="revert",
                        field=item.field,
                        old=_jsonable(item.written),
                        new=_jsonable(item.replaced),
                        cause=f"revert of run {report.reverted_run}",
                        response="ok",
                    )
    for item in report.kept:
        store.append_audit(
            report.run_id,
            report.connection,
            obj="account",
            record_id=item.account_id,
            action="revert_skipped",
            field=item.field,
            old=_jsonable(item.written),
            new=_jsonable(item.current),
            cause=f"revert of run {report.reverted_run}: changed in the CRM since; left as it is",
            response="not sent",
        )


def _undo_tasks(report: RevertReport, adapter: CrmAdapter, store: SqlStore) -> None:
    if not report.tasks:
        return
    if report.task_action == "delete" and isinstance(adapter, TaskDeleter):
        results = adapter.delete_tasks([task.task_id for task in report.tasks])
    else:
        actions = [
            TaskAction(
                action="complete",
                account_id=task.account_id,
                rule=task.rule,
                dedupe_key=_ledger_key(store, report.connection, task),
                crm_task_id=task.task_id,
            )
            for task in report.tasks
        ]
        results = []
        batch = max(1, adapter.capabilities.max_write_batch)
        for start in range(0, len(actions), batch):
            results += adapter.update_tasks(actions[start : start + batch])
    now = store.now()
    for task, result in zip(report.tasks, results, strict=False):
        if result.status != "ok":
            report.failed.append(
                {
                    "task_id": task.task_id,
                    "error": result.error_code or result.status,
                    "message": redact(result.message),
                }
            )
            continue
        entry = store.task_ledger(report.connection, task.account_id).get(task.rule)
        if entry is not None and entry.crm_task_id == task.task_id:
            store.save_ledger(
                report.connection,
                TaskLedgerEntry(
                    **{
                        **entry.__dict__,
                        "state": "closed",
                        "closed_at": now,
                        "meta": {**entry.meta, "reverted_by": report.run_id},
                    }
                ),
            )
        store.append_audit(
            report.run_id,
            report.connection,
            obj="task",
            record_id=task.account_id,
            action=f"task_revert_{report.task_action}",
            field=task.rule,
            new={"task_id": task.task_id},
            cause=f"revert of run {report.reverted_run}",
            response="ok",
        )


def _ledger_key(store: SqlStore, connection: str, task: TaskUndo) -> str:
    entry = store.task_ledger(connection, task.account_id).get(task.rule)
    return entry.dedupe_key if entry is not None else f"{connection}:{task.account_id}:{task.rule}"


__all__ = ["FieldRestore", "RevertReport", "TaskUndo", "plan_revert", "revert_run"]
