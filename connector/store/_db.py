"""The store's SQL seam: the DB-API shape both backends give, transactions, JSON and time helpers."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol

from connector.redaction import json_text


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def dumps(value: Any) -> str:
    """JSON with Decimals as strings and dates in ISO form; sorted keys so equal data hashes equal."""
    # json_text: a lone surrogate in a CRM string is stored escaped instead of aborting the run.
    return json_text(value, default=_default, sort_keys=True, separators=(",", ":"))


def loads(text: str | None) -> Any:
    """Inverse of dumps (Decimals come back as strings; canonical models re-parse them)."""
    return json.loads(text) if text else None


_AUDIT_INSERT = (
    "INSERT INTO audit (run_id, connection, at, object, record_id, action, field, old_value, "
    "new_value, cause, crm_response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Ids per `IN (...)` query: well under SQLite's and PostgreSQL's parameter limits.
_IN_CHUNK = 500


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    @property
    def rowcount(self) -> int:
        """Rows changed by the last statement."""
        ...

    def fetchone(self) -> Any:
        """Next row (a mapping by column name) or None."""
        ...

    def fetchall(self) -> list[Any]:
        """All remaining rows."""
        ...

    def fetchmany(self, size: int = ...) -> list[Any]:
        """Up to `size` further rows."""
        ...

    def __iter__(self) -> Iterator[Any]:
        """Rows one by one."""
        ...


class Connection(Protocol):
    """The part of a DB-API connection the store uses: `?` placeholders, rows by column name."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor:
        """Run one statement."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        """Run one statement for each parameter row."""
        ...


class _Transaction:
    """`with store.transaction() as db`: one atomic unit, joined by nested calls.

    A class rather than a generator-based context manager: every store method opens one, and
    on a 100,000-account run the generator's overhead was a measurable share of the CPU.
    """

    __slots__ = ("_immediate", "_outer", "_store")

    def __init__(self, store: StoreCore, immediate: bool) -> None:
        self._store = store
        self._immediate = immediate
        self._outer = False

    def __enter__(self) -> Connection:
        store = self._store
        store._lock.acquire()
        try:
            if not store._in_transaction():
                store._begin(immediate=self._immediate)
                self._outer = True
        except BaseException:
            store._lock.release()
            raise
        return store._db

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        store = self._store
        try:
            if self._outer:
                if exc is not None:
                    store._audit_rows.clear()
                    store._rollback()
                else:
                    try:
                        store._flush_audit()
                    except BaseException:
                        store._rollback()
                        raise
                    store._commit()
        finally:
            store._lock.release()


class StoreCore:
    """What every table group builds on: the connection, transactions, the clock, dialect hooks.

    Backends supply the connection (`?` placeholders, rows readable by column name) and a few
    hooks: `_begin`, `_commit`, `_rollback`, `_in_transaction`, `_EXPOSURE_SQL`, `_json_text`,
    `snapshot` and `close`.
    """

    # Open amount of an invoice, read from its JSON `data` column.
    _EXPOSURE_SQL = "json_extract(data, '$.open_amount')"
    # Appended to a claim query: row locks that other claimers skip (PostgreSQL), or nothing.
    ROW_LOCK_CLAUSE = ""
    # The store's own tables, for copying a whole store (`store migrate`).
    _TABLES_SQL = (
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )

    def __init__(self, db: Connection, *, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._db = db
        # Audit lines appended inside a transaction, written together just before it commits
        # (one statement for a batch instead of one per line) and before any read.
        self._audit_rows: list[tuple[Any, ...]] = []

    # -- plumbing ---------------------------------------------------------------------------

    def _in_transaction(self) -> bool:
        raise NotImplementedError

    def _begin(self, *, immediate: bool) -> None:
        """Open a transaction; `immediate` takes the write lock at once (lease bookkeeping)."""
        raise NotImplementedError

    def transaction(self, *, immediate: bool = False) -> _Transaction:
        """Run statements atomically; nested calls join the outer transaction."""
        return _Transaction(self, immediate)

    def _commit(self) -> None:
        self._db.execute("COMMIT")

    def _rollback(self) -> None:
        self._db.execute("ROLLBACK")

    def _flush_audit(self) -> None:
        """Write the audit lines waiting in this transaction, in the order they were appended."""
        if self._audit_rows:
            rows, self._audit_rows = self._audit_rows, []
            self._db.executemany(_AUDIT_INSERT, rows)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            self._flush_audit()
            rows: list[Any] = self._db.execute(sql, params).fetchall()
            return rows

    def now(self) -> datetime:
        """The store's clock (injectable for tests)."""
        return self.clock()

    def close(self) -> None:
        """Close the database connection."""
        raise NotImplementedError

    @staticmethod
    def _json_text(name: str) -> str:
        """SQL reading one top-level key of an invoice's JSON `data` as text (dialect hook)."""
        return f"json_extract(data, '$.{name}')"

    # Shared by the table groups that put an account back in line for scoring (a changed
    # invoice, a failed write, a released quarantine).
    @staticmethod
    def _flag_accounts(db: Connection, connection: str, account_ids: Iterable[str]) -> None:
        db.executemany(
            "UPDATE accounts SET needs_scoring = 1 WHERE connection = ? AND crm_id = ?",
            [(connection, account_id) for account_id in account_ids],
        )

    # -- whole tables (store migrate) ---------------------------------------------------------

    def table_names(self) -> list[str]:
        """Every table of the store, by name."""
        return [str(row["name"]) for row in self._query(self._TABLES_SQL)]

    def iter_table(self, table: str, batch: int = 2000) -> Iterator[list[dict[str, Any]]]:
        """Every row of one table (a name from table_names) as dicts, streamed in batches."""
        with self._lock:
            cursor = self._db.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - a catalog name
            while rows := cursor.fetchmany(batch):
                yield [dict(row) for row in rows]

    def after_bulk_load(self) -> None:
        """Bring generated keys past rows inserted with explicit ones (nothing to do in SQLite)."""
