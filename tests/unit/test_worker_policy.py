"""The workers' schedule maths: next due time on the schedule's grid, fair-share claims, store backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector.config import AppConfig
from connector.service.workers import NEVER, backoff_seconds, claim_limit, next_due
from connector.store.coordination import QueueLoad

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
PATIENCE = timedelta(seconds=4)


def connection(schedule: dict[str, object]):
    config = AppConfig.model_validate(
        {"connections": {"acme": {"kind": "zoho", "mapping": "m.toml", "schedule": schedule}}}
    )
    return config.connections["acme"]


def test_next_due_keeps_the_interval_grid_when_claimed_a_little_late() -> None:
    hourly = connection({"interval_seconds": 3600})
    due = NOW - timedelta(seconds=3)
    assert next_due(hourly, due, NOW) == due + timedelta(hours=1)


def test_next_due_after_an_outage_coalesces_missed_runs_into_one() -> None:
    hourly = connection({"interval_seconds": 3600})
    due = NOW - timedelta(hours=5)
    assert next_due(hourly, due, NOW) == NOW + timedelta(hours=1)


def test_next_due_follows_the_cron_in_its_time_zone() -> None:
    weekdays_six = connection({"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"})
    friday_six = datetime(2026, 11, 6, 5, 0, tzinfo=UTC)  # 06:00 in Berlin (UTC+1)
    assert next_due(weekdays_six, friday_six, friday_six) == datetime(2026, 11, 9, 5, 0, tzinfo=UTC)


def test_next_due_of_a_cron_that_never_fires_again_is_never() -> None:
    past_only = connection({"cron": "0 6 30 2 *"})  # 30 February
    assert next_due(past_only, NOW, NOW) == NEVER


def test_the_interval_override_and_jitter_apply() -> None:
    hourly = connection({"interval_seconds": 3600})
    assert next_due(hourly, NOW, NOW, interval_override=10, jitter_seconds=2.5) == NOW + (
        timedelta(seconds=12.5)
    )


@pytest.mark.parametrize(
    ("load", "mine", "capacity", "expected"),
    [
        (QueueLoad(due=20, running=0, live_workers=3, oldest_due_at=NOW), 0, 10, 7),
        (QueueLoad(due=13, running=7, live_workers=3, oldest_due_at=NOW), 0, 10, 7),
        (QueueLoad(due=6, running=14, live_workers=3, oldest_due_at=NOW), 0, 10, 6),
        (QueueLoad(due=20, running=0, live_workers=3, oldest_due_at=NOW), 0, 4, 4),
        (QueueLoad(due=5, running=15, live_workers=3, oldest_due_at=NOW), 7, 10, 0),
        (QueueLoad(due=5, running=0, live_workers=1, oldest_due_at=NOW), 4, 4, 0),
        (QueueLoad(due=0, running=3, live_workers=3, oldest_due_at=None), 0, 4, 0),
        (QueueLoad(due=2, running=0, live_workers=0, oldest_due_at=NOW), 0, 4, 2),
    ],
    ids=[
        "burst_split_three_ways",
        "second_worker_takes_its_share",
        "last_worker_takes_the_rest",
        "never_beyond_capacity",
        "worker_at_its_share_waits",
        "full_worker_claims_nothing",
        "nothing_due",
        "first_worker_before_any_heartbeat",
    ],
)
def test_claims_are_a_fair_share_within_free_capacity(
    load: QueueLoad, mine: int, capacity: int, expected: int
) -> None:
    assert claim_limit(load, mine=mine, capacity=capacity, now=NOW, patience=PATIENCE) == expected


def test_work_left_waiting_past_patience_goes_to_any_free_worker() -> None:
    # Three workers are registered, but two are full or dead: the due work must not starve.
    waited = QueueLoad(due=5, running=15, live_workers=3, oldest_due_at=NOW - 2 * PATIENCE)
    assert claim_limit(waited, mine=7, capacity=10, now=NOW, patience=PATIENCE) == 3
    fresh = QueueLoad(due=5, running=15, live_workers=3, oldest_due_at=NOW)
    assert claim_limit(fresh, mine=7, capacity=10, now=NOW, patience=PATIENCE) == 0


def test_backoff_doubles_from_one_second_to_a_thirty_second_cap_with_jitter() -> None:
    middle = [backoff_seconds(failures, lambda: 0.5) for failures in range(1, 8)]
    assert middle == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_seconds(1, lambda: 0.0) == pytest.approx(0.8)
    assert backoff_seconds(6, lambda: 1.0) == pytest.approx(36.0)
