"""Adopting what the CRM already holds when the local state is new, restored or from another machine.

The CRM is the record of what we wrote. A store that is new (deleted, moved, a fresh machine),
restored from an old backup, or that shares a CRM with another store knows less than the CRM:

- fields: our reviewed-at stamp in the CRM is newer than the last one this store wrote (or this
  store wrote none), so another store (or this one before it was restored) wrote the account
  since. The current values of our output fields become the baseline, not a person's edit.
- tasks: open tasks carrying our marker join the ledger, so no open task is created twice.
  One scan of open marked tasks when the ledger is empty or a field adoption showed lost
  state; otherwise every create of a key the store has never seen is looked up first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from connector.models import TaskState
from connector.planning.planner import (
    BASIS_FIELD,
    LIMIT_FIELD,
    REVIEWED_FIELD,
    UNKNOWN_LEVEL,
    normalize,
)
from connector.store import SqlStore, TaskLedgerEntry

# CRMs keep date-times to the millisecond (Salesforce) or the second (Zoho): what we wrote
# reads back up to a second earlier, never later.
STAMP_TOLERANCE = timedelta(seconds=1)


def moment(value: Any) -> datetime | None:
    """A date-time from a CRM or stored value (ISO text, Salesforce's +0000), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str) and "T" in value:
        try:
            parsed = datetime.fromisoformat(value.strip().replace("+0000", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def written_elsewhere(crm_values: Mapping[str, Any], last_written: Mapping[str, Any]) -> bool:
    """Whether our reviewed-at stamp in the CRM is newer than any this store wrote.

    Args:
        crm_values: the CRM's current values of our output fields (canonical names).
        last_written: what this store recorded as written to the account.

    Returns:
        True when a run this store does not know of wrote the account (lost or restored store,
        or a second store on the same CRM): its values must not be taken for a person's edits.
    """
    in_crm = moment(crm_values.get(REVIEWED_FIELD))
    if in_crm is None:
        return False
    ours = moment(last_written.get(REVIEWED_FIELD))
    # Our own stamp reads back cut to the CRM's precision: at most a second earlier.
    return ours is None or not ours - STAMP_TOLERANCE <= in_crm <= ours


def adoptable(crm_values: Mapping[str, Any], write_fields: Sequence[str]) -> dict[str, Any]:
    """The non-empty current values of our output fields, to adopt as the diff baseline."""
    return {
        name: crm_values[name]
        for name in write_fields
        if normalize(name, crm_values.get(name)) is not None
    }


def adopted_reference_limit(
    crm_values: Mapping[str, Any], write_fields: Sequence[str]
) -> str | None:
    """The limit a person set, as the CRM records it after a run this store does not know.

    Our review writes the limit it started from (BASIS_FIELD) beside the limit it applied. When
    the CRM's limit is that basis (kept, or a change held for approval) or our recommendation
    (a change we applied), it is ours and the person's limit is the basis; otherwise a person
    set the limit since, and that is the reference.

    Args:
        crm_values: the CRM's current values of our output fields (canonical names).
        write_fields: the output fields the mapping writes.

    Returns:
        The reference limit as stored text ("" for none), or None when the mapping writes no
        basis (the caller then measures against the limit as it stands).
    """
    if BASIS_FIELD not in write_fields or LIMIT_FIELD not in write_fields:
        return None
    limit = normalize(LIMIT_FIELD, crm_values.get(LIMIT_FIELD))
    basis = normalize(BASIS_FIELD, crm_values.get(BASIS_FIELD))
    ours = normalize(LIMIT_FIELD, crm_values.get("recommended_credit_limit"))
    if limit is not None and limit != basis and limit != ours:
        return str(limit)
    return "" if basis is None else str(basis)


@dataclass(frozen=True)
class MarkedKey:
    """A dedupe key read back: `<connection>:<account id>:<rule>:<episode>`."""

    connection: str
    account_id: str
    rule: str
    episode: int


def parse_key(key: str) -> MarkedKey | None:
    """Split a dedupe key; None when it is not one of ours (ids and rules hold no colon)."""
    parts = key.rsplit(":", 3)
    if len(parts) != 4 or not all(parts) or not parts[3].isdigit():
        return None
    return MarkedKey(parts[0], parts[1], parts[2], int(parts[3]))


@dataclass
class TaskAdoption:
    """What a scan of the CRM's open marked tasks added to the ledger."""

    seen: set[str] = field(default_factory=set)
    adopted: list[str] = field(default_factory=list)


def adopt_open_tasks(
    store: SqlStore,
    connection: str,
    tasks: Iterable[TaskState],
    *,
    now: datetime,
    run_id: str,
) -> TaskAdoption:
    """Merge the CRM's open marked tasks of this connection into the task ledger.

    A task joins the ledger when the store has no row for its (account, rule) or only an older
    episode; a row the store already holds for the same key is left as it is.

    Args:
        store: the state store.
        connection: the connection whose keys to adopt (other connections' tasks are left).
        tasks: open tasks carrying a marker, from the adapter's scan.
        now: when (the ledger's opened-at for adopted rows).
        run_id: the run that adopts (kept in the ledger row's meta and the audit line).

    Returns:
        Every key seen open in the CRM, and the keys adopted into the ledger.
    """
    result = TaskAdoption()
    for task in tasks:
        key = parse_key(task.dedupe_key)
        if key is None or key.connection != connection or task.is_closed:
            continue
        result.seen.add(task.dedupe_key)
        current = store.task_ledger(connection, key.account_id).get(key.rule)
        if current is not None and current.episode >= key.episode:
            continue
        store.save_ledger(
            connection,
            TaskLedgerEntry(
                account_id=key.account_id,
                rule=key.rule,
                episode=key.episode,
                state="open",
                dedupe_key=task.dedupe_key,
                crm_task_id=task.crm_task_id,
                level=UNKNOWN_LEVEL,
                priority=task.priority.value if task.priority else None,
                owner_id=task.owner_id,
                meta={"adopted_by": run_id},
                opened_at=now,
                closed_at=None,
            ),
        )
        store.append_audit(
            run_id,
            connection,
            obj="task",
            record_id=key.account_id,
            action="task_adopt",
            field=key.rule,
            new={"task_id": task.crm_task_id, "dedupe_key": task.dedupe_key},
            cause="open in the CRM with our marker; unknown to this store",
            response="found",
        )
        result.adopted.append(task.dedupe_key)
    return result


__all__ = [
    "STAMP_TOLERANCE",
    "MarkedKey",
    "TaskAdoption",
    "adopt_open_tasks",
    "adoptable",
    "moment",
    "parse_key",
    "written_elsewhere",
]
