"""What every stage of a run shares: its settings, store, adapter, report and clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connector.engine.drift import FieldDrift
from connector.engine.report import RunReport
from connector.errors import MappingError, MappingErrors
from connector.mapping import FieldMapping
from connector.models import Account, Invoice
from connector.planning.planner import LIMIT_FIELD, normalize
from connector.protocol import CrmAdapter, RelatedReader
from connector.scoring.currency import CurrencyBook
from connector.scoring.policy import ScoringPolicy, policy_fingerprint
from connector.store import SqlStore

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig


@dataclass
class SyncOptions:
    """How to run: dry run, full rescore, what triggered it, and the clock (a parameter, for tests)."""

    dry_run: bool = False
    full: bool = False
    trigger: str = "cli"
    as_of: date | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Callable[[str, int, int | None], None] | None = None
    portfolio: bool = True
    # Test hook: called after each committed write batch (the chaos tests kill the run here).
    after_batch: Callable[[], None] | None = None
    # Who takes the run lease; a `run` worker passes its own id so `status` shows who runs what.
    holder: str | None = None


class RunContext:
    """The run's context, shared by its stages (pull, holds, score and plan)."""

    # Set when the run reads the CRM's rates (`_load_rates`).
    book: CurrencyBook
    score_policy: ScoringPolicy

    def __init__(
        self,
        config: AppConfig,
        connection: ConnectionConfig,
        adapter: CrmAdapter,
        store: SqlStore,
        mapping: FieldMapping,
        options: SyncOptions,
        report: RunReport,
        run_id: str,
        heartbeat: Callable[[], None],
    ) -> None:
        self.config = config
        self.connection = connection
        self.name = connection.name
        self.adapter = adapter
        self.store = store
        # Valid invoices of the chunk being stored, written together at its end (or before a
        # deletion, exclusion or quarantine, to keep the stream's order), and the accounts
        # whose invoices changed (flagged once at the chunk's end).
        self._to_store: list[Invoice] | None = None
        self._to_flag: set[str] = set()
        # Quarantined record ids per kind, loaded on first use (see `_release`).
        self._quarantined_ids: dict[str, set[str]] = {}
        self.mapping = mapping
        self.options = options
        self.report = report
        self.run_id = run_id
        self.heartbeat = heartbeat
        self.policy = config.policy_for(connection)
        self.task_policy = config.tasks_for(connection)
        self.governance = config.governance_for(connection)
        self.fingerprint = policy_fingerprint(self.policy)
        self.as_of = options.as_of or options.now().date()
        self.write_fields = [name for name in mapping.write_fields()]
        self.write_modes = {name: mapping.write_mode("account", name) for name in self.write_fields}
        self.max_lengths = mapping.max_lengths("account")
        # Set when a field adoption shows that runs unknown to this store wrote the CRM.
        self.state_lost = False
        # The open marked tasks this run's scan saw (None: no scan, nothing proven absent).
        self.scanned_task_keys: set[str] | None = None
        self.drift = FieldDrift(adapter, mapping, store, connection.name)
        self.stage = connection.rollout
        # Where paid dates come from: the invoice's own field, payment allocations, or nowhere
        # (then payment behaviour is not scored, and the run says so once).
        self.paid_from = mapping.paid_date_source()
        if self.paid_from == "payments" and not isinstance(adapter, RelatedReader):
            raise MappingErrors(
                [
                    MappingError(
                        f"the {connection.kind} adapter cannot read payment allocations; map "
                        "objects.invoice.fields.paid_date instead",
                        mapping_file=mapping.file_for("objects.payment"),
                        key="objects.payment",
                    )
                ]
            )
        # The shadow stage plans tasks too (the report says what would open); it sends nothing.
        self.opens_tasks = self.stage != "fields" and self.task_policy.enabled

    def _with_reference_limit(
        self, account: Account, crm_values: dict[str, Any], last_written: dict[str, Any]
    ) -> Account:
        """Score utilisation against the limit a person set, not against our own last write.

        Otherwise a limit we write changes utilisation, which changes the score, which changes
        the limit: a feedback loop that rewrites the account on every run.
        """
        key = f"reference_limit:{self.name}:{account.crm_id}"
        in_crm = normalize(LIMIT_FIELD, crm_values.get(LIMIT_FIELD, account.current_credit_limit))
        ours = (
            LIMIT_FIELD in last_written
            and normalize(LIMIT_FIELD, last_written[LIMIT_FIELD]) == in_crm
        )
        if not ours:
            text = "" if in_crm is None else str(in_crm)
            if self.store.get_value(key) != text:
                self.store.set_value(key, text)
            # Normalised either way, so the input hash does not flip between 20000 and 20000.00.
            return account.model_copy(update={"current_credit_limit": in_crm})
        reference = self.store.get_value(key)
        limit = Decimal(reference) if reference else None
        return account.model_copy(update={"current_credit_limit": limit})

    def _heartbeat_and_hook(self) -> None:
        self.heartbeat()
        if self.options.after_batch is not None:
            self.options.after_batch()
