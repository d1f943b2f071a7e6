"""Metrics: the documented series over HTTP, /healthz, and the one-shot textfile and Pushgateway exports."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector.config import AppConfig
from connector.service.health import Expectation, connection_health
from connector.service.metrics import Metrics, MetricsServer, export_one_shot
from connector.store import open_store

DOCUMENTED = {
    "crm_risk_sync_runs",
    "crm_risk_sync_duration_seconds",
    "crm_risk_records_read",
    "crm_risk_writes",
    "crm_risk_api_requests",
    "crm_risk_api_quota_remaining",
    "crm_risk_pending_retries",
    "crm_risk_last_success_timestamp_seconds",
}
ALLOWED_LABELS = {"connection", "status", "object", "operation", "result", "crm", "le"}
STARTED = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)


def report(status: str = "succeeded_with_rejections", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "run_id": "20240605T120000-abc123",
        "connection": "acme",
        "crm": "zoho",
        "trigger": "schedule",
        "dry_run": False,
        "status": status,
        "started_at": STARTED.isoformat(),
        "ended_at": (STARTED + timedelta(seconds=42)).isoformat(),
        "objects": {"account": {"read": 12, "changed": 3}, "invoice": {"read": 40}},
        "writes": {
            "account": {
                "planned": 5,
                "written": 3,
                "rejected": 1,
                "unchanged": 7,
                "skipped_override": 2,
            }
        },
        "tasks": {"planned_create": 2, "create": 2, "escalate": 1, "failed": 1},
        "api": {"calls": 7, "by_endpoint": {}, "quota_remaining": 993, "quota_limit": 1000},
    }
    base.update(overrides)
    return base


def scrape(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float | None:
    for family in families.values():
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                return float(item.value)
    return None


def health_status(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


@pytest.fixture
def server_of() -> Iterator[Any]:
    servers: list[MetricsServer] = []

    def make(metrics: Metrics, health: Any = lambda: (True, {})) -> MetricsServer:
        server = MetricsServer(metrics, health, host="127.0.0.1", port=0).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def test_endpoint_serves_every_documented_series_after_a_run(server_of: Any) -> None:
    metrics = Metrics()
    metrics.record_run(report(), pending_retries=2)
    families = scrape(server_of(metrics).url + "/metrics")

    assert set(families) >= DOCUMENTED
    assert sample(families, "crm_risk_sync_runs_total", status="succeeded_with_rejections") == 1
    assert sample(families, "crm_risk_sync_duration_seconds_sum", connection="acme") == 42
    assert sample(families, "crm_risk_records_read_total", object="account") == 12
    assert sample(families, "crm_risk_records_read_total", object="invoice") == 40
    assert sample(families, "crm_risk_writes_total", object="account", result="ok") == 3
    assert sample(families, "crm_risk_writes_total", object="account", result="rejected") == 1
    assert sample(families, "crm_risk_writes_total", result="skipped_override") == 2
    assert sample(families, "crm_risk_writes_total", object="task", operation="create") == 2
    assert sample(families, "crm_risk_writes_total", object="task", result="failed") == 1
    assert sample(families, "crm_risk_api_requests_total", crm="zoho") == 7
    assert sample(families, "crm_risk_api_quota_remaining", connection="acme") == 993
    assert sample(families, "crm_risk_pending_retries", connection="acme") == 2
    # A run with rejections still delivered data: it counts as the last success.
    assert sample(families, "crm_risk_last_success_timestamp_seconds") == (
        (STARTED + timedelta(seconds=42)).timestamp()
    )


def test_no_per_record_labels(server_of: Any) -> None:
    metrics = Metrics()
    metrics.record_run(report(), pending_retries=2)
    families = scrape(server_of(metrics).url + "/metrics")
    labels = {name for family in families.values() for s in family.samples for name in s.labels}
    assert labels <= ALLOWED_LABELS


def test_failed_run_counts_but_is_not_a_success() -> None:
    metrics = Metrics()
    metrics.record_run(report(status="failed"))
    registry = metrics.registry
    assert (
        registry.get_sample_value(
            "crm_risk_sync_runs_total", {"connection": "acme", "status": "failed"}
        )
        == 1
    )
    assert (
        registry.get_sample_value("crm_risk_last_success_timestamp_seconds", {"connection": "acme"})
        is None
    )


def test_declared_connection_exposes_zero_counters() -> None:
    metrics = Metrics()
    metrics.declare("acme")
    assert (
        metrics.registry.get_sample_value(
            "crm_risk_sync_runs_total", {"connection": "acme", "status": "failed"}
        )
        == 0
    )


def test_healthz_answers_200_when_healthy_and_503_when_not(server_of: Any) -> None:
    state = {"healthy": True}
    server = server_of(Metrics(), lambda: (state["healthy"], {"status": "x"}))
    assert health_status(server.url + "/healthz")[0] == 200
    state["healthy"] = False
    assert health_status(server.url + "/healthz")[0] == 503


def test_healthz_is_503_when_the_health_check_itself_breaks(server_of: Any) -> None:
    def broken() -> tuple[bool, dict[str, Any]]:
        raise OSError("disk gone")

    code, body = health_status(server_of(Metrics(), broken).url + "/healthz")
    assert code == 503
    assert "disk gone" in body["error"]


# -- health rules ----------------------------------------------------------------------------------

HOURLY = Expectation(interval_seconds=3600, grace_seconds=300)


def run(status: str, ended: datetime, message: str = "") -> dict[str, Any]:
    return {"status": status, "ended_at": ended.isoformat(), "report": {"message": message}}


@pytest.mark.parametrize(
    ("runs", "healthy"),
    [
        ([run("succeeded", STARTED - timedelta(minutes=30))], True),
        ([run("succeeded_with_rejections", STARTED - timedelta(hours=2))], True),
        ([run("succeeded", STARTED - timedelta(hours=2, minutes=6))], False),
        ([run("failed", STARTED - timedelta(minutes=1), "boom")], False),
        (
            [
                run("cancelled", STARTED - timedelta(minutes=1)),
                run("skipped", STARTED - timedelta(minutes=2)),
                run("succeeded", STARTED - timedelta(minutes=30)),
            ],
            True,
        ),
        ([], False),
    ],
    ids=[
        "recent_success",
        "within_two_intervals",
        "older_than_two_intervals_and_grace",
        "last_run_failed",
        "cancelled_and_skipped_do_not_count",
        "never_ran",
    ],
)
def test_connection_health_rules(runs: list[dict[str, Any]], healthy: bool) -> None:
    assert connection_health(runs, HOURLY, now=STARTED)["healthy"] is healthy


def test_never_ran_is_healthy_while_the_service_just_started() -> None:
    result = connection_health([], HOURLY, now=STARTED, service_started=STARTED)
    assert result["healthy"] is True
    later = STARTED + timedelta(hours=3)
    assert connection_health([], HOURLY, now=later, service_started=STARTED)["healthy"] is False


# -- the service's endpoint ----------------------------------------------------------------------------


def make_config(tmp_path: Path, **metrics: Any) -> AppConfig:
    return AppConfig.model_validate(
        {
            "store": {"url": str(tmp_path / "state.db")},
            "metrics": metrics,
            "connections": {
                "acme": {
                    "kind": "zoho",
                    "mapping": "zoho.default.toml",
                    "schedule": {"interval_seconds": 3600},
                }
            },
            "source": str(tmp_path / "crm-risk.toml"),
        }
    )


def add_run(config: AppConfig, started: datetime, status: str, message: str = "") -> None:
    store = open_store(config.store.url, clock=lambda: started)
    try:
        run_id = f"run-{started.timestamp()}-{status}"
        store.start_run(run_id, "acme", "cli")
        store.finish_run(run_id, status, {"run_id": run_id, "status": status, "message": message})
    finally:
        store.close()


# -- one-shot exports ----------------------------------------------------------------------------------


def test_export_one_shot_writes_a_textfile(tmp_path: Path) -> None:
    path = tmp_path / "crm_risk.prom"
    config = make_config(tmp_path, textfile=str(path))
    export_one_shot(config, report(status="succeeded"), pending_retries=0)
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert set(families) >= DOCUMENTED
    assert sample(families, "crm_risk_sync_runs_total", status="succeeded") == 1


def test_failed_one_shot_keeps_the_last_success_from_history(tmp_path: Path) -> None:
    path = tmp_path / "crm_risk.prom"
    config = make_config(tmp_path, textfile=str(path))
    success_start = datetime(2024, 6, 4, 12, 0, tzinfo=UTC)
    add_run(config, success_start, "succeeded")
    export_one_shot(config, report(status="failed"), pending_retries=3)
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert sample(families, "crm_risk_last_success_timestamp_seconds") == success_start.timestamp()
    assert sample(families, "crm_risk_pending_retries") == 3


def test_dry_run_exports_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crm_risk.prom"
    config = make_config(tmp_path, textfile=str(path))
    export_one_shot(config, report(dry_run=True))
    assert not path.exists()


class _Gateway(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(("PUT", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    _Gateway.received = []
    server = HTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Gateway.received
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_export_one_shot_pushes_grouped_by_connection(tmp_path: Path, gateway: Any) -> None:
    url, received = gateway
    config = make_config(tmp_path, pushgateway=url)
    export_one_shot(config, report(status="succeeded"), pending_retries=0)
    ((method, path, body),) = received
    assert method == "PUT"
    assert path == "/metrics/job/crm_risk_sync/connection/acme"
    assert b"crm_risk_sync_runs_total" in body


def test_unreachable_pushgateway_does_not_fail_the_sync(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(tmp_path, pushgateway=f"http://127.0.0.1:{port}")
    export_one_shot(config, report(status="succeeded"))
