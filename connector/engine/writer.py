"""Sends planned writes and task actions through an adapter in batches and records what the CRM confirmed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from connector.engine.digests import Deferred
from connector.engine.drift import FieldDrift, Refusal
from connector.engine.report import RunReport
from connector.engine.window import Window
from connector.errors import CrmError, FatalCrmError, RunCancelled
from connector.models import AccountUpdate, RecordChange, RiskAssessment, TaskAction, WriteResult
from connector.planning.planner import AccountPlan, TaskPlan
from connector.protocol import CrmAdapter
from connector.redaction import redact
from connector.store import SqlStore, TaskLedgerEntry

log = logging.getLogger("crm_risk.writer")

ToCrmValues = Callable[[str, dict[str, Any]], dict[str, Any]]

# Each round of splitting a refused update drops at least one field; a few rounds suffice.
MAX_SPLIT_ROUNDS = 3


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


_PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}

Sent = TypeVar("Sent")
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class Reply(Generic[Answer]):
    """What one call in a concurrent round came back with: its answer, its error, or neither (not sent)."""

    answer: Answer | None = None
    error: BaseException | None = None


def call_in_order(
    call: Callable[[Sent], Answer], items: Sequence[Sent], window: Window, name: str
) -> list[Reply[Answer]]:
    """Call `call` once per item, as many at once as the window allows; replies in the items' order.

    Only the CRM calls run on worker threads: the caller applies the replies one by one, in
    order, on its own thread, so the store and the audit log end as after a sequential run.
    After a failed call nothing not yet started is sent (a sequential run would have stopped
    there); calls already in flight finish, so what the CRM confirmed can still be recorded.
    A call the CRM refused for concurrency narrows the window and is sent again (`Window`).
    """
    concurrency = window.ceiling

    def send(item: Sent) -> Answer:
        return window.call(lambda: call(item))

    if concurrency <= 1 or len(items) <= 1:
        replies: list[Reply[Answer]] = []
        for item in items:
            if any(reply.error is not None for reply in replies):
                replies.append(Reply())  # after a failure: never sent
                continue
            try:
                replies.append(Reply(answer=send(item)))
            except BaseException as exc:  # the caller raises it in order
                replies.append(Reply(error=exc))
        return replies
    # The first item (in order) whose call failed: items after it that have not started are
    # never sent; those before it are, as in a sequential run.
    first_failed = [len(items)]
    guard = threading.Lock()

    def guarded(index: int, item: Sent) -> Answer:
        with guard:
            if index > first_failed[0]:
                raise CancelledError  # an earlier batch failed before this one started
        try:
            return send(item)
        except BaseException:
            with guard:
                first_failed[0] = min(first_failed[0], index)
            raise

    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(items)), thread_name_prefix=name
    ) as pool:
        futures = [pool.submit(guarded, index, item) for index, item in enumerate(items)]
        replies = []
        for future in futures:
            try:
                replies.append(Reply(answer=future.result()))
            except CancelledError:
                replies.append(Reply())
            except BaseException as exc:  # the caller raises it in order
                replies.append(Reply(error=exc))
    return replies


def downgrade_waiting_key(connection: str, account_id: str) -> str:
    """Where the band a capped downgrade fell from is kept until its task opens."""
    return f"downgrade-waiting/{connection}/{account_id}"


class Writer:
    """Batches account updates and task actions by the adapter's capabilities.

    Nothing is recorded as written unless the CRM confirmed it: `ok` results update the diff
    baseline and the audit log; rejected and unknown results go to failed writes for the next run.
    """

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
                    self._waiting[item.account_id] = item
                    self._unanswered[item.account_id] = len(item.tasks.actions)
                    self._task_queue.extend(item.tasks.actions)
                else:
                    self._finalize(item)
        self._send_tasks(final=final)

    def _send_tasks(self, *, final: bool) -> None:
        creates = [action for action in self._task_queue if action.action == "create"]
        others = [action for action in self._task_queue if action.action != "create"]
        handled: list[TaskAction] = []
        if self.approval_digest:
            # Held limit changes join the credit manager's digest, not a task each.
            queued = [action for action in creates if action.rule == "limit_approval"]
            creates = [action for action in creates if action.rule != "limit_approval"]
            for action in queued:
                self._queue_approval(action)
            handled += queued
        if self.caps is not None:
            # Creates wait for the end of the run, so the caps keep the most urgent ones.
            send_creates: list[TaskAction] = []
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
        self._apply_tasks([*send_creates, *send_others], self._waiting)
        with self.store.transaction():
            for action in (*send_creates, *send_others, *handled):
                self._unanswered[action.account_id] -= 1
                if self._unanswered[action.account_id] == 0:
                    del self._unanswered[action.account_id]
                    self._finalize(self._waiting.pop(action.account_id))

    def _cap(self, creates: list[TaskAction]) -> tuple[list[TaskAction], list[TaskAction]]:
        """The creates within the caps (most urgent first: priority, then risk score)."""
        assert self.caps is not None

        def urgency(action: TaskAction) -> tuple[int, float, str, str]:
            item = self._waiting[action.account_id]
            return (
                _PRIORITY_RANK.get(action.priority.value, 1),
                -item.assessment.score,
                action.account_id,
                action.rule,
            )

        allowed: list[TaskAction] = []
        deferred: list[TaskAction] = []
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

    def _defer(self, action: TaskAction) -> None:
        item = self._waiting[action.account_id]
        item.deferred.add(action.rule)
        self.report.tasks["deferred"] += 1
        self.deferred.append(
            Deferred(
                owner_id=action.owner_id,
                account_id=action.account_id,
                name=item.name,
                band=item.assessment.band,
                rule=action.rule,
                subject=action.subject,
                priority=action.priority,
            )
        )

    def _queue_approval(self, action: TaskAction) -> None:
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
            level=item.tasks.levels.get(action.rule, 0),
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

    # -- accounts ----------------------------------------------------------------------------

    def _write_updates(self, updates: Sequence[AccountUpdate], *, split_round: int = 0) -> None:
        counts = self.report.writes["account"]
        if split_round == 0:
            counts["planned"] += len(updates)
        if self.shadow:
            return
        if self.dry_run:
            for update in updates:
                self.report.planned.append(
                    {
                        "account_id": update.account_id,
                        "account_name": self._names.get(update.account_id, ""),
                        "fields": {
                            name: {
                                "old": _jsonable(update.previous.get(name)),
                                "new": _jsonable(value),
                            }
                            for name, value in update.fields.items()
                        },
                        "cause": update.cause,
                    }
                )
            return
        prepared = self._prepare_write(updates)
        if prepared is None:
            return
        try:
            results = self.window.call(lambda: self._send_write(prepared))
        except FatalCrmError as exc:
            if self.drift is not None:
                # A deleted or read-only field refuses the whole call (Salesforce INVALID_FIELD).
                self.drift.explain_fatal(exc)
            raise
        self._apply_write(prepared, results, split_round)

    def _send_concurrently(
        self, chunks: Sequence[Sequence[AccountUpdate]]
    ) -> list[
        tuple[tuple[list[AccountUpdate], list[RecordChange]] | None, Reply[list[WriteResult]]]
    ]:
        """Send one update batch per chunk at once; per chunk: what was sent and the CRM's reply.

        Every chunk's intent is logged before any is sent (crash safety as in a sequential run);
        only the CRM calls run on worker threads, the caller applies the answers in order.
        """
        counts = self.report.writes["account"]
        prepared: list[tuple[list[AccountUpdate], list[RecordChange]] | None] = []
        for chunk in chunks:
            counts["planned"] += len(chunk)
            prepared.append(self._prepare_write(chunk) if chunk else None)
        sent = [ready for ready in prepared if ready is not None]
        replies = iter(call_in_order(self._send_write, sent, self.window, "crm-write"))
        return [
            (ready, next(replies) if ready is not None else Reply[list[WriteResult]]())
            for ready in prepared
        ]

    def _prepare_write(
        self, updates: Sequence[AccountUpdate]
    ) -> tuple[list[AccountUpdate], list[RecordChange]] | None:
        """Leave out refused values, log the intents; None when nothing is left to send."""
        kept = self._without_refused_values(updates)
        if not kept:
            return None
        changes = [
            RecordChange(
                crm_id=update.account_id, fields=self.to_crm_values("account", dict(update.fields))
            )
            for update in kept
        ]
        self.store.record_intents(
            self.connection, {update.account_id: update.fields for update in kept}
        )
        return kept, changes

    def _send_write(
        self, prepared: tuple[list[AccountUpdate], list[RecordChange]]
    ) -> list[WriteResult]:
        """The CRM call alone (no store access), so batches can be sent from worker threads."""
        return list(self.adapter.write(self.account_object, prepared[1]))

    def _apply_write(
        self,
        prepared: tuple[list[AccountUpdate], list[RecordChange]],
        results: list[WriteResult],
        split_round: int,
    ) -> None:
        updates = prepared[0]
        account_ids = [update.account_id for update in updates]
        if len(results) != len(updates):
            # The adapter broke its contract: nothing in this batch counts as written.
            results = [
                WriteResult(
                    crm_id=update.account_id, status="unknown", error_code="RESULT_COUNT_MISMATCH"
                )
                for update in updates
            ]
        refused: list[tuple[AccountUpdate, WriteResult, list[str]]] = []
        # The batch's answers in one transaction (not one per account); a crash before its
        # commit leaves the intents, which the next run settles against the CRM's values.
        with self.store.transaction():
            for update, result in zip(updates, results, strict=True):
                named = self._refused_fields(update, result)
                if named:
                    refused.append((update, result, named))
                else:
                    self._record_account_result(update, result)
            self.store.clear_intents(self.connection, account_ids)
        if refused:
            self._split_refused(refused, split_round)

    def _without_refused_values(self, updates: Sequence[AccountUpdate]) -> list[AccountUpdate]:
        """Leave out values the CRM refused before (same value, same mapping, same CRM field)."""
        if self.drift is None:
            return list(updates)
        out = []
        for update in updates:
            held = self.drift.held_back(update.account_id, update.fields)
            if held:
                self.report.writes["account"]["fields_held_back"] += len(held)
                update = update.model_copy(
                    update={
                        "fields": {k: v for k, v in update.fields.items() if k not in held},
                        "previous": {k: v for k, v in update.previous.items() if k not in held},
                    }
                )
            if update.fields:
                out.append(update)
        return out

    def _audit_account(
        self,
        account_id: str,
        field: str,
        old: Any,
        new: Any,
        *,
        action: str,
        cause: str,
        response: str,
    ) -> None:
        """One audit line for one field of an account: written, refused, held or in conflict."""
        self.store.append_audit(
            self.run_id,
            self.connection,
            obj="account",
            record_id=account_id,
            action=action,
            field=field,
            old=_jsonable(old),
            new=_jsonable(new),
            cause=cause,
            response=response,
        )

    def _refused_fields(self, update: AccountUpdate, result: WriteResult) -> list[str]:
        """The canonical fields a rejection names, when it names only fields of this update."""
        if result.status != "rejected" or not result.fields or self.drift is None:
            return []
        names = [self.drift.canonical(field) for field in result.fields]
        if any(name is None or name not in update.fields for name in names):
            return []
        return [name for name in names if name is not None]

    def _split_refused(
        self, refused: list[tuple[AccountUpdate, WriteResult, list[str]]], split_round: int
    ) -> None:
        """Record refusals against their fields only, and write the rest of each account's update.

        A field deleted or made read-only since `check` stops the run (exit 78); a value the CRM
        refuses (a picklist value it lacks) is held back for that account until the mapping or
        the CRM field changes, instead of refusing the whole update on every run.
        """
        assert self.drift is not None
        for _update, result, _names in refused:
            self.drift.stop_if_schema_changed(
                CrmError(result.message or result.error_code, code=result.error_code),
                result.fields,
            )
        counts = self.report.writes["account"]
        rest: list[AccountUpdate] = []
        retries: list[tuple[str, list[str], str, str]] = []
        for update, result, names in refused:
            message = redact(result.message)
            retry_next_run = []
            for name in names:
                counts["fields_refused"] += 1
                if self.drift.explains(name, update.fields[name]):
                    self.drift.remember(
                        update.account_id,
                        Refusal(
                            name, update.fields[name], result.error_code or "REJECTED", message
                        ),
                    )
                else:
                    # Nothing in the CRM's metadata explains it (a validation rule, a hiccup):
                    # tried again next run, like any rejected write.
                    retry_next_run.append(name)
                self.report.errors.add(
                    result.error_code or "FIELD_REFUSED",
                    update.account_id,
                    f"{name} ({', '.join(result.fields)}) = {_jsonable(update.fields[name])!r}: "
                    f"{message}",
                )
                self._audit_account(
                    update.account_id,
                    name,
                    update.previous.get(name),
                    update.fields[name],
                    action="refused",
                    cause=update.cause,
                    response=f"{result.error_code}: {message}",
                )
                log.warning(
                    "the CRM refused one field; the account's other changes are still written, "
                    "and this value is not sent again until the mapping or the CRM field changes",
                    extra={
                        "record_id": update.account_id,
                        "error_code": result.error_code,
                        "detail": f"{name}: {message}",
                    },
                )
            if retry_next_run:
                retries.append(
                    (
                        update.account_id,
                        retry_next_run,
                        result.error_code or "REJECTED",
                        f"{message} (fields: {', '.join(result.fields)})",
                    )
                )
            remaining = {k: v for k, v in update.fields.items() if k not in names}
            if remaining:
                rest.append(
                    update.model_copy(
                        update={
                            "fields": remaining,
                            "previous": {
                                k: v for k, v in update.previous.items() if k in remaining
                            },
                        }
                    )
                )
            elif not retry_next_run:
                self.store.clear_failed_write(self.connection, "account", update.account_id)
        if rest and split_round < MAX_SPLIT_ROUNDS:
            self._write_updates(rest, split_round=split_round + 1)
        # After the rest was written (its success clears the account's failed write).
        for account_id, fields, code, message in retries:
            self.store.record_failed_write(
                self.connection, "account", account_id, fields, code, message
            )

    def _record_account_result(self, update: AccountUpdate, result: WriteResult) -> None:
        counts = self.report.writes["account"]
        if result.status == "ok":
            counts["written"] += 1
            values = dict(update.fields)
            if self.drift is not None:
                self.drift.forget(update.account_id, values)
            with self.store.transaction():
                self.store.record_written(self.connection, update.account_id, values, self.run_id)
                self.store.update_crm_values(self.connection, update.account_id, values)
                self.store.clear_failed_write(self.connection, "account", update.account_id)
                for name, value in values.items():
                    self._audit_account(
                        update.account_id,
                        name,
                        update.previous.get(name),
                        value,
                        action="update",
                        cause=update.cause,
                        response="ok",
                    )
            return
        counts[result.status] += 1
        message = redact(result.message)
        if result.fields:
            # Zoho names the field in details.api_name, Salesforce in errors[].fields.
            message = f"{message} (fields: {', '.join(result.fields)})"
        self.report.errors.add(result.error_code, update.account_id, message)
        self.store.record_failed_write(
            self.connection,
            "account",
            update.account_id,
            list(update.fields),
            result.error_code or result.status.upper(),
            message,
        )
        log.warning(
            "write rejected",
            extra={
                "record_id": update.account_id,
                "error_code": result.error_code,
                "detail": message,
            },
        )

    # -- tasks -------------------------------------------------------------------------------

    def _apply_tasks(self, actions: Sequence[TaskAction], items: dict[str, PendingAccount]) -> None:
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
        items: dict[str, PendingAccount],
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
        items: dict[str, PendingAccount],
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
        items: dict[str, PendingAccount],
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
        self, action: TaskAction, result: WriteResult, item: PendingAccount, now: datetime
    ) -> None:
        previous = item.ledger.get(action.rule)
        level = item.tasks.levels.get(action.rule, previous.level if previous else 0)
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

    # -- accounts done -------------------------------------------------------------------------

    def _finalize(self, item: PendingAccount) -> None:
        plan = item.plan
        counts = self.report.writes["account"]
        counts["unchanged"] += plan.count("unchanged")
        counts["skipped_override"] += plan.count("frozen")
        counts["held_for_approval"] += plan.count("held")
        counts["conflicts"] += plan.count("conflict")
        if self.dry_run:
            # What a real run would hold back, field by field: limit changes awaiting approval
            # and values a person changed in the CRM (kept).
            self.report.planned.extend(
                {
                    "account_id": item.account_id,
                    "account_name": self._names.get(item.account_id, ""),
                    "decision": decision.action,
                    "field": decision.field,
                    "crm_value": _jsonable(decision.current),
                    "desired": _jsonable(decision.desired),
                    "cause": decision.cause,
                }
                for decision in plan.decisions
                if decision.action in ("conflict", "held")
            )
            return
        now = self.store.now()
        if self.shadow:
            # Nothing was sent: no baseline, ledger or audit; the scoring is kept for reports.
            with self.store.transaction():
                self.store.save_assessment(
                    self.connection, item.assessment, self.policy_fingerprint, item.exposure
                )
                self.store.clear_scoring_flag(self.connection, [item.account_id])
            return
        with self.store.transaction():
            if plan.baseline:
                self.store.record_written(
                    self.connection, item.account_id, plan.baseline, self.run_id
                )
            for decision in plan.decisions:
                if decision.action in ("conflict", "held"):
                    self._audit_account(
                        item.account_id,
                        decision.field,
                        decision.current,
                        decision.desired,
                        action=decision.action,
                        cause=decision.cause,
                        response="not sent",
                    )
            for rule, level in item.tasks.relevel.items():
                previous = item.ledger.get(rule)
                if previous is not None:
                    self.store.save_ledger(
                        self.connection, TaskLedgerEntry(**{**previous.__dict__, "level": level})
                    )
            for rule in item.tasks.close_without_action:
                previous = item.ledger.get(rule)
                if previous is not None:
                    self.store.save_ledger(
                        self.connection,
                        TaskLedgerEntry(
                            **{**previous.__dict__, "state": "closed", "closed_at": now}
                        ),
                    )
                    if rule in item.tasks.close_causes:
                        self.store.append_audit(
                            self.run_id,
                            self.connection,
                            obj="task",
                            record_id=item.account_id,
                            action="approval_cleared",
                            field=rule,
                            cause=item.tasks.close_causes[rule],
                            response="not sent",
                        )
            # The new band is recorded even when its downgrade task waits for a cap: the store,
            # the portfolio and the report must show what the CRM shows. The band it fell from
            # is kept aside instead, so the waiting task still fires against it on a later run.
            self.store.save_assessment(
                self.connection, item.assessment, self.policy_fingerprint, item.exposure
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value
