"""Workers on a real PostgreSQL store with a fake run function: shares, no overlap, a lost store settled."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from connector.config import AppConfig
from connector.errors import StoreUnavailableError
from connector.service.runner import RunResult
from connector.service.workers import WorkerService
from connector.store import open_store
from connector.store.coordination import WorkQueue


def make_config(
    url: str, names: list[str], metrics: dict[str, Any] | None = None, **service: Any
) -> AppConfig:
    return AppConfig.model_validate(
        {
            "store": {"url": url, "lease_seconds": 6},
            "service": {"claim_interval_seconds": 0.2, **service},
            "metrics": metrics or {},
            "connections": {name: {"kind": "zoho", "mapping": "zoho.toml"} for name in names},
        }
    )


class LeasedFakeRun:
    """Takes the run lease and records the run like run_sync does, then sleeps instead of syncing."""

    def __init__(self, url: str, seconds: float = 0.15) -> None:
        self.url = url
        self.seconds = seconds
        self.worker_id = ""
        self.runs: list[tuple[str, str, float, float]] = []
        self.fail_next_with: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self, connection: Any, cancel: threading.Event) -> RunResult:
        store = open_store(self.url)
        try:
            store.acquire_lease(connection.name, self.worker_id, 6)
            run_id = f"{connection.name}-{time.monotonic_ns()}"
            store.start_run(run_id, connection.name, "schedule", worker=self.worker_id)
            started = time.monotonic()
            with self._lock:
                failure, self.fail_next_with = self.fail_next_with, None
            if failure is not None:
                raise failure
            time.sleep(self.seconds)
            store.finish_run(run_id, "succeeded", {"run_id": run_id, "status": "succeeded"})
            store.release_lease(connection.name, self.worker_id)
            with self._lock:
                self.runs.append((connection.name, self.worker_id, started, time.monotonic()))
            return RunResult({"connection": connection.name, "status": "succeeded"}, 0)
        finally:
            store.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerService]]:
    started: list[WorkerService] = []
    yield started
    for worker in started:
        worker.request_stop()
        worker.shutdown()


def start_worker(
    config: AppConfig, url: str, workers: list[WorkerService], interval: float
) -> LeasedFakeRun:
    runner = LeasedFakeRun(url)
    worker = WorkerService(config, interval_seconds=interval, runner=runner)
    runner.worker_id = worker.worker_id
    worker.start()
    workers.append(worker)
    return runner


def test_three_workers_share_the_connections_and_never_overlap_one(
    pg_url: str, workers: list[WorkerService]
) -> None:
    names = [f"c{number}" for number in range(9)]
    config = make_config(pg_url, names, max_concurrent_runs=3)
    runners = [start_worker(config, pg_url, workers, interval=1) for _ in range(3)]
    time.sleep(4.5)
    for worker in workers:
        worker.request_stop(cancel_runs=False)
    for worker in workers:
        worker.shutdown()
    runs = [run for runner in runners for run in runner.runs]
    by_connection: dict[str, list[tuple[float, float]]] = {}
    for name, _worker, started, ended in runs:
        by_connection.setdefault(name, []).append((started, ended))
    assert sorted(by_connection) == names
    for name, spans in by_connection.items():
        spans.sort()
        assert len(spans) >= 3, (name, spans)
        for (_, first_end), (second_start, _) in itertools.pairwise(spans):
            assert second_start >= first_end, name
    shares = [len(runner.runs) for runner in runners]
    # Fair-share claims: no worker idles while another carries most of the load.
    assert min(shares) >= len(runs) / 6, shares


def test_a_run_that_loses_the_store_is_closed_as_failed_and_its_lease_freed(
    pg_url: str, workers: list[WorkerService]
) -> None:
    config = make_config(pg_url, ["acme"])
    runner = LeasedFakeRun(pg_url)
    runner.fail_next_with = StoreUnavailableError("lost the connection (test)")
    worker = WorkerService(config, interval_seconds=30, runner=runner)
    runner.worker_id = worker.worker_id
    worker.start()
    workers.append(worker)
    store = open_store(pg_url)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            runs = store.recent_runs("acme")
            if runs and runs[0]["status"] != "running" and store.lease("acme") is None:
                break
            time.sleep(0.1)
        runs = store.recent_runs("acme")
        assert [run["status"] for run in runs] == ["failed"]
        assert "state store" in runs[0]["report"]["message"]
        assert store.lease("acme") is None
        # Retried on schedule, not at once: the next due time is one interval after the claim.
        row = WorkQueue(store).schedule(["acme"])["acme"]
        assert (row.next_due_at - datetime.now(UTC)).total_seconds() > 20
    finally:
        store.close()


def test_healthz_reports_the_worker_and_turns_503_while_the_store_is_unreachable(
    pg_url: str, pg_cluster: Any, workers: list[WorkerService]
) -> None:
    import json
    import urllib.error
    import urllib.request

    config = make_config(pg_url, ["acme"], metrics={"port": 0, "host": "127.0.0.1"})
    runner = LeasedFakeRun(pg_url)
    worker = WorkerService(config, interval_seconds=30, runner=runner)
    runner.worker_id = worker.worker_id
    worker.start()
    workers.append(worker)
    assert worker.metrics_server is not None
    url = worker.metrics_server.url + "/healthz"

    def healthz() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not runner.runs:
        time.sleep(0.1)
    status, body = healthz()
    assert status == 200, body
    assert body["worker"]["worker_id"] == worker.worker_id
    assert body["worker"]["store"] == "reachable"
    # The database goes away (dropped, its sessions ended): the next tick notices.
    pg_cluster.drop_database(urlsplit(pg_url).path.lstrip("/"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and healthz()[0] == 200:
        time.sleep(0.2)
    status, body = healthz()
    assert status == 503
    # Whichever notices first, the tick or the health check's own query, names the store.
    assert "state store" in body["reason"], body
    assert body["worker"]["worker_id"] == worker.worker_id
