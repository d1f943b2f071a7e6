"""Digest tasks: one per owner for the follow-ups that wait above the task caps, and one for approvals.

A digest is a task without an account, kept in the ledger under a pseudo-account (`@owner`,
`@approvals`) so a lost or restored store adopts it like any task of ours. It is rebuilt only
when its content changes: the open one is completed and a new one made, so the person always has
exactly one current list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from connector.engine.report import RunReport
from connector.models import TaskAction, TaskPriority, WriteResult
from connector.planning.planner import dedupe_key
from connector.protocol import CrmAdapter
from connector.redaction import redact
from connector.store import SqlStore, TaskLedgerEntry

OWNER_DIGEST = "task_digest"
APPROVAL_DIGEST = "limit_digest"
APPROVALS = "@approvals"
NO_OWNER = "default"
# The lines a digest lists; a longer list says how many more wait.
MAX_LINES = 200


@dataclass(frozen=True)
class Deferred:
    """A follow-up task held back by a cap: it waits for a later run."""

    owner_id: str | None
    account_id: str
    name: str
    band: str
    rule: str
    subject: str
    priority: TaskPriority


def _digest_account(owner_id: str | None) -> str:
    return f"@{owner_id or NO_OWNER}"


def _content_hash(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


# The digests' words in the task language ([tasks] language), like every other task's.
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "line": "- {name} (band {band}): {subject}",
        "owner_subject": "{count} credit follow-ups wait for you (task limit per run)",
        "owner_body": "These follow-ups were not opened as tasks yet, to keep the number of new "
        "tasks per run manageable; they open on later runs, most urgent first:",
        "approval_subject": "{count} credit limit changes wait for your approval",
        "approval_body": "To approve one, copy the recommended limit into the account's credit "
        "limit field; to refuse it, leave the limit as it is. The list is updated each run.",
        "more": "... and {count} more",
    },
    "zh": {
        "line": "- {name}（评级 {band}）：{subject}",
        "owner_subject": "{count} 项信用跟进待您处理（每次运行的新任务有上限）",
        "owner_body": "为控制每次运行新建任务的数量，这些跟进尚未创建为任务；"
        "它们将在后续运行中按紧急程度依次创建：",
        "approval_subject": "{count} 项信用额度变更待您审批",
        "approval_body": "如批准，请将推荐额度填入客户的信用额度字段；如不批准，请保持额度不变。"
        "此列表每次运行时更新。",
        "more": "……另有 {count} 项",
    },
}


def _table(lines: Sequence[str], header: str, more: str = TEXTS["en"]["more"]) -> str:
    shown = list(lines[:MAX_LINES])
    if len(lines) > MAX_LINES:
        shown.append(more.format(count=len(lines) - MAX_LINES))
    return "\n".join([header, *shown])


@dataclass
class DigestSender:
    """Sends the run's digests through the adapter and keeps their ledger rows and audit lines."""

    adapter: CrmAdapter
    store: SqlStore
    connection: str
    run_id: str
    report: RunReport
    as_of: date
    dry_run: bool = False
    language: str = "en"

    @property
    def words(self) -> dict[str, str]:
        """The digest texts in the task language."""
        return TEXTS.get(self.language, TEXTS["en"])

    def owner_digests(self, deferred: Sequence[Deferred]) -> None:
        """One digest per owner with waiting follow-ups; digests of owners with none are closed."""
        by_owner: dict[str | None, list[Deferred]] = {}
        for item in deferred:
            by_owner.setdefault(item.owner_id, []).append(item)
        wanted: dict[str, tuple[str | None, list[str]]] = {}
        for owner, items in by_owner.items():
            lines = [
                self.words["line"].format(
                    name=item.name or item.account_id, band=item.band, subject=item.subject
                )
                for item in sorted(items, key=lambda i: (i.name, i.account_id, i.rule))
            ]
            wanted[_digest_account(owner)] = (owner, lines)
        open_rows = {
            entry.account_id: entry
            for entry in self.store.open_tasks(self.connection)
            if entry.rule == OWNER_DIGEST
        }
        for account, (owner, lines) in sorted(wanted.items()):
            self._replace(
                account,
                OWNER_DIGEST,
                owner,
                self.words["owner_subject"].format(count=len(lines)),
                _table(lines, self.words["owner_body"], self.words["more"]),
                lines,
                open_rows.get(account),
            )
        for account, entry in open_rows.items():
            if account not in wanted:
                self._close(entry, "no follow-up waits any more")

    def approval_digest(self, manager_id: str | None) -> None:
        """One task for the credit manager listing every limit change waiting for approval."""
        waiting = [
            entry
            for entry in self.store.open_tasks(self.connection)
            if entry.rule == "limit_approval" and entry.crm_task_id is None
        ]
        lines = [
            f"- {entry.meta.get('subject') or entry.account_id}"
            for entry in sorted(waiting, key=lambda e: str(e.meta.get("subject") or e.account_id))
        ]
        current = self.store.task_ledger(self.connection, APPROVALS).get(APPROVAL_DIGEST)
        current = current if current is not None and current.state == "open" else None
        if not lines:
            if current is not None:
                self._close(current, "no limit change waits for approval any more")
            return
        self._replace(
            APPROVALS,
            APPROVAL_DIGEST,
            manager_id,
            self.words["approval_subject"].format(count=len(lines)),
            _table(lines, self.words["approval_body"], self.words["more"]),
            lines,
            current,
        )

    # -- plumbing -------------------------------------------------------------------------------

    def _replace(
        self,
        account: str,
        rule: str,
        owner: str | None,
        subject: str,
        description: str,
        lines: Sequence[str],
        current: TaskLedgerEntry | None,
    ) -> None:
        digest = _content_hash(lines)
        if current is not None and current.meta.get("hash") == digest:
            return  # the open digest already says exactly this
        if current is not None and "hash" not in current.meta:
            # Adopted from the CRM after a store loss: keep it rather than churn a new one.
            self.store.save_ledger(
                self.connection,
                TaskLedgerEntry(**{**current.__dict__, "meta": {**current.meta, "hash": digest}}),
            )
            return
        if current is not None:
            self._close(current, "replaced by an updated list")
        episode = (
            (current.episode + 1) if current is not None else self._next_episode(account, rule)
        )
        action = TaskAction(
            action="create",
            account_id="",
            rule=rule,
            dedupe_key=dedupe_key(self.connection, account, rule, episode),
            subject=subject[:255],
            description=description,
            owner_id=owner,
            due_date=self.as_of + timedelta(days=3),
            priority=TaskPriority.NORMAL,
        )
        self.report.tasks["planned_digest"] += 1
        if self.dry_run:
            self.report.planned.append(
                {"task": "digest", "rule": rule, "owner_id": owner, "subject": action.subject}
            )
            return
        result = self._one(self.adapter.create_tasks([action]))
        if result.status != "ok":
            self._failed(account, rule, result)
            return
        self.report.tasks["digest"] += 1
        now = self.store.now()
        self.store.save_ledger(
            self.connection,
            TaskLedgerEntry(
                account_id=account,
                rule=rule,
                episode=episode,
                state="open",
                dedupe_key=action.dedupe_key,
                crm_task_id=result.crm_id,
                level=0,
                priority=action.priority.value,
                owner_id=owner,
                meta={"hash": digest, "lines": len(lines)},
                opened_at=now,
                closed_at=None,
            ),
        )
        self.store.append_audit(
            self.run_id,
            self.connection,
            obj="task",
            record_id=account,
            action="task_create",
            field=rule,
            new={"task_id": result.crm_id, "owner_id": owner, "subject": action.subject},
            cause=f"digest of {len(lines)} lines",
            response="ok",
        )

    def _close(self, entry: TaskLedgerEntry, cause: str) -> None:
        self.report.tasks["planned_complete"] += 1
        if self.dry_run:
            return
        if entry.crm_task_id:
            action = TaskAction(
                action="complete",
                account_id="",
                rule=entry.rule,
                dedupe_key=entry.dedupe_key,
                crm_task_id=entry.crm_task_id,
            )
            result = self._one(self.adapter.update_tasks([action]))
            if result.status != "ok":
                self._failed(entry.account_id, entry.rule, result)
                return
        self.report.tasks["complete"] += 1
        self.store.save_ledger(
            self.connection,
            TaskLedgerEntry(**{**entry.__dict__, "state": "closed", "closed_at": self.store.now()}),
        )
        self.store.append_audit(
            self.run_id,
            self.connection,
            obj="task",
            record_id=entry.account_id,
            action="task_complete",
            field=entry.rule,
            new={"task_id": entry.crm_task_id},
            cause=cause,
            response="ok",
        )

    def _next_episode(self, account: str, rule: str) -> int:
        entry = self.store.task_ledger(self.connection, account).get(rule)
        return entry.episode + 1 if entry is not None else 1

    @staticmethod
    def _one(results: Sequence[WriteResult]) -> WriteResult:
        if len(results) != 1:
            return WriteResult(crm_id=None, status="unknown", error_code="RESULT_COUNT_MISMATCH")
        return results[0]

    def _failed(self, account: str, rule: str, result: WriteResult) -> None:
        self.report.tasks["failed"] += 1
        self.report.errors.add(result.error_code or result.status, account, redact(result.message))


__all__ = ["APPROVALS", "APPROVAL_DIGEST", "OWNER_DIGEST", "Deferred", "DigestSender"]
