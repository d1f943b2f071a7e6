"""The state store's one implementation: every table group, written once over the _db seam."""

from __future__ import annotations

from connector.store.history import HistoryTables
from connector.store.kv import KvTables
from connector.store.quarantine import QuarantineTables
from connector.store.records import RecordTables
from connector.store.tasks import TaskTables
from connector.store.writes import WriteTables


class SqlStore(KvTables, RecordTables, WriteTables, QuarantineTables, TaskTables, HistoryTables):
    """Every store method, in SQL both SQLite and PostgreSQL accept.

    Each table group (`kv`, `records`, `writes`, `quarantine`, `tasks`, `history`) is a class
    over `StoreCore` in its own module; this class joins them into the one store API. Backends
    supply the connection (`?` placeholders, rows readable by column name) and a few hooks:
    `_begin`, `_commit`, `_rollback`, `_in_transaction`, `_EXPOSURE_SQL`, `_json_text`,
    `snapshot` and `close`.
    """

    def snapshot(self) -> SqlStore:
        """A throw-away copy, for dry runs that must not change the real state."""
        raise NotImplementedError
