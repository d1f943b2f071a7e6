"""Finishes an account once all its writes are answered: baseline, held values, ledger, assessment."""

from __future__ import annotations

from datetime import datetime

from connector.engine.account_writes import AccountWrites
from connector.engine.writer_state import Finishing, downgrade_waiting_key, jsonable
from connector.store import TaskLedgerEntry


class Finalizing(AccountWrites):
    """Records an account as done once the CRM answered each of its writes and task actions."""

    def _finalize(self, item: Finishing) -> None:
        counts = self.report.writes["account"]
        counts["unchanged"] += item.count("unchanged")
        counts["skipped_override"] += item.count("frozen")
        counts["held_for_approval"] += item.count("held")
        counts["conflicts"] += item.count("conflict")
        if self.dry_run:
            self._report_held_back(item)
            return
        now = self.store.now()
        if self.shadow:
            # Nothing was sent: no baseline, ledger or audit; the scoring is kept for reports.
            with self.store.transaction():
                self.store.save_assessment(
                    self.connection, item.risk_assessment(), self.policy_fingerprint, item.exposure
                )
                self.store.clear_scoring_flag(self.connection, [item.account_id])
            return
        with self.store.transaction():
            self._record_plan(item)
            self._record_ledger(item, now)
            self._record_assessment(item)

    def _report_held_back(self, item: Finishing) -> None:
        """What a real run would hold back, field by field (a dry run's report).

        Limit changes awaiting approval and values a person changed in the CRM (kept).
        """
        self.report.planned.extend(
            {
                "account_id": item.account_id,
                "account_name": self._names.get(item.account_id, ""),
                "decision": decision.action,
                "field": decision.field,
                "crm_value": jsonable(decision.current),
                "desired": jsonable(decision.desired),
                "cause": decision.cause,
            }
            for decision in item.kept_back
        )

    def _record_plan(self, item: Finishing) -> None:
        """The diff baseline, and an audit line per value held back or left to a person."""
        if item.baseline:
            self.store.record_written(self.connection, item.account_id, item.baseline, self.run_id)
        for decision in item.kept_back:
            self._audit_account(
                item.account_id,
                decision.field,
                decision.current,
                decision.desired,
                action=decision.action,
                cause=decision.cause,
                response="not sent",
            )

    def _record_ledger(self, item: Finishing, now: datetime) -> None:
        """Task levels changed and tasks closed without a CRM call (nothing left to close)."""
        for rule, level in item.relevel.items():
            previous = item.ledger.get(rule)
            if previous is not None:
                self.store.save_ledger(
                    self.connection, TaskLedgerEntry(**{**previous.__dict__, "level": level})
                )
        for rule in item.close_without_action:
            previous = item.ledger.get(rule)
            if previous is not None:
                self.store.save_ledger(
                    self.connection,
                    TaskLedgerEntry(**{**previous.__dict__, "state": "closed", "closed_at": now}),
                )
                if rule in item.close_causes:
                    self.store.append_audit(
                        self.run_id,
                        self.connection,
                        obj="task",
                        record_id=item.account_id,
                        action="approval_cleared",
                        field=rule,
                        cause=item.close_causes[rule],
                        response="not sent",
                    )

    def _record_assessment(self, item: Finishing) -> None:
        """The assessment, the band a waiting downgrade fell from, and the scoring flag."""
        # The new band is recorded even when its downgrade task waits for a cap: the store,
        # the portfolio and the report must show what the CRM shows. The band it fell from
        # is kept aside instead, so the waiting task still fires against it on a later run.
        self.store.save_assessment(
            self.connection, item.risk_assessment(), self.policy_fingerprint, item.exposure
        )
        waiting_key = downgrade_waiting_key(self.connection, item.account_id)
        if "band_downgrade" in item.deferred:
            baseline = item.baseline_meta.get("band_downgrade")
            if baseline is not None and baseline != item.downgrade_waiting_from:
                self.store.set_value(waiting_key, str(baseline))
        elif item.downgrade_waiting_from is not None:
            self.store.delete_values([waiting_key])
        if item.deferred:
            self.store.flag_for_scoring(self.connection, [item.account_id])
        else:
            self.store.clear_scoring_flag(self.connection, [item.account_id])
