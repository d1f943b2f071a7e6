"""What a writer holds between batches: the pending accounts, its settings, queues and caps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from connector.engine.digests import Deferred
from connector.engine.drift import FieldDrift
from connector.engine.report import RunReport
from connector.engine.window import Window
from connector.models import RiskAssessment, TaskAction
from connector.planning.planner import AccountPlan, TaskPlan
from connector.protocol import CrmAdapter
from connector.store import SqlStore, TaskLedgerEntry

ToCrmValues = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass
class PendingAccount:
    """An account whose plan waits in the current batch."""

    account_id: str
    assessment: RiskAssessment
    exposure: Decimal
    plan: AccountPlan
    tasks: TaskPlan
    ledger: dict[str, TaskLedgerEntry]
    baseline_meta: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    # The band a downgrade whose task waited for a cap fell from (None: no such task waits).
    downgrade_waiting_from: str | None = None
    # Rules whose new task waits for a later run (a cap): the account is scored again then.
    deferred: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class TaskCaps:
    """At most this many new tasks per run and per owner (None: no cap)."""

    per_run: int | None
    per_owner: int | None


def downgrade_waiting_key(connection: str, account_id: str) -> str:
    """Where the band a capped downgrade fell from is kept until its task opens."""
    return f"downgrade-waiting/{connection}/{account_id}"


class WriterState:
    """The writer's settings and the queues its stages share."""

    def __init__(
        self,
        *,
        adapter: CrmAdapter,
        store: SqlStore,
        connection: str,
        run_id: str,
        account_object: str,
        to_crm_values: ToCrmValues,
        report: RunReport,
        policy_fingerprint: str,
        cancel: threading.Event | None = None,
        heartbeat: Callable[[], None] | None = None,
        dry_run: bool = False,
        fallback_owner_id: str | None = None,
        absent_task_keys: Callable[[str], bool] | None = None,
        drift: FieldDrift | None = None,
        shadow: bool = False,
        caps: TaskCaps | None = None,
        approval_digest: bool = False,
    ) -> None:
        self.adapter = adapter
        self.store = store
        self.connection = connection
        self.run_id = run_id
        self.account_object = account_object
        self.to_crm_values = to_crm_values
        self.report = report
        self.policy_fingerprint = policy_fingerprint
        self.cancel = cancel or threading.Event()
        self.heartbeat = heartbeat or (lambda: None)
        # Shadow rollout: plan and count, keep assessments, send nothing to the CRM.
        self.shadow = shadow
        self.caps = caps if caps is not None and (caps.per_run or caps.per_owner) else None
        self.approval_digest = approval_digest
        self.deferred: list[Deferred] = []
        self.dry_run = dry_run
        self.fallback_owner_id = fallback_owner_id
        # Whether this run's scan of the CRM proved a key absent; without that proof every
        # create is looked up first (the store may be new, restored or from another machine).
        self.absent_task_keys = absent_task_keys or (lambda key: False)
        self.drift = drift
        self.batch_size = max(1, adapter.capabilities.max_write_batch)
        # Write batches in flight at once (the adapter's declared limit for its CRM and this
        # connection). Only the calls run in parallel: the store and the audit log are written
        # on this thread, in batch order, so the end state is that of a sequential run.
        self.concurrency = max(1, adapter.capabilities.max_concurrency)
        # Narrowed for the rest of the run while the CRM refuses calls for concurrency.
        self.window = Window(self.concurrency)
        self._pending: list[PendingAccount] = []
        # Batches closed but not yet sent: up to `concurrency` of them go out together.
        self._closed: list[list[PendingAccount]] = []
        self._pending_updates = 0
        # Accounts with a failed task action keep last run's assessment as "previous", so a
        # downgrade that should have opened a task is detected again next run.
        self._failed_task_accounts: set[str] = set()
        self._task_queue: list[TaskAction] = []
        self._refused_owners: set[str] = set()
        self._waiting: dict[str, PendingAccount] = {}
        self._names: dict[str, str] = {}
        self._unanswered: dict[str, int] = {}


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value
