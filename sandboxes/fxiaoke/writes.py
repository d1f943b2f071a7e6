"""Fxiaoke sandbox writes: update and create, with each value checked and normalised as its field type takes it."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sandboxes.fxiaoke.protocol import (
    ENVELOPE_KEYS,
    INVALID_PARAMETER,
    MISSING_PARAMETER,
    SYSTEM_USER,
    ApiError,
)
from sandboxes.fxiaoke.schema import NUMBER_TYPES, FxField, FxObject
from sandboxes.fxiaoke.seeding import base_row, hex_id

if TYPE_CHECKING:
    from sandboxes.fxiaoke.emulator import FxiaokeEmulator

_TEXT_TYPES = ("text", "long_text", "phone_number", "email", "country")


def _bad_format(definition: FxField, description: str) -> ApiError:
    return ApiError(INVALID_PARAMETER, f"字段{definition.label}格式错误", description)


def _number(definition: FxField, name: str, value: Any) -> Any:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise _bad_format(definition, f"{name} must be a number") from exc
    if not number.is_finite():
        raise _bad_format(definition, f"{name} must be finite")
    places = definition.decimal_places if definition.decimal_places is not None else 2
    try:  # rounding 1e30 to the field's places overflows the decimal context
        rounded = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise _bad_format(definition, f"{name} is out of range") from exc
    return str(rounded)


def _moment(definition: FxField, name: str, value: Any) -> Any:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | str)
        or not str(value).lstrip("-").isdigit()
    ):
        raise _bad_format(definition, f"{name} takes epoch milliseconds")
    return int(value)


def _flag(definition: FxField, name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise _bad_format(definition, f"{name} takes true or false")
    return value


def _choice(definition: FxField, name: str, value: Any) -> Any:
    allowed = {option_value for _, option_value in definition.options}
    if str(value) not in allowed:
        raise ApiError(
            INVALID_PARAMETER,
            f"字段{definition.label}选项值不存在",
            f"{value!r} is not an option of {name}",
        )
    return str(value)


def _text(definition: FxField, name: str, value: Any) -> Any:
    text = str(value)
    if definition.length is not None and len(text) > definition.length:
        raise ApiError(
            INVALID_PARAMETER,
            f"字段{definition.label}超过最大长度",
            f"{name} is longer than {definition.length}",
        )
    return text


_PLAIN: dict[str, Callable[[FxField, str, Any], Any]] = {
    **dict.fromkeys(NUMBER_TYPES, _number),
    "date": _moment,
    "date_time": _moment,
    "true_or_false": _flag,
    "select_one": _choice,
    **dict.fromkeys(_TEXT_TYPES, _text),
}


class RecordWrites:
    """Part of FxiaokeEmulator (emulator.py), holding no state of its own."""

    def __init__(self, emulator: FxiaokeEmulator) -> None:
        self.emulator = emulator

    def coerce(self, obj: FxObject, name: str, value: Any) -> Any:
        """`value` as field `name` of `obj` stores it; refused as the API refuses it."""
        definition = obj.fields.get(name)
        if definition is None:
            raise ApiError(
                INVALID_PARAMETER,
                f"字段{name}不存在",
                f"field {name} does not exist on {obj.api_name}",
            )
        if not definition.writable:
            raise ApiError(INVALID_PARAMETER, f"字段{name}不可编辑", f"field {name} is read-only")
        if value is None or value == "":
            if definition.is_required:
                raise ApiError(
                    INVALID_PARAMETER, f"字段{definition.label}必填", f"field {name} is required"
                )
            return None
        kind = definition.type
        plain = _PLAIN.get(kind)
        if plain is not None:
            return plain(definition, name, value)
        if kind == "employee":
            values = value if isinstance(value, list) else [value]
            return [self.employee_id(v) for v in values]
        if kind == "object_reference":
            return self._reference(definition, name, value)
        if kind == "embedded_object_list":
            return self._embedded(definition, name, value)
        return value

    def _reference(self, definition: FxField, name: str, value: Any) -> Any:
        target = self.emulator.objects.get(definition.target_api_name or "")
        if target is None or str(value) not in self.emulator.rows[target.api_name]:
            raise ApiError(
                INVALID_PARAMETER,
                f"字段{definition.label}关联数据不存在",
                f"{name}: no record {value}",
            )
        return str(value)

    def _embedded(self, definition: FxField, name: str, value: Any) -> Any:
        if not isinstance(value, list):
            raise _bad_format(definition, f"{name} takes a list")
        for item in value:
            target_name = item.get("describe_api_name") if isinstance(item, dict) else None
            target = self.emulator.objects.get(str(target_name))
            if target is None or str(item.get("id")) not in self.emulator.rows[target.api_name]:
                raise ApiError(
                    INVALID_PARAMETER, "关联对象数据不存在", f"{name}: no record {item!r}"
                )
        return value

    def employee_id(self, value: Any) -> str:
        """A numeric employee id from either style's form."""
        text = str(value)
        if text.startswith("FSUID_"):
            for employee in self.emulator.employees:
                if employee["openUserId"] == text:
                    return str(employee["id"])
            raise ApiError(INVALID_PARAMETER, "员工不存在", f"no employee {text}")
        if text != SYSTEM_USER and not any(e["id"] == text for e in self.emulator.employees):
            raise ApiError(INVALID_PARAMETER, "员工不存在", f"no employee {text}")
        return text

    def update(
        self, obj: FxObject, inner: dict[str, Any], user: dict[str, Any], approval: bool
    ) -> dict[str, Any]:
        record_id = str(inner.get("_id") or "")
        if not record_id:
            raise ApiError(MISSING_PARAMETER, "参数_id缺失", "object_data._id is missing")
        with self.emulator._lock:
            row = self.emulator._row(obj, record_id)
            if row.get("life_status") == "invalid":
                raise ApiError(INVALID_PARAMETER, "数据已作废，不能编辑", "record is invalid")
            if row.get("lock_status") == "1":
                raise ApiError(INVALID_PARAMETER, "数据已锁定，不能编辑", "record is locked")
            changes = {
                name: self.coerce(obj, name, value)
                for name, value in inner.items()
                if name not in ENVELOPE_KEYS
            }
            if approval and obj.api_name in self.emulator.approval_objects:
                # The change waits for the approval flow and the record is locked meanwhile [A].
                row["_pending"] = changes
                row["life_status"] = "in_change"
                row["lock_status"] = "1"
            else:
                row.update(changes)
            self.emulator._touch(row, user["id"])
        return {}

    def create(
        self, obj: FxObject, inner: dict[str, Any], user: dict[str, Any], approval: bool
    ) -> dict[str, Any]:
        values = {
            name: self.coerce(obj, name, value)
            for name, value in inner.items()
            if name not in ENVELOPE_KEYS
        }
        for name, definition in obj.fields.items():
            if (
                definition.is_required
                and definition.writable
                and name != "owner"
                and values.get(name) in (None, "", [])
            ):
                raise ApiError(
                    INVALID_PARAMETER, f"字段{definition.label}必填", f"field {name} is required"
                )
        with self.emulator._lock:
            self.emulator._seq += 1
            record_id = hex_id(obj.api_name, "created", self.emulator._seq)
            stamp = int(self.emulator.now() * 1000)
            owner = values.pop("owner", None) or [user["id"]]
            row = base_row(
                obj.api_name, record_id, str(values.pop("name", "") or record_id), owner[0], stamp
            )
            row["owner"] = owner
            row["created_by"] = [user["id"]]
            row["last_modified_by"] = [user["id"]]
            row.update(values)
            if approval and obj.api_name in self.emulator.approval_objects:
                row["life_status"] = "under_review"
                row["lock_status"] = "1"
            self.emulator.rows[obj.api_name][record_id] = row
        return {"dataId": record_id}
