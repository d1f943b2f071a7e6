"""The score-and-plan stage: assess each flagged account, plan its writes and tasks, hand them to the writer."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connector.engine.adoption import adopt_open_tasks
from connector.engine.digests import DigestSender
from connector.engine.holds import Holds
from connector.engine.money import HomeInputs, home_exposures, read_rates, release_rated, to_home
from connector.engine.writer import Writer
from connector.engine.writer_state import PendingAccount, TaskCaps, downgrade_waiting_key
from connector.errors import RunCancelled
from connector.models import Account, RiskAssessment
from connector.planning.planner import (
    LIMIT_FIELD,
    AccountPlan,
    LedgerView,
    TaskPlan,
    normalize,
    plan_account,
    plan_tasks,
)
from connector.planning.task_rules import RuleContext, evaluate
from connector.protocol import TaskScanner
from connector.scoring import PortfolioContext, assess, build_portfolio_context
from connector.scoring.limits import (
    in_account_currency,
    peak_exposures,
    review_limit,
    within_review_cap,
)
from connector.scoring.policy import policy_fingerprint
from connector.store import StoredAccount, TaskLedgerEntry

log = logging.getLogger("crm_risk.sync")


class ScoreAndPlan(Holds):
    """Scores the flagged accounts and plans their field writes and follow-up tasks."""

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

    def _score_plan_write(self) -> None:
        store, name = self.store, self.name
        self._load_rates()
        downgrades_waiting = self._flag_for_scoring()
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
        writer = self._new_writer()
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
            pending = self._score_and_plan(
                stored, portfolio, exposures, downgrades_waiting.get(stored.account.crm_id), now
            )
            if pending is None:
                continue
            writer.add(pending)
            done += 1
            if self.options.progress and done % 200 == 0:
                self.options.progress("scored and planned", done, total)
        writer.flush(final=True)
        self._send_digests(writer)
        if self.options.progress:
            self.options.progress("scored and planned", done, total)

    def _flag_for_scoring(self) -> dict[str, str]:
        """Flag what this run scores; the bands capped downgrades fell from, by account."""
        store, name = self.store, self.name
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
        return downgrades_waiting

    def _new_writer(self) -> Writer:
        return Writer(
            adapter=self.adapter,
            store=self.store,
            connection=self.name,
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

    def _score_and_plan(
        self,
        stored: StoredAccount,
        portfolio: PortfolioContext,
        exposures: dict[str, Decimal],
        waiting_from: str | None,
        now: datetime,
    ) -> PendingAccount | None:
        """One account scored and its writes and tasks planned (None: held for a missing rate)."""
        store, name = self.store, self.name
        account = stored.account
        last_written = store.last_written(name, account.crm_id)
        invoices = store.invoices_for(name, account.crm_id)
        scoring_account = self._with_reference_limit(account, stored.crm_values, last_written)
        inputs = to_home(scoring_account, invoices, self.book, self.as_of)
        if not isinstance(inputs, HomeInputs):
            self._hold_unrated(inputs)
            return None
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
        task_plan, baseline_meta = self._plan_tasks(
            stored, assessment, plan, ledger, previous, waiting_from
        )
        return PendingAccount(
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

    def _plan_tasks(
        self,
        stored: StoredAccount,
        assessment: RiskAssessment,
        plan: AccountPlan,
        ledger: dict[str, TaskLedgerEntry],
        previous: RiskAssessment | None,
        waiting_from: str | None,
    ) -> tuple[TaskPlan, dict[str, Any]]:
        """The account's task actions, and what each new task was opened against."""
        account = stored.account
        downgrade = ledger.get("band_downgrade")
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
            self.name,
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
        task_plan = self._explain_settled_approval(task_plan, ledger, stored.crm_values, assessment)
        return task_plan, baseline_meta

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


def _last_review(ledger: dict[str, Any]) -> date | None:
    entry = ledger.get("review_due")
    if entry is None or entry.closed_at is None:
        return None
    closed: datetime = entry.closed_at
    return closed.date()
