"""Fxiaoke field values both ways: describe types to families, epoch-ms dates, money strings, opaque select options.

Wire conventions (shared/reference/fxiaoke.md §5, §8): money and numbers come back as strings
(`"1.00"`), dates and times as epoch milliseconds (a date at the tenant's midnight), employee
fields as lists of ids, and a select option is written by its `value`, which for custom fields
is a generated code (`"7e8T541Vr"`). The adapter shows custom select fields by their labels, so a
mapping reads and writes "A".."E" whatever codes the tenant's options were given.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.protocol import FieldDescription

# describe `type` -> the canonical family the mapping checks against.
FAMILIES: dict[str, str] = {
    "text": "string",
    "long_text": "text",
    "auto_number": "string",
    "phone_number": "string",
    "email": "string",
    "url": "string",
    "country": "string",
    "province": "string",
    "city": "string",
    "number": "number",
    "currency": "currency",
    "percentile": "percent",
    "date": "date",
    "date_time": "datetime",
    "true_or_false": "boolean",
    "select_one": "picklist",
    "select_many": "picklist",
    "record_type": "picklist",
    "object_reference": "reference",
    "master_detail": "reference",
    "employee": "reference",
    "department": "reference",
}
WRITABLE_TYPES = frozenset(
    {
        "text", "long_text", "phone_number", "email", "url", "country", "number", "currency",
        "percentile", "date", "date_time", "true_or_false", "select_one", "select_many",
        "object_reference", "master_detail", "employee", "department", "embedded_object_list",
    }
)  # fmt: skip
NUMERIC_TYPES = frozenset({"number", "currency", "percentile"})


@dataclass(frozen=True)
class FxFieldInfo:
    """What the adapter keeps of one describe entry to convert values."""

    name: str
    type: str
    define_type: str
    options: tuple[tuple[str, str], ...] = ()  # (label, value)
    writable: bool = True

    @property
    def labelled(self) -> bool:
        """Custom select fields: shown and written by label (their values are generated codes)."""
        return self.type in ("select_one", "select_many") and self.define_type == "custom"

    def label_of(self, value: Any) -> Any:
        """The label of an option value (the value itself when it is not an option)."""
        for label, option in self.options:
            if option == value:
                return label
        return value

    def value_of(self, label: Any) -> Any:
        """The option value of a label (or of a value already)."""
        for option_label, option in self.options:
            if label in (option_label, option):
                return option
        return label


def field_info(raw: dict[str, Any]) -> FxFieldInfo:
    """The conversion info of one describe field."""
    options = tuple(
        (str(o.get("label", "")), str(o.get("value", "")))
        for o in raw.get("options") or []
        if isinstance(o, dict)
    )
    name = str(raw.get("api_name"))
    kind = str(raw.get("type") or "")
    define_type = str(raw.get("define_type") or "")
    return FxFieldInfo(
        name=name,
        type=kind,
        define_type=define_type,
        options=options,
        writable=(
            name != "_id"
            and define_type != "system"
            and kind in WRITABLE_TYPES
            and raw.get("is_active", True) is not False
        ),
    )


def field_description(raw: dict[str, Any]) -> FieldDescription:
    """A describe field as the mapping checker sees it."""
    info = field_info(raw)
    name = info.name
    family = "id" if name == "_id" else FAMILIES.get(info.type, "other")
    writable = info.writable
    picklist = tuple(label if info.labelled else value for label, value in info.options)
    length = raw.get("max_length", raw.get("length"))
    places = raw.get("decimal_places")
    return FieldDescription(
        name=name,
        type=info.type,
        label=str(raw.get("label") or ""),
        updateable=writable,
        createable=writable,
        nillable=not raw.get("is_required"),
        length=int(length) if isinstance(length, int) else None,
        scale=int(places) if isinstance(places, int) else None,
        picklist_values=picklist,
        custom=info.define_type == "custom",
        family=family,
    )


def from_ms(value: Any) -> datetime | None:
    """An epoch-millisecond value as a UTC datetime (None when it is not one)."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def to_ms(moment: datetime) -> int:
    """A datetime as epoch milliseconds (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def date_to_ms(day: date, zone: tzinfo) -> int:
    """A date as the epoch ms of its midnight in the tenant's zone (how date fields are stored)."""
    return to_ms(datetime.combine(day, time(0), zone))


def read_value(info: FxFieldInfo | None, value: Any, zone: tzinfo) -> Any:
    """A wire value as the mapping reads it: ISO dates and times, labels of custom options."""
    if info is None or value is None:
        return value
    if info.type == "date":
        moment = from_ms(value)
        return None if moment is None else moment.astimezone(zone).date().isoformat()
    if info.type == "date_time":
        moment = from_ms(value)
        return None if moment is None else moment.isoformat()
    if info.labelled:
        if isinstance(value, list):
            return [info.label_of(item) for item in value]
        return info.label_of(value)
    return value


def write_value(info: FxFieldInfo | None, value: Any, zone: tzinfo) -> Any:
    """A canonical value as Fxiaoke takes it on the wire.

    Raises:
        ValueError: a value the field's type cannot hold (the record is rejected, not sent).
    """
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return None
    kind = info.type if info is not None else ""
    if kind in NUMERIC_TYPES or isinstance(value, Decimal | float):
        if isinstance(value, bool):
            raise ValueError("a number field cannot hold true/false")
        try:
            number = Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueError(f"{value!r} is not a number") from exc
        if not number.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return format(number.normalize(), "f") if number == number.to_integral() else str(number)
    if kind == "date":
        day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
        if isinstance(day, datetime):
            day = day.astimezone(zone).date()
        return date_to_ms(day, zone)
    if kind == "date_time":
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return to_ms(moment)
    if kind == "employee":
        return [str(item) for item in value] if isinstance(value, list | tuple) else [str(value)]
    if info is not None and info.labelled:
        return info.value_of(str(value))
    if isinstance(value, datetime):
        return to_ms(value)
    if isinstance(value, date):
        return date_to_ms(value, zone)
    return value


def refused_fields(sent: Mapping[str, Any], infos: Mapping[str, FxFieldInfo]) -> tuple[str, ...]:
    """The fields of a refused update that the object's current describe explains: gone, no
    longer writable, or (a select) holding a value that is no option of it.

    Args:
        sent: the update's fields as sent (wire values).
        infos: the object's fields from a describe read after the refusal.
    """
    named = []
    for name, value in sent.items():
        info = infos.get(name)
        if info is None or not info.writable:
            named.append(name)
        elif info.type in ("select_one", "select_many") and value not in (None, ""):
            values = value if isinstance(value, list) else [value]
            options = {option for _, option in info.options}
            if any(str(item) not in options for item in values):
                named.append(name)
    return tuple(named)
