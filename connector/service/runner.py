"""One scheduled run of one connection: a fresh store connection and engine session, its report back."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connector.engine.session import Session, open_session
from connector.engine.sync import SyncOptions
from connector.errors import LockHeldError, StoreUnavailableError
from connector.redaction import redact
from connector.store import SqlStore, open_store

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig

log = logging.getLogger("crm_risk.scheduler")


TRIGGER = "schedule"


@dataclass(frozen=True)
class RunResult:
    """What the service learns from one run: its report and the writes left for the next one."""

    report: dict[str, Any]
    pending_retries: int | None = None


Runner = Callable[["ConnectionConfig", threading.Event], RunResult]


def new_run_id() -> str:
    """A new run's id: its start time in UTC and six random hex digits."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


class ConnectionRunner:
    """Runs one connection: a fresh store connection and session, run_sync, the report back.

    The mapping is checked by the engine session's one policy (`connector.engine.session`).
    Raises LockHeldError when another process holds the lease; every other failure comes back as
    a `failed` report that is also in the run history.
    """

    def __init__(self, config: AppConfig, *, holder: str | None = None) -> None:
        """Remember the configuration.

        Args:
            config: the configuration.
            holder: the lease holder id of every run (a worker's id); default one per run.
        """
        self.config = config
        self.holder = holder

    def _open_store(self) -> SqlStore:
        return open_store(self.config.store.url)

    def __call__(self, connection: ConnectionConfig, cancel: threading.Event) -> RunResult:
        """Run one sync of `connection`, stopping before the next batch once `cancel` is set."""
        store = self._open_store()
        try:
            try:
                session = open_session(self.config, connection, store=store, cancel=cancel)
            except StoreUnavailableError:
                raise
            except Exception as exc:
                return self._setup_failed(store, connection, exc)
            with session:
                return self._run(session, cancel)
        finally:
            store.close()

    def _run(self, session: Session, cancel: threading.Event) -> RunResult:
        store, connection = session.store, session.connection
        try:
            session.check_mapping()
        except StoreUnavailableError:
            raise
        except Exception as exc:
            return self._setup_failed(store, connection, exc)
        try:
            report = session.run(SyncOptions(trigger=TRIGGER, cancel=cancel, holder=self.holder))
        except (LockHeldError, StoreUnavailableError):
            raise
        except Exception as exc:
            # run_sync recorded the failed run before raising; read its report back.
            return RunResult(
                self._failed_report(store, connection, exc),
                len(store.failed_writes(connection.name)),
            )
        return RunResult(report.to_dict(), len(store.failed_writes(connection.name)))

    def _setup_failed(
        self, store: SqlStore, connection: ConnectionConfig, exc: Exception
    ) -> RunResult:
        """A run that failed before run_sync started: still recorded, so `status` shows why."""
        run_id = new_run_id()
        report = {
            "run_id": run_id,
            "connection": connection.name,
            "crm": connection.kind,
            "trigger": TRIGGER,
            "status": "failed",
            "started_at": datetime.now(UTC).isoformat(),
            "ended_at": datetime.now(UTC).isoformat(),
            "message": redact(str(exc) or type(exc).__name__),
        }
        store.start_run(run_id, connection.name, TRIGGER)
        store.finish_run(run_id, "failed", report)
        return RunResult(report, None)

    def _failed_report(
        self, store: SqlStore, connection: ConnectionConfig, exc: Exception
    ) -> dict[str, Any]:
        for run in store.recent_runs(connection.name, limit=1):
            report = run["report"]
            if run["status"] == "failed" and report.get("run_id") == run["run_id"]:
                return dict(report)
        return {
            "connection": connection.name,
            "crm": connection.kind,
            "trigger": TRIGGER,
            "status": "failed",
            "message": redact(str(exc) or type(exc).__name__),
        }


__all__ = ["TRIGGER", "ConnectionRunner", "RunResult", "Runner", "new_run_id"]
