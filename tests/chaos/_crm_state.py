"""What a person sees in the sandbox CRM after a sync: our fields per account and the tasks, for comparison."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.protocol import find_task_marker
from tests.chaos._sandbox_sync import SandboxSync

ACCOUNT_OBJECT = {"salesforce": "Account", "zoho": "Accounts"}
ID_FIELD = {"salesforce": "Id", "zoho": "id"}
# Differs between any two runs by design: compared by presence only.
REVIEWED_AT = "risk_reviewed_at"


def _id(crm: str, record: dict[str, Any]) -> str:
    return str(record[ID_FIELD[crm]])


def accounts(sync: SandboxSync) -> dict[str, dict[str, Any]]:
    """Every account's values of the fields we own, reviewed-at reduced to 'set or not'."""
    crm = sync.sandbox.crm
    owned = sync.owned_fields()
    out = {}
    for record in sync.sandbox.emulator.records(ACCOUNT_OBJECT[crm]):
        values = {}
        for crm_field, canonical in owned.items():
            value = record.get(crm_field)
            values[crm_field] = (value is not None) if canonical == REVIEWED_AT else value
        out[_id(crm, record)] = values
    return out


def tasks(sync: SandboxSync) -> tuple[list[tuple[Any, ...]], Counter[str]]:
    """Our tasks as comparable tuples (ids differ between CRMs) and how often each dedupe key occurs."""
    rows = []
    keys: Counter[str] = Counter()
    for task in sync.sandbox.emulator.tasks():
        key = find_task_marker(task.get("Description"))
        if key is None:
            continue
        keys[key] += 1
        what = task.get("WhatId") or task.get("What_Id")
        if isinstance(what, dict):
            what = what.get("id")
        rows.append(
            (
                key,
                str(what),
                task.get("Subject"),
                task.get("Priority"),
                task.get("Status"),
                str(task.get("OwnerId") or task.get("Owner")),
            )
        )
    return sorted(rows), keys


def _same(crm_value: Any, audited: Any) -> bool:
    if crm_value == audited:
        return True
    try:
        return Decimal(str(crm_value)) == Decimal(str(audited))
    except (InvalidOperation, ValueError):
        pass
    try:
        left = datetime.fromisoformat(str(crm_value).replace("+0000", "+00:00"))
        right = datetime.fromisoformat(str(audited).replace("+0000", "+00:00"))
        return abs((left - right).total_seconds()) < 1
    except ValueError:
        return str(crm_value).strip() == str(audited).strip()


def audit_mismatches(sync: SandboxSync, store: Any) -> list[str]:
    """Fields whose CRM value differs from the newest audited 'update' of it (we wrote it, so they must agree)."""
    newest: dict[tuple[str, str], Any] = {}
    for row in store.audit(sync.connection.name, limit=10_000_000):
        if row["object"] == "account" and row["action"] == "update":
            newest[(row["record_id"], row["field"])] = row["new_value"]
    crm = sync.sandbox.crm
    problems = []
    owned = sync.owned_fields()
    for record in sync.sandbox.emulator.records(ACCOUNT_OBJECT[crm]):
        record_id = _id(crm, record)
        for crm_field, canonical in owned.items():
            if (record_id, canonical) not in newest:
                continue
            audited = newest[(record_id, canonical)]
            if not _same(record.get(crm_field), audited):
                problems.append(
                    f"{record_id}.{crm_field}: CRM {record.get(crm_field)!r} audit {audited!r}"
                )
    return problems
