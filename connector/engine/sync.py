"""One sync run: pull changed records, store them, score, plan, write, and report."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from connector.engine.context import SyncOptions
from connector.engine.plan import ScoreAndPlan
from connector.engine.pull import Pull
from connector.engine.report import RunReport
from connector.errors import EXIT_TEMPFAIL, ConnectorError, RunCancelled
from connector.mapping import FieldMapping
from connector.mapping.check import payment_history_warning
from connector.models import Account, RiskAssessment
from connector.protocol import CrmAdapter
from connector.redaction import redact
from connector.scoring import portfolio_report
from connector.scoring.currency import CurrencyBook, book_to_json
from connector.store import SqlStore
from connector.store.holders import holder_id as new_holder_id

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig


log = logging.getLogger("crm_risk.sync")


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
        _record_takeover(store, report, holder, takeover)

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
        _close_run(adapter, store, work_store, report, holder, options)
    return report


def _record_takeover(
    store: SqlStore, report: RunReport, holder: str, takeover: dict[str, str]
) -> None:
    """Say in the log, the report and the audit that this run took a dead process's lease."""
    log.warning(
        "took over the run lease of a process that is gone",
        extra={
            "connection": report.connection,
            "detail": f"{takeover['holder']}: {takeover['reason']}",
        },
    )
    report.message = f"took over the lease of {takeover['holder']} ({takeover['reason']})"
    store.append_audit(
        report.run_id,
        report.connection,
        obj="lease",
        record_id=report.connection,
        action="lease_takeover",
        old=takeover["holder"],
        new=holder,
        cause=takeover["reason"],
        response="taken over",
    )


def _close_run(
    adapter: CrmAdapter,
    store: SqlStore,
    work_store: SqlStore,
    report: RunReport,
    holder: str,
    options: SyncOptions,
) -> None:
    """Finish the report, record the run in the history (not a dry run's) and free the lease."""
    usage = adapter.usage()
    report.api_calls = dict(usage.calls)
    report.quota_remaining = usage.remaining
    report.quota_limit = usage.limit
    report.watermarks_after = work_store.watermarks(report.connection)
    report.ended_at = options.now().isoformat()
    if not options.dry_run:
        store.finish_run(report.run_id, report.status, report.to_dict())
    else:
        work_store.close()
    store.release_lease(report.connection, holder)


class _Engine(Pull, ScoreAndPlan):
    """The steps of one run, sharing the run's context."""

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
