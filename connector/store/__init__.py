"""The state store: what the connector knows between runs, behind one open_store(url) entry point."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from connector.errors import ConfigError, ConfigProblem
from connector.store.sqlite import SqliteStore, StoredAccount, TaskLedgerEntry, dumps, loads

__all__ = ["SqliteStore", "StoredAccount", "TaskLedgerEntry", "dumps", "loads", "open_store"]


def open_store(url: str, *, clock: Callable[[], datetime] | None = None) -> SqliteStore:
    """Open the store named by `url`: a SQLite path (or sqlite:///path) is the default backend.

    Args:
        url: a file path, `sqlite:///path`, or `:memory:`.
        clock: time source for leases and timestamps (tests pass a fake one).

    Returns:
        An open store with the schema migrated to the current version.

    Raises:
        ConfigError: for a URL scheme this build cannot open.
    """
    if url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            [
                ConfigProblem(
                    "[store] url",
                    "the PostgreSQL backend is not available in this version",
                    "use a SQLite file path for now",
                )
            ]
        )
    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SqliteStore(path, clock=clock)
