"""Health of each connection from its run history: did the last run succeed recently enough?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

SUCCESS_STATUSES = frozenset({"succeeded", "succeeded_with_rejections"})
# Cancelled and skipped runs say nothing about the data's freshness; a failed run does.
DECISIVE_STATUSES = SUCCESS_STATUSES | {"failed"}
STALE_FACTOR = 2


@dataclass(frozen=True)
class Expectation:
    """How often a connection should succeed: its schedule's interval plus the misfire grace."""

    interval_seconds: float
    grace_seconds: float

    @property
    def window(self) -> timedelta:
        """The last success must have ended within this window (interval x 2 + grace)."""
        return timedelta(seconds=STALE_FACTOR * self.interval_seconds + self.grace_seconds)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def connection_health(
    runs: Sequence[Mapping[str, Any]],
    expectation: Expectation,
    *,
    now: datetime,
    service_started: datetime | None = None,
) -> dict[str, Any]:
    """Judge one connection from its runs (newest first, as store.recent_runs returns them).

    Healthy when the latest succeeded-or-failed run succeeded and ended within the window. A
    connection with no history counts as healthy for one window after the service started,
    so a fresh install does not page anyone before its first run could have finished.

    Args:
        runs: the connection's recent runs, newest first.
        expectation: the schedule's interval and grace.
        now: the current time (aware).
        service_started: when the service started, if it is running.

    Returns:
        A JSON-able dict with `healthy`, `reason` and the facts behind it.
    """
    window = expectation.window
    decisive = next((run for run in runs if run.get("status") in DECISIVE_STATUSES), None)
    success = next((run for run in runs if run.get("status") in SUCCESS_STATUSES), None)
    success_at = _time(success.get("ended_at")) if success else None
    details: dict[str, Any] = {
        "last_status": runs[0].get("status") if runs else None,
        "last_success_at": success_at.isoformat() if success_at else None,
        "expected_interval_seconds": expectation.interval_seconds,
        "window_seconds": window.total_seconds(),
    }
    if decisive is not None and decisive.get("status") == "failed":
        message = (decisive.get("report") or {}).get("message") or ""
        reason = "the last run failed" + (f": {message}" if message else "")
        return {"healthy": False, "reason": reason, **details}
    if success_at is not None and now - success_at <= window:
        return {"healthy": True, "reason": "last run succeeded within the window", **details}
    if success_at is None and service_started is not None and now - service_started <= window:
        return {"healthy": True, "reason": "service started; first run pending", **details}
    if success_at is None:
        return {"healthy": False, "reason": "no successful run yet", **details}
    age = int((now - success_at).total_seconds())
    return {"healthy": False, "reason": f"last success is {age} s old", **details}


def health_report(
    runs_by_connection: Mapping[str, Sequence[Mapping[str, Any]]],
    expectations: Mapping[str, Expectation],
    *,
    now: datetime,
    service_started: datetime | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Judge every connection; the service is healthy only when all of them are.

    Args:
        runs_by_connection: each connection's recent runs, newest first.
        expectations: each connection's schedule expectation.
        now: the current time (aware).
        service_started: when the service started.

    Returns:
        (healthy, JSON-able details per connection).
    """
    connections = {
        name: connection_health(
            runs_by_connection.get(name, ()), expectation, now=now, service_started=service_started
        )
        for name, expectation in expectations.items()
    }
    healthy = all(entry["healthy"] for entry in connections.values())
    return healthy, {
        "status": "ok" if healthy else "unhealthy",
        "checked_at": now.isoformat(),
        "connections": connections,
    }


__all__ = ["Expectation", "connection_health", "health_report"]
