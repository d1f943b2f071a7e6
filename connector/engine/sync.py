"""One sync run: pull changed records, store them, score, plan, write, and report."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connector.engine.adoption import (
    adopt_open_tasks,
    adoptable,
    adopted_reference_limit,
    written_elsewhere,
)
from connector.engine.digests import DigestSender
from connector.engine.drift import FieldDrift, mapping_digest
from connector.engine.money import (
    NO_RATE,
    HomeInputs,
    Unrated,
    home_exposures,
    read_rates,
    release_rated,
    to_home,
)
from connector.engine.payments import settlement_dates
from connector.engine.prefetch import Chunks, Prefetch, chunked
from connector.engine.report import RunReport
from connector.engine.writer import PendingAccount, TaskCaps, Writer, downgrade_waiting_key
from connector.errors import (
    EXIT_TEMPFAIL,
    ConnectorError,
    FatalCrmError,
    MappingError,
    MappingErrors,
    RecordError,
    RunCancelled,
)
from connector.mapping import FieldMapping
from connector.mapping.check import payment_history_warning
from connector.models import Account, Invoice, InvoiceStatus, RawRecord, RiskAssessment
from connector.planning.planner import (
    LIMIT_FIELD,
    LedgerView,
    TaskPlan,
    normalize,
    plan_account,
    plan_tasks,
)
from connector.planning.task_rules import RuleContext, evaluate
from connector.protocol import CrmAdapter, RelatedReader, TaskScanner
from connector.redaction import redact
from connector.scoring import (
    PortfolioContext,
    assess,
    build_portfolio_context,
    portfolio_report,
)
from connector.scoring.currency import CurrencyBook, book_to_json
from connector.scoring.limits import (
    in_account_currency,
    peak_exposures,
    review_limit,
    within_review_cap,
)
from connector.scoring.policy import policy_fingerprint
from connector.store import SqlStore
from connector.store.holders import holder_id as new_holder_id

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig

log = logging.getLogger("crm_risk.sync")
# Settled by a payment (a written-off or void invoice was not paid, whatever its balance).
NOT_PAID_STATUSES = frozenset({InvoiceStatus.WRITTEN_OFF, InvoiceStatus.VOID})

CHECKPOINT_EVERY = 500
# Chunks a stream may be read ahead of the engine: two Salesforce pages of 2,000 records, so
# the next page's call is in flight while the last one is stored; bounded for memory.
READ_AHEAD_CHUNKS = 8


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


def holder_id() -> str:
    """Who holds a lease: host, process, its start time and a random suffix."""
    return new_holder_id()


def run_sync(
    *,
    config: AppConfig,
    connection: ConnectionConfig,
    adapter: CrmAdapter,
    store: SqlStore,
    mapping: FieldMapping,
    options: SyncOptions | None = None,
) -> RunReport:
    """Run one complete sync for a connection and return its report.

    The run holds the connection's lease in the store for its whole duration. Watermarks move
    only with the rows they cover (same transaction); a write counts only when the CRM confirmed
    it. A dry run works on an in-memory copy of the store and never writes to the CRM.

    Args:
        config: the whole configuration (policies).
        connection: the connection to run.
        adapter: an adapter instance for this connection.
        store: the state store.
        mapping: the connection's validated field mapping.
        options: dry run, full rescore, trigger, clock, cancellation.

    Returns:
        The run report (also stored in the run history unless dry run).

    Raises:
        LockHeldError: another process runs this connection (exit 75).
        ConnectorError: fatal CRM, auth or quota errors, after the run is recorded.
    """
    options = options or SyncOptions()
    run_id = f"{options.now().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    holder = options.holder or holder_id()
    lease_ttl = config.store.lease_seconds
    takeover = store.acquire_lease(connection.name, holder, lease_ttl)
    work_store = store.snapshot() if options.dry_run else store
    report = RunReport(
        run_id=run_id,
        connection=connection.name,
        crm=connection.kind,
        trigger=options.trigger,
        dry_run=options.dry_run,
        started_at=options.now().isoformat(),
    )
    if not options.dry_run:
        store.start_run(run_id, connection.name, options.trigger, worker=holder)
    if takeover is not None:
        log.warning(
            "took over the run lease of a process that is gone",
            extra={
                "connection": connection.name,
                "detail": f"{takeover['holder']}: {takeover['reason']}",
            },
        )
        report.message = f"took over the lease of {takeover['holder']} ({takeover['reason']})"
        store.append_audit(
            run_id,
            connection.name,
            obj="lease",
            record_id=connection.name,
            action="lease_takeover",
            old=takeover["holder"],
            new=holder,
            cause=takeover["reason"],
            response="taken over",
        )

    def heartbeat() -> None:
        if not store.heartbeat_lease(connection.name, holder, lease_ttl):
            raise RunCancelled("lost the run lease to another process; stopping")

    try:
        engine = _Engine(
            config, connection, adapter, work_store, mapping, options, report, run_id, heartbeat
        )
        engine.run()
        # This run's new problems, not holds an earlier run reported (`status` keeps those).
        needs_attention = report.rejected or report.new_quarantined
        report.status = "succeeded_with_rejections" if needs_attention else "succeeded"
    except RunCancelled as exc:
        report.status = "cancelled"
        report.message = str(exc)
    except ConnectorError as exc:
        report.status = "failed"
        report.message = redact(str(exc))
        raise
    except (
        BaseException
    ) as exc:  # also KeyboardInterrupt/SystemExit: the history must not say running
        report.status = "failed"
        report.message = redact(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        usage = adapter.usage()
        report.api_calls = dict(usage.calls)
        report.quota_remaining = usage.remaining
        report.quota_limit = usage.limit
        report.watermarks_after = work_store.watermarks(connection.name)
        report.ended_at = options.now().isoformat()
        if not options.dry_run:
            store.finish_run(run_id, report.status, report.to_dict())
        else:
            work_store.close()
        store.release_lease(connection.name, holder)
    return report


class _Engine:
    """The steps of one run, sharing the run's context."""

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

    def run(self) -> None:
        self.report.as_of = self.as_of.isoformat()
        self.report.watermarks_before = self.store.watermarks(self.name)
        if self.paid_from is None:
            # Said once for the run, not as a THIN_FILE reason on every account.
            message = str(payment_history_warning(self.mapping))
            self.report.warnings.append(message)
            log.warning(message, extra={"connection": self.name})
        # With concurrency, invoices are read while accounts are stored: each stream reads
        # ahead on its own thread and is consumed in order, accounts first, as before. The
        # invoice stream starts once the CRM answered the first account page, so a CRM that
        # refuses the first call (an outage, a throttled token endpoint) sees one caller.
        with (
            self._read("invoice", start=False) as invoices,
            self._read("account", after_first=invoices.start) as accounts,
        ):
            self._pull("account", accounts)
            self._pull("invoice", invoices)
        self._recheck_quarantined()
        self._report_held()
        self._score_plan_write()
        if self.options.portfolio or not self.options.dry_run:
            self._portfolio()

    # -- pull -------------------------------------------------------------------------------

    def _since(self, kind: str) -> datetime | None:
        if self.options.full:
            return None
        watermark = self.store.get_watermark(self.name, kind)
        if watermark is None:
            return None
        return watermark - timedelta(seconds=self.connection.overlap_seconds)

    def _read(
        self,
        kind: str,
        *,
        start: bool = True,
        after_first: Callable[[], None] | None = None,
    ) -> Prefetch | Chunks:
        """The kind's changed records in checkpoint chunks; read ahead on a thread with concurrency.

        Sequentially (max_concurrency 1) nothing is read before it is consumed, so one call at a
        time is in flight, as the CRM connection asks.
        """
        crm_object = self.mapping.crm_object(kind)
        fields = self.mapping.read_fields(kind)
        records = self.adapter.read_changed(crm_object, fields, self._since(kind))
        if self.adapter.capabilities.max_concurrency > 1:
            return Prefetch(
                records,
                CHECKPOINT_EVERY,
                READ_AHEAD_CHUNKS,
                f"crm-read-{kind}",
                start=start,
                after_first=after_first,
            )
        return Chunks(records, CHECKPOINT_EVERY)

    def _pull(self, kind: str, chunks: Iterator[list[RawRecord]]) -> None:
        counts = self.report.objects[kind]
        try:
            self._pull_chunks(kind, chunks, counts)
        except FatalCrmError as exc:
            # A mapped field deleted since `check` (Salesforce INVALID_FIELD, Zoho INVALID_DATA
            # naming it) refuses the read: exit 78 naming it, instead of a crash.
            self.drift.explain_fatal(exc)
            raise

    def _pull_chunks(self, kind: str, chunks: Iterator[list[RawRecord]], counts: Any) -> None:
        for chunk in chunks:
            if self.options.cancel.is_set():
                raise RunCancelled(
                    "stopped while reading; the watermark stays at the last checkpoint"
                )
            settled = (
                self._settlement_dates(chunk)
                if kind == "invoice" and self.paid_from == "payments"
                else {}
            )
            newest: datetime | None = None
            with self.store.transaction():
                # The chunk's changed invoices flag their accounts once, not once a row.
                self._to_store = [] if kind == "invoice" else None
                try:
                    for raw in chunk:
                        counts["read"] += 1
                        self._ingest(kind, raw, counts, settled.get(raw.crm_id))
                        if newest is None or raw.modified_at > newest:
                            newest = raw.modified_at
                    self._store_invoices(counts)
                    if self._to_flag:
                        self.store.flag_for_scoring(self.name, self._to_flag)
                finally:
                    self._to_store = None
                    self._to_flag = set()
                if newest is not None:
                    # Same transaction as the rows: a crash never leaves a half-advanced watermark.
                    self.store.set_watermark(self.name, kind, newest)
            self.heartbeat()
            if self.options.progress:
                self.options.progress(f"read {kind}s", counts["read"], None)

    def _settlement_dates(self, chunk: Sequence[RawRecord]) -> dict[str, date]:
        """Paid dates of this chunk's settled invoices, from their payment allocations.

        One query per few hundred settled invoices: the CRM bumps an invoice's modification
        stamp when a payment changes its balance, so a paid invoice is read again and its
        allocations with it.
        """
        settled: list[str] = []
        known: dict[str, date] = {}
        for raw in chunk:
            if raw.deleted:
                continue
            try:
                invoice = self.mapping.to_invoice(raw)
            except RecordError:
                continue  # quarantined by _ingest, with its reason
            if (
                invoice is not None
                and invoice.paid_date is None
                and invoice.status not in NOT_PAID_STATUSES
                and (invoice.status == InvoiceStatus.PAID or invoice.open_amount <= 0)
            ):
                stored = self.store.get_invoice(self.name, invoice.crm_id)
                if (
                    stored is not None
                    and stored.paid_date is not None
                    and stored.modified_at == invoice.modified_at
                ):
                    # Read again unchanged (the watermark's overlap): its date is known.
                    known[invoice.crm_id] = stored.paid_date
                else:
                    settled.append(invoice.crm_id)
        if not settled:
            return known
        assert isinstance(self.adapter, RelatedReader)
        parent = self.mapping.field("payment", "invoice_id").crm
        entries = []
        for record in self.adapter.read_related(
            self.mapping.crm_object("payment"),
            self.mapping.read_fields("payment"),
            parent,
            settled,
        ):
            try:
                entries.append(self.mapping.to_payment(record))
            except RecordError as exc:
                # One bad allocation leaves its invoice without a paid date, not the run.
                self.report.errors.add(exc.code, record.crm_id, redact(str(exc)))
        self.report.objects["payment"]["read"] += len(entries)
        return {**known, **settlement_dates(entries)}

    def _ingest(
        self, kind: str, raw: RawRecord, counts: Any, settled_on: date | None = None
    ) -> None:
        if kind == "account":
            if raw.deleted:
                counts["deleted"] += 1
                self.store.mark_account_deleted(self.name, raw.crm_id)
                self._release(kind, raw.crm_id)
                return
            try:
                account = self.mapping.to_account(raw)
                crm_values = {
                    name: self.mapping.crm_value_to_canonical("account", name, raw)
                    for name in self.write_fields
                }
            except RecordError as exc:
                self._quarantine(kind, raw, exc, counts, account_id=raw.crm_id)
                return
            self._settle_intent(account.crm_id, crm_values)
            last_written = self.store.last_written(self.name, account.crm_id)
            if written_elsewhere(crm_values, last_written):
                last_written = self._adopt_fields(account.crm_id, crm_values)
            view = self._with_reference_limit(account, crm_values, last_written)
            if self.store.upsert_account(self.name, account, crm_values, scoring_view=view):
                counts["changed"] += 1
            self._release(kind, raw.crm_id)
            return
        if raw.deleted:
            counts["deleted"] += 1
            self._store_invoices(counts)  # in stream order, before this invoice's deletion
            self.store.mark_invoice_deleted(self.name, raw.crm_id)
            self._release(kind, raw.crm_id)
            return
        try:
            invoice = self.mapping.to_invoice(raw, settled_on=settled_on)
        except RecordError as exc:
            self._store_invoices(counts)
            # The stored copy is stale: its account is held until a valid version arrives.
            # Without one, the account the record names is held (it misses an invoice).
            account_id = self.store.invoice_account(
                self.name, raw.crm_id
            ) or self.mapping.invoice_account_id(raw)
            self._quarantine(kind, raw, exc, counts, account_id=account_id)
            return
        if invoice is None:
            # Excluded by the mapping's filter (e.g. Draft, Cancelled): it leaves scoring.
            counts["excluded"] += 1
            self._store_invoices(counts)
            self.store.mark_invoice_deleted(self.name, raw.crm_id)
            self._release(kind, raw.crm_id)
            return
        if self._to_store is not None:
            # Stored with the rest of the chunk, in one query and one statement.
            self._to_store.append(invoice)
        elif self.store.upsert_invoice(self.name, invoice):
            counts["changed"] += 1
        self._release(kind, raw.crm_id)

    def _store_invoices(self, counts: Any) -> None:
        """Write the chunk's pending invoices in one go; their accounts wait to be flagged."""
        if not self._to_store:
            return
        for affected in self.store.upsert_invoices(self.name, self._to_store, flag=False):
            if affected:
                counts["changed"] += 1
                self._to_flag.update(affected)
        self._to_store.clear()

    def _recheck_quarantined(self) -> None:
        """Read quarantined records again by id when the mapping changed since they were judged.

        A fix in the mapping (a status added to `values`, a moved `[validation]` floor) changes
        no record in the CRM, so the incremental read would never bring the held records back:
        their accounts would stay held until someone edits each record. Records held for a
        missing exchange rate are left to the rate check; records the CRM no longer has are gone.
        """
        key = f"quarantine_mapping:{self.name}"
        digest = mapping_digest(self.mapping)
        if self.store.get_value(key) == digest:
            return
        # Records this run already judged under the current mapping are not read twice.
        rows = [
            row
            for row in self.store.quarantined(self.name)
            if row.get("rule") != NO_RATE and row.get("run_id") != self.run_id
        ]
        for kind in ("account", "invoice"):
            ids = [str(row["record_id"]) for row in rows if row["object"] == kind]
            if not ids:
                continue
            counts = self.report.objects[kind]
            crm_object = self.mapping.crm_object(kind)
            records = self.adapter.read_by_ids(crm_object, self.mapping.read_fields(kind), ids)
            seen: set[str] = set()
            try:
                for chunk in chunked(records, CHECKPOINT_EVERY):
                    if self.options.cancel.is_set():
                        # The mapping digest is not saved: the next run reads them again.
                        raise RunCancelled("stopped while reading quarantined records again")
                    with self.store.transaction():
                        for raw in chunk:
                            seen.add(raw.crm_id)
                            counts["reread"] += 1
                            self._ingest(kind, raw, counts)
                    self.heartbeat()
            except FatalCrmError as exc:
                self.drift.explain_fatal(exc)
                raise
            with self.store.transaction():
                for record_id in ids:
                    if record_id not in seen:
                        gone = RawRecord(
                            crm_id=record_id, modified_at=self.options.now(), deleted=True
                        )
                        self._ingest(kind, gone, counts)
            still = {(row["object"], row["record_id"]) for row in self.store.quarantined(self.name)}
            released = sum(1 for record_id in ids if (kind, record_id) not in still)
            if released:
                log.info(
                    "the mapping changed: quarantined records read again and released",
                    extra={"object": kind, "count": released, "connection": self.name},
                )
        self.store.set_value(key, digest)

    def _held_ids(self, kind: str) -> set[str]:
        """Ids of this kind's quarantined records, read once a run (kept current by `_hold`)."""
        held = self._quarantined_ids.get(kind)
        if held is None:
            held = {
                str(row["record_id"])
                for row in self.store.quarantined(self.name)
                if row["object"] == kind
            }
            self._quarantined_ids[kind] = held
        return held

    def _release(self, kind: str, crm_id: str) -> None:
        """Release a record read valid (or deleted) from quarantine, when it is there.

        Asking the store for every record read was a query per record (one a row on a
        1M-invoice run) for what is nearly always nothing.
        """
        held = self._held_ids(kind)
        if crm_id in held:
            held.discard(crm_id)
            self.store.release_quarantine(self.name, kind, crm_id)

    def _quarantine(
        self,
        kind: str,
        raw: RawRecord,
        exc: RecordError,
        counts: Any,
        *,
        account_id: str | None,
    ) -> None:
        """Keep a record that failed validation out, and hold its account (no writes from stale data)."""
        counts["invalid"] += 1
        reason = redact(str(exc))
        self._hold(
            {
                "object": kind,
                "record_id": raw.crm_id,
                "account_id": account_id or "",
                "name": redact(self.mapping.record_label(kind, raw)),
                "rule": exc.code or "INVALID_RECORD",
                "field": ",".join(exc.fields),
                "value": redact(exc.value),
                "reason": reason,
            }
        )

    def _hold(self, entry: dict[str, Any]) -> bool:
        """Quarantine one record and hold its account; True when this is a new problem.

        A record read again unchanged (the overlap window, a re-read after a mapping change)
        stays held and listed, but is not a new failure of this run: it does not set the exit
        code to 1 again, nor fill the report's errors or the log with warnings every run.
        """
        self._held_ids(entry["object"]).add(entry["record_id"])
        new = self.store.quarantine(
            self.name,
            entry["object"],
            entry["record_id"],
            entry["reason"],
            self.run_id,
            account_id=entry["account_id"] or None,
            name=entry["name"],
            rule=entry["rule"],
            field=entry["field"],
            value=entry["value"],
        )
        self.report.quarantined.append({**entry, "new": new})
        if new:
            self.report.errors.add(entry["rule"], entry["record_id"], entry["reason"])
            log.warning(
                "record quarantined; its account is held until a valid version arrives",
                extra={
                    "object": entry["object"],
                    "record_id": entry["record_id"],
                    "detail": entry["reason"],
                },
            )
        else:
            log.info(
                "record still quarantined (known since an earlier run)",
                extra={"object": entry["object"], "record_id": entry["record_id"]},
            )
        return new

    def _report_held(self) -> None:
        """Which accounts are held by quarantined records, and why (all of them, not just new ones)."""
        held = self.store.held_accounts(self.name)
        self.report.held_count = len(held)
        for account_id, rows in list(held.items())[:50]:
            self.report.held.append(
                {
                    "account_id": account_id,
                    "records": [
                        {
                            "object": row["object"],
                            "record_id": row["record_id"],
                            "rule": row["rule"] or "",
                            "reason": row["reason"],
                        }
                        for row in rows
                    ],
                }
            )

    # -- score, plan, write -----------------------------------------------------------------

    def _load_rates(self) -> None:
        """Read the CRM's rates once; assessments made under other rates become stale."""
        self.book = read_rates(self.adapter, self.policy)
        self.score_policy = self.policy.model_copy(update={"home_currency": self.book.home})
        # A new stage (shadow -> fields -> tasks) or new rates make every assessment stale.
        self.fingerprint = f"{policy_fingerprint(self.policy)}-{self.book.digest()}-{self.stage}"
        if self.paid_from is None:
            # Mapping a paid-date source later rescores every account.
            self.fingerprint += "-unpaid"
        self.report.home_currency = self.book.home
        release_rated(self.store, self.name, self.book, self.as_of)

    def _hold_unrated(self, unrated: list[Unrated]) -> None:
        """Records in a currency without a rate: quarantined, their account held, nothing summed."""
        new = [
            self._hold(
                {
                    "object": item.obj,
                    "record_id": item.record_id,
                    "account_id": item.account_id,
                    "name": redact(item.name),
                    "rule": NO_RATE,
                    "field": "currency",
                    "value": item.currency,
                    "reason": item.reason,
                }
            )
            for item in unrated
        ]
        if any(new):
            log.warning(
                "amounts without an exchange rate quarantined; the account is held",
                extra={"record_id": unrated[0].account_id, "detail": unrated[0].reason},
            )

    def _score_plan_write(self) -> None:
        store, name = self.store, self.name
        self._load_rates()
        if self.options.full:
            store.flag_for_scoring(name)
        else:
            store.flag_stale_assessments(name, self.as_of, self.fingerprint)
        self._adopt_tasks()
        # Values held back after a refusal are planned again once the mapping or the CRM field
        # changed (the admin added the picklist value): not when the account next changes.
        retry_refused = self.drift.retry_changed()
        if retry_refused:
            store.flag_for_scoring(name, retry_refused)
        pending_retry = {row["record_id"] for row in store.failed_writes(name)}
        waiting_prefix = downgrade_waiting_key(name, "")
        downgrades_waiting = {
            key[len(waiting_prefix) :]: value
            for key, value in store.values_under(waiting_prefix).items()
        }
        if pending_retry:
            store.flag_for_scoring(name, pending_retry)
            self.report.writes["account"]["retried_from_previous"] += len(pending_retry)
        total = store.count_accounts(name, only_flagged=True, exclude_held=True)
        if total == 0:
            # Nothing to score, but an approval digest a previous run failed to create is made
            # now: the held changes it lists live in the ledger, not in this run's accounts.
            self._send_digests(None)
            return
        exposures = home_exposures(store, name, self.book)
        portfolio = build_portfolio_context(
            (
                (stored.account, exposures.get(stored.account.crm_id, Decimal(0)))
                for stored in store.iter_accounts(name)
            ),
            self.policy,
        )
        writer = Writer(
            adapter=self.adapter,
            store=store,
            connection=name,
            run_id=self.run_id,
            account_object=self.mapping.crm_object("account"),
            to_crm_values=self.mapping.to_crm_values,
            report=self.report,
            policy_fingerprint=self.fingerprint,
            cancel=self.options.cancel,
            heartbeat=self._heartbeat_and_hook,
            dry_run=self.options.dry_run,
            fallback_owner_id=self.task_policy.fallback_owner_id,
            absent_task_keys=self._absent_in_scan,
            drift=self.drift,
            shadow=self.stage == "shadow",
            caps=TaskCaps(self.task_policy.max_new_per_run, self.task_policy.max_new_per_owner),
            approval_digest=self.task_policy.limit_approval_digest,
        )
        now = self.options.now()
        done = 0
        # Held accounts (a quarantined record) are skipped: no field or task write from stale
        # data, open tasks stay as they are; they keep their flag and are scored once released.
        for stored in store.iter_accounts(name, only_flagged=True, exclude_held=True):
            if self.options.cancel.is_set():
                writer.flush(final=True)
                raise RunCancelled(
                    "stopped after the current batch; the rest waits for the next run"
                )
            account = stored.account
            last_written = store.last_written(name, account.crm_id)
            invoices = store.invoices_for(name, account.crm_id)
            scoring_account = self._with_reference_limit(account, stored.crm_values, last_written)
            inputs = to_home(scoring_account, invoices, self.book, self.as_of)
            if not isinstance(inputs, HomeInputs):
                self._hold_unrated(inputs)
                continue
            previous = store.get_assessment(name, account.crm_id)
            assessment = self._assess(
                account, inputs, portfolio, previous, scoring_account.current_credit_limit
            )
            self.report.scored += 1
            self.report.bands[assessment.band] += 1
            plan = plan_account(
                account,
                assessment,
                crm_values=stored.crm_values,
                last_written=last_written,
                write_fields=self.write_fields,
                write_modes=self.write_modes,
                max_lengths=self.max_lengths,
                governance=self.governance,
                now=now,
                limit_rate=inputs.rate,
            )
            ledger = store.task_ledger(name, account.crm_id)
            downgrade = ledger.get("band_downgrade")
            waiting_from = downgrades_waiting.get(account.crm_id)
            context = RuleContext(
                previous=previous,
                limit_held_for_approval=plan.limit_held is not None,
                held_limit=plan.limit_held,
                manual_conflicts=plan.conflicts,
                last_review=_last_review(ledger),
                tracked_since=stored.first_seen.date(),
                downgrade_baseline=(
                    downgrade.meta.get("baseline")
                    if downgrade is not None and downgrade.state == "open"
                    else waiting_from
                ),
            )
            firings = (
                evaluate(account, assessment, context, self.task_policy, self.as_of)
                if self.opens_tasks
                else []
            )
            task_plan = plan_tasks(
                name,
                account.crm_id,
                firings,
                {
                    rule: LedgerView(e.episode, e.state, e.crm_task_id, e.level, e.dedupe_key)
                    for rule, e in ledger.items()
                },
                self.task_policy.rules if self.opens_tasks else (),
                self.as_of,
            )
            baseline_meta: dict[str, Any] = {}
            if any(a.rule == "band_downgrade" and a.action == "create" for a in task_plan.actions):
                baseline_meta["band_downgrade"] = waiting_from or (
                    previous.band if previous else assessment.band
                )
            if any(a.rule == "limit_approval" and a.action == "create" for a in task_plan.actions):
                # The limit the approval was asked against: a later hand edit settles it.
                baseline_meta["limit_approval"] = str(
                    normalize(LIMIT_FIELD, stored.crm_values.get(LIMIT_FIELD))
                )
            task_plan = self._explain_settled_approval(
                task_plan, ledger, stored.crm_values, assessment
            )
            writer.add(
                PendingAccount(
                    account_id=account.crm_id,
                    assessment=assessment,
                    exposure=exposures.get(account.crm_id, Decimal(0)),
                    plan=plan,
                    tasks=task_plan,
                    ledger=dict(ledger),
                    baseline_meta=baseline_meta,
                    name=account.name,
                    downgrade_waiting_from=waiting_from,
                )
            )
            done += 1
            if self.options.progress and done % 200 == 0:
                self.options.progress("scored and planned", done, total)
        writer.flush(final=True)
        self._send_digests(writer)
        if self.options.progress:
            self.options.progress("scored and planned", done, total)

    def _send_digests(self, writer: Writer | None) -> None:
        """The owners' digests of waiting follow-ups and the credit manager's approval digest.

        Without a writer (nothing was scored) only the approval digest is brought up to date.
        """
        if not self.opens_tasks or self.stage == "shadow":
            return
        sender = DigestSender(
            adapter=self.adapter,
            store=self.store,
            connection=self.name,
            run_id=self.run_id,
            report=self.report,
            as_of=self.as_of,
            dry_run=self.options.dry_run,
            language=self.task_policy.language,
        )
        if writer is not None:
            sender.owner_digests(writer.deferred)
        if self.task_policy.limit_approval_digest:
            sender.approval_digest(
                self.task_policy.credit_manager_id or self.task_policy.fallback_owner_id
            )

    def _explain_settled_approval(
        self,
        task_plan: TaskPlan,
        ledger: dict[str, Any],
        crm_values: dict[str, Any],
        assessment: RiskAssessment,
    ) -> TaskPlan:
        """An approval task closed because a person set the limit says so in the audit."""
        entry = ledger.get("limit_approval")
        closing = any(
            a.rule == "limit_approval" and a.action in ("complete", "comment")
            for a in task_plan.actions
        )
        if entry is None or not (closing or "limit_approval" in task_plan.close_without_action):
            return task_plan
        asked_against = entry.meta.get("baseline")
        now = normalize(LIMIT_FIELD, crm_values.get(LIMIT_FIELD))
        currency = assessment.features.get("limit_currency") or ""
        if asked_against is not None and str(now) != str(asked_against):

            def shown(value: Any) -> str:
                if value in (None, "None"):
                    return "empty"
                return f"{Decimal(str(value)):,.2f} {currency}".rstrip()

            cause = (
                f"limit changed in the CRM by a person to {shown(now)} (it was "
                f"{shown(asked_against)} when approval was asked): approval no longer needed"
            )
        else:
            cause = "the recommended change no longer needs approval"
        actions = tuple(
            action.model_copy(update={"cause": cause})
            if action.rule == "limit_approval" and action.action in ("complete", "comment")
            else action
            for action in task_plan.actions
        )
        causes = {**task_plan.close_causes}
        if "limit_approval" in task_plan.close_without_action:
            causes["limit_approval"] = cause  # listed in the approval digest: no task to close
        return replace(task_plan, actions=actions, close_causes=causes)

    def _assess(
        self,
        account: Account,
        inputs: HomeInputs,
        portfolio: PortfolioContext,
        previous: RiskAssessment | None,
        reference_limit: Decimal | None,
    ) -> RiskAssessment:
        """Score in the home currency, review the limit, and write it in the account's currency.

        The review starts from the reference limit (the one a person set, in the account's
        currency): the cap on change per review is counted from it, so runs do not compound
        steps, and a kept limit is exactly that value, not a round trip through the rate.
        """
        home = self.book.home
        assessment = assess(
            inputs.account,
            inputs.invoices,
            portfolio,
            self.score_policy,
            self.as_of,
            payment_history=self.paid_from is not None,
        )
        target = assessment.recommended_credit_limit
        held_now = reference_limit
        current_home = inputs.account.current_credit_limit
        limit_home, review = review_limit(
            target,
            current_home,
            band=assessment.band,
            previous_band=previous.band if previous is not None else None,
            peaks=peak_exposures(inputs.invoices, self.as_of, self.policy.limits.low_use_months),
            hard_rules=assessment.hard_rules,
            manual=inputs.account.manual_credit_limit,
            policy=self.policy,
        )
        currency = account.currency or home
        lines: tuple[str, ...] = ()
        if limit_home is not None and limit_home == current_home:
            # Kept: exactly the limit a person set, not a round trip through the rate.
            limit = held_now
        else:
            limit, lines = in_account_currency(
                limit_home,
                home=home,
                currency=currency,
                rate=inputs.rate,
                step=self.policy.limits.rounding_step,
            )
        if not assessment.hard_rules:
            limit = within_review_cap(limit, held_now, rate=inputs.rate, policy=self.policy)
        lines = (*review, *lines)
        features = {
            **assessment.features,
            "currency": home or assessment.features.get("currency"),
            "home_currency": home,
            "limit_currency": currency,
            "limit_rate": str(inputs.rate),
            "recommended_limit_home": None if limit_home is None else str(limit_home),
            # The limit this review started from, written to the CRM (BASIS_FIELD).
            "limit_basis": None if held_now is None else str(held_now),
            "derived_limit_home": None if target is None else str(target),
        }
        return assessment.model_copy(
            update={
                "recommended_credit_limit": limit,
                "limit_derivation": assessment.limit_derivation + lines,
                "features": features,
            }
        )

    def _adopt_fields(self, account_id: str, crm_values: dict[str, Any]) -> dict[str, Any]:
        """A run this store does not know wrote the account: its values are ours, not a person's."""
        values = adoptable(crm_values, self.write_fields)
        self.store.record_written(self.name, account_id, values, self.run_id)
        self.store.append_audit(
            self.run_id,
            self.connection.name,
            obj="account",
            record_id=account_id,
            action="adopt",
            new={name: normalize(name, value) for name, value in values.items()},
            cause="our reviewed-at stamp in the CRM is newer than this store's: state was lost",
            response="read",
        )
        limit_key = f"reference_limit:{self.name}:{account_id}"
        reference = adopted_reference_limit(crm_values, self.write_fields)
        if reference is not None:
            self.store.set_value(limit_key, reference)
        elif LIMIT_FIELD in values and self.store.get_value(limit_key) is None:
            # Who set the limit is unknown (no basis field mapped): utilisation is measured
            # against the limit as it stands.
            self.store.set_value(limit_key, str(normalize(LIMIT_FIELD, values[LIMIT_FIELD])))
        self.report.adopted_fields += len(values)
        self.state_lost = True
        return self.store.last_written(self.name, account_id)

    def _adopt_tasks(self) -> None:
        """One scan of the CRM's open marked tasks when the ledger is empty or state was lost."""
        if not isinstance(self.adapter, TaskScanner) or not self.task_policy.enabled:
            return
        if not (self.state_lost or self.store.ledger_is_empty(self.name)):
            return
        adoption = adopt_open_tasks(
            self.store,
            self.name,
            self.adapter.open_tasks(),
            now=self.options.now(),
            run_id=self.run_id,
        )
        self.scanned_task_keys = adoption.seen
        self.report.adopted_tasks += len(adoption.adopted)
        if adoption.adopted:
            log.warning(
                "adopted open tasks the store did not know",
                extra={"count": len(adoption.adopted), "connection": self.name},
            )

    def _absent_in_scan(self, key: str) -> bool:
        return self.scanned_task_keys is not None and key not in self.scanned_task_keys

    def _settle_intent(self, account_id: str, crm_values: dict[str, Any]) -> None:
        """Adopt values a crashed run wrote but never recorded, so they are not taken for edits."""
        intent = self.store.intent(self.name, account_id)
        if intent is None:
            return
        landed = {
            name: value
            for name, value in intent.items()
            if normalize(name, crm_values.get(name)) == normalize(name, value)
        }
        if landed:
            self.store.record_written(self.name, account_id, landed, self.run_id)
        self.store.clear_intents(self.name, [account_id])

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

    def _portfolio(self) -> None:
        """The book's totals for the run report, and its snapshot for the portfolio report."""
        snapshot: list[tuple[str, str, float, Decimal]] = []
        report = portfolio_report(self._scored_rows(snapshot))
        summary = report.to_dict()
        if summary and self.options.portfolio:
            self.report.portfolio = {"home_currency": self.report.home_currency, **summary}
        if not self.options.dry_run:
            # Every run leaves one, so "since the previous run" compares two real runs. The
            # run's rates go with it: the report's stress scenarios convert with the same ones.
            book: CurrencyBook | None = getattr(self, "book", None)
            self.store.save_snapshot(
                self.name,
                self.run_id,
                self.as_of,
                {**(summary or {"accounts": 0}), "rates": book_to_json(book) if book else None},
                snapshot,
                home_currency=self.report.home_currency,
            )

    def _scored_rows(
        self, snapshot: list[tuple[str, str, float, Decimal]]
    ) -> Iterator[tuple[Account, RiskAssessment, Decimal]]:
        # A generator: a 100k-account portfolio is summarised without holding it in memory
        # (the snapshot keeps four small values per account).
        for stored in self.store.iter_accounts(self.name):
            assessment = self.store.get_assessment(self.name, stored.account.crm_id)
            if assessment is not None:
                exposure = Decimal(str(assessment.features.get("exposure") or 0))
                snapshot.append(
                    (stored.account.crm_id, assessment.band, assessment.score, exposure)
                )
                yield stored.account, assessment, exposure


def _last_review(ledger: dict[str, Any]) -> date | None:
    entry = ledger.get("review_due")
    if entry is None or entry.closed_at is None:
        return None
    closed: datetime = entry.closed_at
    return closed.date()


def classify_exit(report: RunReport) -> int:
    """Exit code for a finished run: 0 when it met no new problem; 1 when this run had writes the
    CRM refused or did not confirm, or quarantined records for the first time (or for a new
    reason); 75 when a signal stopped it (the rest waits for the next run).

    Known holds (records quarantined by an earlier run and read again unchanged, field values
    held back after an explained refusal) do not make every later run exit 1: they were
    reported when they happened, and `status` and `quarantine` keep showing them.
    """
    if report.status == "cancelled":
        return EXIT_TEMPFAIL
    return 1 if report.status == "succeeded_with_rejections" else 0


__all__ = ["SyncOptions", "classify_exit", "holder_id", "run_sync"]
