"""Quarantine during a run: records held with their reason, their accounts held, releases."""

from __future__ import annotations

import logging
from typing import Any

from connector.engine.context import RunContext
from connector.engine.money import NO_RATE, Unrated
from connector.errors import RecordError
from connector.models import RawRecord
from connector.redaction import redact

log = logging.getLogger("crm_risk.sync")


class Holds(RunContext):
    """Keeps invalid records out and their accounts held until a valid version arrives."""

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
