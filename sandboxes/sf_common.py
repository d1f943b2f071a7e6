"""What the Salesforce sandbox's parts share: API versions and limits, error bodies, cursors, value helpers."""

from __future__ import annotations

import csv
import hmac
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sandboxes.server import Request, Response
from sandboxes.sf_schema import (
    FieldDef,
    SObject,
)
from sandboxes.sf_soql import (
    FieldRef,
)

LATEST_VERSION = 62.0
MIN_VERSION = 31.0
ORG_ID = "00D5g000004SANDBOX"[:15] + "EAA"
COLLECTION_LIMIT = 200
INTEGRATION_USER = "integration@crm-risk.sandbox"

_PAYMENT_STATUS = {
    "paid": "Paid",
    "partially_paid": "Partially Paid",
    "open": "Unpaid",
    "disputed": "Unpaid",
    "written_off": "Paid",
    "void": "Paid",
}
_CUSTOM_STATUS = {
    "open": "Open",
    "paid": "Paid",
    "partially_paid": "Partially Paid",
    "disputed": "Disputed",
    "written_off": "Written Off",
    "void": "Void",
}
_DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}


def sf_datetime(moment: datetime) -> str:
    """Salesforce's JSON datetime: `2026-11-01T10:00:00.000+0000` (UTC, milliseconds)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


_APEX_TYPES = {
    "id": "Id",
    "reference": "Id",
    "boolean": "Boolean",
    "int": "Integer",
    "double": "Double",
    "currency": "Decimal",
    "percent": "Decimal",
    "date": "Date",
    "datetime": "Datetime",
}

_ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
    "fields": [],
}


def _error(status: int, code: str, message: str, fields: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        body["fields"] = fields
    return Response.json(status, [body])


def _collection_records(request: Request) -> tuple[list[Any], bool] | Response:
    """The records and `allOrNone` of an sObject Collections body, or the error Salesforce sends
    (malformed JSON, no `records` list, more than 200 records)."""
    try:
        body = request.json()
    except ValueError:
        return _error(400, "JSON_PARSER_ERROR", "Malformed JSON body")
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        return _error(400, "INVALID_FIELD", "Records are required")
    records: list[Any] = body["records"]
    if len(records) > COLLECTION_LIMIT:
        return _error(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        )
    return records, bool(body.get("allOrNone", False))


def _typed_record(raw: Any) -> tuple[dict[str, Any], str] | Response:
    """One record of a collection without its `attributes`, and the sObject type they name."""
    if not isinstance(raw, dict):
        return _error(400, "JSON_PARSER_ERROR", "Each record must be an object")
    data = dict(raw)
    attributes = data.pop("attributes", None)
    type_name = attributes.get("type") if isinstance(attributes, dict) else None
    if not type_name:
        return _error(400, "INVALID_TYPE", "No SObject Type defined in record", [])
    return data, str(type_name)


def _not_found() -> Response:
    return _error(404, "NOT_FOUND", "The requested resource does not exist")


class RecordError(Exception):
    """One record rejected; rendered as {statusCode, message, fields}."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or []

    def as_result(self) -> dict[str, Any]:
        """The SaveResult error entry."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


@dataclass(frozen=True)
class _ChildPlan:
    """A parent-to-child subquery, run once with its query: child ids per parent id."""

    name: str
    obj: SObject
    plan: list[FieldRef]
    by_parent: dict[str, list[str]]


PlanItem = FieldRef | _ChildPlan


class _Cursor:
    __slots__ = ("created", "ids", "object_name", "plan")

    def __init__(self, object_name: str, plan: list[PlanItem], ids: list[str]) -> None:
        self.object_name = object_name
        self.plan = plan
        self.ids = ids
        self.created = time.monotonic()


def _num(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _fold(fdef: FieldDef, value: Any) -> Any:
    # SOQL compares text case-insensitively; ids compare exactly.
    if isinstance(value, str) and fdef.type not in ("id", "reference", "date", "datetime"):
        return value.casefold()
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _row_key(
    fdef: FieldDef, get: Callable[[dict[str, Any]], Any]
) -> Callable[[dict[str, Any]], Any]:
    return lambda row: _fold(fdef, get(row))


def _dig(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = record
    for part in path:
        if not isinstance(current, dict):
            return None
        key = next((k for k in current if k.lower() == part.lower()), None)
        if key is None:
            # Relationship keys use the relationship name (Owner), paths may too.
            return None
        current = current[key]
    return current


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _csv_value(value: Any) -> str:
    # Bulk 2.0 query results: every value quoted, null as an empty unquoted cell.
    if value is None:
        return ""
    if isinstance(value, bool):
        return _csv_cell("true" if value else "false")
    if isinstance(value, float) and value.is_integer():
        return _csv_cell(str(int(value)))
    return _csv_cell(str(value))


def _csv_doc(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _aggregate_value(
    func: str, get: Callable[[dict[str, Any]], Any] | None, rows: list[dict[str, Any]]
) -> Any:
    """COUNT/COUNT_DISTINCT/SUM/AVG/MIN/MAX over a group's rows (nulls ignored, as in SOQL)."""
    if get is None:
        return len(rows)
    values = [v for v in (get(r) for r in rows) if v is not None]
    if func == "COUNT":
        return len(values)
    if func == "COUNT_DISTINCT":
        return len({str(v).lower() for v in values})
    if not values:
        return None
    if func == "MIN":
        return min(values)
    if func == "MAX":
        return max(values)
    total = sum(float(v) for v in values)
    return total if func == "SUM" else total / len(values)
