"""The scheduled service: one APScheduler job per connection, run history in the store, clean shutdown.

How the service behaves, in short:

* One job per enabled connection, ``id`` = the connection name, ``replace_existing=True``,
  ``max_instances=1``, ``coalesce=True`` and the schedule's own ``misfire_grace_time`` (APScheduler's
  1 s default is too small for a restart). Registering again replaces the job, never adds one.
* Jobs live in APScheduler's memory job store; the truth about what ran is the run history in
  the state store. At start-up each job's first run time is computed from that history: the
  next time due after the last run started; when that is already past (the service was down),
  the job runs immediately, once, whatever number of runs were missed (coalesced). A connection
  that never ran runs at start-up. We do not use a persistent job store because APScheduler 3
  pickles jobs and cannot share one between processes (FAQ); the history already has what we need.
* Every run opens its own store connection and adapter; ``run_sync`` takes the connection's lease
  and records the run. A run that would overlap the previous one (EVENT_JOB_MAX_INSTANCES), one
  whose lease another process holds (LockHeldError) and one missed beyond its grace time are
  recorded as ``skipped`` with the reason.
* SIGTERM/SIGINT set the current runs' cancel events (run_sync stops before its next batch and
  records ``cancelled``), then the scheduler shuts down waiting for them, and ``serve`` returns 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, TypedDict

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from connector.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    ConfigProblem,
    LockHeldError,
    StoreError,
    StoreUnavailableError,
)
from connector.redaction import redact
from connector.service.health import SUCCESS_STATUSES, Expectation, health_report
from connector.service.metrics import Metrics, MetricsServer
from connector.service.report_page import HEADERS_EXTRA, LatestReports, check_report_settings
from connector.service.runner import TRIGGER, ConnectionRunner, Runner, RunResult, new_run_id
from connector.service.schedules import (
    HISTORY_SCAN,
    build_trigger,
    expected_interval,
    first_run_time,
    last_run_started,
)
from connector.store import SqlStore, open_store
from connector.store.coordination import WorkQueue
from connector.store.holders import holder_id

if TYPE_CHECKING:
    from connector.config import AppConfig

log = logging.getLogger("crm_risk.scheduler")


class ServiceOptions(TypedDict, total=False):
    """The options of `Service` (and of the worker built on it) besides the configuration."""

    interval_seconds: float | None
    max_runs: int | None
    runner: Runner | None
    clock: Callable[[], datetime] | None


# How often a `crm-risk run` service on a SQLite store says it is alive (its row expires after 3).
SERVICE_BEAT_SECONDS = 30.0


class Service:
    """The scheduler with its jobs, listeners, metrics and shutdown logic."""

    # A worker on a shared store records its own heartbeat (connector.service.workers).
    service_heartbeat = True

    def __init__(
        self,
        config: AppConfig,
        *,
        interval_seconds: float | None = None,
        max_runs: int | None = None,
        runner: Runner | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Validate the schedules and build the (not yet started) scheduler.

        Args:
            config: the configuration.
            interval_seconds: replaces every connection's schedule.
            max_runs: stop after this many completed runs (for trials and tests).
            runner: runs one connection (tests inject a fake); default ConnectionRunner.
            clock: current time, for the start-up computation (tests).

        Raises:
            ConfigError: no enabled connection, or an invalid schedule.
        """
        if interval_seconds is not None and interval_seconds <= 0:
            raise ConfigError(
                [ConfigProblem("--interval-seconds", "must be a positive number of seconds")]
            )
        self.config = config
        self.interval_override = interval_seconds
        self.max_runs = max_runs
        self.clock = clock or (lambda: datetime.now(UTC))
        self.runner: Runner = runner or ConnectionRunner(config)
        self.connections = {name: conn for name, conn in config.connections.items() if conn.enabled}
        if not self.connections:
            raise ConfigError(
                [
                    ConfigProblem(
                        "connections",
                        "no enabled connection to schedule",
                        "add a [connections.NAME] section or set enabled = true",
                    )
                ],
                config.source,
            )
        # Validate every schedule before starting anything, so a typo fails fast with exit 78.
        self.triggers = {
            name: build_trigger(conn, interval_seconds) for name, conn in self.connections.items()
        }
        check_report_settings(config)
        self.metrics = Metrics()
        self.reports = LatestReports(config, self.open_store, connections=list(self.connections))
        self.stop_event = threading.Event()
        self.started_at: datetime | None = None
        # The service's row in `workers` (SQLite store): `status` knows a service is running.
        self.service_id = holder_id()
        self._beating = False
        self._lock = threading.Lock()
        self._active: dict[str, threading.Event] = {}
        self._completed = 0
        self._server: MetricsServer | None = None
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors=self._executors(),
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self.scheduler.add_listener(
            self._on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED | EVENT_JOB_ERROR
        )

    def _executors(self) -> dict[str, Any]:
        # One thread per connection: max_instances=1 means no more are needed.
        return {"default": ThreadPoolExecutor(max_workers=len(self.connections))}

    # -- lifecycle ------------------------------------------------------------------------------

    def open_store(self) -> SqlStore:
        """A new connection to the state store (each thread and run has its own)."""
        return open_store(self.config.store.url)

    def start(self) -> None:
        """Start the scheduler and register the jobs (and the metrics endpoint, if configured)."""
        self.started_at = self.clock()
        self._seed_metrics()
        metrics = self.config.metrics
        if metrics.port is not None:
            try:
                server = MetricsServer(
                    self.metrics,
                    self.health,
                    host=metrics.host,
                    port=metrics.port,
                    report=self.reports.answer if self.config.report.serve else None,
                    report_headers=HEADERS_EXTRA,
                )
            except OSError as exc:
                raise ConfigError(
                    [
                        ConfigProblem(
                            "[metrics] port",
                            f"cannot listen on {metrics.host}:{metrics.port}: {exc.strerror or exc}",
                            "choose a free port or remove it to disable the endpoint",
                        )
                    ],
                    self.config.source,
                ) from None
            self._server = server.start()
        # Started paused so add_job goes straight to the job store: replace_existing applies and
        # no job fires before every job is registered.
        self.scheduler.start(paused=True)
        self.register_jobs()
        self.scheduler.resume()
        if self.reports.enabled:
            # The last run's book until the next run, built beside the runs (never delaying them).
            threading.Thread(
                target=self.reports.warm,
                args=(self._ran_before,),
                name="crm-risk-report-warm",
                daemon=True,
            ).start()

    def _ran_before(self, name: str) -> bool:
        store = self.open_store()
        try:
            return last_run_started(store, name) is not None
        finally:
            store.close()

    def register_jobs(self) -> None:
        """Add (or replace) one job per enabled connection; safe to call again."""
        now = self.clock()
        store = self.open_store()
        try:
            last = {name: last_run_started(store, name) for name in self.connections}
        finally:
            store.close()
        for name, connection in self.connections.items():
            first = first_run_time(connection, last[name], now, self.interval_override)
            self.scheduler.add_job(
                self._run_job,
                trigger=self.triggers[name],
                args=(name,),
                id=name,
                name=f"sync {name}",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=connection.schedule.misfire_grace_seconds,
                next_run_time=first,
            )
            catch_up = last[name] is not None and first == now
            log.info(
                "job scheduled; first run %s%s",
                first.isoformat(),
                " (catching up a missed run)" if catch_up else "",
                extra={"connection": name, "crm": connection.kind},
            )

    def run_forever(self) -> int:
        """Start, block until stop is requested (signal or max_runs), shut down; returns 0."""
        try:
            self.start()
            beaten = float("-inf")
            # A timeout keeps the main thread responsive to signals on every platform.
            while not self.stop_event.wait(0.5):
                if self.service_heartbeat and time.monotonic() - beaten >= SERVICE_BEAT_SECONDS:
                    self._beat_service()
                    beaten = time.monotonic()
        finally:
            self.shutdown()
            self._leave_service()
        return 0

    def _beat_service(self) -> None:
        """Say in the store that this service runs (`status` shows next runs only then)."""
        try:
            store = self.open_store()
            try:
                with self._lock:
                    running = len(self._active)
                WorkQueue(store).beat(
                    worker_id=self.service_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=self.started_at or self.clock(),
                    capacity=len(self.connections),
                    running=running,
                    ttl_seconds=SERVICE_BEAT_SECONDS * 3,
                )
            finally:
                store.close()
            self._beating = True
        except (StoreUnavailableError, StoreError) as exc:
            log.warning("could not record the service heartbeat: %s", redact(str(exc)))

    def _leave_service(self) -> None:
        if not self._beating:
            return
        try:
            store = self.open_store()
            try:
                WorkQueue(store).leave(self.service_id)
            finally:
                store.close()
        except (StoreUnavailableError, StoreError) as exc:
            log.warning("could not record the service's stop: %s", redact(str(exc)))

    def request_stop(self, *, cancel_runs: bool = True) -> None:
        """Stop starting runs; with cancel_runs, ask the running ones to stop before their next batch."""
        with self._lock:
            self.stop_event.set()
            if cancel_runs:
                for cancel in self._active.values():
                    cancel.set()

    def shutdown(self) -> None:
        """Stop the scheduler, waiting for running jobs, and close the metrics endpoint."""
        if self.scheduler.running:
            self.scheduler.pause()
            self.scheduler.shutdown(wait=True)
        if self._server is not None:
            self._server.close()
            self._server = None
        log.info("scheduler stopped", extra={"detail": f"{self._completed} runs completed"})

    @property
    def completed_runs(self) -> int:
        """Runs finished since start (skipped ones excluded)."""
        return self._completed

    @property
    def metrics_server(self) -> MetricsServer | None:
        """The running metrics endpoint, if configured."""
        return self._server

    # -- jobs ---------------------------------------------------------------------------------

    def _run_job(self, name: str) -> None:
        connection = self.connections[name]
        cancel = threading.Event()
        with self._lock:
            if self.stop_event.is_set():
                return
            self._active[name] = cancel
        context = {"connection": name, "crm": connection.kind}
        log.info("run starting", extra=context)
        try:
            result = self.runner(connection, cancel)
        except LockHeldError as exc:
            self._record_skipped(name, str(exc))
            return
        except StoreUnavailableError as exc:
            result = self._store_lost(name, exc)
        except Exception as exc:  # a bug in the runner must not kill the scheduler thread
            log.exception("run crashed", extra=context)
            result = RunResult(
                {
                    "connection": name,
                    "crm": connection.kind,
                    "status": "failed",
                    "message": redact(f"{type(exc).__name__}: {exc}"),
                }
            )
        finally:
            with self._lock:
                self._active.pop(name, None)
        self.metrics.record_run(result.report, result.pending_retries)
        status = str(result.report.get("status"))
        if self.reports.enabled and status != "skipped":
            # After every run that may have changed the stored book (a failed one may have
            # committed batches before it failed); a failure to build is logged, never raised.
            run_id = result.report.get("run_id")
            self.reports.regenerate(name, str(run_id) if run_id else None)
        level = logging.WARNING if status == "failed" else logging.INFO
        log.log(
            level,
            "run finished: %s",
            status,
            extra={
                **context,
                "run_id": result.report.get("run_id"),
                "detail": result.report.get("message") or None,
            },
        )
        with self._lock:
            self._completed += 1
            if self.max_runs is not None and self._completed >= self.max_runs:
                self.stop_event.set()

    def _store_lost(self, name: str, exc: StoreUnavailableError) -> RunResult:
        """A run that lost the state store: failed, and left for the next scheduled run."""
        connection = self.connections[name]
        return RunResult(
            {
                "connection": name,
                "crm": connection.kind,
                "status": "failed",
                "message": redact(f"{exc}; the next scheduled run retries"),
            }
        )

    def _on_event(self, event: Any) -> None:
        name = str(event.job_id)
        try:
            if event.code == EVENT_JOB_MAX_INSTANCES:
                self._record_skipped(
                    name, "the previous run of this connection is still going (max_instances=1)"
                )
            elif event.code == EVENT_JOB_MISSED:
                grace = self.connections[name].schedule.misfire_grace_seconds
                self._record_skipped(
                    name,
                    f"missed its start time {event.scheduled_run_time.isoformat()} by more than "
                    f"the misfire grace of {grace} s; the next run catches up",
                )
            elif event.code == EVENT_JOB_ERROR:
                log.error(
                    "job raised: %s",
                    redact(repr(event.exception)),
                    extra={"connection": name},
                )
        except Exception:  # listeners run in the scheduler thread; it must survive
            log.exception("could not record a scheduler event", extra={"connection": name})

    def _record_skipped(self, name: str, reason: str) -> None:
        log.warning("run skipped: %s", reason, extra={"connection": name})
        self.metrics.record_skipped(name)
        store = self.open_store()
        try:
            store.record_skipped_run(new_run_id(), name, TRIGGER, redact(reason))
        finally:
            store.close()

    # -- metrics and health -------------------------------------------------------------------

    def _seed_metrics(self) -> None:
        """Start the gauges from the history, so a restart does not reset last success to nothing."""
        store = self.open_store()
        try:
            for name in self.connections:
                self.metrics.declare(name)
                self.metrics.pending_retries.labels(connection=name).set(
                    len(store.failed_writes(name))
                )
                for run in store.recent_runs(name, limit=HISTORY_SCAN):
                    if run["status"] in SUCCESS_STATUSES and run.get("ended_at"):
                        ended = datetime.fromisoformat(run["ended_at"])
                        self.metrics.set_last_success(name, ended)
                        break
        finally:
            store.close()

    def expectations(self) -> dict[str, Expectation]:
        """Each connection's expected interval and grace, for /healthz."""
        now = self.clock()
        return {
            name: Expectation(
                expected_interval(conn, now, self.interval_override),
                float(conn.schedule.misfire_grace_seconds),
            )
            for name, conn in self.connections.items()
        }

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details) for /healthz, read from the run history."""
        store = self.open_store()
        try:
            runs = {name: store.recent_runs(name, limit=HISTORY_SCAN) for name in self.connections}
        finally:
            store.close()
        return health_report(
            runs, self.expectations(), now=self.clock(), service_started=self.started_at
        )


@contextmanager
def _stop_on_signals(stop: Callable[[int], None]) -> Iterator[None]:
    """Route SIGTERM and SIGINT to `stop` while the service runs; restore the old handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGINT)
    previous: Mapping[int, Any] = {sig: signal.getsignal(sig) for sig in signals}

    def handler(signum: int, frame: FrameType | None) -> None:
        stop(signum)

    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextmanager
def _apscheduler_logs_through_ours() -> Iterator[None]:
    """Send APScheduler's errors through our (JSON, redacting) handlers instead of bare stderr.

    Only ERROR and above: its skip and misfire warnings duplicate the ones we log with context.
    """
    ours = logging.getLogger("crm_risk")
    theirs = logging.getLogger("apscheduler")
    saved = (list(theirs.handlers), theirs.level, theirs.propagate)
    theirs.handlers = list(ours.handlers)
    theirs.setLevel(logging.ERROR)
    theirs.propagate = False
    try:
        yield
    finally:
        theirs.handlers, level, theirs.propagate = saved[0], saved[1], saved[2]
        theirs.setLevel(level)


def serve(
    config: AppConfig, interval_seconds: int | None = None, max_runs: int | None = None
) -> int:
    """Run the scheduler service until SIGTERM/SIGINT (or until max_runs runs completed).

    Args:
        config: the configuration.
        interval_seconds: replaces every connection's schedule (trials and tests).
        max_runs: stop after this many completed runs.

    Returns:
        The exit code: 0 after a clean shutdown.

    Raises:
        ConfigError: no enabled connection or an invalid schedule (exit 78).
    """
    service: Service
    if config.store.url.startswith(("postgresql://", "postgres://")):
        # A shared database: this process is one of many workers (connector.service.workers).
        from connector.service.workers import WorkerService

        service = WorkerService(config, interval_seconds=interval_seconds, max_runs=max_runs)
    else:
        service = Service(config, interval_seconds=interval_seconds, max_runs=max_runs)
    received: list[int] = []

    def stop(signum: int) -> None:
        # Only sets events here: logging from a signal handler can deadlock on the handler lock.
        received.append(signum)
        service.request_stop(cancel_runs=True)

    with _stop_on_signals(stop), _apscheduler_logs_through_ours():
        log.info(
            "scheduler starting",
            extra={"detail": f"{len(service.connections)} connection(s)"},
        )
        code = service.run_forever()
    if received:
        log.info(
            "stopped by signal %s",
            signal.Signals(received[0]).name,
            extra={"detail": "running runs were asked to stop after their current batch"},
        )
        if received[0] == signal.SIGINT and code == EXIT_OK:
            # Ctrl-C on a terminal: the shell's convention (128 + 2); SIGTERM stays 0.
            return EXIT_INTERRUPTED
    return code


__all__ = ["Service", "ServiceOptions", "serve"]
