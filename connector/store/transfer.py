"""Copy a whole state store to another (SQLite and PostgreSQL either way), verified by row counts and checksums.

Everything the connector knows moves: records, watermarks, assessments, the task ledger, the
audit log, write intents and the run history. What belongs to the processes of the old store
stays behind (run leases, worker heartbeats, the workers' shared schedule, which they rebuild
from the run history). The copy is one transaction on the target and is checked inside it
before it commits: a mismatch leaves the target as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connector.errors import EXIT_CONFIG, StoreError
from connector.store.base import SqlStore, _iso

# Tables that are not copied, and why (shown by `store migrate`).
LEFT_BEHIND: Mapping[str, str] = {
    "leases": "run leases belong to the processes of the old store",
    "workers": "worker heartbeats belong to the processes of the old store",
    "schedule": "workers rebuild the shared schedule from the run history",
    "schema_version": "each store records its own schema version",
}
BATCH = 2000
_MODULUS = 2**128


class TransferRefused(StoreError):
    """The copy would lose or mix data (non-empty target, a run in progress): nothing was written."""

    exit_code = EXIT_CONFIG


@dataclass(frozen=True)
class TableDigest:
    """A table's row count and an order-independent checksum of its rows."""

    table: str
    rows: int
    checksum: str


@dataclass(frozen=True)
class TransferReport:
    """What was copied, table by table, with the digests of both sides."""

    source: list[TableDigest]
    target: list[TableDigest]
    replaced: bool

    @property
    def verified(self) -> bool:
        """Every table arrived with the same row count and checksum."""
        return self.source == self.target

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for `store migrate --json`."""
        target = {digest.table: digest for digest in self.target}
        return {
            "verified": self.verified,
            "replaced_existing_data": self.replaced,
            "tables": [
                {
                    "table": digest.table,
                    "rows": digest.rows,
                    "checksum": digest.checksum,
                    "target_rows": target[digest.table].rows if digest.table in target else None,
                    "target_checksum": (
                        target[digest.table].checksum if digest.table in target else None
                    ),
                }
                for digest in self.source
            ],
            "left_behind": dict(LEFT_BEHIND),
        }


def row_hash(row: Mapping[str, Any]) -> int:
    """A row's hash, the same on both backends (columns by name, values in JSON form)."""
    canonical = json.dumps(sorted(row.items()), separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=16).digest(), "big")


class _Digest:
    def __init__(self) -> None:
        self.rows = 0
        self.total = 0

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.rows += 1
            self.total = (self.total + row_hash(row)) % _MODULUS

    def result(self, table: str) -> TableDigest:
        return TableDigest(table, self.rows, f"{self.total:032x}")


def copied_tables(store: SqlStore) -> list[str]:
    """The tables `store migrate` copies: every table of the store but the ones left behind."""
    return [name for name in store.table_names() if name not in LEFT_BEHIND]


def digest_store(store: SqlStore) -> list[TableDigest]:
    """Row counts and checksums of every copied table."""
    digests = []
    for table in copied_tables(store):
        digest = _Digest()
        for rows in store.iter_table(table, BATCH):
            digest.add(rows)
        digests.append(digest.result(table))
    return digests


def _count(store: SqlStore, table: str) -> int:
    with store.transaction() as db:
        row = db.execute(f'SELECT COUNT(*) AS n FROM "{table}"').fetchone()  # noqa: S608 - a catalog name
    return int(row["n"])


def _live(store: SqlStore, table: str, column: str) -> list[str]:
    now = _iso(store.now())
    with store.transaction() as db:
        rows = db.execute(
            f'SELECT "{column}" AS name FROM "{table}" WHERE expires_at > ?',  # noqa: S608 - fixed names
            (now,),
        ).fetchall()
    return sorted(str(row["name"]) for row in rows)


def _refuse_unsafe(source: SqlStore, target: SqlStore, *, force: bool) -> bool:
    """Raise TransferRefused when copying now could lose data; returns whether the target has data."""
    running = _live(source, "leases", "connection")
    if running:
        raise TransferRefused(
            f"a run is in progress on the source store ({', '.join(running)} holds a live lease): "
            "stop `crm-risk run` and any `crm-risk sync`, then migrate"
        )
    in_use = _live(target, "workers", "worker_id") + _live(target, "leases", "holder")
    if in_use:
        raise TransferRefused(
            f"the target store is in use ({', '.join(sorted(set(in_use)))}): stop its workers first"
        )
    filled = [table for table in copied_tables(target) if _count(target, table)]
    if filled and not force:
        raise TransferRefused(
            f"the target store is not empty ({', '.join(filled)} have rows): "
            "choose an empty database, or pass --force to replace what it holds"
        )
    return bool(filled)


def _batches(source: SqlStore, table: str, digest: _Digest) -> Iterator[list[dict[str, Any]]]:
    for rows in source.iter_table(table, BATCH):
        digest.add(rows)
        yield rows


def copy_store(source: SqlStore, target: SqlStore, *, force: bool = False) -> TransferReport:
    """Copy every table of `source` into `target`, and verify the copy before committing it.

    Args:
        source: the store to copy (left unchanged).
        target: the store to fill; must be empty unless `force`.
        force: replace whatever the target holds.

    Returns:
        The digests of both sides (equal, or the copy would not have committed).

    Raises:
        TransferRefused: the target is not empty (without force) or in use, or a run is in
            progress on the source.
        StoreError: the copy did not match; the target was left as it was.
    """
    replaced = _refuse_unsafe(source, target, force=force)
    source_tables = copied_tables(source)
    missing = sorted(set(source_tables) - set(target.table_names()))
    if missing:
        raise StoreError(f"the target store lacks the tables {', '.join(missing)}")
    source_digests: list[TableDigest] = []
    with target.transaction() as db:
        if replaced:
            for table in target.table_names():
                if table != "schema_version":
                    db.execute(f'DELETE FROM "{table}"')  # noqa: S608 - a catalog name
        for table in source_tables:
            digest = _Digest()
            for rows in _batches(source, table, digest):
                columns = list(rows[0])
                names = ", ".join(f'"{column}"' for column in columns)
                marks = ", ".join("?" for _ in columns)
                db.executemany(
                    f'INSERT INTO "{table}" ({names}) VALUES ({marks})',  # noqa: S608 - catalog names
                    [[row[column] for column in columns] for row in rows],
                )
            source_digests.append(digest.result(table))
        # Checked inside the transaction: a mismatch rolls the whole copy back.
        target_digests = digest_store(target)
        if target_digests != source_digests:
            differing = [
                theirs.table
                for ours, theirs in zip(source_digests, target_digests, strict=False)
                if ours != theirs
            ]
            raise StoreError(
                f"the copy does not match the source in {', '.join(differing) or 'its tables'}; "
                "nothing was written to the target"
            )
    target.after_bulk_load()
    return TransferReport(source_digests, target_digests, replaced)


__all__ = [
    "LEFT_BEHIND",
    "TableDigest",
    "TransferRefused",
    "TransferReport",
    "copied_tables",
    "copy_store",
    "digest_store",
    "row_hash",
]
