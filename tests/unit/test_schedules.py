"""Schedules as data: crontab weekdays, triggers and the interval override, checked without starting a scheduler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from connector.errors import ConfigError
from connector.service.scheduler import Service
from connector.service.schedules import build_trigger, crontab_day_of_week
from tests.support import FakeRunner, scheduled_config

NOW = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)


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
    config = scheduled_config(
        tmp_path, {"acme": {"schedule": {"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"}}}
    )
    trigger = build_trigger(config.connections["acme"])
    assert isinstance(trigger, CronTrigger)
    saturday_noon = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    fire = trigger.get_next_fire_time(None, saturday_noon)
    # Monday 06:00 in Berlin (UTC+2 in summer); APScheduler's own numbering would give Tuesday.
    assert fire.astimezone(UTC) == datetime(2024, 6, 3, 4, 0, tzinfo=UTC)


def test_interval_override_replaces_every_schedule(tmp_path: Path) -> None:
    config = scheduled_config(tmp_path, {"acme": {"schedule": {"cron": "0 6 * * *"}}})
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
    config = scheduled_config(tmp_path, {"acme": {"schedule": schedule}})
    with pytest.raises(ConfigError) as caught:
        Service(config, runner=FakeRunner())
    assert caught.value.exit_code == 78
    assert caught.value.problems[0].key_path == f"[connections.acme] {key}"


def test_non_positive_interval_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="interval-seconds"):
        Service(scheduled_config(tmp_path), interval_seconds=0, runner=FakeRunner())
