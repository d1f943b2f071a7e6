"""A value written to a Salesforce sandbox field, coerced to the field's type or refused with Salesforce's code and message."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sandboxes.sf_common import RecordError, sf_datetime
from sandboxes.sf_schema import NUMBER_TYPES, FieldDef, to_id18
from sandboxes.sf_soql import parse_datetime_literal

if TYPE_CHECKING:
    from sandboxes.salesforce import SalesforceEmulator


def coerce(emulator: SalesforceEmulator, fdef: FieldDef, value: Any) -> Any:
    """The value as the org stores it in `fdef`; raises RecordError as Salesforce refuses it."""
    # Salesforce names the field by its label in these messages ("Account Name: data value
    # too large: ..."), while `fields` carries the API name.
    label = fdef.label or fdef.name.replace("__c", "").replace("_", " ")
    if value is None:
        return None
    kind = fdef.type
    if kind in NUMBER_TYPES:
        return _number(fdef, label, value)
    if kind in ("boolean", "date", "datetime"):
        return _flag_or_moment(fdef, label, value)
    if isinstance(value, bool | dict | list):
        raise _wrong(fdef, label, value)
    text = str(value)
    if kind == "reference":
        return _reference(emulator, fdef, label, text)
    if kind == "picklist" and fdef.restricted and text not in fdef.picklist:
        raise RecordError(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{label}: bad value for restricted picklist field: {text}",
            [fdef.name],
        )
    if fdef.length and len(text) > fdef.length:
        raise RecordError(
            "STRING_TOO_LONG",
            f"{label}: data value too large: {text[:40]}... (max length={fdef.length})",
            [fdef.name],
        )
    return text


def _wrong(fdef: FieldDef, label: str, value: Any) -> RecordError:
    return RecordError(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        f"{label}: value not of required type: {value}",
        [fdef.name],
    )


def _number(fdef: FieldDef, label: str, value: Any) -> int | float:
    kind = fdef.type
    if isinstance(value, bool):
        raise _wrong(fdef, label, value)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _wrong(fdef, label, value) from None
    if not number.is_finite():
        raise _wrong(fdef, label, value)
    digits = fdef.digits if kind == "int" else fdef.precision
    scale = 0 if kind == "int" else fdef.scale
    outside = RecordError(
        "NUMBER_OUTSIDE_VALID_RANGE",
        f"{label}: value outside of valid range on numeric field: {value}",
        [fdef.name],
    )
    try:
        rounded = round(number, scale)
    except InvalidOperation:  # more digits than the decimal context holds (e.g. 1e30)
        raise outside from None
    if digits and abs(rounded) >= Decimal(10) ** (digits - scale):
        raise outside
    if kind == "int":
        if number != number.to_integral_value():
            raise _wrong(fdef, label, value)
        return int(number)
    return float(rounded)


def _flag_or_moment(fdef: FieldDef, label: str, value: Any) -> bool | str:
    """A boolean (JSON true/false or the strings "true"/"false"), a date or a datetime."""
    if fdef.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _wrong(fdef, label, value)
    try:
        if fdef.type == "date":
            return date.fromisoformat(str(value)).isoformat()
        return sf_datetime(parse_datetime_literal(str(value)))
    except ValueError:
        raise _wrong(fdef, label, value) from None


def _reference(emulator: SalesforceEmulator, fdef: FieldDef, label: str, text: str) -> str:
    """An id of a live record of one of the objects the lookup points to."""
    ref = to_id18(text)
    if ref is None:
        raise RecordError(
            "MALFORMED_ID", f"{label}: id value of incorrect type: {text}", [fdef.name]
        )
    targets = [emulator.schema[t].name for t in fdef.reference_to]
    if not any(ref in emulator.rows[t] and not emulator.rows[t][ref]["IsDeleted"] for t in targets):
        raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [fdef.name])
    return ref
