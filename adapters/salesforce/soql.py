"""Pure SOQL builders: changed-since reads with a keyset tie-breaker, reads by id, task lookups."""

from __future__ import annotations

# S608 flags every f-string SELECT: here values go through quote_soql_value and names
# through check_name, which is exactly the escaping the rule asks for.
# ruff: noqa: S608
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from simple_salesforce.format import quote_soql_value

CURSOR_FIELD = "SystemModstamp"
ALWAYS_SELECTED = ("Id", CURSOR_FIELD)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")


def check_name(name: str) -> str:
    """Return an object or field name unchanged, refusing anything that is not a plain API name.

    Names come from mapping files; refusing punctuation keeps them from altering the query.
    """
    if not _NAME.match(name):
        raise ValueError(f"not a Salesforce API name: {name!r}")
    return name


def select_list(fields: Sequence[str], *, include_deleted: bool = False) -> list[str]:
    """Id and SystemModstamp first, then the requested fields once each (case-insensitively)."""
    wanted = [*ALWAYS_SELECTED, *(["IsDeleted"] if include_deleted else []), *fields]
    seen: set[str] = set()
    out: list[str] = []
    for name in wanted:
        if name.lower() not in seen:
            seen.add(name.lower())
            out.append(check_name(name))
    return out


def datetime_literal(value: datetime) -> str:
    """A SOQL datetime literal in UTC (unquoted), keeping milliseconds when there are any.

    SystemModstamp has millisecond precision; keyset continuation must compare exactly, so
    milliseconds are kept. Whole seconds are written without a fraction.
    """
    if value.tzinfo is None:
        raise ValueError("datetime must carry a time zone")
    utc = value.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_to_second(value: datetime) -> datetime:
    """Drop sub-second digits, so a closed start stays closed (it can only move earlier)."""
    return value.replace(microsecond=0)


def changed_since(
    crm_object: str,
    select: Sequence[str],
    since: datetime | None,
    *,
    after: tuple[datetime, str] | None = None,
    limit: int | None = None,
) -> str:
    """Records modified at or after `since`, oldest first, ties broken by Id.

    Args:
        crm_object: sObject API name.
        select: the select list (see select_list).
        since: closed start (floored to the second), or None for everything.
        after: keyset position (SystemModstamp, Id) of the last record already read; the query
            continues strictly after it, so equal timestamps at a boundary are never skipped.
        limit: optional LIMIT for chunked reads (no OFFSET, which is capped and slow).

    Returns:
        The SOQL text.
    """
    where: list[str] = []
    if since is not None:
        where.append(f"{CURSOR_FIELD} >= {datetime_literal(floor_to_second(since))}")
    if after is not None:
        stamp, last_id = after
        literal = datetime_literal(stamp)
        where.append(
            f"({CURSOR_FIELD} > {literal} OR "
            f"({CURSOR_FIELD} = {literal} AND Id > {quote_soql_value(last_id)}))"
        )
    text = f"SELECT {', '.join(select)} FROM {check_name(crm_object)}"
    if where:
        text += " WHERE " + " AND ".join(where)
    text += f" ORDER BY {CURSOR_FIELD} ASC, Id ASC"
    if limit is not None:
        text += f" LIMIT {int(limit)}"
    return text


def in_list(values: Sequence[str]) -> str:
    """A quoted, comma-separated list for IN (...)."""
    return ", ".join(quote_soql_value(value) for value in values)


def by_ids(crm_object: str, select: Sequence[str], ids: Sequence[str]) -> str:
    """Records by Id (keep `ids` to a few hundred: SOQL travels in the URL, capped at 16 KB)."""
    return (
        f"SELECT {', '.join(select)} FROM {check_name(crm_object)} "
        f"WHERE Id IN ({in_list(ids)}) ORDER BY {CURSOR_FIELD} ASC, Id ASC"
    )


def by_parent(crm_object: str, select: Sequence[str], parent_field: str, ids: Sequence[str]) -> str:
    """Child records of the given parents (e.g. payment allocations of some invoices)."""
    return (
        f"SELECT {', '.join(select)} FROM {check_name(crm_object)} "
        f"WHERE {check_name(parent_field)} IN ({in_list(ids)}) "
        f"ORDER BY {CURSOR_FIELD} ASC, Id ASC"
    )


TASK_FIELDS = ("Id", "Description", "IsClosed", "OwnerId", "Priority", "Status", "WhatId")


def tasks_by_external_id(field: str, keys: Sequence[str]) -> str:
    """Our tasks by the external-id field that carries the dedupe key (indexed, exact)."""
    select = [*TASK_FIELDS, check_name(field)]
    return f"SELECT {', '.join(select)} FROM Task WHERE {check_name(field)} IN ({in_list(keys)})"


def tasks_created_by(user_id: str | None, account_ids: Sequence[str] = ()) -> str:
    """Candidate tasks whose Description may carry our marker.

    Task.Description is a long text area (32,000 characters) and Salesforce refuses long text
    areas in WHERE, so the marker cannot be filtered server-side. We narrow by what can be
    filtered, the integration user who created the task and the accounts it hangs on, and
    parse the marker client-side. Newest first, so a just-created task is found on page one.
    """
    where: list[str] = []
    if user_id:
        where.append(f"CreatedById = {quote_soql_value(user_id)}")
    if account_ids:
        where.append(f"WhatId IN ({in_list(account_ids)})")
    text = f"SELECT {', '.join(TASK_FIELDS)} FROM Task"
    if where:
        text += " WHERE " + " AND ".join(where)
    return text + " ORDER BY CreatedDate DESC, Id DESC"


def open_tasks_created_by(user_id: str | None, external_id_field: str | None = None) -> str:
    """Every open task the integration user created (or that carries our external-id key)."""
    where = ["IsClosed = false"]
    select = list(TASK_FIELDS)
    if external_id_field:
        select.append(check_name(external_id_field))
        where.append(f"{check_name(external_id_field)} != null")
    elif user_id:
        where.append(f"CreatedById = {quote_soql_value(user_id)}")
    return f"SELECT {', '.join(select)} FROM Task WHERE {' AND '.join(where)} ORDER BY Id"


def tasks_by_ids(ids: Sequence[str]) -> str:
    """Tasks by Id, to read descriptions before appending a comment."""
    return f"SELECT {', '.join(TASK_FIELDS)} FROM Task WHERE Id IN ({in_list(ids)})"


def closed_task_statuses() -> str:
    """The org's closed task statuses (TaskStatus), first by sort order."""
    return "SELECT MasterLabel FROM TaskStatus WHERE IsClosed = true ORDER BY SortOrder ASC"
