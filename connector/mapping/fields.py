"""One mapped field, compiled once: its spec checked, its converters to and from the CRM."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from connector.errors import MappingError
from connector.mapping.convert import (
    BadValue,
    converter,
    getter,
    refuse_unstorable_text,
    show,
    time_zone,
    to_decimal,
)
from connector.mapping.schema import (
    CANONICAL_READ,
    CANONICAL_WRITE,
    DEFAULT_CRM_TYPE,
    CrmType,
    Direction,
    FieldSpec,
    Scalar,
)

ELLIPSIS = "…"


@dataclass(frozen=True)
class CompiledField:
    """One mapped field with its converters built once per mapping (the hot path on 1M rows)."""

    kind: str
    name: str
    spec: FieldSpec
    canonical: str
    crm_type: CrmType
    direction: Direction
    get: Callable[[Mapping[str, Any]], Any]
    convert: Callable[[Any], Any]
    static: Any
    has_static: bool
    reverse_values: dict[str, Scalar]
    zone: tzinfo

    @property
    def crm(self) -> str:
        """The CRM field path, or an empty string for a static value."""
        return self.spec.crm or ""

    def accepts(self, crm_value: Any) -> bool:
        """Whether a CRM value converts to a canonical value (e.g. a known invoice status)."""
        try:
            self.convert(crm_value)
        except BadValue:
            return False
        return True

    def read(self, fields: Mapping[str, Any]) -> Any:
        """The canonical value in a record's CRM fields; None when empty. Raises BadValue."""
        if self.has_static:
            return self.static
        value = self.get(fields)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            refuse_unstorable_text(value)
        return self.convert(value)


def compile_field(
    kind: str, name: str, spec: FieldSpec, file: str, key: str
) -> tuple[CompiledField | None, list[MappingError]]:
    """Check one field's spec and build its converters; the problems found instead, if any."""
    read_type = CANONICAL_READ[kind].get(name)
    write_type = CANONICAL_WRITE[kind].get(name)
    canonical = write_type or read_type
    if canonical is None:
        known = sorted({*CANONICAL_READ[kind], *CANONICAL_WRITE[kind]})
        return None, [
            MappingError(
                f"unknown canonical field {name!r} for {kind}",
                mapping_file=file,
                key=key,
                crm_field=spec.crm or "",
                suggestions=difflib.get_close_matches(name, known, n=3),
            )
        ]
    default_direction: Direction = "read" if read_type else "write"
    direction = spec.direction or default_direction
    errors = _spec_problems(kind, name, spec, direction, file, key)
    try:
        zone = time_zone(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
        errors.append(
            MappingError(
                f"unknown time zone {spec.timezone!r}", mapping_file=file, key=f"{key}.timezone"
            )
        )
    crm_type: CrmType = spec.type or DEFAULT_CRM_TYPE[canonical]
    convert = converter(canonical, crm_type, spec, zone)
    static: Any = None
    if spec.value is not None and not errors:
        try:
            static = convert(spec.value)
        except BadValue as exc:
            errors.append(
                MappingError(f"static value: {exc.reason}", mapping_file=file, key=f"{key}.value")
            )
    if errors:
        return None, errors
    reverse: dict[str, Scalar] = {}
    for crm_value, canonical_value in (spec.values or {}).items():
        reverse.setdefault(str(canonical_value), crm_value)
    compiled = CompiledField(
        kind=kind,
        name=name,
        spec=spec,
        canonical=canonical,
        crm_type=crm_type,
        direction=direction,
        get=getter(spec.crm or ""),
        convert=convert,
        static=static,
        has_static=spec.value is not None,
        reverse_values=reverse,
        zone=zone,
    )
    return compiled, []


def _spec_problems(
    kind: str, name: str, spec: FieldSpec, direction: Direction, file: str, key: str
) -> list[MappingError]:
    """What is wrong with a known field's spec: source, direction, static value, CRM name."""
    errors: list[MappingError] = []
    if (spec.crm is None) == (spec.value is None):
        errors.append(
            MappingError(
                "set exactly one of `crm` (a CRM field) or `value` (a constant)",
                mapping_file=file,
                key=key,
            )
        )
    if direction in ("write", "read_write") and CANONICAL_WRITE[kind].get(name) is None:
        errors.append(
            MappingError(
                f"{name} is read from the CRM and cannot be written",
                mapping_file=file,
                key=f"{key}.direction",
            )
        )
    if (
        direction in ("read", "read_write")
        and CANONICAL_READ[kind].get(name) is None
        and kind != "task"
    ):
        errors.append(
            MappingError(
                f"{name} is computed by the connector and can only be written",
                mapping_file=file,
                key=f"{key}.direction",
            )
        )
    if spec.value is not None and direction != "read":
        errors.append(
            MappingError("a static `value` can only be read", mapping_file=file, key=f"{key}.value")
        )
    if spec.crm is not None and (not spec.crm.strip() or spec.crm != spec.crm.strip()):
        errors.append(
            MappingError("empty or padded CRM field name", mapping_file=file, key=f"{key}.crm")
        )
    return errors


def crm_format(item: CompiledField, value: Any) -> Any:
    """A canonical value as the CRM field stores it (see FieldMapping.to_crm_values)."""
    crm_type = item.crm_type
    canonical = item.canonical
    if canonical in ("money", "decimal", "integer"):
        number = to_decimal(value) if not isinstance(value, Decimal) else value
        if crm_type == "percent":
            return number * 100
        if crm_type == "integer":
            return int(number.to_integral_value())
        if crm_type in ("string", "text", "picklist"):
            return _truncate(str(number), item.spec.max_length)
        return number
    if canonical in ("datetime", "date") and isinstance(value, str):
        # The planner's normalised form of a date-time is its ISO text.
        try:
            value = (datetime if canonical == "datetime" else date).fromisoformat(value)
        except ValueError:
            raise MappingError(
                f"{item.name}: not an ISO {canonical}: {show(value)}",
                key=f"objects.{item.kind}.fields.{item.name}",
            ) from None
    if canonical == "datetime" and isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        moment = moment.astimezone(item.zone)
        if crm_type == "date":
            return moment.date().isoformat()
        return (
            moment.strftime(item.spec.format)
            if item.spec.format
            else moment.isoformat(timespec="seconds")
        )
    if canonical == "date" and isinstance(value, date):
        return value.strftime(item.spec.format) if item.spec.format else value.isoformat()
    if canonical == "boolean":
        return bool(value)
    text = (
        str(value.value) if hasattr(value, "value") and not isinstance(value, str) else str(value)
    )
    mapped = item.reverse_values.get(text, text) if item.reverse_values else text
    if isinstance(mapped, str):
        return _truncate(mapped, item.spec.max_length)
    return mapped


def _truncate(text: str, max_length: int | None) -> str:
    if max_length is None or len(text) <= max_length:
        return text
    return text[: max_length - 1] + ELLIPSIS
