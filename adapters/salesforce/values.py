"""Salesforce field types: describe -> FieldDescription, Bulk CSV text -> REST JSON values, and back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from adapters.salesforce.metadata import CREATABLE_FIELD
from connector.protocol import FieldDescription, ObjectDescription

# Salesforce describe `type` -> the canonical family the mapping checks against.
FAMILIES: dict[str, str] = {
    "string": "string",
    "email": "string",
    "phone": "string",
    "url": "string",
    "combobox": "string",
    "encryptedstring": "string",
    "textarea": "text",
    "double": "number",
    "int": "integer",
    "long": "integer",
    "currency": "currency",
    "percent": "percent",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
    "picklist": "picklist",
    "multipicklist": "picklist",
    "reference": "reference",
    "id": "id",
}

_TEXT_TYPES = frozenset(
    {"string", "email", "phone", "url", "combobox", "encryptedstring", "textarea", "picklist"}
)


def field_description(raw: Mapping[str, Any]) -> FieldDescription:
    """One describe `fields[]` entry as the core's FieldDescription."""
    sf_type = str(raw.get("type") or "")
    length = raw.get("length")
    precision = raw.get("precision") or raw.get("digits") or None
    return FieldDescription(
        name=str(raw["name"]),
        type=sf_type,
        label=str(raw.get("label") or ""),
        updateable=bool(raw.get("updateable")),
        createable=bool(raw.get("createable")),
        nillable=bool(raw.get("nillable", True)),
        length=int(length) if length and sf_type in _TEXT_TYPES else None,
        precision=int(precision) if precision else None,
        scale=int(raw["scale"]) if raw.get("scale") is not None and precision else None,
        picklist_values=tuple(
            str(value["value"])
            for value in raw.get("picklistValues") or ()
            if value.get("active", True)
        ),
        custom=bool(raw.get("custom")),
        family=FAMILIES.get(sf_type, "other"),
        relationship=str(raw.get("relationshipName") or ""),
    )


def object_description(raw: Mapping[str, Any]) -> ObjectDescription:
    """A describe response as the core's ObjectDescription."""
    return ObjectDescription(
        name=str(raw["name"]),
        label=str(raw.get("label") or ""),
        fields={str(f["name"]): field_description(f) for f in raw.get("fields") or ()},
        # Salesforce API names are case-insensitive (SOQL and REST accept any case).
        case_insensitive_names=True,
        creatable_field_pattern=CREATABLE_FIELD,
    )


# -- Bulk API 2.0 CSV -> the values REST returns ------------------------------------------


def _boolean(text: str) -> bool:
    return text.strip().lower() == "true"


def _integer(text: str) -> int:
    return int(Decimal(text))


def _number(text: str) -> float:
    return float(text)


def _datetime(text: str) -> str:
    # Bulk writes "2026-11-28T10:00:00.000Z"; REST writes "2026-11-28T10:00:00.000+0000".
    return text[:-1] + "+0000" if text.endswith("Z") else text


CSV_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "boolean": _boolean,
    "int": _integer,
    "long": _integer,
    "double": _number,
    "currency": _number,
    "percent": _number,
    "datetime": _datetime,
}


class CsvRowConverter:
    """Turns Bulk CSV rows into REST-shaped records (typed values, nested relationships).

    Bulk CSV has only text: an empty cell is null, numbers and booleans are words, and a
    relationship column "Owner.IsActive" is flat. REST nests it as {"Owner": {"IsActive": ...}}
    and returns null for the whole relationship when the lookup is empty.
    """

    def __init__(self, columns: list[str], types: Mapping[str, str]) -> None:
        self.columns = columns
        self.converters = [CSV_CONVERTERS.get(types.get(column, "string")) for column in columns]
        self.paths = [column.split(".") for column in columns]

    def convert(self, row: list[str]) -> dict[str, Any]:
        """One CSV row (values in column order) as a REST-shaped record."""
        record: dict[str, Any] = {}
        for path, convert, text in zip(self.paths, self.converters, row, strict=False):
            value: Any = None
            if text != "":
                value = convert(text) if convert else text
            target = record
            for part in path[:-1]:
                nested = target.get(part)
                if not isinstance(nested, dict):
                    nested = {}
                    target[part] = nested
                target = nested
            target[path[-1]] = value
        return _null_empty_relationships(record)


def _null_empty_relationships(record: dict[str, Any]) -> dict[str, Any]:
    for key, value in record.items():
        if isinstance(value, dict):
            inner = _null_empty_relationships(value)
            record[key] = None if all(v is None for v in inner.values()) else inner
    return record


def strip_attributes(value: Any) -> Any:
    """Drop the "attributes" entries REST adds to every record and nested relationship."""
    if isinstance(value, dict):
        return {k: strip_attributes(v) for k, v in value.items() if k != "attributes"}
    if isinstance(value, list):
        return [strip_attributes(item) for item in value]
    return value


def parse_datetime(text: str) -> datetime:
    """A REST or Bulk datetime ("...000+0000" or "...000Z") as an aware datetime."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- canonical Python values -> JSON / CSV for writes -------------------------------------


def json_value(value: Any) -> Any:
    """A value as Salesforce REST expects it in JSON (Decimal as number, dates as ISO text)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value
        return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def csv_value(value: Any) -> str:
    """A value as Bulk API 2.0 CSV expects it ("#N/A" sets a field to null)."""
    if value is None:
        return "#N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    converted = json_value(value)
    return str(converted)
