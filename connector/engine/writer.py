"""Sends planned writes and task actions through an adapter in batches and records what the CRM confirmed."""

from __future__ import annotations

from collections.abc import Sequence

from connector.engine.task_writes import TaskWrites
from connector.engine.writer_state import HeldCreate, PendingAccount
from connector.errors import FatalCrmError, RunCancelled


class Writer(TaskWrites):
    """Batches account updates and task actions by the adapter's capabilities.

    Nothing is recorded as written unless the CRM confirmed it: `ok` results update the diff
    baseline and the audit log; rejected and unknown results go to failed writes for the next run.
    """

    # -- public ----------------------------------------------------------------------------

    def add(self, pending: PendingAccount) -> None:
        """Queue one account's plan; flushes when `concurrency` batches are full."""
        if self.dry_run:
            # A dry run's report names accounts (its pulled records are never committed).
            self._names[pending.account_id] = pending.name
        self._pending.append(pending)
        if pending.plan.update is not None or pending.tasks.actions:
            self._pending_updates += 1
        if self._pending_updates >= self.batch_size or len(self._pending) >= 5 * self.batch_size:
            # One batch is closed exactly where a sequential run would flush it.
            self._closed.append(self._pending)
            self._pending, self._pending_updates = [], 0
            if len(self._closed) >= self.concurrency:
                self.flush()

    def flush(self, *, final: bool = False) -> None:
        """Write the queued account updates; send task actions in full batches.

        Task actions wait in a queue until a whole batch is ready (or `final`), so a run with
        many tasks sends ⌈tasks / batch⌉ calls, not one partial batch per account batch. An
        account is finalised (assessment kept, scoring flag cleared) only when all of its writes
        and task actions are answered, so a crash in between redoes it next run. With
        concurrency, the closed batches' updates are sent at once, and then each batch is
        handled in order as a sequential run would have, so the outcome is the same.
        """
        if not self._pending and not self._closed and not (final and self._task_queue):
            return
        if self.cancel.is_set() and not final:
            raise RunCancelled("stopped before the next batch; pending work stays for the next run")
        self.heartbeat()
        batches = [*self._closed, *([self._pending] if self._pending else [])] or [[]]
        self._closed, self._pending, self._pending_updates = [], [], 0
        updates = [
            [item.plan.update for item in batch if item.plan.update is not None]
            for batch in batches
        ]
        concurrent = (
            self.concurrency > 1
            and sum(1 for chunk in updates if chunk) > 1
            and not (self.shadow or self.dry_run)
        )
        if not concurrent:
            for index, (batch, chunk) in enumerate(zip(batches, updates, strict=True)):
                for start in range(0, len(chunk), self.batch_size):
                    self._write_updates(chunk[start : start + self.batch_size])
                self._after_writes(batch, final=final and index == len(batches) - 1)
            return
        answers = self._send_concurrently(updates)
        for index, (batch, (ready, reply)) in enumerate(zip(batches, answers, strict=True)):
            if reply.error is not None:
                # Stop where a sequential run would have; what the CRM confirmed for the
                # later batches is still recorded, so it is not sent again.
                for later, later_reply in answers[index + 1 :]:
                    if later is not None and later_reply.answer is not None:
                        self._apply_write(later, later_reply.answer, 0)
                if isinstance(reply.error, FatalCrmError) and self.drift is not None:
                    self.drift.explain_fatal(reply.error)
                raise reply.error
            if ready is not None and reply.answer is not None:
                self._apply_write(ready, reply.answer, 0)
            self._after_writes(batch, final=final and index == len(batches) - 1)

    def _after_writes(self, batch: Sequence[PendingAccount], *, final: bool) -> None:
        """Queue the batch's task actions (or finalise its accounts) and send full task batches."""
        # One transaction for the batch's accounts, not one each (a commit per account was a
        # tenth of a 5,000-account run's CPU); no CRM call happens inside it.
        with self.store.transaction():
            for item in batch:
                if item.tasks.actions:
                    # Kept in its compact form until its task actions are answered; packed when
                    # that may be the end of the run (under caps, creates wait for it).
                    long_wait = self.caps is not None and any(
                        action.action == "create" for action in item.tasks.actions
                    )
                    self._waiting[item.account_id] = item.finishing(pack=long_wait)
                    self._unanswered[item.account_id] = len(item.tasks.actions)
                    self._task_queue.extend(
                        HeldCreate.of(action) if long_wait and action.action == "create" else action
                        for action in item.tasks.actions
                    )
                else:
                    self._finalize(item.finishing(pack=False))
        self._send_tasks(final=final)
