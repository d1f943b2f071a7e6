"""Quarantined input records: kept out of scoring with their reason, holding their account."""

from __future__ import annotations

from typing import Any

from connector.store._db import StoreCore, _iso


class QuarantineTables(StoreCore):
    """The `quarantine` table."""

    def quarantine(
        self,
        connection: str,
        obj: str,
        record_id: str,
        reason: str,
        run_id: str,
        *,
        account_id: str | None = None,
        name: str = "",
        rule: str = "",
        field: str = "",
        value: str = "",
    ) -> bool:
        """Keep an invalid input record out of scoring, with the reason; hold its account.

        Returns:
            True when this is news: the record was not quarantined before for the same rule,
            field and value (a record read again unchanged is a known hold, not a new failure).
        """
        now = _iso(self.now())
        with self.transaction() as db:
            known = db.execute(
                "SELECT rule, field, value FROM quarantine WHERE connection = ? AND object = ? "
                "AND record_id = ?",
                (connection, obj, record_id),
            ).fetchone()
            db.execute(
                "INSERT INTO quarantine (connection, object, record_id, reason, run_id, at, "
                "account_id, name, rule, field, value, first_seen) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection, object, record_id) "
                "DO UPDATE SET reason = excluded.reason, run_id = excluded.run_id, at = excluded.at, "
                "account_id = excluded.account_id, name = excluded.name, rule = excluded.rule, "
                "field = excluded.field, value = excluded.value",
                (
                    connection,
                    obj,
                    record_id,
                    reason,
                    run_id,
                    now,
                    account_id,
                    name,
                    rule,
                    field,
                    value,
                    now,
                ),
            )
        return known is None or (known["rule"], known["field"], known["value"]) != (
            rule,
            field,
            value,
        )

    def release_quarantine(self, connection: str, obj: str, record_id: str) -> None:
        """A previously invalid record is valid (or gone); its account is scored again once free."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT account_id FROM quarantine WHERE connection = ? AND object = ? AND "
                "record_id = ?",
                (connection, obj, record_id),
            ).fetchone()
            if row is None:
                return
            db.execute(
                "DELETE FROM quarantine WHERE connection = ? AND object = ? AND record_id = ?",
                (connection, obj, record_id),
            )
            if row["account_id"]:
                self._flag_accounts(db, connection, [row["account_id"]])

    def quarantined(self, connection: str | None = None) -> list[dict[str, Any]]:
        """Invalid records with their reasons, the account each holds, and first/last seen."""
        where, params = ("WHERE connection = ? ", (connection,)) if connection else ("", ())
        rows = self._query(
            f"SELECT * FROM quarantine {where}ORDER BY connection, object, record_id",  # noqa: S608 - fixed fragment
            params,
        )
        return [{**dict(row), "last_seen": row["at"]} for row in rows]

    def count_quarantined(self, connection: str) -> int:
        """How many records are in quarantine."""
        rows = self._query(
            "SELECT COUNT(*) AS n FROM quarantine WHERE connection = ?", (connection,)
        )
        return int(rows[0]["n"])

    def held_accounts(self, connection: str) -> dict[str, list[dict[str, Any]]]:
        """Accounts held by quarantined records, with those records, by account id."""
        held: dict[str, list[dict[str, Any]]] = {}
        for row in self.quarantined(connection):
            if row["account_id"]:
                held.setdefault(str(row["account_id"]), []).append(row)
        return held
