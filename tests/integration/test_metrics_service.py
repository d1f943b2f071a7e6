"""The service's metrics endpoint on a running scheduler: health and series seeded from the run history."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.service.runner import RunResult
from connector.service.scheduler import Service
from tests.unit.test_metrics import add_run, health_status, make_config, sample, scrape


def never_run(connection: Any, cancel: threading.Event) -> RunResult:
    raise AssertionError("no run is due")


def test_service_endpoint_reports_history_and_health(tmp_path: Path) -> None:
    config = make_config(tmp_path, port=0)
    add_run(config, datetime.now(UTC) - timedelta(minutes=5), "succeeded")
    service = Service(config, runner=never_run)
    service.start()
    try:
        server = service.metrics_server
        assert server is not None
        code, body = health_status(server.url + "/healthz")
        assert code == 200
        assert body["connections"]["acme"]["healthy"] is True
        families = scrape(server.url + "/metrics")
        # Seeded from the history at start-up, before any run of this process.
        assert sample(families, "crm_risk_last_success_timestamp_seconds") is not None
        assert sample(families, "crm_risk_sync_runs_total", status="failed") == 0

        add_run(config, datetime.now(UTC), "failed", "quota spent")
        code, body = health_status(server.url + "/healthz")
        assert code == 503
        assert "quota spent" in body["connections"]["acme"]["reason"]
    finally:
        service.request_stop()
        service.shutdown()
