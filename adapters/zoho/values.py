"""Zoho values in both directions: times, JSON numbers, requested columns and field metadata."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.protocol import FieldDescription

MODIFIED = "Modified_Time"

# Zoho data_type -> the canonical family the mapping checks against (reference §7).
FAMILIES: dict[str, str] = {
    "text": "string",
    "email": "string",
    "phone": "string",
    "website": "string",
    "textarea": "text",
    "mediumtext": "text",
    "integer": "integer",
    "long": "integer",
    "bigint": "id",
    "double": "number",
    "decimal": "number",
    "currency": "currency",
    "percent": "percent",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
    "picklist": "picklist",
    "lookup": "reference",
    "ownerlookup": "reference",
    "userlookup": "reference",
    "autonumber": "other",
}
# Never writable, whatever read_only says: Zoho computes them.
_COMPUTED_TYPES = frozenset({"formula", "autonumber", "rollup_summary"})

ZOHO_EMPTY_CHOICE = "-None-"


def parse_time(value: Any) -> datetime | None:
    """Zoho datetimes carry the API user's offset (+03:00); compare them as UTC instants."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def if_modified_since(since: datetime) -> str:
    """The If-Modified-Since value for a closed start at `since`.

    The header has second precision and Zoho returns records modified *after* it, so we ask from
    one second before the floored instant and drop what is older than `since` ourselves.
    """
    floored = since.astimezone(UTC).replace(microsecond=0) - timedelta(seconds=1)
    return floored.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def json_value(value: Any) -> Any:
    """A canonical value as Zoho wants it on the wire: money and numbers as JSON numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return value


def columns_for(fields: Iterable[str]) -> list[str]:
    """Top-level field API names to request: "Owner.id" means the lookup "Owner"; id comes anyway."""
    columns = [MODIFIED]
    for name in fields:
        head = name.split(".", 1)[0]
        if head and head != "id" and head not in columns:
            columns.append(head)
    return columns


def field_description(item: dict[str, Any]) -> FieldDescription:
    """One field of GET settings/fields as the core describes it (family, writability, choices)."""
    data_type = str(item.get("data_type") or "")
    family = FAMILIES.get(data_type, "other")
    formula = item.get("formula")
    if data_type == "formula" and isinstance(formula, dict):
        family = FAMILIES.get(str(formula.get("return_type") or ""), "other")
    writable = not (
        item.get("read_only") or item.get("field_read_only") or data_type in _COMPUTED_TYPES
    )
    # Every Zoho picklist starts with the built-in "-None-" option: it is the empty choice
    # (a record with it reads as null), not a value records carry, so it is left out.
    picklist = tuple(
        str(value.get("actual_value"))
        for value in item.get("pick_list_values") or []
        if isinstance(value, dict)
        and value.get("actual_value") is not None
        and value.get("actual_value") != ZOHO_EMPTY_CHOICE
    )
    length = item.get("length")
    scale = item.get("decimal_place")
    return FieldDescription(
        name=str(item["api_name"]),
        type=data_type,
        label=str(item.get("field_label") or item.get("display_label") or ""),
        updateable=writable,
        createable=writable,
        nillable=not item.get("system_mandatory"),
        length=int(length) if isinstance(length, int) else None,
        scale=int(scale) if isinstance(scale, int) else None,
        picklist_values=picklist,
        custom=bool(item.get("custom_field")),
        family=family,
    )


__all__ = [
    "FAMILIES",
    "MODIFIED",
    "ZOHO_EMPTY_CHOICE",
    "columns_for",
    "field_description",
    "if_modified_since",
    "json_value",
    "parse_time",
]
