"""Work sharing between `crm-risk run` workers on one store: due times, claims, worker heartbeats.

The database does the coordinating. Each connection has one `schedule` row with its next due
time; a worker claims due rows with `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; a SQLite
file serialises the claim with `BEGIN IMMEDIATE` instead), moves them to their next due time in
the same transaction and then runs them under the ordinary run lease. A connection whose lease
is live is never claimed, so a run longer than its interval is followed by one catch-up run, not
by a second run beside it; a dead worker's connections become claimable when its lease expires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connector.store._db import _iso, dumps
from connector.store.base import SqlStore

# Rows of workers that stopped heartbeating are kept this long, so `status` can show who died.
FORGET_DEAD_WORKERS = timedelta(days=1)


@dataclass(frozen=True)
class ScheduleRow:
    """One connection's place in the shared schedule."""

    connection: str
    next_due_at: datetime
    last_claimed_by: str | None
    last_claimed_at: datetime | None


@dataclass(frozen=True)
class Claim:
    """A due run this worker now owns: when it was due and when the next one is."""

    connection: str
    due_at: datetime
    next_due_at: datetime


@dataclass(frozen=True)
class QueueLoad:
    """What the claim policy looks at: due work, running work and live workers."""

    due: int
    running: int
    live_workers: int
    oldest_due_at: datetime | None


@dataclass(frozen=True)
class WorkerRow:
    """A worker as its heartbeat row describes it."""

    worker_id: str
    host: str
    pid: int
    started_at: str
    heartbeat_at: str
    expires_at: str
    capacity: int
    running: int
    alive: bool
    holds: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for `status --json`."""
        return {
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at,
            "expires_at": self.expires_at,
            "capacity": self.capacity,
            "running": self.running,
            "alive": self.alive,
            "holds": list(self.holds),
        }


def _marks(values: Sequence[str]) -> str:
    return ", ".join("?" for _ in values)


class WorkQueue:
    """Claims, due times and worker heartbeats on top of one open store."""

    def __init__(self, store: SqlStore) -> None:
        """Work on `store` (its own connection: a worker keeps one for coordination)."""
        self.store = store

    def _claim_transaction(self) -> Any:
        # Row locks do the work on PostgreSQL; SQLite has none, so the claim takes the file's
        # write lock up front and two processes cannot read the same due rows.
        return self.store.transaction(immediate=not self.store.ROW_LOCK_CLAUSE)

    # -- the schedule ---------------------------------------------------------------------------

    def schedule(self, connections: Sequence[str] | None = None) -> dict[str, ScheduleRow]:
        """The schedule rows of `connections` (all when None)."""
        where = f" WHERE connection IN ({_marks(connections)})" if connections else ""
        with self.store.transaction() as db:
            rows = db.execute(
                f"SELECT * FROM schedule{where} ORDER BY connection",  # noqa: S608 - placeholders only
                list(connections or ()),
            ).fetchall()
        return {
            row["connection"]: ScheduleRow(
                connection=row["connection"],
                next_due_at=datetime.fromisoformat(row["next_due_at"]),
                last_claimed_by=row["last_claimed_by"],
                last_claimed_at=(
                    datetime.fromisoformat(row["last_claimed_at"])
                    if row["last_claimed_at"]
                    else None
                ),
            )
            for row in rows
        }

    def due_no_later_than(self, due: Mapping[str, datetime]) -> None:
        """Add missing connections to the schedule, and move existing ones earlier, never later.

        Args:
            due: connection -> the latest acceptable next due time.
        """
        now = _iso(self.store.now())
        with self.store.transaction() as db:
            db.executemany(
                "INSERT INTO schedule (connection, next_due_at, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (connection) DO UPDATE SET next_due_at = excluded.next_due_at, "
                "updated_at = excluded.updated_at WHERE excluded.next_due_at < schedule.next_due_at",
                [(name, _iso(moment), now) for name, moment in due.items()],
            )

    def load(self, connections: Sequence[str]) -> QueueLoad:
        """How much of `connections` is due and running, and how many workers are alive."""
        if not connections:
            return QueueLoad(0, 0, 0, None)
        now = _iso(self.store.now())
        names = list(connections)
        with self.store.transaction() as db:
            due = db.execute(
                "SELECT COUNT(*) AS n, MIN(s.next_due_at) AS oldest FROM schedule s WHERE "  # noqa: S608 - placeholders only
                f"s.connection IN ({_marks(names)}) AND s.next_due_at <= ? AND NOT EXISTS "
                "(SELECT 1 FROM leases l WHERE l.connection = s.connection AND l.expires_at > ?)",
                [*names, now, now],
            ).fetchone()
            running = db.execute(
                f"SELECT COUNT(*) AS n FROM leases WHERE connection IN ({_marks(names)}) "  # noqa: S608 - placeholders only
                "AND expires_at > ?",
                [*names, now],
            ).fetchone()
            workers = db.execute(
                "SELECT COUNT(*) AS n FROM workers WHERE expires_at > ?", (now,)
            ).fetchone()
        return QueueLoad(
            due=int(due["n"]),
            running=int(running["n"]),
            live_workers=int(workers["n"]),
            oldest_due_at=datetime.fromisoformat(due["oldest"]) if due["oldest"] else None,
        )

    def claim(
        self,
        worker_id: str,
        connections: Sequence[str],
        limit: int,
        next_due: Callable[[str, datetime, datetime], datetime],
    ) -> list[Claim]:
        """Claim up to `limit` due connections, oldest due first, skipping rows others hold.

        A connection whose run lease is live (its run is still going) is not due yet. Claimed
        rows move to their next due time in the same transaction, so no other worker claims
        the same due run; the run itself then takes the lease.

        Args:
            worker_id: the claiming worker (recorded as last_claimed_by).
            connections: the connections this worker can run (its configuration's).
            limit: how many to claim at most.
            next_due: (connection, due time, now) -> the next due time after this run.

        Returns:
            The claims, oldest due first.
        """
        if limit <= 0 or not connections:
            return []
        now_time = self.store.now()
        now = _iso(now_time)
        names = list(connections)
        with self._claim_transaction() as db:
            rows = db.execute(
                "SELECT s.connection, s.next_due_at FROM schedule s WHERE "  # noqa: S608 - placeholders and a fixed clause
                f"s.connection IN ({_marks(names)}) AND s.next_due_at <= ? AND NOT EXISTS "
                "(SELECT 1 FROM leases l WHERE l.connection = s.connection AND l.expires_at > ?) "
                f"ORDER BY s.next_due_at, s.connection LIMIT ?{self.store.ROW_LOCK_CLAUSE}",
                [*names, now, now, limit],
            ).fetchall()
            claims = []
            for row in rows:
                due_at = datetime.fromisoformat(row["next_due_at"])
                following = next_due(row["connection"], due_at, now_time)
                db.execute(
                    "UPDATE schedule SET next_due_at = ?, last_claimed_by = ?, last_claimed_at = ?, "
                    "updated_at = ? WHERE connection = ?",
                    (_iso(following), worker_id, now, now, row["connection"]),
                )
                claims.append(Claim(row["connection"], due_at, following))
        return claims

    # -- workers ----------------------------------------------------------------------------------

    def beat(
        self,
        *,
        worker_id: str,
        host: str,
        pid: int,
        started_at: datetime,
        capacity: int,
        running: int,
        ttl_seconds: float,
    ) -> None:
        """Record that a worker is alive until now + ttl (and forget workers long dead)."""
        now = self.store.now()
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO workers (worker_id, host, pid, started_at, heartbeat_at, expires_at, "
                "capacity, running) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (worker_id) DO UPDATE "
                "SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at, "
                "capacity = excluded.capacity, running = excluded.running",
                (
                    worker_id,
                    host,
                    pid,
                    _iso(started_at),
                    _iso(now),
                    _iso(now + timedelta(seconds=ttl_seconds)),
                    capacity,
                    running,
                ),
            )
            db.execute(
                "DELETE FROM workers WHERE expires_at < ?", (_iso(now - FORGET_DEAD_WORKERS),)
            )

    def leave(self, worker_id: str) -> None:
        """A worker stops cleanly: remove its row."""
        with self.store.transaction() as db:
            db.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))

    def workers(self) -> list[WorkerRow]:
        """Every known worker, alive ones first, with the connections whose leases it holds."""
        now = _iso(self.store.now())
        with self.store.transaction() as db:
            rows = db.execute("SELECT * FROM workers ORDER BY worker_id").fetchall()
            leases = db.execute(
                "SELECT connection, holder FROM leases WHERE expires_at > ? ORDER BY connection",
                (now,),
            ).fetchall()
        holds: dict[str, list[str]] = {}
        for lease in leases:
            holds.setdefault(lease["holder"], []).append(lease["connection"])
        found = [
            WorkerRow(
                worker_id=row["worker_id"],
                host=row["host"],
                pid=int(row["pid"]),
                started_at=row["started_at"],
                heartbeat_at=row["heartbeat_at"],
                expires_at=row["expires_at"],
                capacity=int(row["capacity"]),
                running=int(row["running"]),
                alive=row["expires_at"] > now,
                holds=tuple(holds.get(row["worker_id"], ())),
            )
            for row in rows
        ]
        return sorted(found, key=lambda worker: (not worker.alive, worker.worker_id))

    # -- leases of running runs -------------------------------------------------------------------

    def extend_leases(
        self, holder: str, connections: Iterable[str], ttl_seconds: float
    ) -> set[str]:
        """Extend the holder's leases; returns the connections whose lease another holder took.

        A connection with no lease row is not reported: its run has not taken the lease yet,
        or has just given it back.
        """
        names = list(connections)
        if not names:
            return set()
        now = self.store.now()
        with self.store.transaction() as db:
            db.execute(
                "UPDATE leases SET heartbeat_at = ?, expires_at = ? WHERE holder = ? AND "  # noqa: S608 - placeholders only
                f"connection IN ({_marks(names)})",
                [_iso(now), _iso(now + timedelta(seconds=ttl_seconds)), holder, *names],
            )
            rows = db.execute(
                f"SELECT connection, holder FROM leases WHERE connection IN ({_marks(names)})",  # noqa: S608 - placeholders only
                names,
            ).fetchall()
        return {row["connection"] for row in rows if row["holder"] != holder}

    def settle_lost_run(self, holder: str, connection: str, message: str) -> int:
        """Close the holder's run of `connection` that lost the store mid-way, and free its lease.

        Only a run still marked running is closed (a worker that took over may already have
        marked it abandoned). Returns how many runs were closed.
        """
        now = _iso(self.store.now())
        report = dumps({"status": "failed", "message": message})
        with self.store.transaction() as db:
            closed = db.execute(
                "UPDATE runs SET status = 'failed', ended_at = ?, report = ? WHERE connection = ? "
                "AND worker = ? AND status = 'running'",
                (now, report, connection, holder),
            ).rowcount
            db.execute(
                "DELETE FROM leases WHERE connection = ? AND holder = ?", (connection, holder)
            )
        return closed


__all__ = ["Claim", "QueueLoad", "ScheduleRow", "WorkQueue", "WorkerRow"]
