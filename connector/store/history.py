"""What happened: the run history, the audit log and the portfolio snapshots of past runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.store._db import _AUDIT_INSERT, Connection, StoreCore, _iso, dumps, loads

# Snapshot retention: totals of every run for this many days; per-account rows of the newest
# runs and of the first run of each month within the same span (enough for "since the previous
# run" and "over the last 12 months" without keeping a copy of the book per run).
SNAPSHOT_DAYS = 400
SNAPSHOT_RECENT_RUNS = 3


class HistoryTables(StoreCore):
    """The `runs`, `audit`, `portfolio_snapshots` and `snapshot_accounts` tables."""

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
