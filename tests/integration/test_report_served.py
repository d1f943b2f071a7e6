"""`crm-risk run` serves the latest portfolio report at /report beside /metrics and /healthz."""

from __future__ import annotations

import re
import socket
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.test_service import (
    COMPLETED,
    Cli,
    require_stack,
    start_sandbox,
    stop,
    wait_for,
)

GENERATED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read().decode()
    except OSError:
        return 0, {}, ""


def scored_accounts(state: Path) -> int:
    with sqlite3.connect(state) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM assessments a JOIN accounts c ON c.connection = a.connection "
            "AND c.crm_id = a.account_id WHERE c.deleted = 0"
        ).fetchone()
    return int(count)


def test_run_serves_the_report_after_the_first_run_and_regenerates_it_after_each_run(
    tmp_path: Path,
) -> None:
    require_stack()
    port = free_port()
    with start_sandbox(accounts=20) as sandbox:
        cli = Cli(tmp_path, sandbox)
        cli.config.write_text(
            cli.config.read_text()
            + f'\n[metrics]\nport = {port}\n\n[report]\nserve = true\nhtml = "out/report.html"\n'
        )
        base = f"http://127.0.0.1:{port}"
        process, log = cli.start("run", "--interval-seconds", "2")
        try:
            assert wait_for(lambda: get(base + "/healthz")[0] in (200, 503), 20), log.read_text()
            served: list[tuple[int, dict[str, str], str]] = []

            def report_ready() -> bool:
                served.append(get(base + "/report"))
                return served[-1][0] == 200

            assert wait_for(report_ready, 30, step=0.2), log.read_text()
            # Nothing but "not yet" before it: no half page, no error.
            assert {status for status, _, _ in served[:-1]} <= {503}
            _, headers, first = served[-1]
            completed = [r for r in cli.status()["runs"] if r["status"] in COMPLETED]
            assert completed, "a report was served before any run finished"
            assert headers["Content-Type"] == "text/html; charset=utf-8"
            assert "default-src 'none'" in headers["Content-Security-Policy"]
            assert cli.connection in first and first.count("<svg") >= 12
            # The book it shows is the one the run stored.
            accounts = scored_accounts(cli.state)
            assert accounts == 20
            assert re.search(rf"<b>{accounts}</b>", first), "the accounts figure is not the store's"
            stamp = GENERATED.search(first)
            assert stamp is not None

            # Regenerated after the next run: a newer generation time on the same address.
            def regenerated() -> bool:
                status, _, body = get(base + "/report")
                found = GENERATED.search(body)
                return status == 200 and found is not None and found.group() > stamp.group()

            assert wait_for(regenerated, 30, step=0.5), log.read_text()
            # The same endpoint still serves the metrics and the health check.
            status, _, metrics = get(base + "/metrics")
            assert status == 200 and "crm_risk_sync_runs_total" in metrics
            assert get(base + "/healthz")[0] == 200
            assert get(base + f"/report/{cli.connection}")[0] == 200
            assert get(base + "/report/no-such-connection")[0] == 404
            written = (tmp_path / "out" / "report.html").read_text()
            assert cli.connection in written and "<svg" in written
        finally:
            stop(process)


def test_run_refuses_to_serve_the_report_without_a_metrics_port(tmp_path: Path) -> None:
    require_stack()
    with start_sandbox(accounts=5) as sandbox:
        cli = Cli(tmp_path, sandbox)
        cli.config.write_text(cli.config.read_text() + "\n[report]\nserve = true\n")
        result: Any = cli.run("run", "--max-runs", "1")
    assert result.returncode == 78, result.stderr
    assert "[report] serve" in result.stderr and "[metrics] port" in result.stderr
