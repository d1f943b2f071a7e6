"""SQLite state store, the default backend: one file in WAL mode, owner-only permissions."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import datetime
from importlib import resources

from connector.errors import StoreError
from connector.store.base import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SqlStore,
    StoredAccount,
    TaskLedgerEntry,
    dumps,
    loads,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore", "StoredAccount", "TaskLedgerEntry", "dumps", "loads"]


class SqliteStore(SqlStore):
    """One SQLite file in WAL mode; safe to share between threads of one process."""

    def __init__(self, path: str, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = path
        if path != ":memory:" and not os.path.exists(path):
            # Owner-only permissions: the file holds cached tokens and customer data.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=30000")
        self._sqlite = db
        super().__init__(db, clock=clock)
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = self._sqlite.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"state file {self.path} has schema version {version}, newer than this "
                    f"program's {SCHEMA_VERSION}; upgrade crm-risk-connector"
                )
            if version == SCHEMA_VERSION:
                return
            # The write lock first, then the version again: two processes opening a new file
            # at once must not both apply a step (ALTER TABLE is not idempotent).
            self._sqlite.execute("BEGIN IMMEDIATE")
            try:
                version = self._sqlite.execute("PRAGMA user_version").fetchone()[0]
                if version < 1:
                    schema = resources.files("connector.store").joinpath("schema.sql").read_text()
                    for statement in _statements(schema):
                        self._sqlite.execute(statement)
                    version = 1
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for sql in MIGRATIONS[step]:
                        self._sqlite.execute(sql.format(text="TEXT"))
                self._sqlite.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                self._sqlite.execute("ROLLBACK")
                raise
            self._sqlite.execute("COMMIT")

    def _in_transaction(self) -> bool:
        return self._sqlite.in_transaction

    def _begin(self, *, immediate: bool) -> None:
        # Always take the write lock up front: a deferred transaction that reads and then writes
        # fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT, which busy_timeout does
        # not wait out) when another connection (a scheduler thread recording a skipped run, a
        # second process) committed in between. Readers are never blocked in WAL mode.
        del immediate
        self._sqlite.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._sqlite.close()

    def snapshot(self) -> SqliteStore:
        """An in-memory copy, for dry runs that must not change the real state."""
        copy = SqliteStore(":memory:", clock=self.clock)
        with self._lock:
            self._sqlite.backup(copy._sqlite)
        return copy


def _statements(script: str) -> list[str]:
    """A SQL script split into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return [statement for statement in statements if statement.strip(" ;\n")]
