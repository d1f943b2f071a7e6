"""Small keyed state: key/value pairs (tokens), write and task intents, the run lease, watermarks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from connector.errors import LockHeldError
from connector.store._db import StoreCore, _iso, dumps, loads
from connector.store.holders import stale_reason


class KvTables(StoreCore):
    """The `kv`, `leases` and `watermarks` tables."""

    # -- key/value (tokens) -----------------------------------------------------------------

    def get_value(self, key: str) -> str | None:
        """Read a value stored by set_value."""
        rows = self._query("SELECT value FROM kv WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_value(self, key: str, value: str) -> None:
        """Store a small value durably (adapters cache tokens here)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, value, _iso(self.now())),
            )

    def values_under(self, prefix: str) -> dict[str, str]:
        """Every value whose key starts with prefix (one query, for a run's bookkeeping)."""
        rows = self._query(
            "SELECT key, value FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
        return {str(row["key"]): str(row["value"]) for row in rows}

    def delete_values(self, keys: Iterable[str]) -> None:
        """Forget values stored by set_value."""
        with self.transaction() as db:
            db.executemany("DELETE FROM kv WHERE key = ?", [(key,) for key in keys])

    # -- write intents ----------------------------------------------------------------------
    # Before a batch is sent, the values it carries are recorded as an intent. If the process dies
    # after the CRM applied the batch but before the results were recorded, the next run finds the
    # intent and recognises those CRM values as ours, not as a person's edit.

    @staticmethod
    def _intent_key(connection: str, account_id: str) -> str:
        return f"intent:{connection}:{account_id}"

    def record_intents(self, connection: str, intents: Mapping[str, Mapping[str, Any]]) -> None:
        """Remember the values about to be written, per account."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                "SET value = excluded.value, updated_at = excluded.updated_at",
                [
                    (self._intent_key(connection, account_id), dumps(dict(values)), now)
                    for account_id, values in intents.items()
                ],
            )

    def intent(self, connection: str, account_id: str) -> dict[str, Any] | None:
        """Values a crashed run may have written to this account without recording it."""
        value = self.get_value(self._intent_key(connection, account_id))
        return loads(value) if value else None

    def clear_intents(self, connection: str, account_ids: Iterable[str]) -> None:
        """The batch's outcome is recorded; its intents are settled."""
        self.delete_values(self._intent_key(connection, account_id) for account_id in account_ids)

    def task_intents(self, connection: str, keys: Iterable[str]) -> set[str]:
        """Dedupe keys for which a create was sent before (answered or not)."""
        found = set()
        for key in keys:
            if self.get_value(f"task_intent:{connection}:{key}") is not None:
                found.add(key)
        return found

    def record_task_intents(self, connection: str, keys: Iterable[str]) -> None:
        """Remember that creates for these keys are about to be sent."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, '1', ?) ON CONFLICT (key) DO NOTHING",
                [(f"task_intent:{connection}:{key}", now) for key in keys],
            )

    def clear_task_intents(self, connection: str, keys: Iterable[str]) -> None:
        """The CRM's answer for these creates is recorded (the ledger knows the task)."""
        self.delete_values(f"task_intent:{connection}:{key}" for key in keys)

    # -- run lease ----------------------------------------------------------------------------

    def acquire_lease(
        self, connection: str, holder: str, ttl_seconds: float
    ) -> dict[str, str] | None:
        """Take the connection's run lease or raise LockHeldError.

        An expired lease is taken over, and so is one whose holder is a process on this host
        that is gone (SIGKILL, crash): waiting for its expiry would block the connection for
        nothing.

        Returns:
            None, or {"holder", "reason"} of a live-looking lease taken over from a dead process
            (the caller writes the audit line).
        """
        now = self.now()
        takeover: dict[str, str] | None = None
        with self.transaction(immediate=True) as db:
            row = db.execute("SELECT * FROM leases WHERE connection = ?", (connection,)).fetchone()
            held = row is not None and row["holder"] != holder
            if held and datetime.fromisoformat(row["expires_at"]) > now:
                reason = stale_reason(str(row["holder"]))
                if reason is None:
                    raise LockHeldError(connection, row["holder"], row["expires_at"])
                takeover = {"holder": str(row["holder"]), "reason": reason}
            db.execute(
                "INSERT INTO leases (connection, holder, acquired_at, heartbeat_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (connection) DO UPDATE SET holder = excluded.holder, "
                "acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at, "
                "expires_at = excluded.expires_at",
                (
                    connection,
                    holder,
                    _iso(now),
                    _iso(now),
                    _iso(now + timedelta(seconds=ttl_seconds)),
                ),
            )
            # A live run always holds the lease, so a run still marked running now belongs to a
            # process that died (SIGKILL, power loss): close it in the history.
            db.execute(
                "UPDATE runs SET status = 'abandoned', ended_at = ? WHERE connection = ? AND status = 'running'",
                (_iso(now), connection),
            )
        return takeover

    def heartbeat_lease(self, connection: str, holder: str, ttl_seconds: float) -> bool:
        """Extend our lease; False if we lost it (another holder took it after expiry)."""
        now = self.now()
        with self.transaction(immediate=True) as db:
            cursor = db.execute(
                "UPDATE leases SET heartbeat_at = ?, expires_at = ? WHERE connection = ? AND holder = ?",
                (_iso(now), _iso(now + timedelta(seconds=ttl_seconds)), connection, holder),
            )
            return cursor.rowcount == 1

    def release_lease(self, connection: str, holder: str) -> None:
        """Give the lease back (only if we still hold it)."""
        with self.transaction() as db:
            db.execute(
                "DELETE FROM leases WHERE connection = ? AND holder = ?", (connection, holder)
            )

    def lease(self, connection: str) -> dict[str, Any] | None:
        """The current lease row, for status output."""
        rows = self._query("SELECT * FROM leases WHERE connection = ?", (connection,))
        return dict(rows[0]) if rows else None

    # -- watermarks --------------------------------------------------------------------------

    def get_watermark(self, connection: str, obj: str) -> datetime | None:
        """The newest modification time fully committed for (connection, object)."""
        rows = self._query(
            "SELECT watermark FROM watermarks WHERE connection = ? AND object = ?",
            (connection, obj),
        )
        return datetime.fromisoformat(rows[0]["watermark"]) if rows else None

    def set_watermark(self, connection: str, obj: str, watermark: datetime) -> None:
        """Advance the watermark; call only after the rows up to it are committed."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO watermarks (connection, object, watermark, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (connection, object) DO UPDATE SET watermark = excluded.watermark, "
                "updated_at = excluded.updated_at "
                "WHERE excluded.watermark > watermarks.watermark",
                (connection, obj, _iso(watermark), _iso(self.now())),
            )

    def watermarks(self, connection: str) -> dict[str, str]:
        """All watermarks of a connection, for reports."""
        rows = self._query(
            "SELECT object, watermark FROM watermarks WHERE connection = ?", (connection,)
        )
        return {row["object"]: row["watermark"] for row in rows}
