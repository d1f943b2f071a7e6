"""A value written to a Zoho sandbox field, coerced to the field's type or refused with Zoho's INVALID_DATA details."""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sandboxes.zoho_common import _DATE, _NAME_FIELD, _RecordFailure
from sandboxes.zoho_schema import MODULES, NONE_VALUE, ZField

if TYPE_CHECKING:
    from sandboxes.zoho import ZohoEmulator

_TEXT_TYPES = ("text", "textarea", "email", "phone", "website")


def coerce(
    emulator: ZohoEmulator, fdef: ZField, value: Any, path: str, item: dict[str, Any]
) -> Any:
    """The value as the org stores it in `fdef`; raises _RecordFailure as Zoho refuses it.

    `path` is the value's JSON path in the request, `item` the whole record (a task's
    `What_Id` looks in the module its `$se_module` names).
    """
    kind = fdef.value_type
    if value is None:
        return None
    if kind in _TEXT_TYPES:
        if not isinstance(value, str):
            raise _invalid(fdef, path)
        if fdef.length is not None and len(value) > fdef.length:
            raise _invalid(fdef, path, maximum_length=fdef.length)
        return value
    if kind in ("integer", "bigint", "double", "currency", "percent"):
        return _number(fdef, value, path)
    if kind in ("boolean", "date", "datetime"):
        return _flag_or_moment(emulator, fdef, value, path)
    if kind == "picklist":
        if not isinstance(value, str):
            raise _invalid(fdef, path)
        if value == NONE_VALUE:
            return None
        if value not in fdef.picklist:
            raise _invalid(fdef, path)
        return value
    if kind == "ownerlookup":
        user_id = value.get("id") if isinstance(value, dict) else value
        user = emulator._user(str(user_id)) if user_id is not None else None
        if user is None or user["status"] != "active":
            # [A] an inactive owner: Zoho's exact code is not documented.
            raise _invalid(fdef, path)
        return emulator._user_ref(user["id"])
    if kind == "lookup":
        return _lookup(emulator, fdef, value, path, item)
    raise _invalid(fdef, path)


def _invalid(fdef: ZField, path: str, **extra: Any) -> _RecordFailure:
    details = {"expected_data_type": fdef.value_type, "api_name": fdef.api_name, "json_path": path}
    details.update(extra)
    return _RecordFailure("INVALID_DATA", "invalid data", details)


def _number(fdef: ZField, value: Any, path: str) -> int | float:
    number = _to_number(value)
    if fdef.value_type in ("integer", "bigint"):
        if number is None or number != int(number):
            raise _invalid(fdef, path)
        if fdef.length is not None and len(str(abs(int(number)))) > fdef.length:
            raise _invalid(fdef, path, maximum_length=fdef.length)
        return int(number)
    if number is None:
        raise _invalid(fdef, path)
    places = fdef.decimal_place if fdef.decimal_place is not None else 2
    too_long = {} if fdef.length is None else {"maximum_length": fdef.length}
    try:
        # Zoho rounds to the field's decimal places (currency: its precision).
        rounded = float(
            Decimal(repr(number)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        )
    except InvalidOperation:  # more digits than any number field holds (e.g. 1e30)
        raise _invalid(fdef, path, **too_long) from None
    if fdef.length is not None and len(str(abs(int(rounded)))) > fdef.length - places:
        raise _invalid(fdef, path, **too_long)
    return rounded


def _flag_or_moment(emulator: ZohoEmulator, fdef: ZField, value: Any, path: str) -> bool | str:
    """A JSON boolean, a `yyyy-MM-dd` date, or a datetime with its offset (reference §5.1)."""
    kind = fdef.value_type
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _invalid(fdef, path)
        return value
    if not isinstance(value, str) or (kind == "date" and not _DATE.match(value)):
        raise _invalid(fdef, path)
    try:
        moment = date.fromisoformat(value) if kind == "date" else datetime.fromisoformat(value)
    except ValueError:
        raise _invalid(fdef, path) from None
    if kind == "date":
        return value
    assert isinstance(moment, datetime)
    if moment.tzinfo is None:
        raise _invalid(fdef, path)  # Zoho wants the offset (reference §5.1)
    return emulator.fmt(moment)


def _lookup(
    emulator: ZohoEmulator, fdef: ZField, value: Any, path: str, item: dict[str, Any]
) -> dict[str, Any]:
    """A link to a record of the looked-up module, as {id, name}."""
    linked_id = value.get("id") if isinstance(value, dict) else value
    target_name = fdef.lookup or "Accounts"
    if fdef.api_name == "What_Id":
        target_name = str(item.get("$se_module") or "")
    target = MODULES.get(target_name)
    row = emulator.rows[target.api_name].get(str(linked_id)) if target else None
    if row is None:
        raise _RecordFailure(
            "INVALID_DATA",
            "the related id given seems to be invalid",
            {"api_name": fdef.api_name, "json_path": path, "expected_data_type": fdef.value_type},
        )
    return {"id": row["id"], "name": row.get(_NAME_FIELD.get(target_name, "id"))}


def _to_number(value: Any) -> float | None:
    """The value as a finite number; None for anything else ("NaN" and "inf" are no numbers)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, int | float | str) else None
    except (ValueError, OverflowError):
        return None
    return number if number is not None and math.isfinite(number) else None
