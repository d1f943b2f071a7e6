"""Task actions: capped, sent in batches, refused owners reassigned, the ledger kept."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from connector.engine.calls import Reply, call_in_order
from connector.engine.digests import Deferred
from connector.engine.finalize import Finalizing
from connector.engine.writer_state import Finishing, HeldCreate, Queued
from connector.models import TaskAction, WriteResult
from connector.redaction import redact
from connector.store import TaskLedgerEntry

log = logging.getLogger("crm_risk.writer")

_PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}


class TaskWrites(Finalizing):
    """Sends follow-up task actions in batches and keeps the task ledger."""

    def _send_tasks(self, *, final: bool) -> None:
        creates = [action for action in self._task_queue if action.action == "create"]
        others = [action for action in self._task_queue if action.action != "create"]
        handled: list[Queued] = []
        if self.approval_digest:
            # Held limit changes join the credit manager's digest, not a task each.
            queued = [action for action in creates if action.rule == "limit_approval"]
            creates = [action for action in creates if action.rule != "limit_approval"]
            for action in queued:
                self._queue_approval(action)
            handled += queued
        if self.caps is not None:
            # Creates wait for the end of the run, so the caps keep the most urgent ones.
            send_creates: list[Queued] = []
            if final:
                send_creates, deferred = self._cap(creates)
                for action in deferred:
                    self._defer(action)
                handled += deferred
        else:
            send_creates = (
                creates if final else creates[: len(creates) - len(creates) % self.batch_size]
            )
        send_others = others if final else others[: len(others) - len(others) % self.batch_size]
        sent = {id(action) for action in (*send_creates, *send_others, *handled)}
        self._task_queue = [action for action in self._task_queue if id(action) not in sent]
        self._apply_tasks(
            [
                action.task() if isinstance(action, HeldCreate) else action
                for action in (*send_creates, *send_others)
            ],
            self._waiting,
        )
        with self.store.transaction():
            for action in (*send_creates, *send_others, *handled):
                self._unanswered[action.account_id] -= 1
                if self._unanswered[action.account_id] == 0:
                    del self._unanswered[action.account_id]
                    self._finalize(self._waiting.pop(action.account_id))

    def _cap(self, creates: list[Queued]) -> tuple[list[Queued], list[Queued]]:
        """The creates within the caps (most urgent first: priority, then risk score)."""
        assert self.caps is not None

        def urgency(action: Queued) -> tuple[int, float, str, str]:
            item = self._waiting[action.account_id]
            return (
                _PRIORITY_RANK.get(action.priority.value, 1),
                -item.score,
                action.account_id,
                action.rule,
            )

        allowed: list[Queued] = []
        deferred: list[Queued] = []
        per_owner: dict[str | None, int] = {}
        for action in sorted(creates, key=urgency):
            owner = action.owner_id
            over_run = self.caps.per_run is not None and len(allowed) >= self.caps.per_run
            over_owner = (
                self.caps.per_owner is not None and per_owner.get(owner, 0) >= self.caps.per_owner
            )
            if over_run or over_owner:
                deferred.append(action)
                continue
            per_owner[owner] = per_owner.get(owner, 0) + 1
            allowed.append(action)
        return allowed, deferred

    def _defer(self, action: Queued) -> None:
        item = self._waiting[action.account_id]
        item.deferred.add(action.rule)
        self.report.tasks["deferred"] += 1
        self.deferred.append(
            Deferred(
                owner_id=action.owner_id,
                account_id=action.account_id,
                name=item.name,
                band=item.band,
                rule=action.rule,
                subject=action.subject,
                priority=action.priority,
            )
        )

    def _queue_approval(self, action: Queued) -> None:
        """A held limit change: a ledger row the approval digest lists (no task of its own)."""
        item = self._waiting[action.account_id]
        self.report.tasks["planned_approval"] += 1
        if self.dry_run or self.shadow:
            return
        self.report.tasks["queued_approval"] += 1
        entry = TaskLedgerEntry(
            account_id=action.account_id,
            rule=action.rule,
            episode=int(action.dedupe_key.rsplit(":", 1)[-1]),
            state="open",
            dedupe_key=action.dedupe_key,
            crm_task_id=None,
            level=item.levels.get(action.rule, 0),
            priority=action.priority.value,
            owner_id=action.owner_id,
            meta={"subject": action.subject, "baseline": item.baseline_meta.get(action.rule)},
            opened_at=self.store.now(),
            closed_at=None,
        )
        self.store.save_ledger(self.connection, entry)
        item.ledger[action.rule] = entry
        self.store.append_audit(
            self.run_id,
            self.connection,
            obj="task",
            record_id=action.account_id,
            action="approval_queued",
            field=action.rule,
            new={"subject": action.subject},
            cause="held for approval: listed in the credit manager's digest",
            response="not sent",
        )

    def _apply_tasks(self, actions: Sequence[TaskAction], items: dict[str, Finishing]) -> None:
        if not actions:
            return
        for action in actions:
            self.report.tasks[f"planned_{action.action}"] += 1
        if self.shadow:
            return
        if self.dry_run:
            self.report.planned.extend(
                {
                    "account_id": action.account_id,
                    "account_name": self._names.get(action.account_id, ""),
                    "task": action.action,
                    "rule": action.rule,
                    "subject": action.subject,
                    "priority": action.priority.value,
                    "owner_id": action.owner_id,
                }
                for action in actions
            )
            return
        creates = [action for action in actions if action.action == "create"]
        others = [action for action in actions if action.action != "create"]
        if self._refused_owners:
            # Owners the CRM refused earlier in this run: go straight to the fallback.
            creates = [
                action.model_copy(update={"owner_id": self.fallback_owner_id})
                if action.owner_id in self._refused_owners
                else action
                for action in creates
            ]
        ownerless = sum(1 for action in creates if not action.owner_id)
        if ownerless:
            # Said, not silent: the CRM gives them to its default owner (the integration user).
            log.warning(
                f"{ownerless} task{'s' if ownerless != 1 else ''} for accounts without an active "
                "owner go to the CRM's default owner (the integration user): set [tasks] "
                "fallback_owner_id to choose who gets them"
            )
        # Task batches go out like write batches: up to `concurrency` at once, answers applied
        # in batch order on this thread. Every create's intent is logged before any is sent.
        create_chunks = [
            self._mark_first_attempts(creates[start : start + self.batch_size])
            for start in range(0, len(creates), self.batch_size)
        ]
        self._apply_task_replies(
            create_chunks,
            call_in_order(self._send_creates, create_chunks, self.window, "crm-task"),
            items,
            creates=True,
        )
        other_chunks = [
            others[start : start + self.batch_size]
            for start in range(0, len(others), self.batch_size)
        ]
        self._apply_task_replies(
            other_chunks,
            call_in_order(self._send_updates, other_chunks, self.window, "crm-task"),
            items,
            creates=False,
        )

    def _send_creates(self, chunk: Sequence[TaskAction]) -> list[WriteResult]:
        """One task batch's creates (no store access: it may run on a worker thread)."""
        return list(self.adapter.create_tasks(chunk))

    def _send_updates(self, chunk: Sequence[TaskAction]) -> list[WriteResult]:
        """One task batch's closes and escalations (no store access: it may run on a worker thread)."""
        return list(self.adapter.update_tasks(chunk))

    def _apply_task_replies(
        self,
        chunks: Sequence[Sequence[TaskAction]],
        replies: Sequence[Reply[list[WriteResult]]],
        items: dict[str, Finishing],
        *,
        creates: bool,
    ) -> None:
        """Record each task batch's answer in batch order; raise the first error after recording
        what the CRM confirmed for the batches that were in flight with it."""
        error: BaseException | None = None
        for chunk, reply in zip(chunks, replies, strict=True):
            if reply.error is not None and error is None:
                error = reply.error
            if reply.answer is None:
                continue
            results: Sequence[WriteResult] = reply.answer
            if creates and error is None:
                # A refused owner is retried with the fallback (sequentially, in order).
                chunk, results = self._reassign_refused_owners(chunk, results)
            self._record_task_results(chunk, results, items)
        if error is not None:
            raise error

    def _mark_first_attempts(self, creates: Sequence[TaskAction]) -> list[TaskAction]:
        """Flag creates that need no look-up, and log the intent to send them (crash safety).

        Only a key this run's scan of the CRM found absent, and never sent since, cannot exist
        in the CRM: the store alone cannot prove it (a lost, restored or second store never saw
        the tasks other runs made), so every other key is looked up by the adapter first.
        """
        keys = [action.dedupe_key for action in creates]
        tried = self.store.task_intents(self.connection, keys)
        self.store.record_task_intents(self.connection, keys)
        return [
            action.model_copy(
                update={
                    "first_attempt": action.dedupe_key not in tried
                    and self.absent_task_keys(action.dedupe_key)
                }
            )
            for action in creates
        ]

    def _reassign_refused_owners(
        self, actions: Sequence[TaskAction], results: Sequence[WriteResult]
    ) -> tuple[list[TaskAction], list[WriteResult]]:
        """A task the CRM refused because of its owner (inactive, no access) goes to the fallback.

        The fallback is the configured fallback user, or else the CRM's default owner (the
        integration user), so the follow-up is not lost for the account.
        """
        actions, results = list(actions), list(results)
        if len(results) != len(actions):
            return actions, results
        retry = [
            index
            for index, (action, result) in enumerate(zip(actions, results, strict=True))
            if result.status == "rejected"
            and action.owner_id
            and action.owner_id != self.fallback_owner_id
            and result.reason == "owner_unavailable"
        ]
        if not retry:
            return actions, results
        self._refused_owners.update(str(actions[index].owner_id) for index in retry)
        again = [
            actions[index].model_copy(update={"owner_id": self.fallback_owner_id})
            for index in retry
        ]
        refused: dict[str, list[str]] = {}
        for index in retry:
            refused.setdefault(str(actions[index].owner_id), []).append(
                results[index].error_code or "refused"
            )
        for index, action, result in zip(
            retry, again, self.window.call(lambda: self._send_creates(again)), strict=False
        ):
            actions[index], results[index] = action, result
        # One line per refused owner and run (the demo printed one per task, between its tables).
        to = (
            f"the fallback owner {self.fallback_owner_id}"
            if self.fallback_owner_id
            else "the CRM's default owner (no [tasks] fallback_owner_id is set)"
        )
        for owner, codes in refused.items():
            log.warning(
                f"the CRM refused task owner {owner} ({codes[0]}): {len(codes)} task"
                f"{'s' if len(codes) != 1 else ''} assigned to {to}",
                extra={"error_code": codes[0]},
            )
        return actions, results

    def _record_task_results(
        self,
        actions: Sequence[TaskAction],
        results: Sequence[WriteResult],
        items: dict[str, Finishing],
    ) -> None:
        if len(results) != len(actions):
            results = [
                WriteResult(
                    crm_id=None,
                    status="unknown",
                    error_code="RESULT_COUNT_MISMATCH",
                    key=a.dedupe_key,
                )
                for a in actions
            ]
        with self.store.transaction():
            # One transaction per task batch (not one per task); no CRM call happens inside it.
            self._record_task_batch(actions, results, items)

    def _record_task_batch(
        self,
        actions: Sequence[TaskAction],
        results: Sequence[WriteResult],
        items: dict[str, Finishing],
    ) -> None:
        now = self.store.now()
        settled = [
            action.dedupe_key
            for action, result in zip(actions, results, strict=True)
            if action.action == "create" and result.status in ("ok", "rejected")
        ]
        for action, result in zip(actions, results, strict=True):
            item = items[action.account_id]
            if result.status != "ok":
                self._failed_task_accounts.add(action.account_id)
                self.report.tasks["failed"] += 1
                self.report.errors.add(result.error_code, action.account_id, redact(result.message))
                self.store.record_failed_write(
                    self.connection,
                    f"task:{action.rule}",
                    action.account_id,
                    [action.action],
                    result.error_code or result.status.upper(),
                    redact(result.message),
                )
                continue
            adopted = action.action == "create" and result.existed
            if adopted:
                # Already in the CRM (an earlier run, or another store): adopted, not created.
                self.report.tasks["adopted"] += 1
                self.report.adopted_tasks += 1
            else:
                self.report.tasks[action.action] += 1
            self.store.clear_failed_write(self.connection, f"task:{action.rule}", action.account_id)
            self._update_ledger(action, result, item, now)
            self.store.append_audit(
                self.run_id,
                self.connection,
                obj="task",
                record_id=action.account_id,
                action="task_adopt" if adopted else f"task_{action.action}",
                field=action.rule,
                new={
                    "task_id": result.crm_id or action.crm_task_id,
                    "priority": action.priority.value,
                    "owner_id": action.owner_id,
                    "subject": action.subject,
                    # The report's "completed on time" compares the close with this date.
                    "due_date": action.due_date.isoformat() if action.due_date else None,
                },
                cause=action.cause or action.rule,
                response="ok",
            )
        # After the ledger rows: a crash before this point leaves the intent, so the next run
        # looks the task up instead of trusting that it was never created.
        self.store.clear_task_intents(self.connection, settled)

    def _update_ledger(
        self, action: TaskAction, result: WriteResult, item: Finishing, now: datetime
    ) -> None:
        previous = item.ledger.get(action.rule)
        level = item.levels.get(action.rule, previous.level if previous else 0)
        meta = dict(previous.meta) if previous else {}
        if action.rule in item.baseline_meta:
            meta["baseline"] = item.baseline_meta[action.rule]
        if action.action == "create":
            episode = int(action.dedupe_key.rsplit(":", 1)[-1])
            meta.pop("due_date", None)
            if action.due_date is not None:
                meta["due_date"] = action.due_date.isoformat()
            entry = TaskLedgerEntry(
                account_id=action.account_id,
                rule=action.rule,
                episode=episode,
                state="open",
                dedupe_key=action.dedupe_key,
                crm_task_id=result.crm_id,
                level=level,
                priority=action.priority.value,
                owner_id=action.owner_id,
                meta=meta,
                opened_at=now,
                closed_at=None,
            )
        elif previous is None:
            return
        elif action.action == "escalate":
            entry = TaskLedgerEntry(
                **{
                    **previous.__dict__,
                    "level": level,
                    "priority": action.priority.value,
                    "owner_id": action.owner_id or previous.owner_id,
                }
            )
        else:
            entry = TaskLedgerEntry(**{**previous.__dict__, "state": "closed", "closed_at": now})
        self.store.save_ledger(self.connection, entry)
        item.ledger[action.rule] = entry
