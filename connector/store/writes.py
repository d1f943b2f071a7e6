"""What became of our writes: values the CRM confirmed, writes awaiting retry, refused fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connector.store._db import StoreCore, _iso, dumps, loads


class WriteTables(StoreCore):
    """The `last_written`, `failed_writes` and `field_blocks` tables."""

    # -- last written values ----------------------------------------------------------------

    def last_written(self, connection: str, account_id: str) -> dict[str, Any]:
        """What the CRM confirmed we wrote, per canonical field."""
        rows = self._query(
            "SELECT field, value FROM last_written WHERE connection = ? AND account_id = ?",
            (connection, account_id),
        )
        return {row["field"]: loads(row["value"]) for row in rows}

    def record_written(
        self, connection: str, account_id: str, values: Mapping[str, Any], run_id: str
    ) -> None:
        """Store confirmed values as the new baseline for the diff."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO last_written (connection, account_id, field, value, run_id, written_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (connection, account_id, field) DO UPDATE SET "
                "value = excluded.value, run_id = excluded.run_id, written_at = excluded.written_at",
                [
                    (connection, account_id, field, dumps(value), run_id, now)
                    for field, value in values.items()
                ],
            )

    # -- failed writes and quarantine -----------------------------------------------------------

    def record_failed_write(
        self,
        connection: str,
        obj: str,
        record_id: str,
        fields: Sequence[str],
        code: str,
        message: str,
    ) -> None:
        """Keep a rejected or unconfirmed write for the next run."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.execute(
                "INSERT INTO failed_writes (connection, object, record_id, fields, error_code, message, "
                "attempts, first_failed, last_failed) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT "
                "(connection, object, record_id) DO UPDATE SET fields = excluded.fields, error_code = "
                "excluded.error_code, message = excluded.message, attempts = failed_writes.attempts + 1, "
                "last_failed = excluded.last_failed",
                (connection, obj, record_id, dumps(list(fields)), code, message, now, now),
            )
            if obj == "account":
                self._flag_accounts(db, connection, [record_id])

    def clear_failed_write(self, connection: str, obj: str, record_id: str) -> None:
        """A record was written after all."""
        with self.transaction() as db:
            db.execute(
                "DELETE FROM failed_writes WHERE connection = ? AND object = ? AND record_id = ?",
                (connection, obj, record_id),
            )

    def failed_writes(self, connection: str) -> list[dict[str, Any]]:
        """Writes awaiting retry."""
        rows = self._query(
            "SELECT * FROM failed_writes WHERE connection = ? ORDER BY record_id", (connection,)
        )
        return [dict(row) for row in rows]

    # -- refused fields ---------------------------------------------------------------------

    def block_field(
        self,
        connection: str,
        account_id: str,
        field: str,
        value: Any,
        code: str,
        message: str,
        guard: str,
    ) -> None:
        """Remember that the CRM refused `value` for one account's field (not resent until `guard` changes)."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.execute(
                "INSERT INTO field_blocks (connection, account_id, field, value, error_code, "
                "message, guard, attempts, first_failed, last_failed) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT (connection, account_id, field) DO "
                "UPDATE SET value = excluded.value, error_code = excluded.error_code, message = "
                "excluded.message, guard = excluded.guard, attempts = field_blocks.attempts + 1, "
                "last_failed = excluded.last_failed",
                (connection, account_id, field, dumps(value), code, message, guard, now, now),
            )

    def field_blocks(self, connection: str, account_id: str | None = None) -> list[dict[str, Any]]:
        """Refused fields (of one account, or all), with the refused value decoded."""
        if account_id is None:
            rows = self._query(
                "SELECT * FROM field_blocks WHERE connection = ? ORDER BY account_id, field",
                (connection,),
            )
        else:
            rows = self._query(
                "SELECT * FROM field_blocks WHERE connection = ? AND account_id = ? ORDER BY field",
                (connection, account_id),
            )
        return [{**dict(row), "value": loads(row["value"])} for row in rows]

    def clear_field_blocks(
        self, connection: str, *, account_id: str | None = None, field: str | None = None
    ) -> int:
        """Forget refusals (of one account and/or field, or all of the connection)."""
        clauses, params = ["connection = ?"], [connection]
        if account_id is not None:
            clauses.append("account_id = ?")
            params.append(account_id)
        if field is not None:
            clauses.append("field = ?")
            params.append(field)
        with self.transaction() as db:
            cursor = db.execute(
                f"DELETE FROM field_blocks WHERE {' AND '.join(clauses)}",  # noqa: S608 - fixed fragments
                params,
            )
            return int(cursor.rowcount)
