"""What a person sees in the sandbox CRM after a sync: our fields per account and the tasks, for comparison."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.protocol import find_task_marker
from tests.chaos._sandbox_sync import SandboxSync
from tests.crm_user import crm_user

# Differs between any two runs by design: compared by presence only.
REVIEWED_AT = "risk_reviewed_at"


def account_records(sync: SandboxSync) -> list[dict[str, Any]]:
    """The sandbox's account records as stored, the object named by the sandbox's own preset."""
    records: list[dict[str, Any]] = sync.sandbox.emulator.records(
        sync.mapping.crm_object("account")
    )
    return records


def _id(sync: SandboxSync, record: dict[str, Any]) -> str:
    return str(record[sync.mapping.field("account", "crm_id").crm])


def accounts(sync: SandboxSync) -> dict[str, dict[str, Any]]:
    """Every account's values of the fields we own, reviewed-at reduced to 'set or not'."""
    owned = sync.owned_fields()
    out = {}
    for record in account_records(sync):
        values = {}
        for crm_field, canonical in owned.items():
            value = record.get(crm_field)
            values[crm_field] = (value is not None) if canonical == REVIEWED_AT else value
        out[_id(sync, record)] = values
    return out


def tasks(sync: SandboxSync) -> tuple[list[tuple[Any, ...]], Counter[str]]:
    """Our tasks as a person at the CRM reads them (tests/crm_user.py, over the CRM's API), as
    comparable tuples (task ids differ between runs), and how often each dedupe key occurs."""
    rows = []
    keys: Counter[str] = Counter()
    for task in crm_user(sync.sandbox).tasks():
        key = find_task_marker(task["description"])
        if key is None:
            continue
        keys[key] += 1
        rows.append(
            (
                key,
                str(task["what_id"]),
                task["subject"],
                task["priority"],
                task["status"],
                str(task["owner_id"]),
            )
        )
    return sorted(rows), keys


def _shown(sync: SandboxSync, crm_field: str, value: Any) -> Any:
    """A stored value as a person sees it, for a sandbox that stores wire values (option codes,
    epoch ms) and describes them in its `objects` schema (Fxiaoke's does)."""
    objects = getattr(sync.sandbox.emulator, "objects", None)
    if objects is None or value is None:
        return value
    definition = objects[sync.mapping.crm_object("account")].fields.get(crm_field)
    if definition is None:
        return value
    if definition.options:
        label = dict((code, label) for label, code in definition.options).get(value, value)
        # The mapping's `values` turn the label into the canonical value the audit keeps.
        canonical = sync.owned_fields().get(crm_field)
        spec = sync.mapping.field("account", canonical).spec if canonical else None
        return (spec.values or {}).get(label, label) if spec is not None else label
    if definition.type == "date_time":
        return datetime.fromtimestamp(int(value) / 1000, UTC).isoformat()
    return value


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
    problems = []
    owned = sync.owned_fields()
    for record in account_records(sync):
        record_id = _id(sync, record)
        for crm_field, canonical in owned.items():
            if (record_id, canonical) not in newest:
                continue
            audited = newest[(record_id, canonical)]
            if not _same(_shown(sync, crm_field, record.get(crm_field)), audited):
                problems.append(
                    f"{record_id}.{crm_field}: CRM {record.get(crm_field)!r} audit {audited!r}"
                )
    return problems
