"""Schedules as data: crontab weekdays, triggers and the interval override, checked without starting a scheduler."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from connector.config import AppConfig
from connector.errors import ConfigError
from connector.service.scheduler import (
    RunResult,
    Service,
    build_trigger,
    crontab_day_of_week,
)

NOW = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)


def make_config(tmp_path: Path, connections: dict[str, dict[str, Any]] | None = None) -> AppConfig:
    connections = connections or {"acme": {"schedule": {"interval_seconds": 3600}}}
    return AppConfig.model_validate(
        {
            "store": {"url": str(tmp_path / "state.db"), "lease_seconds": 5},
            "connections": {
                name: {"kind": "zoho", "mapping": "zoho.default.toml", **settings}
                for name, settings in connections.items()
            },
            "source": str(tmp_path / "crm-risk.toml"),
        }
    )


class FakeRunner:
    """Stands in for run_sync: counts calls, can block until released or cancelled."""

    def __init__(self, *, block: bool = False, raises: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.block = block
        self.raises = raises
        self.started = threading.Event()
        self.release = threading.Event()
        self.saw_cancel = False

    def __call__(self, connection: Any, cancel: threading.Event) -> RunResult:
        self.calls.append(connection.name)
        self.started.set()
        if self.raises is not None:
            raise self.raises
        if self.block:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not self.release.is_set():
                if cancel.wait(0.01):
                    self.saw_cancel = True
                    return RunResult({"connection": connection.name, "status": "cancelled"})
        now = datetime.now(UTC).isoformat()
        report = {
            "run_id": f"fake-{len(self.calls)}",
            "connection": connection.name,
            "crm": connection.kind,
            "status": "succeeded",
            "started_at": now,
            "ended_at": now,
        }
        return RunResult(report, 0)


# -- schedules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("6,0", "sat,sun"),
        ("*/2", "sun,tue,thu,sat"),
        ("1-7/3", "mon,thu,sun"),
        ("*", "*"),
    ],
    ids=[
        "weekdays",
        "named_weekdays",
        "sunday_0",
        "sunday_7",
        "weekend",
        "every_other",
        "step_range",
        "any",
    ],
)
def test_crontab_weekdays_are_translated_to_names(field: str, expected: str) -> None:
    assert crontab_day_of_week(field) == expected


@pytest.mark.parametrize("field", ["8", "5-1", "funday", "*/0"])
def test_invalid_crontab_weekday_is_rejected(field: str) -> None:
    with pytest.raises(ValueError):
        crontab_day_of_week(field)


def test_cron_schedule_fires_on_crontab_weekdays_in_its_time_zone(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, {"acme": {"schedule": {"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"}}}
    )
    trigger = build_trigger(config.connections["acme"])
    assert isinstance(trigger, CronTrigger)
    saturday_noon = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    fire = trigger.get_next_fire_time(None, saturday_noon)
    # Monday 06:00 in Berlin (UTC+2 in summer); APScheduler's own numbering would give Tuesday.
    assert fire.astimezone(UTC) == datetime(2024, 6, 3, 4, 0, tzinfo=UTC)


def test_interval_override_replaces_every_schedule(tmp_path: Path) -> None:
    config = make_config(tmp_path, {"acme": {"schedule": {"cron": "0 6 * * *"}}})
    trigger = build_trigger(config.connections["acme"], interval_override=1)
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval == timedelta(seconds=1)


@pytest.mark.parametrize(
    ("schedule", "key"),
    [
        ({"cron": "0 6 * *"}, "schedule.cron"),
        ({"cron": "0 25 * * *"}, "schedule.cron"),
        ({"timezone": "Mars/Olympus"}, "schedule.timezone"),
    ],
    ids=["four_fields", "hour_25", "unknown_zone"],
)
def test_invalid_schedule_is_a_config_error_naming_the_key(
    tmp_path: Path, schedule: dict[str, Any], key: str
) -> None:
    config = make_config(tmp_path, {"acme": {"schedule": schedule}})
    with pytest.raises(ConfigError) as caught:
        Service(config, runner=FakeRunner())
    assert caught.value.exit_code == 78
    assert caught.value.problems[0].key_path == f"[connections.acme] {key}"


def test_non_positive_interval_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="interval-seconds"):
        Service(make_config(tmp_path), interval_seconds=0, runner=FakeRunner())
