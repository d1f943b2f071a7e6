"""The state store: what the connector knows between runs, behind one open_store(url) entry point."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from connector.errors import StoreMissingError
from connector.store._db import dumps, loads
from connector.store.base import SqlStore
from connector.store.postgres import PostgresStore
from connector.store.records import StoredAccount
from connector.store.sqlite import SqliteStore
from connector.store.tasks import TaskLedgerEntry

__all__ = [
    "PostgresStore",
    "SqlStore",
    "SqliteStore",
    "StoredAccount",
    "TaskLedgerEntry",
    "dumps",
    "loads",
    "open_store",
]


def open_store(
    url: str, *, clock: Callable[[], datetime] | None = None, create: bool = True
) -> SqlStore:
    """Open the store named by `url`: SQLite by default, PostgreSQL for production.

    Args:
        url: a file path, `sqlite:///path`, `:memory:`, or `postgresql://user@host:port/dbname`
            (needs the `postgres` extra: `pip install 'crm-risk-connector[postgres]'`).
        clock: time source for leases and timestamps (tests pass a fake one).
        create: False for commands that only read: a missing SQLite file is an error, not a
            new empty store left behind.

    Returns:
        An open store with the schema migrated to the current version.

    Raises:
        ConfigError: a PostgreSQL URL without the psycopg driver installed.
        StoreError: the database is unreachable or has a newer schema than this program.
        StoreMissingError: `create` is False and there is no SQLite file at the path.
    """
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, clock=clock)
    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    if not create and path != ":memory:" and not os.path.exists(path):
        raise StoreMissingError(path)
    return SqliteStore(path, clock=clock)
