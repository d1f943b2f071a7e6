"""/report on the metrics endpoint: 503 until a run has built it, the page after, one per connection."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.config import AppConfig
from connector.errors import ConfigError
from connector.service.metrics import Metrics, MetricsServer
from connector.service.report_page import (
    HEADERS_EXTRA,
    LatestReports,
    check_report_settings,
    html_path_for,
)
from connector.store import SqlStore, open_store

NOW = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)


def config(tmp_path: Path, names: tuple[str, ...] = ("acme",), **report: object) -> AppConfig:
    return AppConfig.model_validate(
        {
            "store": {"url": str(tmp_path / "state.db")},
            "metrics": {"port": 0},
            "report": {"serve": True, **report},
            "connections": {
                name: {
                    "kind": "zoho",
                    "mapping": "zoho-default",
                    "client_secret": "s",
                    "refresh_token": "r",
                }
                for name in names
            },
            "source": str(tmp_path / "crm-risk.toml"),
        }
    )


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read()


def serve(reports: LatestReports) -> MetricsServer:
    return MetricsServer(
        Metrics(), lambda: (True, {}), report=reports.answer, report_headers=HEADERS_EXTRA
    ).start()


def opener(app: AppConfig) -> SqlStore:
    return open_store(app.store.url)


def test_report_is_503_until_a_run_built_it_then_the_page_with_its_headers(
    tmp_path: Path,
) -> None:
    app = config(tmp_path)
    reports = LatestReports(app, lambda: opener(app), connections=["acme"], clock=lambda: NOW)
    with serve(reports) as server:
        status, headers, body = get(server.url + "/report")
        assert status == 503 and headers["Retry-After"] == "60"
        assert b"first run" in body
        page = reports.regenerate("acme", "run-1")
        assert page is not None and page.run_id == "run-1"
        status, headers, body = get(server.url + "/report")
        assert status == 200
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert body == page.html and body.startswith(b"<!DOCTYPE html>")
        assert get(server.url + "/report/acme")[2] == page.html
        assert get(server.url + "/report/other")[0] == 404
        # /metrics and /healthz are untouched.
        assert get(server.url + "/healthz")[0] == 200
        assert b"crm_risk_sync_runs_total" in get(server.url + "/metrics")[2]


def test_several_connections_get_an_index_and_one_page_each(tmp_path: Path) -> None:
    app = config(tmp_path, ("acme", "globex"))
    reports = LatestReports(
        app, lambda: opener(app), connections=["acme", "globex"], clock=lambda: NOW
    )
    reports.regenerate("globex")
    with serve(reports) as server:
        status, _, index = get(server.url + "/report")
        assert status == 200
        assert b'href="/report/acme"' in index and b'href="/report/globex"' in index
        assert b"no report yet" in index and b"generated 2026-11-01T18:00:00+00:00" in index
        assert get(server.url + "/report/acme")[0] == 503
        assert get(server.url + "/report/globex")[0] == 200


def test_report_unserved_is_404_and_never_the_metrics_text(tmp_path: Path) -> None:
    app = config(tmp_path, serve=False)
    reports = LatestReports(app, lambda: opener(app), connections=["acme"])
    with MetricsServer(Metrics(), lambda: (True, {})).start() as plain:
        status, _, body = get(plain.url + "/report")
        assert status == 404 and b"crm_risk" not in body
    assert reports.answer("/report")[0] == "404 Not Found"


def test_a_failed_regeneration_keeps_the_previous_page_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = config(tmp_path)
    times = iter([NOW, NOW + timedelta(minutes=15)])
    calls: list[int] = []

    def flaky_store() -> SqlStore:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("disk gone")
        return opener(app)

    reports = LatestReports(app, flaky_store, connections=["acme"], clock=lambda: next(times))
    first = reports.regenerate("acme")
    with caplog.at_level(logging.WARNING, logger="crm_risk.report"):
        assert reports.regenerate("acme") is None
    assert reports.page("acme") == first
    assert "disk gone" in caplog.text and "not regenerated" in caplog.text


def test_an_older_regeneration_never_replaces_a_newer_page(tmp_path: Path) -> None:
    app = config(tmp_path)
    times = iter([NOW + timedelta(minutes=5), NOW])
    reports = LatestReports(
        app, lambda: opener(app), connections=["acme"], clock=lambda: next(times)
    )
    newer = reports.regenerate("acme")
    assert reports.regenerate("acme") == newer
    assert reports.page("acme") == newer


def test_report_files_are_written_per_connection_without_overwriting_each_other(
    tmp_path: Path,
) -> None:
    target = str(tmp_path / "out" / "portfolio.html")
    assert html_path_for(target, "acme", several=False) == tmp_path / "out" / "portfolio.html"
    assert html_path_for(target, "acme", several=True) == tmp_path / "out" / "portfolio-acme.html"
    assert html_path_for(str(tmp_path / "{connection}.html"), "x", several=True) == (
        tmp_path / "x.html"
    )
    app = config(tmp_path, ("acme", "globex"), html=target)
    reports = LatestReports(app, lambda: opener(app), connections=["acme", "globex"])
    reports.regenerate("acme")
    written = (tmp_path / "out" / "portfolio-acme.html").read_bytes()
    assert written == reports.page("acme").html  # type: ignore[union-attr]


def test_serving_the_report_needs_the_metrics_port(tmp_path: Path) -> None:
    app = config(tmp_path).model_copy(
        update={"metrics": config(tmp_path).metrics.model_copy(update={"port": None})}
    )
    with pytest.raises(ConfigError) as refused:
        check_report_settings(app)
    assert "[metrics] port" in str(refused.value)
    check_report_settings(config(tmp_path))
