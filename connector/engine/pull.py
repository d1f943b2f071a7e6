"""The pull stage: read changed records, store them with their watermark, adopt lost state."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from connector.engine.adoption import adoptable, adopted_reference_limit, written_elsewhere
from connector.engine.drift import mapping_digest
from connector.engine.holds import Holds
from connector.engine.money import NO_RATE
from connector.engine.payments import settlement_dates
from connector.engine.prefetch import Chunks, Prefetch, chunked
from connector.errors import FatalCrmError, RecordError, RunCancelled
from connector.models import InvoiceStatus, RawRecord
from connector.planning.planner import LIMIT_FIELD, normalize
from connector.protocol import RelatedReader
from connector.redaction import redact

log = logging.getLogger("crm_risk.sync")

# Settled by a payment (a written-off or void invoice was not paid, whatever its balance).
NOT_PAID_STATUSES = frozenset({InvoiceStatus.WRITTEN_OFF, InvoiceStatus.VOID})

CHECKPOINT_EVERY = 500
# Chunks a stream may be read ahead of the engine: two Salesforce pages of 2,000 records, so
# the next page's call is in flight while the last one is stored; bounded for memory.
READ_AHEAD_CHUNKS = 8


class Pull(Holds):
    """Reads the CRM's changed accounts and invoices into the store, checkpoint by checkpoint."""

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
