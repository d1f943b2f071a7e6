"""Schedule maths: a connection's trigger, and when its next run is due after the last one."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from connector.errors import ConfigError, ConfigProblem
from connector.store import SqlStore, open_store
from connector.store.coordination import WorkQueue

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig, ScheduleConfig

log = logging.getLogger("crm_risk.scheduler")


HISTORY_SCAN = 100
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _zone(connection: ConnectionConfig) -> ZoneInfo:
    try:
        return ZoneInfo(connection.schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            [
                ConfigProblem(
                    f"[connections.{connection.name}] schedule.timezone",
                    f"unknown time zone {connection.schedule.timezone!r}",
                    "use an IANA name such as 'UTC' or 'Europe/Berlin'",
                )
            ]
        ) from None


def _day_number(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if 0 <= number <= 7:
            return number
        raise ValueError(f"day of week {number} is outside 0-7")
    name = text[:3].lower()
    if name in _DAY_NAMES:
        return _DAY_NAMES.index(name)
    raise ValueError(f"unknown day of week {text!r}")


def crontab_day_of_week(field: str) -> str:
    """Translate a crontab day-of-week field into APScheduler 3 day names.

    APScheduler 3 numbers weekdays from Monday = 0, while crontab uses Sunday = 0 (and 7), so a
    numeric ``1-5`` would silently mean Tuesday to Saturday (APScheduler issue #286). Writing the
    days as names removes the ambiguity.

    Args:
        field: the fifth crontab field, e.g. ``1-5``, ``0,6``, ``*/2``, ``mon-fri``.

    Returns:
        A comma-separated list of day names, or ``*``.

    Raises:
        ValueError: for a field crontab would reject.
    """
    if field in ("*", "?"):
        return "*"
    days: list[str] = []
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step {step} in {field!r} must be positive")
        if base == "*":
            low, high = 0, 6
        elif "-" in base:
            low_text, high_text = base.split("-", 1)
            low, high = _day_number(low_text), _day_number(high_text)
        else:
            low = _day_number(base)
            high = 6 if step_text else low
        if high < low:
            raise ValueError(f"range {base!r} in {field!r} runs backwards")
        days.extend(_DAY_NAMES[day % 7] for day in range(low, high + 1, step))
    return ",".join(dict.fromkeys(days))


def build_trigger(connection: ConnectionConfig, interval_override: float | None = None) -> Any:
    """The APScheduler trigger of a connection's schedule.

    Cron expressions are standard crontab (Sunday = 0), evaluated in the schedule's time zone.
    As in APScheduler, a cron with both day-of-month and day-of-week restricted needs both to
    match (crontab would accept either).

    Args:
        connection: the connection whose [schedule] to use.
        interval_override: seconds; replaces every schedule (``run --interval-seconds``).

    Returns:
        An IntervalTrigger or CronTrigger.

    Raises:
        ConfigError: for an unknown time zone or an invalid cron expression.
    """
    schedule = connection.schedule
    zone = _zone(connection)
    jitter = schedule.jitter_seconds or None
    if interval_override is not None:
        return IntervalTrigger(seconds=interval_override, timezone=zone)
    if schedule.cron:
        fields = schedule.cron.split()
        try:
            if len(fields) != 5:
                raise ValueError(f"expected 5 fields, got {len(fields)}")
            # CronTrigger.from_crontab with the weekday field translated (see crontab_day_of_week),
            # built directly because from_crontab takes no jitter.
            return CronTrigger(
                minute=fields[0],
                hour=fields[1],
                day=fields[2],
                month=fields[3],
                day_of_week=crontab_day_of_week(fields[4]),
                timezone=zone,
                jitter=jitter,
            )
        except ValueError as exc:
            raise ConfigError(
                [
                    ConfigProblem(
                        f"[connections.{connection.name}] schedule.cron",
                        f"invalid cron expression {schedule.cron!r}: {exc}",
                        "use five crontab fields: minute hour day-of-month month day-of-week",
                    )
                ]
            ) from None
    return IntervalTrigger(seconds=_interval_seconds(schedule), timezone=zone, jitter=jitter)


def _interval_seconds(schedule: ScheduleConfig) -> int:
    return schedule.interval_seconds or 3600


def due_after(
    connection: ConnectionConfig, last_started: datetime, interval_override: float | None = None
) -> datetime | None:
    """When the run after one that started at `last_started` is due (None: the cron never fires).

    Args:
        connection: the connection.
        last_started: when its last run started (aware).
        interval_override: the `--interval-seconds` override, if any.

    Returns:
        The due time in UTC, or None.
    """
    if interval_override is not None:
        return (last_started + timedelta(seconds=interval_override)).astimezone(UTC)
    if connection.schedule.cron:
        trigger = build_trigger(connection.model_copy(update={"schedule": _no_jitter(connection)}))
        fire: datetime | None = trigger.get_next_fire_time(None, last_started)
        return fire.astimezone(UTC) if fire is not None else None
    seconds = _interval_seconds(connection.schedule)
    return (last_started + timedelta(seconds=seconds)).astimezone(UTC)


def _no_jitter(connection: ConnectionConfig) -> ScheduleConfig:
    return connection.schedule.model_copy(update={"jitter_seconds": 0})


def first_run_time(
    connection: ConnectionConfig,
    last_started: datetime | None,
    now: datetime,
    interval_override: float | None = None,
) -> datetime:
    """The first run time of a job at start-up: now when a run is overdue or none ever ran.

    This is how a run missed while the service was down runs exactly once at start-up.

    Args:
        connection: the connection.
        last_started: when its last (non-skipped) run started, from the run history.
        now: the current time (aware).
        interval_override: the `--interval-seconds` override, if any.

    Returns:
        The time to pass as the job's next_run_time.
    """
    if last_started is None:
        return now
    due = due_after(connection, last_started, interval_override)
    if due is None or due <= now:
        return now
    return due


def expected_interval(
    connection: ConnectionConfig, now: datetime, interval_override: float | None = None
) -> float:
    """Seconds between two runs of the schedule (for a cron: the gap between its next two fires).

    Args:
        connection: the connection.
        now: the current time (aware).
        interval_override: the `--interval-seconds` override, if any.

    Returns:
        The interval in seconds.
    """
    if interval_override is not None:
        return float(interval_override)
    if not connection.schedule.cron:
        return float(_interval_seconds(connection.schedule))
    first = due_after(connection, now)
    second = due_after(connection, first + timedelta(seconds=1)) if first else None
    if first is None or second is None:
        return float(_interval_seconds(connection.schedule))
    return (second - first).total_seconds()


def last_run_started(store: SqlStore, connection: str) -> datetime | None:
    """When the connection's last run that actually started began (skipped rows do not count).

    Runs from `crm-risk sync` count too: the data is as fresh as the last run of any trigger.
    """
    for run in store.recent_runs(connection, limit=HISTORY_SCAN):
        if run["status"] != "skipped":
            return datetime.fromisoformat(run["started_at"])
    return None


def next_run_times(config: AppConfig, connection_names: list[str]) -> dict[str, str | None]:
    """When each connection's next scheduled run is due, from its schedule and the run history.

    Needs no running scheduler. A time in the past means the run is overdue (a service that is
    not running; it runs at start-up). Disabled or unknown connections map to None. On a store
    shared by workers, the shared schedule's due time is the answer.

    Args:
        config: the configuration.
        connection_names: the connections to report.

    Returns:
        Connection name -> ISO time in UTC, or None.
    """
    now = datetime.now(UTC)
    result: dict[str, str | None] = {}
    store = open_store(config.store.url, create=False)
    try:
        shared = WorkQueue(store).schedule(connection_names)
        for name in connection_names:
            connection = config.connections.get(name)
            if connection is None or not connection.enabled:
                result[name] = None
                continue
            if name in shared:
                result[name] = shared[name].next_due_at.isoformat()
                continue
            last = last_run_started(store, name)
            due = now if last is None else due_after(connection, last)
            result[name] = due.isoformat() if due is not None else None
    finally:
        store.close()
    return result


__all__ = [
    "build_trigger",
    "crontab_day_of_week",
    "due_after",
    "expected_interval",
    "first_run_time",
    "last_run_started",
    "next_run_times",
]
