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
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connector.errors import EXIT_CONFIG, LockHeldError, StoreError
from connector.store._db import _iso
from connector.store.base import SqlStore
from connector.store.holders import holder_id

# Tables that are not copied, and why (shown by `store migrate`).
LEFT_BEHIND: Mapping[str, str] = {
    "leases": "run leases belong to the processes of the old store",
    "workers": "worker heartbeats belong to the processes of the old store",
    "schedule": "workers rebuild the shared schedule from the run history",
    "schema_version": "each store records its own schema version",
}
BATCH = 2000
# The source's run leases are held for the copy and renewed as it goes.
MIGRATE_LEASE_SECONDS = 300
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
    return _digests(store)


def _digests(store: SqlStore) -> list[TableDigest]:
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


def refuse_same_store(source: SqlStore, target: SqlStore) -> None:
    """Raise TransferRefused when both handles reach one database, however the URLs are spelled.

    A path can be written many ways (relative, through a symlink, `sqlite:///` or not, a second
    host name for one PostgreSQL server); a copy onto itself with --force would empty the store.
    So the check is by content: a random key written to the source, looked for in the target.
    """
    probe = f"store_migrate_probe:{secrets.token_hex(8)}"
    source.set_value(probe, probe)
    try:
        same = target.get_value(probe) == probe
    finally:
        source.delete_values([probe])
    if same:
        raise TransferRefused(
            "--from and --to are the same store (one database reached by two spellings of its "
            "URL or path): nothing was copied; name a different target"
        )


def _connections(store: SqlStore) -> list[str]:
    names: set[str] = set()
    with store.transaction() as db:
        for table in ("runs", "watermarks", "accounts", "leases"):
            rows = db.execute(f'SELECT DISTINCT connection FROM "{table}"').fetchall()  # noqa: S608 - fixed names
            names.update(str(row["connection"]) for row in rows)
    return sorted(names)


class _SourceLeases:
    """Every connection's run lease on the source, held while it is copied.

    A `crm-risk run` service between two runs holds no lease; without these, its next run could
    start in the middle of the copy and the target would get half of it. With them held, such a
    run stops at once with "already running" (exit 75) and tries again after the copy. They are
    renewed as the copy goes on, so a migrate that dies leaves them for a lease time at most (on
    this host, where its process is seen to be gone, not even that).
    """

    def __init__(self, source: SqlStore) -> None:
        self.source = source
        self.holder = f"{holder_id().rsplit(':', 1)[0]}:store-migrate-{secrets.token_hex(4)}"
        self.held: list[str] = []
        self.renewed = 0.0

    def __enter__(self) -> _SourceLeases:
        try:
            for name in _connections(self.source):
                try:
                    self.source.acquire_lease(name, self.holder, MIGRATE_LEASE_SECONDS)
                except LockHeldError as exc:
                    raise TransferRefused(
                        f"a run is in progress on the source store ({exc}): stop `crm-risk run` "
                        "and any `crm-risk sync`, then migrate"
                    ) from None
                self.held.append(name)
        except BaseException:
            self.__exit__()
            raise
        self.renewed = time.monotonic()
        return self

    def renew(self) -> None:
        """Keep the leases (at most every tenth of their lifetime)."""
        if time.monotonic() - self.renewed < MIGRATE_LEASE_SECONDS / 10:
            return
        for name in self.held:
            if not self.source.heartbeat_lease(name, self.holder, MIGRATE_LEASE_SECONDS):
                raise StoreError(f"lost the run lease of {name} on the source while copying it")
        self.renewed = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        for name in self.held:
            self.source.release_lease(name, self.holder)
        self.held = []


def _refuse_unsafe(source: SqlStore, target: SqlStore, *, force: bool) -> bool:
    """Raise TransferRefused when copying now could lose data; returns whether the target has data."""
    services = _live(source, "workers", "worker_id")
    if services:
        raise TransferRefused(
            f"a `crm-risk run` service is using the source store ({', '.join(services)}): stop "
            "it, then migrate"
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
        TransferRefused: source and target are one database, the target is not empty
            (without force) or in use, or a run or a `crm-risk run` service is live on the
            source.
        StoreError: the copy did not match; the target was left as it was.
    """
    refuse_same_store(source, target)
    with _SourceLeases(source) as leases:
        return _copy(source, target, leases, force=force)


def _copy(
    source: SqlStore, target: SqlStore, leases: _SourceLeases, *, force: bool
) -> TransferReport:
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
                leases.renew()
                columns = list(rows[0])
                names = ", ".join(f'"{column}"' for column in columns)
                marks = ", ".join("?" for _ in columns)
                db.executemany(
                    f'INSERT INTO "{table}" ({names}) VALUES ({marks})',  # noqa: S608 - catalog names
                    [[row[column] for column in columns] for row in rows],
                )
            source_digests.append(digest.result(table))
        # The copy is of one state of the source: read again, it must still be what was copied
        # (a writer that ignored the leases, e.g. a connection the source had never run).
        if _digests(source) != source_digests:
            raise StoreError(
                "the source store changed while it was copied (a run wrote to it); nothing was "
                "written to the target: stop every `crm-risk run` and `crm-risk sync`, then migrate"
            )
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
    "refuse_same_store",
    "row_hash",
]
