"""PostgreSQL state store for production: the shared store methods over psycopg 3, imported lazily."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

from connector.errors import ConfigError, ConfigProblem, StoreError
from connector.redaction import redact, redact_url
from connector.store.base import MIGRATIONS, SCHEMA_VERSION, Cursor, SqlStore

# Serialises concurrent first starts: two processes must not both create the schema.
_MIGRATION_LOCK_KEY = 0x43524D52  # "CRMR"
# A statement waiting this long for a row or table lock fails instead of hanging the run
# (the counterpart of SQLite's busy_timeout).
_LOCK_TIMEOUT = "30s"


def _psycopg() -> Any:
    try:
        import psycopg  # optional: only postgresql:// URLs need it
    except ImportError as exc:
        raise ConfigError(
            [
                ConfigProblem(
                    "[store] url",
                    "a postgresql:// URL needs the psycopg driver, which is not installed",
                    "pip install 'crm-risk-connector[postgres]'",
                )
            ]
        ) from exc
    return psycopg


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    # The store's SQL has no `?` or `%` inside string literals, so a plain replace is exact.
    return sql.replace("%", "%%").replace("?", "%s")


class _PgConnection:
    """A psycopg connection that speaks the store's dialect: `?` placeholders, dict rows."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        cursor: Cursor = self.raw.execute(_pg_sql(sql), tuple(parameters))
        return cursor

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self.raw.cursor()
        cursor.executemany(_pg_sql(sql), [tuple(row) for row in parameters])
        result: Cursor = cursor
        return result


class PostgresStore(SqlStore):
    """The state in a PostgreSQL database; any number of processes may share it."""

    _EXPOSURE_SQL = "(data::jsonb ->> 'open_amount')"

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] | None = None,
        snapshot: bool = False,
    ) -> None:
        """Connect to `url` and migrate the schema (or, for a snapshot, open a throw-away transaction).

        Args:
            url: a libpq URL, `postgresql://user@host:port/dbname` (socket dirs via `?host=`).
            clock: time source for leases and timestamps.
            snapshot: open a never-committed transaction that every `transaction()` joins.

        Raises:
            ConfigError: psycopg is not installed.
            StoreError: the database is unreachable or has a newer schema.
        """
        psycopg = _psycopg()
        from psycopg.rows import dict_row

        self.url = url
        self.path = redact_url(url)
        try:
            raw = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the PostgreSQL state store {self.path}: "
                f"{redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)}"
            ) from exc
        self._raw = raw
        self._transaction_status = psycopg.pq.TransactionStatus
        # In a snapshot, store transactions become savepoints inside the one open transaction.
        self._snapshot = snapshot
        self._savepoint_open = False
        super().__init__(_PgConnection(raw), clock=clock)
        raw.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
        if snapshot:
            raw.execute("BEGIN")
        else:
            self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self._raw.execute("BEGIN")
            try:
                self._raw.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
                exists = self._raw.execute("SELECT to_regclass('schema_version') AS t").fetchone()
                version = 0
                if exists["t"] is not None:
                    row = self._raw.execute(
                        "SELECT max(version) AS v FROM schema_version"
                    ).fetchone()
                    version = row["v"] or 0
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"state database {self.path} has schema version {version}, newer than "
                        f"this program's {SCHEMA_VERSION}; upgrade crm-risk-connector"
                    )
                if version < 1:
                    schema = resources.files("connector.store").joinpath("schema.postgres.sql")
                    # No parameters: psycopg sends the script as one simple query.
                    self._raw.execute(schema.read_text())
                    self._raw.execute("INSERT INTO schema_version (version) VALUES (1)")
                    version = 1
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for sql in MIGRATIONS[step]:
                        self._raw.execute(sql.format(text='TEXT COLLATE "C"'))
                    self._raw.execute("INSERT INTO schema_version (version) VALUES (%s)", (step,))
            except BaseException:
                self._raw.execute("ROLLBACK")
                raise
            self._raw.execute("COMMIT")

    def _in_transaction(self) -> bool:
        if self._snapshot:
            return self._savepoint_open
        status = self._raw.info.transaction_status
        return bool(status != self._transaction_status.IDLE)

    def _begin(self, *, immediate: bool) -> None:
        if self._snapshot:
            # No table lock here: the snapshot's transaction lives until close, and its lease
            # rows are never committed, so it needs no exclusion against other runs.
            self._raw.execute("SAVEPOINT store_tx")
            self._savepoint_open = True
            return
        self._raw.execute("BEGIN")
        if immediate:
            # Like SQLite's BEGIN IMMEDIATE: one lease transaction at a time, so two processes
            # cannot both see a free (or expired) lease and both take it.
            self._raw.execute("LOCK TABLE leases IN SHARE ROW EXCLUSIVE MODE")

    def _commit(self) -> None:
        if self._snapshot:
            self._savepoint_open = False
            self._raw.execute("RELEASE SAVEPOINT store_tx")
            return
        self._raw.execute("COMMIT")

    def _rollback(self) -> None:
        if self._snapshot:
            self._savepoint_open = False
            self._raw.execute("ROLLBACK TO SAVEPOINT store_tx")
            self._raw.execute("RELEASE SAVEPOINT store_tx")
            return
        self._raw.execute("ROLLBACK")

    def close(self) -> None:
        """Close the connection; a snapshot's transaction is rolled back, never committed."""
        with self._lock:
            if self._raw.closed:
                return
            if self._raw.info.transaction_status != self._transaction_status.IDLE:
                self._raw.execute("ROLLBACK")
            self._raw.close()

    def snapshot(self) -> PostgresStore:
        """A store on a second connection inside a transaction that close() rolls back."""
        return PostgresStore(self.url, clock=self.clock, snapshot=True)
