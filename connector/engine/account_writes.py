"""Account updates: sent in batches, refused fields split off, confirmed values recorded."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from connector.engine.calls import Reply, call_in_order
from connector.engine.drift import Refusal
from connector.engine.writer_state import WriterState, jsonable
from connector.errors import CrmError, FatalCrmError
from connector.models import AccountUpdate, RecordChange, WriteResult
from connector.redaction import redact

log = logging.getLogger("crm_risk.writer")

# Each round of splitting a refused update drops at least one field; a few rounds suffice.
MAX_SPLIT_ROUNDS = 3


class AccountWrites(WriterState):
    """Sends account updates and records what the CRM confirmed, field by field."""

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
                                "old": jsonable(update.previous.get(name)),
                                "new": jsonable(value),
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
            old=jsonable(old),
            new=jsonable(new),
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
        rest: list[AccountUpdate] = []
        retries: list[tuple[str, list[str], str, str]] = []
        for update, result, names in refused:
            message = redact(result.message)
            retry_next_run = [
                name for name in names if self._refuse_field(update, result, name, message)
            ]
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

    def _refuse_field(
        self, update: AccountUpdate, result: WriteResult, name: str, message: str
    ) -> bool:
        """Record the CRM's refusal of one field's value; True when it is tried again next run."""
        assert self.drift is not None
        self.report.writes["account"]["fields_refused"] += 1
        retry_next_run = False
        if self.drift.explains(name, update.fields[name]):
            self.drift.remember(
                update.account_id,
                Refusal(name, update.fields[name], result.error_code or "REJECTED", message),
            )
        else:
            # Nothing in the CRM's metadata explains it (a validation rule, a hiccup):
            # tried again next run, like any rejected write.
            retry_next_run = True
        self.report.errors.add(
            result.error_code or "FIELD_REFUSED",
            update.account_id,
            f"{name} ({', '.join(result.fields)}) = {jsonable(update.fields[name])!r}: {message}",
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
        return retry_next_run

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
