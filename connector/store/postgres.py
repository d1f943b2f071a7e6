"""PostgreSQL state store for production: the shared store methods over psycopg 3, imported lazily."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

from connector.errors import ConfigError, ConfigProblem, StoreError, StoreUnavailableError
from connector.redaction import redact, redact_url
from connector.store._db import Cursor
from connector.store.base import SqlStore
from connector.store.migrations import MIGRATIONS, SCHEMA_VERSION

# Serialises concurrent first starts: two processes must not both create the schema.
_MIGRATION_LOCK_KEY = 0x43524D52  # "CRMR"
# A statement waiting this long for a row or table lock fails instead of hanging the run
# (the counterpart of SQLite's busy_timeout).
_LOCK_TIMEOUT = "30s"

log = logging.getLogger("crm_risk.store")


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


# libpq settings a long-running worker needs unless the URL says otherwise: give up connecting
# after a while instead of hanging, and notice a silently dead server (keepalives, TCP only).
_CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)


class _PgConnection:
    """A psycopg connection in the store's dialect (`?` placeholders, dict rows) that reconnects.

    A statement that finds the connection dead raises StoreUnavailableError. The next statement
    outside a transaction opens a new connection (the caller decides how long to back off); inside
    a transaction it never does, because the database already rolled that transaction back and
    carrying on would commit its second half alone.
    """

    def __init__(self, url: str, where: str, *, reconnect: bool) -> None:
        self._psycopg = _psycopg()
        self.url = url
        self.where = where
        self.reconnect = reconnect
        self.in_transaction = False
        self.reconnects = 0
        self.raw: Any = self._connect()

    def _connect(self) -> Any:
        from psycopg.conninfo import conninfo_to_dict
        from psycopg.rows import dict_row

        psycopg = self._psycopg
        given = conninfo_to_dict(self.url)
        extra = {key: value for key, value in _CONNECT_DEFAULTS.items() if key not in given}
        try:
            raw = psycopg.connect(self.url, autocommit=True, row_factory=dict_row, **extra)
            raw.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot connect to the PostgreSQL state store {self.where}: {_first_line(exc)}; "
                "check that the database is up and the URL is right"
            ) from exc
        return raw

    @property
    def dead(self) -> bool:
        """The connection is closed or broken (server restarted, network cut)."""
        return bool(self.raw.closed or self.raw.broken)

    def _usable(self) -> Any:
        if not self.dead:
            return self.raw
        if self.in_transaction or not self.reconnect:
            raise StoreUnavailableError(
                f"lost the connection to the PostgreSQL state store {self.where}; "
                "the transaction in flight was rolled back"
            )
        with contextlib.suppress(Exception):
            self.raw.close()
        self.raw = self._connect()
        self.reconnects += 1
        log.info("reconnected to the state store", extra={"detail": self.where})
        return self.raw

    def _call(self, action: Callable[[Any], Any]) -> Any:
        raw = self._usable()
        try:
            return action(raw)
        except self._psycopg.OperationalError as exc:
            if raw.closed or raw.broken:
                raise StoreUnavailableError(
                    f"lost the connection to the PostgreSQL state store {self.where}: "
                    f"{_first_line(exc)}; nothing after the last commit was kept"
                ) from exc
            raise

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        cursor: Cursor = self._call(lambda raw: raw.execute(_pg_sql(sql), tuple(parameters)))
        return cursor

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        rows = [tuple(row) for row in parameters]

        def run(raw: Any) -> Cursor:
            cursor = raw.cursor()
            cursor.executemany(_pg_sql(sql), rows)
            result: Cursor = cursor
            return result

        cursor: Cursor = self._call(run)
        return cursor

    def script(self, sql: str) -> None:
        """Run SQL as written (no placeholders: psycopg sends it as one simple query)."""
        self._call(lambda raw: raw.execute(sql))

    def begin(self) -> None:
        self.script("BEGIN")
        self.in_transaction = True

    def commit(self) -> None:
        try:
            self.script("COMMIT")
        finally:
            self.in_transaction = False

    def rollback(self) -> None:
        """Roll back; on a dead connection the server has already done so."""
        try:
            if not self.dead:
                self.script("ROLLBACK")
        finally:
            self.in_transaction = False

    def close(self) -> None:
        if not self.raw.closed:
            if not self.dead and self.in_transaction:
                with contextlib.suppress(Exception):
                    self.raw.execute("ROLLBACK")
            self.raw.close()
        self.in_transaction = False


class PostgresStore(SqlStore):
    """The state in a PostgreSQL database; any number of processes may share it."""

    _EXPOSURE_SQL = "(data::jsonb ->> 'open_amount')"

    @staticmethod
    def _json_text(name: str) -> str:
        return f"(data::jsonb ->> '{name}')"

    ROW_LOCK_CLAUSE = " FOR UPDATE OF s SKIP LOCKED"
    _TABLES_SQL = (
        "SELECT table_name AS name FROM information_schema.tables WHERE "
        "table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
    )

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
        self.url = url
        self.path = redact_url(url)
        # A snapshot lives in one open transaction: a new connection could not continue it.
        self._pg = _PgConnection(url, self.path, reconnect=not snapshot)
        # In a snapshot, store transactions become savepoints inside the one open transaction.
        self._snapshot = snapshot
        self._savepoint_open = False
        try:
            super().__init__(self._pg, clock=clock)
            if snapshot:
                self._pg.begin()
            else:
                self._migrate()
        except BaseException:
            # As the SQLite store does: a refused store leaves no connection open.
            self._pg.close()
            raise

    @property
    def reconnects(self) -> int:
        """How often this store opened a new connection after losing one."""
        return self._pg.reconnects

    def _migrate(self) -> None:
        with self._lock:
            self._pg.begin()
            try:
                self._pg.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK_KEY,))
                exists = self._pg.execute("SELECT to_regclass('schema_version') AS t").fetchone()
                version = 0
                if exists["t"] is not None:
                    row = self._pg.execute(
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
                    self._pg.script(schema.read_text())
                    self._pg.script("INSERT INTO schema_version (version) VALUES (1)")
                    version = 1
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for sql in MIGRATIONS[step]:
                        self._pg.script(sql.format(text='TEXT COLLATE "C"'))
                    self._pg.execute("INSERT INTO schema_version (version) VALUES (?)", (step,))
            except BaseException:
                self._pg.rollback()
                raise
            self._pg.commit()

    def _in_transaction(self) -> bool:
        if self._snapshot:
            return self._savepoint_open
        return self._pg.in_transaction

    def _begin(self, *, immediate: bool) -> None:
        if self._snapshot:
            # No table lock here: the snapshot's transaction lives until close, and its lease
            # rows are never committed, so it needs no exclusion against other runs.
            self._pg.script("SAVEPOINT store_tx")
            self._savepoint_open = True
            return
        self._pg.begin()
        if immediate:
            # Like SQLite's BEGIN IMMEDIATE: one lease transaction at a time, so two processes
            # cannot both see a free (or expired) lease and both take it.
            self._pg.script("LOCK TABLE leases IN SHARE ROW EXCLUSIVE MODE")

    def _commit(self) -> None:
        if self._snapshot:
            self._savepoint_open = False
            self._pg.script("RELEASE SAVEPOINT store_tx")
            return
        self._pg.commit()

    def _rollback(self) -> None:
        if self._snapshot:
            self._savepoint_open = False
            if not self._pg.dead:
                self._pg.script("ROLLBACK TO SAVEPOINT store_tx")
                self._pg.script("RELEASE SAVEPOINT store_tx")
            return
        self._pg.rollback()

    def close(self) -> None:
        """Close the connection; a snapshot's transaction is rolled back, never committed."""
        with self._lock:
            self._pg.close()

    def snapshot(self) -> PostgresStore:
        """A store on a second connection inside a transaction that close() rolls back."""
        return PostgresStore(self.url, clock=self.clock, snapshot=True)

    def iter_table(self, table: str, batch: int = 2000) -> Iterator[list[dict[str, Any]]]:
        """Every row of one table, through a server-side cursor so memory stays flat."""
        with self._lock:
            own = not self._in_transaction()
            if own:
                self._pg.begin()
            try:
                cursor = self._pg.raw.cursor(name=f"export_{table}")
                cursor.itersize = batch
                cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - a catalog name
                while rows := cursor.fetchmany(batch):
                    yield [dict(row) for row in rows]
                cursor.close()
            finally:
                if own:
                    self._pg.rollback()

    def after_bulk_load(self) -> None:
        """Move serial sequences (audit ids) past the ids copied in, so new rows do not collide."""
        with self.transaction() as db:
            serials = db.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE "
                "table_schema = current_schema() AND column_default LIKE 'nextval(%'"
            ).fetchall()
            for serial in serials:
                table, column = serial["table_name"], serial["column_name"]
                db.execute(
                    "SELECT setval(pg_get_serial_sequence(?, ?), "  # noqa: S608 - catalog names
                    f'(SELECT COALESCE(MAX("{column}"), 0) + 1 FROM "{table}"), false)',
                    (table, column),
                )
