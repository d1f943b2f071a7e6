"""What a writer holds between batches: the pending accounts, its settings, queues and caps."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from connector.engine.digests import Deferred
from connector.engine.drift import FieldDrift
from connector.engine.report import RunReport
from connector.engine.window import Window
from connector.models import RiskAssessment, TaskAction, TaskPriority
from connector.planning.planner import AccountPlan, FieldDecision, TaskPlan
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

    def finishing(self, *, pack: bool) -> Finishing:
        """What finishing this account needs once its field writes were answered.

        `pack`: its task actions wait (under caps, new tasks wait for the end of the run), so
        the assessment is kept as compressed JSON, the form the store keeps it in anyway: ~2 KB
        instead of ~19 KB for the whole plan and assessment, for each of the tens of thousands
        of accounts of a large run that may wait.
        """
        counts: dict[str, int] = {}
        for decision in self.plan.decisions:
            counts[decision.action] = counts.get(decision.action, 0) + 1
        return Finishing(
            account_id=self.account_id,
            name=self.name,
            score=self.assessment.score,
            band=self.assessment.band,
            exposure=self.exposure,
            assessment=(
                zlib.compress(self.assessment.model_dump_json().encode(), 1)
                if pack
                else self.assessment
            ),
            decision_counts=counts,
            baseline=self.plan.baseline,
            kept_back=tuple(
                decision
                for decision in self.plan.decisions
                if decision.action in ("conflict", "held")
            ),
            levels=self.tasks.levels,
            relevel=self.tasks.relevel,
            close_without_action=self.tasks.close_without_action,
            close_causes=self.tasks.close_causes,
            ledger=self.ledger,
            baseline_meta=self.baseline_meta,
            downgrade_waiting_from=self.downgrade_waiting_from,
        )


@dataclass(slots=True)
class Finishing:
    """An account whose field writes were answered, until its task actions are: what finishing it
    needs (counts, baseline, values kept back, ledger changes, the assessment), and no more."""

    account_id: str
    name: str
    score: float
    band: str
    exposure: Decimal
    # The assessment, or its JSON compressed while the account waits (see `finishing`).
    assessment: RiskAssessment | bytes
    # Fields per planner decision (unchanged, frozen, held, conflict ...).
    decision_counts: dict[str, int]
    baseline: dict[str, Any]
    # The conflict and held decisions: audited ("not sent") and listed by a dry run.
    kept_back: tuple[FieldDecision, ...]
    levels: dict[str, int]
    relevel: dict[str, int]
    close_without_action: tuple[str, ...]
    close_causes: dict[str, str]
    ledger: dict[str, TaskLedgerEntry]
    baseline_meta: dict[str, Any]
    downgrade_waiting_from: str | None
    # Rules whose new task waits for a later run (a cap): the account is scored again then.
    deferred: set[str] = field(default_factory=set)

    def count(self, action: str) -> int:
        """How many fields got this planner decision."""
        return self.decision_counts.get(action, 0)

    def risk_assessment(self) -> RiskAssessment:
        """The assessment to keep (unpacked when it was packed: the same JSON the store keeps)."""
        if isinstance(self.assessment, bytes):
            return RiskAssessment.model_validate_json(zlib.decompress(self.assessment))
        return self.assessment


@dataclass(frozen=True)
class TaskCaps:
    """At most this many new tasks per run and per owner (None: no cap)."""

    per_run: int | None
    per_owner: int | None


@dataclass(frozen=True, slots=True)
class HeldCreate:
    """A new task waiting for the end of a capped run: what the caps and a deferral read, the rest
    packed (most such creates are deferred, and only the sent ones need the whole action)."""

    account_id: str
    rule: str
    owner_id: str | None
    subject: str
    priority: TaskPriority
    dedupe_key: str
    packed: bytes
    action: Literal["create"] = "create"

    @classmethod
    def of(cls, task: TaskAction) -> HeldCreate:
        return cls(
            account_id=task.account_id,
            rule=task.rule,
            owner_id=task.owner_id,
            subject=task.subject,
            priority=task.priority,
            dedupe_key=task.dedupe_key,
            packed=zlib.compress(task.model_dump_json().encode(), 1),
        )

    def task(self) -> TaskAction:
        """The whole action, as it was queued."""
        return TaskAction.model_validate_json(zlib.decompress(self.packed))


# A queued task action: whole, or packed while it waits for the end of a capped run.
Queued = TaskAction | HeldCreate


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
        self._task_queue: list[Queued] = []
        self._refused_owners: set[str] = set()
        self._waiting: dict[str, Finishing] = {}
        self._names: dict[str, str] = {}
        self._unanswered: dict[str, int] = {}


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value
