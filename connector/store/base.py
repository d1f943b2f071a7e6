"""The state store's one implementation, written once over a small SQL dialect seam."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol

from connector.errors import LockHeldError
from connector.models import Account, Invoice, RiskAssessment
from connector.redaction import json_text
from connector.store.holders import stale_reason

SCHEMA_VERSION = 4

# Steps from version N-1 to N, in SQL both backends accept; `{text}` is the backend's text type.
# A fresh store applies schema*.sql (version 1), then every step.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # Quarantine holds the account a bad record belongs to, and says what and since when.
        "ALTER TABLE quarantine ADD COLUMN account_id {text}",
        "ALTER TABLE quarantine ADD COLUMN name {text}",
        "ALTER TABLE quarantine ADD COLUMN rule {text}",
        "ALTER TABLE quarantine ADD COLUMN field {text}",
        "ALTER TABLE quarantine ADD COLUMN value {text}",
        "ALTER TABLE quarantine ADD COLUMN first_seen {text}",
        "UPDATE quarantine SET first_seen = at WHERE first_seen IS NULL",
        "CREATE INDEX IF NOT EXISTS quarantine_by_account ON quarantine (connection, account_id)",
        # A field the CRM refused for one account (e.g. a picklist value it lacks): not resent
        # until the mapping or the CRM field changed (`guard` fingerprints both).
        "CREATE TABLE IF NOT EXISTS field_blocks ("
        " connection {text} NOT NULL, account_id {text} NOT NULL, field {text} NOT NULL,"
        " value {text} NOT NULL, error_code {text} NOT NULL, message {text} NOT NULL,"
        " guard {text} NOT NULL, attempts INTEGER NOT NULL DEFAULT 1,"
        " first_failed {text} NOT NULL, last_failed {text} NOT NULL,"
        " PRIMARY KEY (connection, account_id, field))",
    ),
    3: (
        # Workers sharing a PostgreSQL store: who ran each run, when each connection is next
        # due (claimed with FOR UPDATE SKIP LOCKED), and the workers' heartbeats.
        "ALTER TABLE runs ADD COLUMN worker {text}",
        "CREATE TABLE IF NOT EXISTS schedule ("
        " connection {text} PRIMARY KEY, next_due_at {text} NOT NULL,"
        " last_claimed_by {text}, last_claimed_at {text}, updated_at {text} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS schedule_by_due ON schedule (next_due_at)",
        "CREATE TABLE IF NOT EXISTS workers ("
        " worker_id {text} PRIMARY KEY, host {text} NOT NULL, pid INTEGER NOT NULL,"
        " started_at {text} NOT NULL, heartbeat_at {text} NOT NULL, expires_at {text} NOT NULL,"
        " capacity INTEGER NOT NULL, running INTEGER NOT NULL DEFAULT 0)",
    ),
    4: (
        # The book at the end of each run, for the report's movement figures: totals by band
        # (kept 400 days) and each account's band, score and exposure (kept for the newest runs
        # and the first run of each month; see `prune_snapshots`).
        "CREATE TABLE IF NOT EXISTS portfolio_snapshots ("
        " connection {text} NOT NULL, run_id {text} NOT NULL, as_of {text} NOT NULL,"
        " taken_at {text} NOT NULL, home_currency {text}, accounts INTEGER NOT NULL,"
        " summary {text} NOT NULL, detail INTEGER NOT NULL DEFAULT 1,"
        " PRIMARY KEY (connection, run_id))",
        "CREATE INDEX IF NOT EXISTS portfolio_snapshots_by_time"
        " ON portfolio_snapshots (connection, as_of, taken_at)",
        "CREATE TABLE IF NOT EXISTS snapshot_accounts ("
        " connection {text} NOT NULL, run_id {text} NOT NULL, account_id {text} NOT NULL,"
        " band {text} NOT NULL, score DOUBLE PRECISION NOT NULL, exposure {text} NOT NULL,"
        " PRIMARY KEY (connection, run_id, account_id))",
    ),
}

# Snapshot retention: totals of every run for this many days; per-account rows of the newest
# runs and of the first run of each month within the same span (enough for "since the previous
# run" and "over the last 12 months" without keeping a copy of the book per run).
SNAPSHOT_DAYS = 400
SNAPSHOT_RECENT_RUNS = 3


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


@dataclass(frozen=True)
class StoredAccount:
    """An account as stored, with the CRM's current values of the fields we write."""

    account: Account
    crm_values: dict[str, Any]
    needs_scoring: bool
    first_seen: datetime


@dataclass(frozen=True)
class TaskLedgerEntry:
    """The connector's record of the follow-up task for one (account, rule)."""

    account_id: str
    rule: str
    episode: int
    state: str
    dedupe_key: str
    crm_task_id: str | None
    level: int
    priority: str | None
    owner_id: str | None
    meta: dict[str, Any]
    opened_at: datetime
    closed_at: datetime | None


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

    def __init__(self, store: SqlStore, immediate: bool) -> None:
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


class SqlStore:
    """Every store method, in SQL both SQLite and PostgreSQL accept.

    Backends supply the connection (`?` placeholders, rows readable by column name) and a few
    hooks: `_begin`, `_commit`, `_rollback`, `_in_transaction`, `_EXPOSURE_SQL`, `snapshot`
    and `close`.
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

    def snapshot(self) -> SqlStore:
        """A throw-away copy, for dry runs that must not change the real state."""
        raise NotImplementedError

    # -- key/value (tokens) -----------------------------------------------------------------

    def get_value(self, key: str) -> str | None:
        """Read a value stored by set_value."""
        rows = self._query("SELECT value FROM kv WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_value(self, key: str, value: str) -> None:
        """Store a small value durably (adapters cache tokens here)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, value, _iso(self.now())),
            )

    def values_under(self, prefix: str) -> dict[str, str]:
        """Every value whose key starts with prefix (one query, for a run's bookkeeping)."""
        rows = self._query(
            "SELECT key, value FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
        return {str(row["key"]): str(row["value"]) for row in rows}

    def delete_values(self, keys: Iterable[str]) -> None:
        """Forget values stored by set_value."""
        with self.transaction() as db:
            db.executemany("DELETE FROM kv WHERE key = ?", [(key,) for key in keys])

    # -- write intents ----------------------------------------------------------------------
    # Before a batch is sent, the values it carries are recorded as an intent. If the process dies
    # after the CRM applied the batch but before the results were recorded, the next run finds the
    # intent and recognises those CRM values as ours, not as a person's edit.

    @staticmethod
    def _intent_key(connection: str, account_id: str) -> str:
        return f"intent:{connection}:{account_id}"

    def record_intents(self, connection: str, intents: Mapping[str, Mapping[str, Any]]) -> None:
        """Remember the values about to be written, per account."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                "SET value = excluded.value, updated_at = excluded.updated_at",
                [
                    (self._intent_key(connection, account_id), dumps(dict(values)), now)
                    for account_id, values in intents.items()
                ],
            )

    def intent(self, connection: str, account_id: str) -> dict[str, Any] | None:
        """Values a crashed run may have written to this account without recording it."""
        value = self.get_value(self._intent_key(connection, account_id))
        return loads(value) if value else None

    def clear_intents(self, connection: str, account_ids: Iterable[str]) -> None:
        """The batch's outcome is recorded; its intents are settled."""
        self.delete_values(self._intent_key(connection, account_id) for account_id in account_ids)

    def task_intents(self, connection: str, keys: Iterable[str]) -> set[str]:
        """Dedupe keys for which a create was sent before (answered or not)."""
        found = set()
        for key in keys:
            if self.get_value(f"task_intent:{connection}:{key}") is not None:
                found.add(key)
        return found

    def record_task_intents(self, connection: str, keys: Iterable[str]) -> None:
        """Remember that creates for these keys are about to be sent."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, '1', ?) ON CONFLICT (key) DO NOTHING",
                [(f"task_intent:{connection}:{key}", now) for key in keys],
            )

    def clear_task_intents(self, connection: str, keys: Iterable[str]) -> None:
        """The CRM's answer for these creates is recorded (the ledger knows the task)."""
        self.delete_values(f"task_intent:{connection}:{key}" for key in keys)

    # -- run lease ----------------------------------------------------------------------------

    def acquire_lease(
        self, connection: str, holder: str, ttl_seconds: float
    ) -> dict[str, str] | None:
        """Take the connection's run lease or raise LockHeldError.

        An expired lease is taken over, and so is one whose holder is a process on this host
        that is gone (SIGKILL, crash): waiting for its expiry would block the connection for
        nothing.

        Returns:
            None, or {"holder", "reason"} of a live-looking lease taken over from a dead process
            (the caller writes the audit line).
        """
        now = self.now()
        takeover: dict[str, str] | None = None
        with self.transaction(immediate=True) as db:
            row = db.execute("SELECT * FROM leases WHERE connection = ?", (connection,)).fetchone()
            held = row is not None and row["holder"] != holder
            if held and datetime.fromisoformat(row["expires_at"]) > now:
                reason = stale_reason(str(row["holder"]))
                if reason is None:
                    raise LockHeldError(connection, row["holder"], row["expires_at"])
                takeover = {"holder": str(row["holder"]), "reason": reason}
            db.execute(
                "INSERT INTO leases (connection, holder, acquired_at, heartbeat_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (connection) DO UPDATE SET holder = excluded.holder, "
                "acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at, "
                "expires_at = excluded.expires_at",
                (
                    connection,
                    holder,
                    _iso(now),
                    _iso(now),
                    _iso(now + timedelta(seconds=ttl_seconds)),
                ),
            )
            # A live run always holds the lease, so a run still marked running now belongs to a
            # process that died (SIGKILL, power loss): close it in the history.
            db.execute(
                "UPDATE runs SET status = 'abandoned', ended_at = ? WHERE connection = ? AND status = 'running'",
                (_iso(now), connection),
            )
        return takeover

    def heartbeat_lease(self, connection: str, holder: str, ttl_seconds: float) -> bool:
        """Extend our lease; False if we lost it (another holder took it after expiry)."""
        now = self.now()
        with self.transaction(immediate=True) as db:
            cursor = db.execute(
                "UPDATE leases SET heartbeat_at = ?, expires_at = ? WHERE connection = ? AND holder = ?",
                (_iso(now), _iso(now + timedelta(seconds=ttl_seconds)), connection, holder),
            )
            return cursor.rowcount == 1

    def release_lease(self, connection: str, holder: str) -> None:
        """Give the lease back (only if we still hold it)."""
        with self.transaction() as db:
            db.execute(
                "DELETE FROM leases WHERE connection = ? AND holder = ?", (connection, holder)
            )

    def lease(self, connection: str) -> dict[str, Any] | None:
        """The current lease row, for status output."""
        rows = self._query("SELECT * FROM leases WHERE connection = ?", (connection,))
        return dict(rows[0]) if rows else None

    # -- watermarks --------------------------------------------------------------------------

    def get_watermark(self, connection: str, obj: str) -> datetime | None:
        """The newest modification time fully committed for (connection, object)."""
        rows = self._query(
            "SELECT watermark FROM watermarks WHERE connection = ? AND object = ?",
            (connection, obj),
        )
        return datetime.fromisoformat(rows[0]["watermark"]) if rows else None

    def set_watermark(self, connection: str, obj: str, watermark: datetime) -> None:
        """Advance the watermark; call only after the rows up to it are committed."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO watermarks (connection, object, watermark, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (connection, object) DO UPDATE SET watermark = excluded.watermark, "
                "updated_at = excluded.updated_at "
                "WHERE excluded.watermark > watermarks.watermark",
                (connection, obj, _iso(watermark), _iso(self.now())),
            )

    def watermarks(self, connection: str) -> dict[str, str]:
        """All watermarks of a connection, for reports."""
        rows = self._query(
            "SELECT object, watermark FROM watermarks WHERE connection = ?", (connection,)
        )
        return {row["object"]: row["watermark"] for row in rows}

    # -- accounts and invoices ---------------------------------------------------------------

    def upsert_account(
        self,
        connection: str,
        account: Account,
        crm_values: Mapping[str, Any],
        *,
        scoring_view: Account | None = None,
    ) -> bool:
        """Insert or update an account; returns True when its scoring inputs changed.

        `scoring_view` is the account as scoring sees it (e.g. with the reference credit limit
        instead of one we wrote); its hash decides whether the inputs changed.
        """
        data = dumps(account.model_dump(mode="json", exclude={"modified_at"}))
        hashed = (scoring_view or account).model_dump(mode="json", exclude={"modified_at"})
        data_hash = _hash(dumps(hashed))
        values = dumps(dict(crm_values))
        modified = _iso(account.modified_at) if account.modified_at else None
        with self.transaction() as db:
            row = db.execute(
                "SELECT data_hash FROM accounts WHERE connection = ? AND crm_id = ?",
                (connection, account.crm_id),
            ).fetchone()
            changed = row is None or row["data_hash"] != data_hash
            if row is None:
                db.execute(
                    "INSERT INTO accounts (connection, crm_id, data, data_hash, crm_values, modified_at, "
                    "deleted, needs_scoring, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
                    (
                        connection,
                        account.crm_id,
                        data,
                        data_hash,
                        values,
                        modified,
                        int(account.deleted),
                        _iso(self.now()),
                    ),
                )
            else:
                db.execute(
                    "UPDATE accounts SET data = ?, data_hash = ?, crm_values = ?, modified_at = ?, "
                    "deleted = ?, needs_scoring = CASE WHEN ? = 1 THEN 1 ELSE needs_scoring END WHERE connection = ? AND crm_id = ?",
                    (
                        data,
                        data_hash,
                        values,
                        modified,
                        int(account.deleted),
                        int(changed),
                        connection,
                        account.crm_id,
                    ),
                )
        return changed

    def mark_account_deleted(self, connection: str, crm_id: str) -> None:
        """Flag an account deleted in the CRM: it is no longer scored or written."""
        with self.transaction() as db:
            db.execute(
                "UPDATE accounts SET deleted = 1, needs_scoring = 0 WHERE connection = ? AND crm_id = ?",
                (connection, crm_id),
            )

    def upsert_invoice(self, connection: str, invoice: Invoice) -> set[str]:
        """Insert or update an invoice; returns the account ids whose inputs changed (flagged)."""
        return self.upsert_invoices(connection, [invoice])[0]

    def upsert_invoices(
        self, connection: str, invoices: Sequence[Invoice], *, flag: bool = True
    ) -> list[set[str]]:
        """Insert or update invoices, in order; per invoice, the account ids whose inputs changed.

        One query finds the stored hashes of a few hundred invoices and one statement writes the
        changed ones (a chunk of a 1M-invoice read was two statements per row). Those accounts
        are flagged for scoring unless `flag` is False (the caller flags them itself).
        """
        if not invoices:
            return []
        with self.transaction() as db:
            stored: dict[str, tuple[str, str, int]] = {}
            ids = list(dict.fromkeys(invoice.crm_id for invoice in invoices))
            for start in range(0, len(ids), _IN_CHUNK):
                part = ids[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(part))
                for row in db.execute(
                    "SELECT crm_id, data_hash, account_id, deleted FROM invoices "  # noqa: S608 - placeholders only
                    f"WHERE connection = ? AND crm_id IN ({marks})",
                    (connection, *part),
                ).fetchall():
                    stored[row["crm_id"]] = (row["data_hash"], row["account_id"], row["deleted"])
            writes: list[tuple[Any, ...]] = []
            results: list[set[str]] = []
            for invoice in invoices:
                data = dumps(invoice.model_dump(mode="json", exclude={"modified_at"}))
                data_hash = _hash(data)
                deleted = int(invoice.deleted)
                row = stored.get(invoice.crm_id)
                if row is not None and row[0] == data_hash and row[2] == deleted:
                    results.append(set())
                    continue
                modified = _iso(invoice.modified_at) if invoice.modified_at else None
                writes.append(
                    (
                        connection,
                        invoice.crm_id,
                        invoice.account_id,
                        data,
                        data_hash,
                        modified,
                        deleted,
                    )
                )
                affected = {invoice.account_id}
                if row is not None:
                    affected.add(row[1])
                # A second version of the same invoice later in the list compares with this one.
                stored[invoice.crm_id] = (data_hash, invoice.account_id, deleted)
                results.append(affected)
            if writes:
                db.executemany(
                    "INSERT INTO invoices (connection, crm_id, account_id, data, data_hash, modified_at, deleted) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection, crm_id) DO UPDATE SET "
                    "account_id = excluded.account_id, data = excluded.data, data_hash = excluded.data_hash, "
                    "modified_at = excluded.modified_at, deleted = excluded.deleted",
                    writes,
                )
            if flag:
                self._flag_accounts(db, connection, set().union(*results))
            return results

    def mark_invoice_deleted(self, connection: str, crm_id: str) -> set[str]:
        """Flag an invoice deleted in the CRM so it leaves scoring; returns the affected account."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT account_id, deleted FROM invoices WHERE connection = ? AND crm_id = ?",
                (connection, crm_id),
            ).fetchone()
            if row is None or row["deleted"]:
                return set()
            db.execute(
                "UPDATE invoices SET deleted = 1 WHERE connection = ? AND crm_id = ?",
                (connection, crm_id),
            )
            self._flag_accounts(db, connection, {row["account_id"]})
            return {row["account_id"]}

    @staticmethod
    def _flag_accounts(db: Connection, connection: str, account_ids: Iterable[str]) -> None:
        db.executemany(
            "UPDATE accounts SET needs_scoring = 1 WHERE connection = ? AND crm_id = ?",
            [(connection, account_id) for account_id in account_ids],
        )

    def flag_for_scoring(self, connection: str, account_ids: Iterable[str] | None = None) -> None:
        """Mark accounts (all when None) to be rescored in this run."""
        with self.transaction() as db:
            if account_ids is None:
                db.execute(
                    "UPDATE accounts SET needs_scoring = 1 WHERE connection = ? AND deleted = 0",
                    (connection,),
                )
            else:
                self._flag_accounts(db, connection, account_ids)

    def flag_stale_assessments(self, connection: str, as_of: date, policy_fingerprint: str) -> int:
        """Flag accounts scored on another day or under another policy: aging moves with the date."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE accounts SET needs_scoring = 1 WHERE connection = ? AND deleted = 0 AND "
                "needs_scoring = 0 AND NOT EXISTS (SELECT 1 FROM assessments a WHERE "
                "a.connection = accounts.connection AND a.account_id = accounts.crm_id AND "
                "a.as_of = ? AND a.policy_fingerprint = ?)",
                (connection, as_of.isoformat(), policy_fingerprint),
            )
            return cursor.rowcount

    def clear_scoring_flag(self, connection: str, account_ids: Iterable[str]) -> None:
        """The accounts' plans are processed (written, failed or unchanged)."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE accounts SET needs_scoring = 0 WHERE connection = ? AND crm_id = ?",
                [(connection, account_id) for account_id in account_ids],
            )

    def update_crm_values(
        self, connection: str, account_id: str, values: Mapping[str, Any]
    ) -> None:
        """Remember what the CRM now holds after a confirmed write."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT crm_values FROM accounts WHERE connection = ? AND crm_id = ?",
                (connection, account_id),
            ).fetchone()
            if row is None:
                return
            current = loads(row["crm_values"]) or {}
            current.update(loads(dumps(dict(values))))
            db.execute(
                "UPDATE accounts SET crm_values = ? WHERE connection = ? AND crm_id = ?",
                (dumps(current), connection, account_id),
            )

    def _stored_account(self, row: Any) -> StoredAccount:
        account = Account.model_validate_json(row["data"])
        if row["modified_at"]:
            account = account.model_copy(
                update={"modified_at": datetime.fromisoformat(row["modified_at"])}
            )
        return StoredAccount(
            account=account,
            crm_values=loads(row["crm_values"]) or {},
            needs_scoring=bool(row["needs_scoring"]),
            first_seen=datetime.fromisoformat(row["first_seen"]),
        )

    def get_account(self, connection: str, crm_id: str) -> StoredAccount | None:
        """One stored account, or None."""
        rows = self._query(
            "SELECT * FROM accounts WHERE connection = ? AND crm_id = ?", (connection, crm_id)
        )
        return self._stored_account(rows[0]) if rows else None

    # Accounts with a quarantined record are held: not scored, planned or written.
    _NOT_HELD = (
        " AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.connection = accounts.connection"
        " AND q.account_id = accounts.crm_id)"
    )

    def iter_accounts(
        self, connection: str, *, only_flagged: bool = False, exclude_held: bool = False
    ) -> Iterator[StoredAccount]:
        """Live accounts ordered by id, streamed in chunks so memory stays flat."""
        last = ""
        flag = " AND needs_scoring = 1" if only_flagged else ""
        if exclude_held:
            flag += self._NOT_HELD
        while True:
            rows = self._query(
                f"SELECT * FROM accounts WHERE connection = ? AND deleted = 0{flag} AND crm_id > ? "  # noqa: S608 - fixed fragment
                "ORDER BY crm_id LIMIT 1000",
                (connection, last),
            )
            if not rows:
                return
            for row in rows:
                yield self._stored_account(row)
            last = rows[-1]["crm_id"]

    def count_accounts(
        self, connection: str, *, only_flagged: bool = False, exclude_held: bool = False
    ) -> int:
        """How many live accounts (flagged for scoring, when asked; without held ones, when asked)."""
        flag = " AND needs_scoring = 1" if only_flagged else ""
        if exclude_held:
            flag += self._NOT_HELD
        rows = self._query(
            f"SELECT COUNT(*) AS n FROM accounts WHERE connection = ? AND deleted = 0{flag}",  # noqa: S608
            (connection,),
        )
        return int(rows[0]["n"])

    def invoice_account(self, connection: str, crm_id: str) -> str | None:
        """The account a stored invoice belongs to, or None when it is not stored."""
        rows = self._query(
            "SELECT account_id FROM invoices WHERE connection = ? AND crm_id = ?",
            (connection, crm_id),
        )
        return str(rows[0]["account_id"]) if rows else None

    def invoices_for(self, connection: str, account_id: str) -> list[Invoice]:
        """Live invoices of one account."""
        rows = self._query(
            "SELECT data, modified_at FROM invoices WHERE connection = ? AND account_id = ? AND deleted = 0",
            (connection, account_id),
        )
        return [Invoice.model_validate_json(row["data"]) for row in rows]

    def open_exposures(self, connection: str) -> dict[str, Decimal]:
        """Open amount per account over live invoices (for the portfolio context)."""
        totals: dict[str, Decimal] = {}
        with self._lock:
            # A quarantined invoice's stored copy is stale: it counts for no one's exposure.
            cursor = self._db.execute(
                f"SELECT account_id, {self._EXPOSURE_SQL} AS open_amount FROM invoices "  # noqa: S608 - fixed fragment
                "WHERE connection = ? AND deleted = 0 AND NOT EXISTS (SELECT 1 FROM quarantine q "
                "WHERE q.connection = invoices.connection AND q.object = 'invoice' "
                "AND q.record_id = invoices.crm_id)",
                (connection,),
            )
            for row in cursor:
                amount = Decimal(str(row["open_amount"] or "0"))
                if amount > 0:
                    totals[row["account_id"]] = totals.get(row["account_id"], Decimal(0)) + amount
        return totals

    @staticmethod
    def _json_text(name: str) -> str:
        """SQL reading one top-level key of an invoice's JSON `data` as text (dialect hook)."""
        return f"json_extract(data, '$.{name}')"

    def open_invoice_amounts(
        self, connection: str
    ) -> Iterator[tuple[str, Decimal, str | None, Decimal | None, date]]:
        """(account, open amount, currency, record rate, issue date) of every live open invoice.

        Quarantined invoices are left out (their stored copy is stale); the caller converts
        each amount to the home currency before adding anything up.
        """
        fields = ", ".join(
            f"{self._json_text(name)} AS {name}"
            for name in ("open_amount", "currency", "exchange_rate", "issue_date")
        )
        with self._lock:
            rows = self._db.execute(
                f"SELECT account_id, {fields} FROM invoices "  # noqa: S608 - fixed fragments
                "WHERE connection = ? AND deleted = 0 AND NOT EXISTS (SELECT 1 FROM quarantine q "
                "WHERE q.connection = invoices.connection AND q.object = 'invoice' "
                "AND q.record_id = invoices.crm_id)",
                (connection,),
            ).fetchall()
        for row in rows:
            amount = Decimal(str(row["open_amount"] or "0"))
            if amount <= 0:
                continue
            rate = row["exchange_rate"]
            yield (
                row["account_id"],
                amount,
                row["currency"] or None,
                Decimal(str(rate)) if rate not in (None, "") else None,
                date.fromisoformat(str(row["issue_date"])),
            )

    def get_invoice(self, connection: str, crm_id: str) -> Invoice | None:
        """One stored invoice with the CRM's modification stamp it was read at, or None."""
        rows = self._query(
            "SELECT data, modified_at FROM invoices WHERE connection = ? AND crm_id = ?",
            (connection, crm_id),
        )
        if not rows:
            return None
        invoice = Invoice.model_validate_json(rows[0]["data"])
        if rows[0]["modified_at"]:
            invoice = invoice.model_copy(
                update={"modified_at": datetime.fromisoformat(rows[0]["modified_at"])}
            )
        return invoice

    def count_invoices(self, connection: str) -> int:
        """How many live invoices are stored."""
        rows = self._query(
            "SELECT COUNT(*) AS n FROM invoices WHERE connection = ? AND deleted = 0", (connection,)
        )
        return int(rows[0]["n"])

    # -- assessments ------------------------------------------------------------------------

    def save_assessment(
        self,
        connection: str,
        assessment: RiskAssessment,
        policy_fingerprint: str,
        exposure: Decimal,
    ) -> None:
        """Keep the latest assessment of an account (explain and the next run read it)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO assessments (connection, account_id, as_of, policy_fingerprint, score, band, "
                "exposure, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection, account_id) DO "
                "UPDATE SET as_of = excluded.as_of, policy_fingerprint = excluded.policy_fingerprint, "
                "score = excluded.score, band = excluded.band, exposure = excluded.exposure, "
                "data = excluded.data",
                (
                    connection,
                    assessment.account_id,
                    assessment.as_of.isoformat(),
                    policy_fingerprint,
                    assessment.score,
                    assessment.band,
                    str(exposure),
                    assessment.model_dump_json(),
                ),
            )

    def get_assessment(self, connection: str, account_id: str) -> RiskAssessment | None:
        """The latest stored assessment of one account."""
        rows = self._query(
            "SELECT data FROM assessments WHERE connection = ? AND account_id = ?",
            (connection, account_id),
        )
        return RiskAssessment.model_validate_json(rows[0]["data"]) if rows else None

    def iter_assessments(self, connection: str) -> Iterator[tuple[RiskAssessment, Decimal]]:
        """Every stored assessment with its exposure, for portfolio reports."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.data, a.exposure FROM assessments a JOIN accounts c ON c.connection = "
                "a.connection AND c.crm_id = a.account_id WHERE a.connection = ? AND c.deleted = 0",
                (connection,),
            ).fetchall()
        for row in rows:
            yield RiskAssessment.model_validate_json(row["data"]), Decimal(row["exposure"])

    def top_assessments(
        self, connection: str, limit: int = 10
    ) -> list[tuple[Account, RiskAssessment]]:
        """The riskiest live accounts, highest score first."""
        rows = self._query(
            "SELECT c.data AS account, a.data AS assessment FROM assessments a JOIN accounts c ON "
            "c.connection = a.connection AND c.crm_id = a.account_id WHERE a.connection = ? AND "
            "c.deleted = 0 ORDER BY a.score DESC, a.account_id LIMIT ?",
            (connection, limit),
        )
        return [
            (
                Account.model_validate_json(row["account"]),
                RiskAssessment.model_validate_json(row["assessment"]),
            )
            for row in rows
        ]

    def iter_scored(self, connection: str) -> Iterator[tuple[Account, RiskAssessment]]:
        """Every live account with its latest assessment, ordered by id, streamed in chunks."""
        last = ""
        while True:
            rows = self._query(
                "SELECT c.crm_id, c.data AS account, a.data AS assessment FROM accounts c JOIN "
                "assessments a ON a.connection = c.connection AND a.account_id = c.crm_id WHERE "
                "c.connection = ? AND c.deleted = 0 AND c.crm_id > ? ORDER BY c.crm_id LIMIT 1000",
                (connection, last),
            )
            if not rows:
                return
            for row in rows:
                yield (
                    Account.model_validate_json(row["account"]),
                    RiskAssessment.model_validate_json(row["assessment"]),
                )
            last = rows[-1]["crm_id"]

    def iter_invoices(self, connection: str, account_ids: Iterable[str]) -> Iterator[Invoice]:
        """Live invoices of the given accounts, ordered by account (for bulk re-scoring)."""
        wanted = sorted(set(account_ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self._query(
                f"SELECT data FROM invoices WHERE connection = ? AND deleted = 0 AND account_id "  # noqa: S608 - placeholders only
                f"IN ({marks}) ORDER BY account_id, crm_id",
                (connection, *chunk),
            )
            for row in rows:
                yield Invoice.model_validate_json(row["data"])

    # -- portfolio snapshots ------------------------------------------------------------------

    def save_snapshot(
        self,
        connection: str,
        run_id: str,
        as_of: date,
        summary: Mapping[str, Any],
        accounts: Iterable[tuple[str, str, float, Decimal]],
        *,
        home_currency: str | None = None,
    ) -> int:
        """Keep the book at the end of a run: its totals and (account, band, score, exposure) rows.

        Args:
            connection: the connection.
            run_id: the run that scored the book.
            as_of: the run's scoring date.
            summary: JSON-able totals (count and exposure by band, ...).
            accounts: one (account id, band, score, exposure in home currency) per account.
            home_currency: the currency of every amount in the snapshot.

        Returns:
            How many account rows were stored.
        """
        rows = [
            (connection, run_id, account_id, band, float(score), str(exposure))
            for account_id, band, score, exposure in accounts
        ]
        with self.transaction() as db:
            db.execute(
                "INSERT INTO portfolio_snapshots (connection, run_id, as_of, taken_at, "
                "home_currency, accounts, summary, detail) VALUES (?, ?, ?, ?, ?, ?, ?, 1) "
                "ON CONFLICT (connection, run_id) DO UPDATE SET as_of = excluded.as_of, "
                "taken_at = excluded.taken_at, home_currency = excluded.home_currency, "
                "accounts = excluded.accounts, summary = excluded.summary, detail = 1",
                (
                    connection,
                    run_id,
                    as_of.isoformat(),
                    _iso(self.now()),
                    home_currency,
                    len(rows),
                    dumps(dict(summary)),
                ),
            )
            db.execute(
                "DELETE FROM snapshot_accounts WHERE connection = ? AND run_id = ?",
                (connection, run_id),
            )
            db.executemany(
                "INSERT INTO snapshot_accounts (connection, run_id, account_id, band, score, "
                "exposure) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._prune_snapshots(db, connection)
        return len(rows)

    def _prune_snapshots(self, db: Connection, connection: str) -> None:
        """Drop old totals and the per-account rows no report reads (see SNAPSHOT_DAYS)."""
        rows = db.execute(
            "SELECT run_id, as_of, taken_at, detail FROM portfolio_snapshots WHERE connection = ? "
            "ORDER BY as_of, taken_at",
            (connection,),
        ).fetchall()
        if not rows:
            return
        newest = date.fromisoformat(rows[-1]["as_of"])
        horizon = newest - timedelta(days=SNAPSHOT_DAYS)
        old = [row["run_id"] for row in rows if date.fromisoformat(row["as_of"]) < horizon]
        keep: set[str] = {row["run_id"] for row in rows[-SNAPSHOT_RECENT_RUNS:]}
        months: set[str] = set()
        for row in rows:
            month = row["as_of"][:7]
            if month not in months:
                months.add(month)
                keep.add(row["run_id"])
        drop_detail = [row["run_id"] for row in rows if row["detail"] and row["run_id"] not in keep]
        for run_id in {*old, *drop_detail}:
            db.execute(
                "DELETE FROM snapshot_accounts WHERE connection = ? AND run_id = ?",
                (connection, run_id),
            )
        db.executemany(
            "UPDATE portfolio_snapshots SET detail = 0 WHERE connection = ? AND run_id = ?",
            [(connection, run_id) for run_id in drop_detail],
        )
        db.executemany(
            "DELETE FROM portfolio_snapshots WHERE connection = ? AND run_id = ?",
            [(connection, run_id) for run_id in old],
        )

    def snapshots(self, connection: str, until: date | None = None) -> list[dict[str, Any]]:
        """Snapshot totals taken as of `until` or earlier, oldest first (`detail`: rows kept)."""
        rows = self._query(
            "SELECT * FROM portfolio_snapshots WHERE connection = ? AND as_of <= ? "
            "ORDER BY as_of, taken_at",
            (connection, (until or date.max).isoformat()),
        )
        return [
            {**dict(row), "summary": loads(row["summary"]) or {}, "detail": bool(row["detail"])}
            for row in rows
        ]

    def snapshot_accounts(self, connection: str, run_id: str) -> dict[str, tuple[str, float, str]]:
        """The per-account rows of one snapshot: account id -> (band, score, exposure)."""
        rows = self._query(
            "SELECT account_id, band, score, exposure FROM snapshot_accounts WHERE "
            "connection = ? AND run_id = ?",
            (connection, run_id),
        )
        return {
            row["account_id"]: (row["band"], float(row["score"]), row["exposure"]) for row in rows
        }

    def task_ledger_rows(self, connection: str) -> list[TaskLedgerEntry]:
        """Every ledger row (open and the last closed episode per account and rule)."""
        rows = self._query(
            "SELECT * FROM task_ledger WHERE connection = ? ORDER BY account_id, rule",
            (connection,),
        )
        return [self._ledger_entry(row) for row in rows]

    def task_audit(self, connection: str, since: datetime) -> list[dict[str, Any]]:
        """Task lines of the audit log since `since`, oldest first (episode history)."""
        rows = self._query(
            "SELECT id, run_id, at, record_id, action, field, new_value FROM audit WHERE "
            "connection = ? AND object = 'task' AND at >= ? ORDER BY id",
            (connection, _iso(since)),
        )
        return [{**dict(row), "new_value": loads(row["new_value"])} for row in rows]

    # -- last written values ----------------------------------------------------------------

    def last_written(self, connection: str, account_id: str) -> dict[str, Any]:
        """What the CRM confirmed we wrote, per canonical field."""
        rows = self._query(
            "SELECT field, value FROM last_written WHERE connection = ? AND account_id = ?",
            (connection, account_id),
        )
        return {row["field"]: loads(row["value"]) for row in rows}

    def record_written(
        self, connection: str, account_id: str, values: Mapping[str, Any], run_id: str
    ) -> None:
        """Store confirmed values as the new baseline for the diff."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO last_written (connection, account_id, field, value, run_id, written_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (connection, account_id, field) DO UPDATE SET "
                "value = excluded.value, run_id = excluded.run_id, written_at = excluded.written_at",
                [
                    (connection, account_id, field, dumps(value), run_id, now)
                    for field, value in values.items()
                ],
            )

    # -- failed writes and quarantine -----------------------------------------------------------

    def record_failed_write(
        self,
        connection: str,
        obj: str,
        record_id: str,
        fields: Sequence[str],
        code: str,
        message: str,
    ) -> None:
        """Keep a rejected or unconfirmed write for the next run."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.execute(
                "INSERT INTO failed_writes (connection, object, record_id, fields, error_code, message, "
                "attempts, first_failed, last_failed) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT "
                "(connection, object, record_id) DO UPDATE SET fields = excluded.fields, error_code = "
                "excluded.error_code, message = excluded.message, attempts = failed_writes.attempts + 1, "
                "last_failed = excluded.last_failed",
                (connection, obj, record_id, dumps(list(fields)), code, message, now, now),
            )
            if obj == "account":
                self._flag_accounts(db, connection, [record_id])

    def clear_failed_write(self, connection: str, obj: str, record_id: str) -> None:
        """A record was written after all."""
        with self.transaction() as db:
            db.execute(
                "DELETE FROM failed_writes WHERE connection = ? AND object = ? AND record_id = ?",
                (connection, obj, record_id),
            )

    def failed_writes(self, connection: str) -> list[dict[str, Any]]:
        """Writes awaiting retry."""
        rows = self._query(
            "SELECT * FROM failed_writes WHERE connection = ? ORDER BY record_id", (connection,)
        )
        return [dict(row) for row in rows]

    def quarantine(
        self,
        connection: str,
        obj: str,
        record_id: str,
        reason: str,
        run_id: str,
        *,
        account_id: str | None = None,
        name: str = "",
        rule: str = "",
        field: str = "",
        value: str = "",
    ) -> bool:
        """Keep an invalid input record out of scoring, with the reason; hold its account.

        Returns:
            True when this is news: the record was not quarantined before for the same rule,
            field and value (a record read again unchanged is a known hold, not a new failure).
        """
        now = _iso(self.now())
        with self.transaction() as db:
            known = db.execute(
                "SELECT rule, field, value FROM quarantine WHERE connection = ? AND object = ? "
                "AND record_id = ?",
                (connection, obj, record_id),
            ).fetchone()
            db.execute(
                "INSERT INTO quarantine (connection, object, record_id, reason, run_id, at, "
                "account_id, name, rule, field, value, first_seen) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection, object, record_id) "
                "DO UPDATE SET reason = excluded.reason, run_id = excluded.run_id, at = excluded.at, "
                "account_id = excluded.account_id, name = excluded.name, rule = excluded.rule, "
                "field = excluded.field, value = excluded.value",
                (
                    connection,
                    obj,
                    record_id,
                    reason,
                    run_id,
                    now,
                    account_id,
                    name,
                    rule,
                    field,
                    value,
                    now,
                ),
            )
        return known is None or (known["rule"], known["field"], known["value"]) != (
            rule,
            field,
            value,
        )

    def release_quarantine(self, connection: str, obj: str, record_id: str) -> None:
        """A previously invalid record is valid (or gone); its account is scored again once free."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT account_id FROM quarantine WHERE connection = ? AND object = ? AND "
                "record_id = ?",
                (connection, obj, record_id),
            ).fetchone()
            if row is None:
                return
            db.execute(
                "DELETE FROM quarantine WHERE connection = ? AND object = ? AND record_id = ?",
                (connection, obj, record_id),
            )
            if row["account_id"]:
                self._flag_accounts(db, connection, [row["account_id"]])

    def quarantined(self, connection: str | None = None) -> list[dict[str, Any]]:
        """Invalid records with their reasons, the account each holds, and first/last seen."""
        where, params = ("WHERE connection = ? ", (connection,)) if connection else ("", ())
        rows = self._query(
            f"SELECT * FROM quarantine {where}ORDER BY connection, object, record_id",  # noqa: S608 - fixed fragment
            params,
        )
        return [{**dict(row), "last_seen": row["at"]} for row in rows]

    def count_quarantined(self, connection: str) -> int:
        """How many records are in quarantine."""
        rows = self._query(
            "SELECT COUNT(*) AS n FROM quarantine WHERE connection = ?", (connection,)
        )
        return int(rows[0]["n"])

    def held_accounts(self, connection: str) -> dict[str, list[dict[str, Any]]]:
        """Accounts held by quarantined records, with those records, by account id."""
        held: dict[str, list[dict[str, Any]]] = {}
        for row in self.quarantined(connection):
            if row["account_id"]:
                held.setdefault(str(row["account_id"]), []).append(row)
        return held

    # -- refused fields ---------------------------------------------------------------------

    def block_field(
        self,
        connection: str,
        account_id: str,
        field: str,
        value: Any,
        code: str,
        message: str,
        guard: str,
    ) -> None:
        """Remember that the CRM refused `value` for one account's field (not resent until `guard` changes)."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.execute(
                "INSERT INTO field_blocks (connection, account_id, field, value, error_code, "
                "message, guard, attempts, first_failed, last_failed) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT (connection, account_id, field) DO "
                "UPDATE SET value = excluded.value, error_code = excluded.error_code, message = "
                "excluded.message, guard = excluded.guard, attempts = field_blocks.attempts + 1, "
                "last_failed = excluded.last_failed",
                (connection, account_id, field, dumps(value), code, message, guard, now, now),
            )

    def field_blocks(self, connection: str, account_id: str | None = None) -> list[dict[str, Any]]:
        """Refused fields (of one account, or all), with the refused value decoded."""
        if account_id is None:
            rows = self._query(
                "SELECT * FROM field_blocks WHERE connection = ? ORDER BY account_id, field",
                (connection,),
            )
        else:
            rows = self._query(
                "SELECT * FROM field_blocks WHERE connection = ? AND account_id = ? ORDER BY field",
                (connection, account_id),
            )
        return [{**dict(row), "value": loads(row["value"])} for row in rows]

    def clear_field_blocks(
        self, connection: str, *, account_id: str | None = None, field: str | None = None
    ) -> int:
        """Forget refusals (of one account and/or field, or all of the connection)."""
        clauses, params = ["connection = ?"], [connection]
        if account_id is not None:
            clauses.append("account_id = ?")
            params.append(account_id)
        if field is not None:
            clauses.append("field = ?")
            params.append(field)
        with self.transaction() as db:
            cursor = db.execute(
                f"DELETE FROM field_blocks WHERE {' AND '.join(clauses)}",  # noqa: S608 - fixed fragments
                params,
            )
            return int(cursor.rowcount)

    # -- task ledger ------------------------------------------------------------------------

    def _ledger_entry(self, row: Any) -> TaskLedgerEntry:
        return TaskLedgerEntry(
            account_id=row["account_id"],
            rule=row["rule"],
            episode=row["episode"],
            state=row["state"],
            dedupe_key=row["dedupe_key"],
            crm_task_id=row["crm_task_id"],
            level=row["level"],
            priority=row["priority"],
            owner_id=row["owner_id"],
            meta=loads(row["meta"]) or {},
            opened_at=datetime.fromisoformat(row["opened_at"]),
            closed_at=datetime.fromisoformat(row["closed_at"]) if row["closed_at"] else None,
        )

    def task_ledger(self, connection: str, account_id: str) -> dict[str, TaskLedgerEntry]:
        """The ledger rows of one account, by rule."""
        rows = self._query(
            "SELECT * FROM task_ledger WHERE connection = ? AND account_id = ?",
            (connection, account_id),
        )
        return {row["rule"]: self._ledger_entry(row) for row in rows}

    def open_tasks(self, connection: str) -> list[TaskLedgerEntry]:
        """Every task the ledger holds open."""
        rows = self._query(
            "SELECT * FROM task_ledger WHERE connection = ? AND state = 'open' ORDER BY account_id, rule",
            (connection,),
        )
        return [self._ledger_entry(row) for row in rows]

    def ledger_is_empty(self, connection: str) -> bool:
        """Whether the task ledger knows no task of this connection (a new or emptied store)."""
        rows = self._query("SELECT 1 FROM task_ledger WHERE connection = ? LIMIT 1", (connection,))
        return not rows

    def accounts_with_open_tasks(self, connection: str) -> set[str]:
        """Accounts whose open tasks must be re-evaluated even when their data did not change."""
        rows = self._query(
            "SELECT DISTINCT account_id FROM task_ledger WHERE connection = ? AND state = 'open'",
            (connection,),
        )
        return {row["account_id"] for row in rows}

    def save_ledger(self, connection: str, entry: TaskLedgerEntry) -> None:
        """Insert or replace the ledger row of (account, rule)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO task_ledger (connection, account_id, rule, episode, state, dedupe_key, "
                "crm_task_id, level, priority, owner_id, meta, opened_at, closed_at) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection, account_id, rule) DO UPDATE "
                "SET episode = excluded.episode, state = excluded.state, dedupe_key = excluded.dedupe_key, "
                "crm_task_id = excluded.crm_task_id, level = excluded.level, priority = excluded.priority, "
                "owner_id = excluded.owner_id, meta = excluded.meta, opened_at = excluded.opened_at, "
                "closed_at = excluded.closed_at",
                (
                    connection,
                    entry.account_id,
                    entry.rule,
                    entry.episode,
                    entry.state,
                    entry.dedupe_key,
                    entry.crm_task_id,
                    entry.level,
                    entry.priority,
                    entry.owner_id,
                    dumps(entry.meta),
                    _iso(entry.opened_at),
                    _iso(entry.closed_at) if entry.closed_at else None,
                ),
            )

    # -- runs and audit -----------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        connection: str,
        trigger: str,
        *,
        dry_run: bool = False,
        worker: str | None = None,
    ) -> None:
        """Record that a run started (and which lease holder runs it)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (run_id, connection, trigger, status, started_at, dry_run, worker) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (run_id, connection, trigger, _iso(self.now()), int(dry_run), worker),
            )

    def finish_run(self, run_id: str, status: str, report: Mapping[str, Any]) -> None:
        """Record the outcome and report of a run."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status = ?, ended_at = ?, report = ? WHERE run_id = ?",
                (status, _iso(self.now()), dumps(dict(report)), run_id),
            )

    def record_skipped_run(self, run_id: str, connection: str, trigger: str, reason: str) -> None:
        """A scheduled run that did not start (overlap, lock held)."""
        now = _iso(self.now())
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (run_id, connection, trigger, status, started_at, ended_at, report) "
                "VALUES (?, ?, ?, 'skipped', ?, ?, ?)",
                (run_id, connection, trigger, now, now, dumps({"reason": reason})),
            )

    def recent_runs(self, connection: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """The latest runs, newest first, with their reports decoded."""
        if connection:
            rows = self._query(
                "SELECT * FROM runs WHERE connection = ? ORDER BY started_at DESC LIMIT ?",
                (connection, limit),
            )
        else:
            rows = self._query("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [{**dict(row), "report": loads(row["report"]) or {}} for row in rows]

    def append_audit(
        self,
        run_id: str,
        connection: str,
        *,
        obj: str,
        record_id: str,
        action: str,
        field: str | None = None,
        old: Any = None,
        new: Any = None,
        cause: str = "",
        response: str = "",
    ) -> None:
        """Append one line to the audit log (never updated or deleted by the connector).

        Inside a transaction the line waits and is written with the others at its commit, in
        order; a rollback drops it with everything else.
        """
        row = (
            run_id,
            connection,
            _iso(self.now()),
            obj,
            record_id,
            action,
            field,
            None if old is None else dumps(old),
            None if new is None else dumps(new),
            cause,
            response,
        )
        with self._lock:
            if self._in_transaction():
                self._audit_rows.append(row)
                return
            with self.transaction() as db:
                db.execute(_AUDIT_INSERT, row)

    def audit(
        self,
        connection: str | None = None,
        *,
        record_id: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
        run_id: str | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Audit lines, oldest first (or newest first), filtered by connection, record, time and run."""
        where, params = self._audit_filter(connection, record_id, since, run_id)
        order = "id DESC" if newest_first else "id"
        query = f"SELECT * FROM audit {where} ORDER BY {order} LIMIT ?"  # noqa: S608
        rows = self._query(query, [*params, limit])
        return [
            {
                **dict(row),
                "old_value": loads(row["old_value"]),
                "new_value": loads(row["new_value"]),
            }
            for row in rows
        ]

    def count_audit(
        self,
        connection: str | None = None,
        *,
        record_id: str | None = None,
        since: datetime | None = None,
        run_id: str | None = None,
    ) -> int:
        """How many audit lines the same filters as `audit` match (to say how many were left out)."""
        where, params = self._audit_filter(connection, record_id, since, run_id)
        rows = self._query(f"SELECT COUNT(*) AS n FROM audit {where}", params)  # noqa: S608
        return int(rows[0]["n"])

    @staticmethod
    def _audit_filter(
        connection: str | None,
        record_id: str | None,
        since: datetime | None,
        run_id: str | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if connection:
            clauses.append("connection = ?")
            params.append(connection)
        if run_id:
            clauses.append("run_id = ?")
            params.append(run_id)
        if record_id:
            clauses.append("record_id = ?")
            params.append(record_id)
        if since:
            clauses.append("at >= ?")
            params.append(_iso(since))
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params

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
