"""The synced book: accounts, invoices and the latest assessment of each account."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connector.models import Account, Invoice, RiskAssessment
from connector.store._db import _IN_CHUNK, StoreCore, _hash, _iso, dumps, loads


@dataclass(frozen=True)
class StoredAccount:
    """An account as stored, with the CRM's current values of the fields we write."""

    account: Account
    crm_values: dict[str, Any]
    needs_scoring: bool
    first_seen: datetime


class RecordTables(StoreCore):
    """The `accounts`, `invoices` and `assessments` tables."""

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

    # Live invoices of one connection; a quarantined invoice's stored copy is stale, so it is left out.
    _LIVE_INVOICES = (
        "WHERE connection = ? AND deleted = 0 AND NOT EXISTS (SELECT 1 FROM quarantine q "
        "WHERE q.connection = invoices.connection AND q.object = 'invoice' "
        "AND q.record_id = invoices.crm_id)"
    )

    def open_exposures(self, connection: str) -> dict[str, Decimal]:
        """Open amount per account over live invoices (for the portfolio context)."""
        totals: dict[str, Decimal] = {}
        with self._lock:
            # A quarantined invoice's stored copy is stale: it counts for no one's exposure.
            cursor = self._db.execute(
                f"SELECT account_id, {self._EXPOSURE_SQL} AS open_amount FROM invoices "  # noqa: S608 - fixed fragment
                + self._LIVE_INVOICES,
                (connection,),
            )
            for row in cursor:
                amount = Decimal(str(row["open_amount"] or "0"))
                if amount > 0:
                    totals[row["account_id"]] = totals.get(row["account_id"], Decimal(0)) + amount
        return totals

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
                + self._LIVE_INVOICES,
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
