"""`crm-risk run` on a PostgreSQL store: one of several workers that share the connections through the database.

How a worker behaves, in short:

* At start it adds its configured connections to the shared `schedule` table (a connection that
  never ran is due now; one whose service was down is due now, once) and registers itself in
  `workers` with a heartbeat.
* Every tick (``[service] claim_interval_seconds``, at most a third of the lease) it renews its
  heartbeat and the leases of its running runs, then claims due connections with
  ``FOR UPDATE SKIP LOCKED`` (connector.store.coordination): oldest due first, so no connection
  starves, and no more than its fair share, ``ceil((due + running) / live workers)``, minus what
  it already runs, within ``[service] max_concurrent_runs``. Due work nobody took within two
  ticks goes to any worker with a free slot.
* A claimed connection runs through the same runner as the single-process service, holding the
  run lease under the worker's id, so `crm-risk status` shows which worker runs what. A worker
  killed mid-run stops heartbeating; its lease expires and another worker takes the connection.
* When the database drops or restarts, the runs in flight fail cleanly (StoreUnavailableError,
  exit 75 for a one-shot sync): their last transaction is rolled back by the database, and the
  worker closes their history rows and frees their leases once it reaches the database again.
  The tick backs off (1 s doubling to 30 s, with jitter) until then. A worker that cannot renew
  its leases for most of a lease's lifetime asks its runs to stop, since another worker may
  take them over.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Unpack

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.triggers.interval import IntervalTrigger

from connector.errors import StoreUnavailableError
from connector.redaction import redact
from connector.service.runner import ConnectionRunner, RunResult
from connector.service.scheduler import Service, ServiceOptions
from connector.service.schedules import due_after, first_run_time, last_run_started
from connector.store.coordination import QueueLoad, WorkQueue

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig

log = logging.getLogger("crm_risk.workers")

# The due time of a cron that never fires again.
NEVER = datetime(9999, 12, 31, tzinfo=UTC)
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
# Due work that waited this many ticks goes to any worker with a free slot.
PATIENCE_TICKS = 2


# -- schedule maths (pure) ------------------------------------------------------------------------


def next_due(
    connection: ConnectionConfig,
    due_at: datetime,
    now: datetime,
    interval_override: float | None = None,
    jitter_seconds: float = 0.0,
) -> datetime:
    """The due time after a run that was due at `due_at` and is claimed at `now`.

    The schedule keeps its own grid (due + interval, or the cron's next fire after the due
    time), so claiming a little late does not drift it. When that time has passed too (the
    workers were down or overloaded), the next one is counted from now: missed runs coalesce.

    Args:
        connection: the connection.
        due_at: when the claimed run was due.
        now: the claim time (aware).
        interval_override: the `--interval-seconds` override, if any.
        jitter_seconds: added to the result (drawn by the caller from the schedule's jitter).

    Returns:
        The next due time in UTC (NEVER for a cron that does not fire again).
    """
    following = _due_strictly_after(connection, due_at, interval_override)
    if following is not None and following <= now:
        following = _due_strictly_after(connection, now, interval_override)
    if following is None:
        return NEVER
    return following + timedelta(seconds=jitter_seconds)


def _due_strictly_after(
    connection: ConnectionConfig, moment: datetime, interval_override: float | None
) -> datetime | None:
    following = due_after(connection, moment, interval_override)
    if following is not None and following <= moment:
        # A cron's fire time counts as "after" itself; cron fires are whole seconds apart.
        following = due_after(connection, moment + timedelta(seconds=1), interval_override)
    return following


def claim_limit(
    load: QueueLoad, *, mine: int, capacity: int, now: datetime, patience: timedelta
) -> int:
    """How many due connections a worker claims now: its fair share, within its free slots.

    The fair share is ``ceil((due + running) / live workers)`` minus what the worker already
    runs, so a burst of due connections spreads over the workers instead of going to whoever
    polls first. Work that stayed due for longer than `patience` (the others are full, or
    gone without saying so) goes to any worker with a free slot, so nothing starves.

    Args:
        load: due and running connections and live workers, from the store.
        mine: runs this worker has claimed and not finished.
        capacity: the most runs this worker carries at once.
        now: the current time (aware).
        patience: how long due work may wait for its fair-share worker.

    Returns:
        A number of claims, 0 or more.
    """
    free = capacity - mine
    if free <= 0 or load.due <= 0:
        return 0
    share = math.ceil((load.due + load.running) / max(load.live_workers, 1)) - mine
    overdue = load.oldest_due_at is not None and now - load.oldest_due_at > patience
    if overdue:
        share = max(share, free)
    return max(0, min(free, share, load.due))


def backoff_seconds(failures: int, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait after `failures` failed attempts to reach the store (1 s doubling, 30 s cap, +-20%)."""
    base = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2.0 ** max(failures - 1, 0))
    return base * (0.8 + 0.4 * draw())


def worker_id() -> str:
    """This process's id as a worker and lease holder: host, process and a random suffix."""
    from connector.engine.sync import holder_id

    return holder_id()


# -- the worker -------------------------------------------------------------------------------------


class WorkerService(Service):
    """The service as one of several workers on a shared PostgreSQL store."""

    # Its heartbeat is the worker's own (with its leases), not the service's.
    service_heartbeat = False

    def __init__(self, config: AppConfig, **options: Unpack[ServiceOptions]) -> None:
        """Service's options (see `Service`); [service] sets capacity and claim interval, and
        the default runner takes leases under this worker's id."""
        self.worker_id = worker_id()
        self.capacity = config.service.max_concurrent_runs
        self.lease_seconds = float(config.store.lease_seconds)
        # Renew leases at least three times per lease lifetime, whatever the claim interval.
        self.tick_seconds = min(config.service.claim_interval_seconds, self.lease_seconds / 3)
        options["runner"] = options.get("runner") or ConnectionRunner(config, holder=self.worker_id)
        super().__init__(config, **options)
        self._queue: WorkQueue | None = None
        self._claimed: set[str] = set()
        self._lost: set[str] = set()
        self._failures = 0
        self._retry_at: datetime | None = None
        self._store_down_since: datetime | None = None
        self._last_beat: datetime | None = None
        self._tick_lock = threading.Lock()

    def _executors(self) -> dict[str, Any]:
        # Runs get `capacity` threads; the tick has its own thread, so renewing leases never
        # waits behind busy runs.
        return {
            "default": ThreadPoolExecutor(max_workers=self.capacity),
            "control": ThreadPoolExecutor(max_workers=1),
        }

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, register this worker, then start ticking (raises StoreUnavailableError when down)."""
        self._queue = WorkQueue(self.open_store())
        super().start()

    def register_jobs(self) -> None:
        """Put this worker's connections into the shared schedule and start the tick job."""
        queue = self._require_queue()
        now = self.clock()
        names = sorted(self.connections)
        rows = queue.schedule(names)
        due: dict[str, datetime] = {}
        for name in names:
            connection = self.connections[name]
            row = rows.get(name)
            if row is None:
                last = last_run_started(queue.store, name)
                due[name] = first_run_time(connection, last, now, self.interval_override)
            elif row.last_claimed_at is not None:
                # A schedule shortened since the last claim takes effect now, not after the
                # old interval; a longer one waits for the due time already set.
                candidate = due_after(connection, row.last_claimed_at, self.interval_override)
                if candidate is not None and candidate < row.next_due_at:
                    due[name] = candidate
        queue.due_no_later_than(due)
        self._beat(queue)
        self.scheduler.add_job(
            self._tick,
            trigger=IntervalTrigger(seconds=self.tick_seconds, timezone=UTC),
            id="claim",
            name="renew leases and claim due connections",
            executor="control",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=now,
        )
        log.info(
            "worker started",
            extra={
                "detail": f"{self.worker_id}: {len(names)} connection(s), up to {self.capacity} "
                f"at once, claiming every {self.tick_seconds:g} s"
            },
        )

    def shutdown(self) -> None:
        """Stop claiming, wait for the runs, and leave the worker table."""
        super().shutdown()
        queue = self._queue
        if queue is None:
            return
        try:
            self._settle_lost(queue)
            queue.leave(self.worker_id)
        except StoreUnavailableError as exc:
            log.warning("could not deregister the worker: %s", redact(str(exc)))
        finally:
            queue.store.close()
            self._queue = None

    def _require_queue(self) -> WorkQueue:
        if self._queue is None:
            raise RuntimeError("the worker is not started")
        return self._queue

    # -- the tick ---------------------------------------------------------------------------------

    def _tick(self) -> None:
        with self._tick_lock:
            now = self.clock()
            if self._retry_at is not None and now < self._retry_at:
                self._cancel_if_leases_unsure(now)
                return
            queue = self._require_queue()
            try:
                self._beat(queue)
                self._settle_lost(queue)
                if not self.stop_event.is_set():
                    self._claim(queue, now)
            except StoreUnavailableError as exc:
                self._store_failed(now, exc)
                return
            if self._store_down_since is not None:
                log.info(
                    "state store reachable again",
                    extra={
                        "detail": f"after {(now - self._store_down_since).total_seconds():.1f} s"
                    },
                )
            self._failures = 0
            self._retry_at = None
            self._store_down_since = None

    def _store_failed(self, now: datetime, exc: StoreUnavailableError) -> None:
        self._failures += 1
        delay = backoff_seconds(self._failures)
        self._retry_at = now + timedelta(seconds=delay)
        if self._store_down_since is None:
            self._store_down_since = now
            log.warning(
                "state store unreachable; retrying with backoff",
                extra={"detail": redact(str(exc))},
            )
        else:
            log.debug("state store still unreachable; next try in %.1f s", delay)
        self._cancel_if_leases_unsure(now)

    def _cancel_if_leases_unsure(self, now: datetime) -> None:
        """Ask the runs to stop when the leases could not be renewed for most of their life."""
        if self._last_beat is None:
            return
        if (now - self._last_beat).total_seconds() < 0.8 * self.lease_seconds:
            return
        with self._lock:
            running = [name for name, cancel in self._active.items() if not cancel.is_set()]
            for name in running:
                self._active[name].set()
        for name in running:
            log.warning(
                "leases not renewed for most of their lifetime; stopping the run",
                extra={"connection": name},
            )

    def _beat(self, queue: WorkQueue) -> None:
        with self._lock:
            active = dict(self._active)
            mine = len(self._claimed | set(self._active))
        queue.beat(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at or self.clock(),
            capacity=self.capacity,
            running=mine,
            ttl_seconds=self.lease_seconds,
        )
        for name in queue.extend_leases(self.worker_id, active, self.lease_seconds):
            log.warning("another worker took over the lease; stopping", extra={"connection": name})
            active[name].set()
        self._last_beat = self.clock()

    def _claim(self, queue: WorkQueue, now: datetime) -> None:
        with self._lock:
            # A run that lost the store is settled before its connection is claimed again.
            busy = self._claimed | set(self._active) | self._lost
        names = sorted(self.connections)
        load = queue.load(names)
        limit = claim_limit(
            load,
            mine=len(busy),
            capacity=self.capacity,
            now=now,
            patience=timedelta(seconds=PATIENCE_TICKS * self.tick_seconds),
        )
        if limit <= 0:
            return
        free = [name for name in names if name not in busy]
        claims = queue.claim(self.worker_id, free, limit, self._next_due)
        for claim in claims:
            with self._lock:
                self._claimed.add(claim.connection)
            log.debug(
                "claimed; next due %s",
                claim.next_due_at.isoformat(),
                extra={"connection": claim.connection},
            )
            self.scheduler.add_job(
                self._run_claimed,
                args=(claim.connection,),
                name=f"sync {claim.connection}",
                executor="default",
                misfire_grace_time=None,
                next_run_time=self.clock(),
            )

    def _next_due(self, name: str, due_at: datetime, now: datetime) -> datetime:
        connection = self.connections[name]
        jitter = random.uniform(0, connection.schedule.jitter_seconds or 0)
        return next_due(connection, due_at, now, self.interval_override, jitter)

    def _run_claimed(self, name: str) -> None:
        try:
            self._run_job(name)
        finally:
            with self._lock:
                self._claimed.discard(name)

    # -- runs that lost the store -----------------------------------------------------------------

    def _store_lost(self, name: str, exc: StoreUnavailableError) -> RunResult:
        with self._lock:
            self._lost.add(name)
        return super()._store_lost(name, exc)

    def _settle_lost(self, queue: WorkQueue) -> None:
        """Close the history rows of runs that lost the store, and free their leases."""
        with self._lock:
            lost = sorted(self._lost)
        for name in lost:
            closed = queue.settle_lost_run(
                self.worker_id,
                name,
                "lost the connection to the state store mid-run; its last transaction was "
                "rolled back and the next scheduled run retries",
            )
            with self._lock:
                self._lost.discard(name)
            if closed:
                log.info("closed a run that lost the state store", extra={"connection": name})

    # -- health -----------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """The connections' health from the shared history, plus this worker's own state."""
        with self._lock:
            running = sorted(self._active)
        worker = {
            "worker_id": self.worker_id,
            "capacity": self.capacity,
            "running": running,
            "last_heartbeat_at": self._last_beat.isoformat() if self._last_beat else None,
            "store": "unreachable" if self._store_down_since else "reachable",
        }
        if self._store_down_since is not None:
            return False, {
                "status": "unhealthy",
                "reason": "the state store is unreachable since "
                f"{self._store_down_since.isoformat()}",
                "worker": worker,
            }
        try:
            healthy, details = super().health()
        except StoreUnavailableError as exc:
            return False, {"status": "unhealthy", "reason": redact(str(exc)), "worker": worker}
        return healthy, {**details, "worker": worker}


__all__ = ["WorkerService", "backoff_seconds", "claim_limit", "next_due", "worker_id"]
