"""Prometheus metrics from run reports: an HTTP endpoint in `run` mode, a textfile or Pushgateway for `sync`."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
    push_to_gateway,
    write_to_textfile,
)

from connector.redaction import redact, redact_url
from connector.service.health import SUCCESS_STATUSES

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from connector.config import AppConfig

log = logging.getLogger("crm_risk.metrics")

# Declared up front so a dashboard sees a zero instead of a missing series before the first failure.
RUN_STATUSES = (
    "succeeded",
    "succeeded_with_rejections",
    "failed",
    "cancelled",
    "skipped",
)
# Syncs take seconds to an hour; the default HTTP-latency buckets would put them all in +Inf.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Report counters of a written object -> the `result` label. "planned" and "retried_from_previous"
# describe intent, not outcome, so they are not write results.
WRITE_RESULTS = {
    "written": "ok",
    "ok": "ok",
    "rejected": "rejected",
    "unknown": "unknown",
    "unchanged": "unchanged",
    "skipped_override": "skipped_override",
    "held_for_approval": "held_for_approval",
    "conflicts": "conflict",
}
TASK_OPERATIONS = ("create", "escalate", "comment", "complete")
PUSH_JOB = "crm_risk_sync"

HealthFunction = Callable[[], tuple[bool, dict[str, Any]]]
# GET path -> (status line, content type, body); see connector.service.report_page.
PageFunction = Callable[[str], tuple[str, str, bytes]]


class Metrics:
    """The connector's Prometheus series in a private registry (never the global default one)."""

    def __init__(self, *, last_success: bool = True) -> None:
        """Create the series.

        Args:
            last_success: include crm_risk_last_success_timestamp_seconds (always true in `run`
                mode; one-shot exports set it from the run history).
        """
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.runs = Counter(
            "crm_risk_sync_runs_total",
            "Sync runs by final status (skipped: overlap or another process held the lease).",
            ["connection", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "crm_risk_sync_duration_seconds",
            "Wall-clock duration of sync runs.",
            ["connection"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.records_read = Counter(
            "crm_risk_records_read_total",
            "Records read from the CRM, by canonical object.",
            ["connection", "object"],
            registry=registry,
        )
        self.writes = Counter(
            "crm_risk_writes_total",
            "Record and task writes by object, operation and result.",
            ["connection", "object", "operation", "result"],
            registry=registry,
        )
        self.api_requests = Counter(
            "crm_risk_api_requests_total",
            "CRM API calls made by sync runs.",
            ["crm", "connection"],
            registry=registry,
        )
        self.quota_remaining = Gauge(
            "crm_risk_api_quota_remaining",
            "API calls left in the CRM's quota after the last run (when the CRM reports it).",
            ["connection"],
            registry=registry,
        )
        self.pending_retries = Gauge(
            "crm_risk_pending_retries",
            "Rejected or unconfirmed writes waiting for the next run.",
            ["connection"],
            registry=registry,
        )
        self.last_success: Gauge | None = None
        if last_success:
            self.last_success = Gauge(
                "crm_risk_last_success_timestamp_seconds",
                "Unix time at which the last successful run ended.",
                ["connection"],
                registry=registry,
            )

    def declare(self, connection: str) -> None:
        """Create a connection's run counters at zero, so alerts on `increase()` work from the start."""
        for status in RUN_STATUSES:
            self.runs.labels(connection=connection, status=status)
        self.pending_retries.labels(connection=connection)

    def record_run(self, report: Mapping[str, Any], pending_retries: int | None = None) -> None:
        """Update every series from one run report (RunReport.to_dict()).

        Args:
            report: the run report as a dict.
            pending_retries: failed writes waiting for the next run, if known.
        """
        connection = str(report.get("connection") or "unknown")
        status = str(report.get("status") or "failed")
        self.runs.labels(connection=connection, status=status).inc()
        started = _parse_time(report.get("started_at"))
        ended = _parse_time(report.get("ended_at"))
        if started is not None and ended is not None and ended >= started:
            self.duration.labels(connection=connection).observe((ended - started).total_seconds())
        for obj, counts in _mapping_items(report.get("objects")):
            read = _number(counts.get("read"))
            if read:
                self.records_read.labels(connection=connection, object=obj).inc(read)
        for obj, counts in _mapping_items(report.get("writes")):
            for key, result in WRITE_RESULTS.items():
                amount = _number(counts.get(key))
                if amount:
                    self.writes.labels(
                        connection=connection, object=obj, operation="update", result=result
                    ).inc(amount)
        self._record_tasks(connection, report.get("tasks"))
        api = report.get("api")
        if isinstance(api, Mapping):
            calls = _number(api.get("calls"))
            if calls:
                crm = str(report.get("crm") or "unknown")
                self.api_requests.labels(crm=crm, connection=connection).inc(calls)
            remaining = api.get("quota_remaining")
            if isinstance(remaining, int | float):
                self.quota_remaining.labels(connection=connection).set(remaining)
        if pending_retries is not None:
            self.pending_retries.labels(connection=connection).set(pending_retries)
        if status in SUCCESS_STATUSES and ended is not None:
            self.set_last_success(connection, ended)

    def _record_tasks(self, connection: str, tasks: Any) -> None:
        if not isinstance(tasks, Mapping):
            return
        for operation in TASK_OPERATIONS:
            amount = _number(tasks.get(operation))
            if amount:
                self.writes.labels(
                    connection=connection, object="task", operation=operation, result="ok"
                ).inc(amount)
            failed = _number(tasks.get(f"failed_{operation}"))
            if failed:
                self.writes.labels(
                    connection=connection, object="task", operation=operation, result="failed"
                ).inc(failed)
        # The report counts failed task actions without their operation.
        failed_any = _number(tasks.get("failed"))
        if failed_any and not any(tasks.get(f"failed_{op}") for op in TASK_OPERATIONS):
            self.writes.labels(
                connection=connection, object="task", operation="any", result="failed"
            ).inc(failed_any)

    def record_skipped(self, connection: str) -> None:
        """Count a run that did not start (overlap, or another process held the lease)."""
        self.runs.labels(connection=connection, status="skipped").inc()

    def set_last_success(self, connection: str, moment: datetime) -> None:
        """Set the last-success gauge (also seeded from the run history at start-up)."""
        if self.last_success is not None:
            self.last_success.labels(connection=connection).set(moment.timestamp())

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (what /metrics serves)."""
        from prometheus_client import generate_latest

        text: bytes = generate_latest(self.registry)
        return text


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _mapping_items(value: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(value, Mapping):
        for key, counts in value.items():
            if isinstance(counts, Mapping):
                yield str(key), counts


# -- HTTP endpoint (run mode) ---------------------------------------------------------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow scrape never blocks /healthz."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to our logger at debug level instead of stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics endpoint: " + format, *args)


class MetricsServer:
    """Serves /metrics (Prometheus text), /healthz (JSON; 200 healthy, 503 not) and, when given,
    /report (the portfolio report) on one port."""

    def __init__(
        self,
        metrics: Metrics,
        health: HealthFunction,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        report: PageFunction | None = None,
        report_headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Bind the socket (port 0 picks a free port); call start() to serve.

        Args:
            metrics: the series to expose.
            health: returns (healthy, JSON-able details) for /healthz.
            host: interface to bind; loopback unless the operator opts in.
            port: TCP port; 0 for any free port.
            report: answers /report and /report/NAME; None leaves them unserved (404).
            report_headers: extra headers of every /report answer.
        """
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._health = health
        self._report = report
        self._report_headers = list(report_headers)
        self._server = make_server(
            host, port, self._app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the endpoint."""
        host = str(self._server.server_address[0])
        return f"http://{host}:{self.port}"

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/report" or path.startswith("/report/"):
            return self._report_app(path, environ, start_response)
        if path == "/healthz":
            try:
                healthy, details = self._health()
            except Exception as exc:  # a broken store must show as unhealthy, not as a crash
                healthy, details = False, {"error": redact(f"{type(exc).__name__}: {exc}")}
            body = json.dumps(details, default=str, sort_keys=True).encode()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(
                status,
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        result: Iterable[bytes] = self._metrics_app(environ, start_response)
        return result

    def _report_app(
        self, path: str, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if self._report is None:
            status, kind, body = "404 Not Found", "text/plain", b"the report is not served\n"
        elif environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            status, kind, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
        else:
            try:
                status, kind, body = self._report(path)
            except Exception as exc:  # a broken report must not take the endpoint down
                log.warning("report page failed: %s", redact(f"{type(exc).__name__}: {exc}"))
                status, kind, body = "500 Internal Server Error", "text/plain", b"report failed\n"
        headers = [("Content-Type", kind), ("Content-Length", str(len(body)))]
        if status.startswith("200"):
            headers += self._report_headers
        if status.startswith("503"):
            headers.append(("Retry-After", "60"))
        start_response(status, headers)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def start(self) -> MetricsServer:
        """Serve in a background thread."""
        # A short poll keeps shutdown quick; an idle poll every 0.1 s costs nothing measurable.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="crm-risk-metrics",
            daemon=True,
        )
        self._thread.start()
        log.info("metrics endpoint listening", extra={"detail": self.url})
        return self

    def close(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- one-shot `sync` -----------------------------------------------------------------------------


def _one_shot_metrics(
    config: AppConfig, report: Mapping[str, Any], pending_retries: int | None
) -> Metrics:
    metrics = Metrics()
    metrics.record_run(report, pending_retries)
    connection = str(report.get("connection") or "")
    if str(report.get("status")) not in SUCCESS_STATUSES:
        # A textfile is overwritten and a push replaces the group: carry the last success over
        # from the run history, or a failed run would erase it and hide how stale the data is.
        last = _last_success_from_history(config, connection)
        if last is not None:
            metrics.set_last_success(connection, last)
    return metrics


def _last_success_from_history(config: AppConfig, connection: str) -> datetime | None:
    from connector.store import open_store

    try:
        store = open_store(config.store.url)
    except Exception:  # metrics must never fail a sync
        log.warning("could not read the run history for metrics", exc_info=True)
        return None
    try:
        for run in store.recent_runs(connection, limit=200):
            if run["status"] in SUCCESS_STATUSES and run.get("ended_at"):
                return _parse_time(run["ended_at"])
    finally:
        store.close()
    return None


def write_textfile(
    config: AppConfig, report: Mapping[str, Any], pending_retries: int | None = None
) -> None:
    """Write the run's metrics for node_exporter's textfile collector ([metrics] textfile).

    Args:
        config: the configuration (its [metrics] textfile path).
        report: the run report.
        pending_retries: failed writes waiting for the next run.
    """
    path = config.metrics.textfile
    if not path:
        return
    metrics = _one_shot_metrics(config, report, pending_retries)
    # write_to_textfile writes a temporary file and renames it, so the collector never reads half.
    write_to_textfile(path, metrics.registry)


def push(config: AppConfig, report: Mapping[str, Any], pending_retries: int | None = None) -> None:
    """Push the run's metrics to the Pushgateway ([metrics] pushgateway), grouped by connection.

    Args:
        config: the configuration (its [metrics] pushgateway URL).
        report: the run report.
        pending_retries: failed writes waiting for the next run.
    """
    gateway = config.metrics.pushgateway
    if not gateway:
        return
    metrics = _one_shot_metrics(config, report, pending_retries)
    push_to_gateway(
        gateway,
        job=PUSH_JOB,
        registry=metrics.registry,
        grouping_key={"connection": str(report.get("connection") or "unknown")},
        timeout=10,
    )


def export_one_shot(
    config: AppConfig, report: Mapping[str, Any], pending_retries: int | None = None
) -> None:
    """Export a one-shot run's metrics to the configured textfile and Pushgateway.

    Never raises: a monitoring outage must not turn a good sync into a failed one. Dry runs
    are not exported (they are not syncs).

    Args:
        config: the configuration ([metrics] textfile, pushgateway).
        report: the run report (RunReport.to_dict()).
        pending_retries: failed writes waiting for the next run.
    """
    if report.get("dry_run"):
        return
    if config.metrics.textfile:
        try:
            write_textfile(config, report, pending_retries)
        except OSError as exc:
            log.warning(
                "could not write the metrics textfile",
                extra={"detail": redact(f"{config.metrics.textfile}: {exc}")},
            )
    if config.metrics.pushgateway:
        try:
            push(config, report, pending_retries)
        except OSError as exc:  # urllib's URLError is an OSError
            log.warning(
                "could not push metrics",
                extra={"detail": redact(f"{redact_url(config.metrics.pushgateway)}: {exc}")},
            )


__all__ = [
    "Metrics",
    "MetricsServer",
    "export_one_shot",
    "push",
    "write_textfile",
]
