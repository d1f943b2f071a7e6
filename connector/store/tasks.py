"""The task ledger: one row per (account, rule) episode, and the task lines of the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.store._db import StoreCore, _iso, dumps, loads


@dataclass(frozen=True)
class TaskLedgerEntry:
    """The connector's record of the follow-up task for one (account, rule)."""

    account_id: str
    rule: str
    episode: int
    state: str
    dedupe_key: str
    crm_task_id: str | None
    level: int
    priority: str | None
    owner_id: str | None
    meta: dict[str, Any]
    opened_at: datetime
    closed_at: datetime | None


class TaskTables(StoreCore):
    """The `task_ledger` table."""

    # -- task ledger ------------------------------------------------------------------------

    def _ledger_entry(self, row: Any) -> TaskLedgerEntry:
        return TaskLedgerEntry(
            account_id=row["account_id"],
            rule=row["rule"],
            episode=row["episode"],
            state=row["state"],
            dedupe_key=row["dedupe_key"],
            crm_task_id=row["crm_task_id"],
            level=row["level"],
            priority=row["priority"],
            owner_id=row["owner_id"],
            meta=loads(row["meta"]) or {},
            opened_at=datetime.fromisoformat(row["opened_at"]),
            closed_at=datetime.fromisoformat(row["closed_at"]) if row["closed_at"] else None,
        )

    def task_ledger(self, connection: str, account_id: str) -> dict[str, TaskLedgerEntry]:
        """The ledger rows of one account, by rule."""
        rows = self._query(
            "SELECT * FROM task_ledger WHERE connection = ? AND account_id = ?",
            (connection, account_id),
        )
        return {row["rule"]: self._ledger_entry(row) for row in rows}

    def open_tasks(self, connection: str) -> list[TaskLedgerEntry]:
        """Every task the ledger holds open."""
        rows = self._query(
            "SELECT * FROM task_ledger WHERE connection = ? AND state = 'open' ORDER BY account_id, rule",
            (connection,),
        )
        return [self._ledger_entry(row) for row in rows]

    def ledger_is_empty(self, connection: str) -> bool:
        """Whether the task ledger knows no task of this connection (a new or emptied store)."""
        rows = self._query("SELECT 1 FROM task_ledger WHERE connection = ? LIMIT 1", (connection,))
        return not rows

    def accounts_with_open_tasks(self, connection: str) -> set[str]:
        """Accounts whose open tasks must be re-evaluated even when their data did not change."""
        rows = self._query(
            "SELECT DISTINCT account_id FROM task_ledger WHERE connection = ? AND state = 'open'",
            (connection,),
        )
        return {row["account_id"] for row in rows}

    def save_ledger(self, connection: str, entry: TaskLedgerEntry) -> None:
        """Insert or replace the ledger row of (account, rule)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO task_ledger (connection, account_id, rule, episode, state, dedupe_key, "
                "crm_task_id, level, priority, owner_id, meta, opened_at, closed_at) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection, account_id, rule) DO UPDATE "
                "SET episode = excluded.episode, state = excluded.state, dedupe_key = excluded.dedupe_key, "
                "crm_task_id = excluded.crm_task_id, level = excluded.level, priority = excluded.priority, "
                "owner_id = excluded.owner_id, meta = excluded.meta, opened_at = excluded.opened_at, "
                "closed_at = excluded.closed_at",
                (
                    connection,
                    entry.account_id,
                    entry.rule,
                    entry.episode,
                    entry.state,
                    entry.dedupe_key,
                    entry.crm_task_id,
                    entry.level,
                    entry.priority,
                    entry.owner_id,
                    dumps(entry.meta),
                    _iso(entry.opened_at),
                    _iso(entry.closed_at) if entry.closed_at else None,
                ),
            )

    def task_ledger_rows(self, connection: str) -> list[TaskLedgerEntry]:
        """Every ledger row (open and the last closed episode per account and rule)."""
        rows = self._query(
            "SELECT * FROM task_ledger WHERE connection = ? ORDER BY account_id, rule",
            (connection,),
        )
        return [self._ledger_entry(row) for row in rows]

    def task_audit(self, connection: str, since: datetime) -> list[dict[str, Any]]:
        """Task lines of the audit log since `since`, oldest first (episode history)."""
        rows = self._query(
            "SELECT id, run_id, at, record_id, action, field, new_value FROM audit WHERE "
            "connection = ? AND object = 'task' AND at >= ? ORDER BY id",
            (connection, _iso(since)),
        )
        return [{**dict(row), "new_value": loads(row["new_value"])} for row in rows]
