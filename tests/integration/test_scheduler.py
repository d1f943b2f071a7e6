"""The service on a real scheduler (APScheduler threads) and a real SQLite file: jobs, start-up runs, overlaps, leases, stops."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from connector.config import AppConfig
from connector.errors import ConfigError, LockHeldError
from connector.service import scheduler as scheduler_module
from connector.service.scheduler import Service, serve
from connector.service.schedules import expected_interval, first_run_time, next_run_times
from connector.store import open_store
from tests.support import FakeRunner, scheduled_config

NOW = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)


def add_run(config: AppConfig, name: str, started: datetime, status: str = "succeeded") -> None:
    """Put a finished run into the history as if it had started at `started`."""
    store = open_store(config.store.url, clock=lambda: started)
    try:
        run_id = f"run-{started.isoformat()}-{status}"
        if status == "skipped":
            store.record_skipped_run(run_id, name, "schedule", "test")
        else:
            store.start_run(run_id, name, "schedule")
            store.finish_run(run_id, status, {"run_id": run_id, "status": status})
    finally:
        store.close()


def runs_of(config: AppConfig, name: str) -> list[dict[str, Any]]:
    store = open_store(config.store.url)
    try:
        return store.recent_runs(name, limit=100)
    finally:
        store.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def started_services() -> Iterator[list[Service]]:
    services: list[Service] = []
    yield services
    for service in services:
        service.request_stop()
        service.shutdown()


# -- the service on a running scheduler ---------------------------------------------------------


def test_service_without_enabled_connections_refuses_to_start(tmp_path: Path) -> None:
    config = scheduled_config(tmp_path, {"acme": {"enabled": False}})
    with pytest.raises(ConfigError, match="no enabled connection"):
        Service(config, runner=FakeRunner())


# -- job registration --------------------------------------------------------------------------------


def test_one_job_per_enabled_connection_with_fixed_id_and_overlap_settings(
    tmp_path: Path, started_services: list[Service]
) -> None:
    config = scheduled_config(
        tmp_path,
        {
            "acme": {"schedule": {"interval_seconds": 900, "misfire_grace_seconds": 120}},
            "globex": {"schedule": {"cron": "30 2 * * *", "timezone": "America/New_York"}},
            "off": {"enabled": False},
        },
    )
    for name in ("acme", "globex"):
        add_run(config, name, datetime.now(UTC))
    service = Service(config, runner=FakeRunner())
    started_services.append(service)
    service.scheduler.start(paused=True)
    service.register_jobs()

    jobs = {job.id: job for job in service.scheduler.get_jobs()}
    assert set(jobs) == {"acme", "globex"}
    acme, globex = jobs["acme"], jobs["globex"]
    assert (acme.max_instances, acme.coalesce, acme.misfire_grace_time) == (1, True, 120)
    assert isinstance(acme.trigger, IntervalTrigger)
    assert acme.trigger.interval == timedelta(seconds=900)
    assert isinstance(globex.trigger, CronTrigger)
    assert str(globex.trigger.timezone) == "America/New_York"
    assert globex.misfire_grace_time == 300
    assert str(service.scheduler.timezone) == "UTC"


def test_registering_again_replaces_jobs_instead_of_adding(
    tmp_path: Path, started_services: list[Service]
) -> None:
    config = scheduled_config(tmp_path)
    service = Service(config, runner=FakeRunner())
    started_services.append(service)
    service.scheduler.start(paused=True)
    service.register_jobs()
    service.register_jobs()
    assert [job.id for job in service.scheduler.get_jobs()] == ["acme"]


def test_restarting_the_service_registers_one_job_again(
    tmp_path: Path, started_services: list[Service]
) -> None:
    config = scheduled_config(tmp_path)
    add_run(config, "acme", datetime.now(UTC))
    first = Service(config, runner=FakeRunner())
    first.start()
    assert [job.id for job in first.scheduler.get_jobs()] == ["acme"]
    first.request_stop()
    first.shutdown()
    second = Service(config, runner=FakeRunner())
    started_services.append(second)
    second.start()
    assert [job.id for job in second.scheduler.get_jobs()] == ["acme"]


# -- start-up: missed runs -----------------------------------------------------------------------------


def test_first_run_is_now_when_never_run(tmp_path: Path) -> None:
    connection = scheduled_config(tmp_path).connections["acme"]
    assert first_run_time(connection, None, NOW) == NOW


@pytest.mark.parametrize(
    ("last_started", "expected"),
    [
        (NOW - timedelta(hours=5), NOW),
        (NOW - timedelta(minutes=10), NOW + timedelta(minutes=50)),
    ],
    ids=["five_missed_runs_one_catch_up", "not_due_yet"],
)
def test_first_run_from_history_for_interval(
    tmp_path: Path, last_started: datetime, expected: datetime
) -> None:
    connection = scheduled_config(tmp_path).connections["acme"]
    assert first_run_time(connection, last_started, NOW) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2024, 6, 5, 7, 0, tzinfo=UTC), datetime(2024, 6, 5, 7, 0, tzinfo=UTC)),
        (datetime(2024, 6, 5, 5, 0, tzinfo=UTC), datetime(2024, 6, 5, 6, 0, tzinfo=UTC)),
    ],
    ids=["missed_todays_slot", "before_todays_slot"],
)
def test_first_run_from_history_for_cron(tmp_path: Path, now: datetime, expected: datetime) -> None:
    connection = scheduled_config(
        tmp_path, {"acme": {"schedule": {"cron": "0 6 * * *"}}}
    ).connections["acme"]
    yesterday_run = datetime(2024, 6, 4, 6, 0, 2, tzinfo=UTC)
    assert first_run_time(connection, yesterday_run, now) == expected


def test_missed_run_runs_once_at_start_up(tmp_path: Path, started_services: list[Service]) -> None:
    config = scheduled_config(tmp_path)
    # Five hourly runs were missed while the service was down; a skipped row is not a run.
    add_run(config, "acme", datetime.now(UTC) - timedelta(hours=5))
    add_run(config, "acme", datetime.now(UTC) - timedelta(minutes=1), status="skipped")
    runner = FakeRunner()
    service = Service(config, runner=runner)
    started_services.append(service)
    service.start()
    assert wait_for(lambda: service.completed_runs == 1)
    time.sleep(0.3)
    assert runner.calls == ["acme"]
    job = service.scheduler.get_job("acme")
    assert job.next_run_time > datetime.now(UTC) + timedelta(minutes=59)


def test_recent_run_means_no_run_at_start_up(
    tmp_path: Path, started_services: list[Service]
) -> None:
    config = scheduled_config(tmp_path)
    last = datetime.now(UTC) - timedelta(minutes=10)
    add_run(config, "acme", last)
    runner = FakeRunner()
    service = Service(config, runner=runner)
    started_services.append(service)
    service.start()
    time.sleep(0.3)
    assert runner.calls == []
    job = service.scheduler.get_job("acme")
    assert abs(job.next_run_time - (last + timedelta(hours=1))) < timedelta(seconds=1)


# -- overlap, lease, stop ---------------------------------------------------------------------------


def test_overlapping_run_is_skipped_and_recorded(
    tmp_path: Path, started_services: list[Service]
) -> None:
    config = scheduled_config(tmp_path)
    runner = FakeRunner(block=True)
    service = Service(config, interval_seconds=0.2, runner=runner)
    started_services.append(service)
    service.start()

    def skipped() -> list[dict[str, Any]]:
        return [run for run in runs_of(config, "acme") if run["status"] == "skipped"]

    assert wait_for(lambda: len(skipped()) >= 2)
    runner.release.set()
    assert wait_for(lambda: service.completed_runs >= 1)
    assert runner.calls[0] == "acme"
    # While the first run blocked, no second run started: every overlap became a skipped row.
    assert skipped()[0]["report"]["reason"].startswith("the previous run")
    assert skipped()[0]["trigger"] == "schedule"
    value = service.metrics.registry.get_sample_value(
        "crm_risk_sync_runs_total", {"connection": "acme", "status": "skipped"}
    )
    assert value is not None and value >= 2


def test_lease_held_by_another_process_is_recorded_as_skipped(
    tmp_path: Path, started_services: list[Service]
) -> None:
    config = scheduled_config(tmp_path)
    runner = FakeRunner(raises=LockHeldError("acme", "other-host:42:abcd", "2024-06-05T12:05:00"))
    service = Service(config, max_runs=1, runner=runner)
    started_services.append(service)
    service.start()
    assert wait_for(lambda: bool(runs_of(config, "acme")))
    (run,) = runs_of(config, "acme")
    assert run["status"] == "skipped"
    assert "already running" in run["report"]["reason"]
    assert service.completed_runs == 0


def test_max_runs_stops_the_service_with_exit_code_zero(tmp_path: Path) -> None:
    config = scheduled_config(tmp_path)
    runner = FakeRunner()
    service = Service(config, interval_seconds=0.1, max_runs=3, runner=runner)
    started = time.monotonic()
    assert service.run_forever() == 0
    assert time.monotonic() - started < 5
    assert service.completed_runs == 3
    assert len(runner.calls) == 3
    assert not service.scheduler.running


def test_stop_cancels_the_running_run_and_waits_for_it(tmp_path: Path) -> None:
    config = scheduled_config(tmp_path)
    runner = FakeRunner(block=True)
    service = Service(config, runner=runner)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(service.run_forever()))
    thread.start()
    assert runner.started.wait(5)
    service.request_stop()
    thread.join(5)
    assert not thread.is_alive()
    assert codes == [0]
    assert runner.saw_cancel
    assert service.completed_runs == 1


def test_serve_stops_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = scheduled_config(tmp_path)
    runner = FakeRunner(block=True)
    monkeypatch.setattr(scheduler_module, "ConnectionRunner", lambda config: runner)
    previous = signal.getsignal(signal.SIGTERM)

    def send_sigterm() -> None:
        if runner.started.wait(5):
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=send_sigterm)
    killer.start()
    code = serve(config)
    killer.join(5)
    assert code == 0
    assert runner.saw_cancel
    assert signal.getsignal(signal.SIGTERM) is previous


# -- status and health inputs ---------------------------------------------------------------------------


def test_next_run_times_from_schedule_and_history(tmp_path: Path) -> None:
    config = scheduled_config(
        tmp_path,
        {
            "acme": {"schedule": {"interval_seconds": 3600}},
            "globex": {"schedule": {"interval_seconds": 600}},
            "off": {"enabled": False},
        },
    )
    last = datetime.now(UTC) - timedelta(minutes=10)
    add_run(config, "acme", last)
    before = datetime.now(UTC)
    result = next_run_times(config, ["acme", "globex", "off", "nope"])
    assert datetime.fromisoformat(result["acme"] or "") == last + timedelta(hours=1)
    # Never ran: due now (it runs as soon as the service starts).
    assert before <= datetime.fromisoformat(result["globex"] or "") <= datetime.now(UTC)
    assert result["off"] is None
    assert result["nope"] is None


def test_expected_interval_of_a_cron_is_the_gap_between_fires(tmp_path: Path) -> None:
    config = scheduled_config(
        tmp_path,
        {
            "daily": {"schedule": {"cron": "0 6 * * *"}},
            "hourly": {"schedule": {"interval_seconds": 3600}},
        },
    )
    assert expected_interval(config.connections["daily"], NOW) == 86400
    assert expected_interval(config.connections["hourly"], NOW) == 3600
    assert expected_interval(config.connections["hourly"], NOW, interval_override=5) == 5


def test_busy_metrics_port_is_a_config_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = scheduled_config(tmp_path).model_copy(
            update={"metrics": AppConfig().metrics.model_copy(update={"port": port})}
        )
        service = Service(config, runner=FakeRunner())
        with pytest.raises(ConfigError, match=r"\[metrics\] port"):
            service.run_forever()
    assert not service.scheduler.running
