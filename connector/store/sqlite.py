"""SQLite state store, the default backend: one file in WAL mode, owner-only permissions."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from importlib import resources
from types import TracebackType
from typing import Any

from connector.errors import (
    StoreAccessError,
    StoreDamagedError,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
)
from connector.store.base import SqlStore
from connector.store.migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SqliteStore", "integrity_problems"]

log = logging.getLogger("crm_risk.store")


# SQLite result codes (primary codes; extended codes are primary | (n << 8)).
_NOTADB, _CORRUPT, _READONLY, _CANTOPEN, _FULL, _IOERR, _BUSY, _LOCKED, _PERM = (
    26,
    11,
    8,
    14,
    13,
    10,
    5,
    6,
    3,
)


def _translate(exc: sqlite3.Error, path: str) -> StoreError | None:
    """The connector error for a SQLite failure that is about the file, or None."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    detail = str(exc)
    if code in (_NOTADB, _CORRUPT):
        return StoreDamagedError(path, detail)
    if code in (_READONLY, _CANTOPEN, _PERM):
        return StoreAccessError(path, detail)
    if code == _FULL:
        return StoreFullError(path, detail)
    if code == _IOERR:
        return StoreUnavailableError(
            f"disk I/O error on the state file {path} ({detail}): check the disk and free "
            "space; the next run resumes from the last commit"
        )
    if code in (_BUSY, _LOCKED):
        return StoreUnavailableError(
            f"the state file {path} stayed locked by another process for 30 s ({detail}): "
            "try again later"
        )
    return None


class _Translated:
    """Raises the connector error naming the file for a file-level SQLite failure in its block.

    A class, not a generator-based context manager: it wraps every statement, and the
    generator's overhead showed in the profile of a 100,000-account run.
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            error = _translate(exc, self.path)
            if error is not None:
                raise error from exc


class _GuardedCursor:
    """A sqlite3 cursor whose file-level failures become connector errors naming the file."""

    def __init__(self, cursor: sqlite3.Cursor, guard: _Guarded) -> None:
        self._cursor = cursor
        self._guard = guard

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        with self._guard.translated():
            return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        with self._guard.translated():
            return self._cursor.fetchall()

    def fetchmany(self, size: int = 1) -> list[Any]:
        with self._guard.translated():
            return self._cursor.fetchmany(size)

    def __iter__(self) -> Iterator[Any]:
        with self._guard.translated():
            yield from self._cursor


class _Guarded:
    """A sqlite3 connection whose file-level failures (damaged, read-only, full) name the file
    and what to do, instead of surfacing as a bare crash."""

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self.db = db
        self.path = path
        self._translated = _Translated(path)

    def translated(self) -> _Translated:
        return self._translated

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _GuardedCursor:
        with self.translated():
            return _GuardedCursor(self.db.execute(sql, parameters), self)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> _GuardedCursor:
        with self.translated():
            return _GuardedCursor(self.db.executemany(sql, parameters), self)

    def backup(self, target: sqlite3.Connection) -> None:
        with self.translated():
            self.db.backup(target)

    def close(self) -> None:
        with self.translated():
            self.db.close()


def _tighten(path: str) -> None:
    """The state file holds cached tokens and customer data: owner-only, whatever it was."""
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077 == 0:
            continue
        try:
            os.chmod(name, mode & 0o700)
        except OSError as exc:
            log.warning(
                "state file %s is readable by others (mode %04o) and could not be tightened: %s",
                name,
                mode,
                exc.strerror,
            )
            continue
        log.warning(
            "tightened the permissions of state file %s from %04o to %04o (it holds cached "
            "tokens and customer data)",
            name,
            mode,
            mode & 0o700,
        )


class SqliteStore(SqlStore):
    """One SQLite file in WAL mode; safe to share between threads of one process."""

    def __init__(self, path: str, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = path
        if path != ":memory:":
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise StoreAccessError(path, f"its folder {folder} does not exist")
            if not os.path.exists(path):
                # Owner-only permissions: the file holds cached tokens and customer data.
                try:
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
                except OSError as exc:
                    raise StoreAccessError(path, exc.strerror or str(exc)) from exc
            else:
                _tighten(path)
        try:
            raw = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _translate(exc, path) or StoreAccessError(path, str(exc)) from exc
        raw.row_factory = sqlite3.Row
        db = _Guarded(raw, path)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._sqlite = db
            super().__init__(db, clock=clock)
            self._migrate()
        except BaseException:
            raw.close()
            raise

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
                if self._sqlite.in_transaction:
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

    def _rollback(self) -> None:
        # SQLite rolls a transaction back by itself on some errors (SQLITE_FULL, SQLITE_IOERR);
        # a second ROLLBACK would then fail and hide the real error.
        if self._sqlite.in_transaction:
            self._sqlite.execute("ROLLBACK")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._sqlite.close()

    def backup(self, target: str) -> int:
        """Copy the live store into `target` (owner-only), consistent even while runs write.

        SQLite's online backup API copies page by page under its own locks; the copy is written
        beside the target and renamed into place once SQLite's integrity check passes on it.

        Returns:
            The size of the backup in bytes.

        Raises:
            StoreAccessError: the target's folder is not writable.
            StoreDamagedError: the copy failed its integrity check (the store itself is damaged).
        """
        folder = os.path.dirname(os.path.abspath(target))
        partial = os.path.join(folder, f".{os.path.basename(target)}.partial")
        try:
            os.close(os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
            out = sqlite3.connect(partial, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreAccessError(target, getattr(exc, "strerror", None) or str(exc)) from exc
        try:
            with self._lock:
                self._sqlite.backup(out)
        finally:
            out.close()
        problems = integrity_problems(partial)
        if problems:
            os.unlink(partial)
            raise StoreDamagedError(self.path, "; ".join(problems[:3]))
        os.replace(partial, target)
        return os.path.getsize(target)

    def snapshot(self) -> SqliteStore:
        """An in-memory copy, for dry runs that must not change the real state."""
        copy = SqliteStore(":memory:", clock=self.clock)
        with self._lock:
            self._sqlite.backup(copy._sqlite.db)
        return copy


def integrity_problems(path: str) -> list[str]:
    """SQLite's own integrity check of a state file (or a backup of one), opened read-only.

    Returns:
        An empty list when the file is sound; else SQLite's findings (at most 100).

    Raises:
        StoreDamagedError: the file is not a database at all.
        StoreAccessError: the file cannot be opened.
    """
    if not os.path.exists(path):
        raise StoreAccessError(path, "no such file")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise _translate(exc, path) or StoreAccessError(path, str(exc)) from exc
    guarded = _Guarded(db, path)
    try:
        rows = guarded.execute("PRAGMA integrity_check(100)").fetchall()
        findings = [str(row[0]) for row in rows]
        if findings != ["ok"]:
            return findings
        version = int(guarded.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            return ["not a crm-risk state file (no schema version)"]
        return []
    except StoreDamagedError as exc:
        return [str(exc.__cause__ or exc)]
    finally:
        db.close()


def _statements(script: str) -> list[str]:
    """A SQL script split into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return [statement for statement in statements if statement.strip(" ;\n")]
