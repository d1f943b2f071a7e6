"""Field mappings: load and validate mapping TOML, and translate between CRM records and canonical models.

A mapping file names, for each canonical object (account, invoice, task), the CRM object and,
for each canonical field, the CRM field and how to convert it. Presets are the TOML files of the
top-level `mappings` package, shipped as package data (one copy, read by admins and loaded here).

This is the only module that sees canonical names and CRM names side by side (STYLE.md, 7).
"""

from __future__ import annotations

import difflib
import importlib.resources
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, ValidationError

from connector.errors import MappingError, MappingErrors, RecordError, unreadable
from connector.models import (
    Account,
    Invoice,
    InvoiceStatus,
    ObjectKind,
    PaymentEntry,
    RawRecord,
    StrictModel,
)
from connector.redaction import LONE_SURROGATE

_M = TypeVar("_M", bound=StrictModel)
PRESET_DIR = Path(str(importlib.resources.files("mappings")))
ELLIPSIS = "…"
# Amounts above this are almost certainly unit or parsing mistakes (cents read as units, a phone
# number in an amount field); the record is quarantined rather than skewing a portfolio.
MAX_AMOUNT = Decimal("1e12")
# Cents of tolerance when comparing the open amount with the total (CRM rounding of tax lines).
OPEN_TOLERANCE = Decimal("0.01")

Direction = Literal["read", "write", "read_write"]
OnNull = Literal["skip", "clear"]
WriteMode = Literal["always", "if_empty", "respect_manual"]
# How the CRM stores a value; defaults to the canonical field's own type.
CrmType = Literal[
    "string", "text", "picklist", "integer", "number", "currency", "percent", "boolean", "date",
    "datetime", "id", "reference",
]  # fmt: skip

# fmt: off
# ISO 4217 active codes (plus a few widely used legacy/precious-metal ones CRMs still offer).
_ISO_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN
BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL
GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF
KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR
MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG
SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD
UYU UZS VES VED VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL XAU XAG XDR
"""
ISO_CURRENCIES = frozenset(_ISO_CODES.split())
# fmt: on

# Canonical type of each field, per object; the reader converts CRM values to these.
_ACCOUNT_READ: dict[str, str] = {
    "crm_id": "id", "name": "string", "owner_id": "id", "owner_active": "boolean",
    "industry": "string", "country": "string", "currency": "currency_code",
    "annual_revenue": "money", "employees": "integer", "created_at": "datetime",
    "payment_terms_days": "integer", "current_credit_limit": "money",
    "manual_credit_limit": "money", "agency_limit": "money", "net_worth": "money",
    "external_score": "decimal", "external_score_date": "date", "external_score_source": "string",
    "insured_limit": "money", "insolvency_flag": "boolean", "manual_override": "boolean",
    "working_capital": "money", "retained_earnings": "money", "ebit": "money",
    "book_equity": "money", "total_assets": "money", "total_liabilities": "money",
    "modified_at": "datetime",
}  # fmt: skip
_ACCOUNT_WRITE: dict[str, str] = {
    "risk_score": "decimal", "risk_band": "label", "risk_level": "label", "risk_reasons": "text",
    "recommended_credit_limit": "money", "current_credit_limit": "money",
    "risk_reviewed_at": "datetime", "probability_late": "decimal",
    "credit_limit_basis": "money",
}  # fmt: skip
_INVOICE_READ: dict[str, str] = {
    "crm_id": "id", "account_id": "id", "number": "string", "issue_date": "date",
    "due_date": "date", "amount": "money", "open_amount": "money", "currency": "currency_code",
    "exchange_rate": "decimal", "paid_date": "date", "status": "status",
    "disputed_since": "date", "modified_at": "datetime",
}  # fmt: skip
# A payment applied to an invoice (Salesforce Billing's allocation): where paid dates come from
# when the invoice object has none.
_PAYMENT_READ: dict[str, str] = {
    "crm_id": "id", "invoice_id": "id", "payment_id": "id", "amount": "money",
    "paid_on": "date", "entry_type": "string", "reversed": "boolean", "modified_at": "datetime",
}  # fmt: skip
# What an invoice or payment mapping must map, when it maps the object at all: without these
# the record cannot be scored (crm_id falls back to the record id the adapter reports).
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "invoice": ("account_id", "issue_date", "due_date", "amount"),
    "payment": ("invoice_id", "payment_id", "amount", "paid_on"),
}
# Task fields a mapping may override; the adapters own everything else about tasks.
_TASK_FIELDS: dict[str, str] = {
    "subject": "string", "description": "text", "priority": "label", "status": "label",
}  # fmt: skip

CANONICAL_READ: dict[str, dict[str, str]] = {
    "account": _ACCOUNT_READ,
    "invoice": _INVOICE_READ,
    "task": {},
    "payment": _PAYMENT_READ,
}
CANONICAL_WRITE: dict[str, dict[str, str]] = {
    "account": _ACCOUNT_WRITE,
    "invoice": {},
    "task": _TASK_FIELDS,
    "payment": {},
}
# The values the engine writes into label fields (checked against CRM picklists).
CANONICAL_LABELS: dict[str, tuple[str, ...]] = {
    "risk_band": ("A", "B", "C", "D", "E"),
    "risk_level": ("Low", "Medium", "High", "Critical"),
    "priority": ("low", "normal", "high"),
}

# CRM type a canonical type is stored as when the mapping does not say otherwise.
DEFAULT_CRM_TYPE: dict[str, CrmType] = {
    "id": "id", "string": "string", "text": "text", "label": "picklist", "status": "picklist",
    "currency_code": "string", "money": "currency", "decimal": "number", "integer": "integer",
    "boolean": "boolean", "date": "date", "datetime": "datetime",
}  # fmt: skip


def canonical_type(kind: str, name: str) -> str | None:
    """The canonical type of a field (`money`, `date`, …) or None when the name is unknown."""
    return CANONICAL_WRITE.get(kind, {}).get(name) or CANONICAL_READ.get(kind, {}).get(name)


def preset_names() -> list[str]:
    """Names of the presets shipped with the package, e.g. `zoho.inventory`."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.toml"))


# -- file schema -------------------------------------------------------------------------------


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Scalar = str | int | float | bool


class FieldSpec(_Strict):
    """How one canonical field maps to a CRM field (or to a constant)."""

    crm: str | None = None
    value: Scalar | None = None
    direction: Direction | None = None
    type: CrmType | None = None
    values: dict[str, Scalar] | None = None
    on_null: OnNull = "skip"
    write_mode: WriteMode = "always"
    format: str | None = None
    timezone: str | None = None
    max_length: int | None = Field(default=None, ge=2)
    enabled: bool = True


class ObjectSpec(_Strict):
    """One canonical object: which CRM object, its fields and static filters."""

    crm_object: str | None = None
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    # Static filters on CRM values: a record is skipped when a listed field holds an excluded
    # value, or (include) holds none of the listed values. Keys are canonical or CRM names.
    exclude: dict[str, list[Scalar]] = Field(default_factory=dict)
    include: dict[str, list[Scalar]] = Field(default_factory=dict)
    # A file extending a preset can switch an optional object off (e.g. [objects.payment]).
    enabled: bool = True


class ValidationRules(_Strict):
    """Plausibility rules: a record that breaks one is quarantined with the rule's name.

    Values that convert but cannot be true (an invoice from 1900, payment terms of -300 days)
    would otherwise drive writes: a band D, a limit cut, "46022 days past due". Each rule is a
    `[validation]` setting of the mapping file, so an org with older data can move the floor.
    """

    # Invoice dates (issue, due, paid, disputed since) before this day.
    date_floor: date = date(1990, 1, 1)
    # Issue or paid dates more than this many days after the record was last changed in the CRM
    # (a payment cannot be recorded before it happened; pro-forma invoices run a little ahead).
    max_days_ahead: int = Field(default=60, ge=0)
    # A due date more than this many days after the issue date (a due date in year 9999).
    max_due_days: int = Field(default=1095, ge=0)
    # Account dates (created, external score date) before this day: a "customer since 1800"
    # would make the longest tenure in the book and lift the score.
    created_floor: date = date(1900, 1, 1)
    # A paid date before the issue date.
    paid_before_issue: bool = True
    # Account payment terms outside this range, in days.
    payment_terms_min: int = 0
    payment_terms_max: int = Field(default=365, ge=0)
    # Amounts above this are unit or parsing mistakes (cents read as units, a phone number).
    max_amount: Decimal = Field(default=MAX_AMOUNT, gt=0)


class MappingFile(_Strict):
    """A whole mapping file after `extends` is resolved."""

    name: str = ""
    crm: str = ""
    description: str = ""
    validation: ValidationRules = ValidationRules()
    objects: dict[ObjectKind, ObjectSpec] = Field(default_factory=dict)


# -- loading -----------------------------------------------------------------------------------

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
# Maps whose entries replace the parent's as a whole: merging two value maps would keep
# stale CRM values the user meant to drop.
_REPLACE_KEYS = frozenset({"values", "exclude", "include"})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingErrors(
            [MappingError(f"mapping file {unreadable(path, exc)}", mapping_file=str(path))]
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.search(str(exc))
        where = f"line {found.group(1)}, column {found.group(2)}" if found else ""
        message = _TOML_POSITION.sub("", str(exc)).strip()
        raise MappingErrors(
            [MappingError(f"invalid TOML: {message}", mapping_file=str(path), key=where)]
        ) from None


def _resolve_ref(ref: str, base_dir: Path | None) -> Path:
    looks_like_path = ref.endswith(".toml") or "/" in ref or "\\" in ref
    if not looks_like_path:
        preset = PRESET_DIR / f"{ref}.toml"
        if preset.is_file():
            return preset
    candidate = Path(ref).expanduser()
    if not candidate.is_absolute():
        candidate = (base_dir or Path.cwd()) / candidate
    if candidate.is_file():
        return candidate.resolve()
    names = preset_names()
    raise MappingErrors(
        [
            MappingError(
                f"no preset or mapping file {ref!r} (presets: {', '.join(names)})",
                mapping_file=str(candidate),
                key="mapping",
                suggestions=difflib.get_close_matches(ref, names, n=3, cutoff=0.5),
            )
        ]
    )


def _blame(value: Any, origins: dict[str, str], file: str, path: str) -> None:
    origins[path] = file
    if isinstance(value, dict):
        for key, inner in value.items():
            _blame(inner, origins, file, f"{path}.{key}")


def _merge(
    parent: dict[str, Any], child: dict[str, Any], origins: dict[str, str], file: str, path: str
) -> dict[str, Any]:
    merged = dict(parent)
    for key, value in child.items():
        key_path = f"{path}.{key}" if path else key
        if (
            isinstance(value, dict)
            and isinstance(merged.get(key), dict)
            and key not in _REPLACE_KEYS
        ):
            # A table both files have: the child touched it last; keys it did not set keep
            # their own (deeper) origin.
            merged[key] = _merge(merged[key], value, origins, file, key_path)
            origins[key_path] = file
        else:
            merged[key] = value
            _blame(value, origins, file, key_path)
    return merged


def _load_raw(
    path: Path, origins: dict[str, str], chain: list[Path]
) -> tuple[dict[str, Any], list[Path]]:
    if path in chain:
        cycle = " -> ".join(str(item) for item in [*chain, path])
        raise MappingErrors(
            [MappingError(f"extends cycle: {cycle}", mapping_file=str(path), key="extends")]
        )
    data = _read_toml(path)
    extends = data.pop("extends", None)
    if extends is None:
        _merge({}, data, origins, str(path), "")
        return data, [*chain, path]
    if not isinstance(extends, str):
        raise MappingErrors(
            [
                MappingError(
                    "extends must be a preset name or a path", mapping_file=str(path), key="extends"
                )
            ]
        )
    try:
        parent_path = _resolve_ref(extends, path.parent)
    except MappingErrors as exc:
        # Name the file that says `extends`, not the one it failed to find.
        raise MappingErrors(
            [
                MappingError(
                    error.message,
                    mapping_file=str(path),
                    key="extends",
                    suggestions=error.suggestions,
                )
                for error in exc.errors
            ]
        ) from None
    parent, seen = _load_raw(parent_path, origins, [*chain, path])
    return _merge(parent, data, origins, str(path), ""), seen


def load_mapping(ref: str, *, base_dir: Path | None = None) -> FieldMapping:
    """Load a preset by name or a mapping file by path, resolving `extends` chains.

    Args:
        ref: a preset name (`zoho.inventory`) or a path, relative to `base_dir`.
        base_dir: the folder of the config file that names the mapping (default: cwd).

    Returns:
        The validated mapping, with converters compiled once.

    Raises:
        MappingErrors: every problem found, each naming the file and the key.
    """
    path = _resolve_ref(ref, base_dir)
    origins: dict[str, str] = {}
    data, chain = _load_raw(path, origins, [])
    source = str(path)

    def origin(key_path: str) -> str:
        # The file that set the deepest known prefix of the key.
        parts = key_path.split(".")
        for end in range(len(parts), 0, -1):
            found = origins.get(".".join(parts[:end]))
            if found:
                return found
        return source

    try:
        spec = MappingFile.model_validate(data)
    except ValidationError as exc:
        errors = []
        for item in exc.errors(include_input=False, include_url=False):
            key = ".".join(str(part) for part in item["loc"])
            message = item["msg"]
            suggestions: list[str] = []
            if item["type"] == "extra_forbidden":
                parent_key = key.rsplit(".", 1)[0] if "." in key else ""
                allowed = _allowed_keys(parent_key)
                suggestions = difflib.get_close_matches(str(item["loc"][-1]), allowed, n=3)
                message = "unknown key"
            errors.append(
                MappingError(message, mapping_file=origin(key), key=key, suggestions=suggestions)
            )
        raise MappingErrors(errors) from None
    return FieldMapping(spec, source=source, chain=[str(item) for item in chain], origin=origin)


def _allowed_keys(parent_key: str) -> list[str]:
    depth = parent_key.count(".") + 1 if parent_key else 0
    if depth == 0:
        return list(MappingFile.model_fields)
    if parent_key == "validation":
        return list(ValidationRules.model_fields)
    if depth == 2:
        return list(ObjectSpec.model_fields)
    return list(FieldSpec.model_fields)


# -- conversion ----------------------------------------------------------------------------------


class _Bad(Exception):
    """A CRM value that cannot be converted; carries the reason and an error code."""

    def __init__(self, reason: str, code: str = "INVALID_FIELD_VALUE") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _refuse_unstorable_text(text: str) -> None:
    """A string with half of a UTF-16 pair cannot be stored, logged or printed as UTF-8; one
    with a NUL character cannot be stored in a PostgreSQL text column (nor safely in C strings).
    Both quarantine the record on every store alike."""
    nul = text.find("\x00")
    if nul >= 0:
        raise _Bad(
            f"text holds a NUL character \\u0000 at character {nul + 1} (a control byte no "
            "text field should hold, e.g. from an import or a binary paste); "
            "correct the value in the CRM",
            "INVALID_TEXT",
        )
    if text.isascii():
        return
    found = LONE_SURROGATE.search(text)
    if found is not None:
        raise _Bad(
            f"text is not valid Unicode: a lone surrogate \\u{ord(found.group()):04x} at "
            f"character {found.start() + 1} (half of a character, e.g. a cut emoji); "
            "correct the value in the CRM",
            "INVALID_TEXT",
        )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise _Bad(f"expected a number, got {_show(value)}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise _Bad(f"expected a number, got {_show(value)}") from None
    else:
        raise _Bad(f"expected a number, got {_show(value)}")
    if not number.is_finite():
        raise _Bad(f"expected a finite number, got {_show(value)}")
    return number


def _to_int(value: Any) -> int:
    number = _to_decimal(value)
    if number != number.to_integral_value():
        raise _Bad(f"expected a whole number, got {_show(value)}")
    if abs(number) > 10**15:
        raise _Bad(f"number out of range: {_show(value)}")
    return int(number)


_TRUE = frozenset({"true", "1", "yes", "y", "on", "checked"})
_FALSE = frozenset({"false", "0", "no", "n", "off", "", "unchecked"})


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise _Bad(f"expected true or false, got {_show(value)}")


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict) and isinstance(value.get("id"), str | int):
        # A lookup mapped without a path (Zoho {"id", "name"}): its id is what we key on.
        return str(value["id"])
    raise _Bad(f"expected text, got {type(value).__name__}")


def _zone(name: str | None) -> tzinfo:
    if not name or name.upper() == "UTC":
        return UTC
    return ZoneInfo(name)


def _make_datetime_parser(fmt: str | None, zone: tzinfo) -> Callable[[Any], datetime]:
    def parse(value: Any) -> datetime:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str):
            try:
                parsed = (
                    datetime.strptime(value.strip(), fmt)
                    if fmt
                    else datetime.fromisoformat(value.strip())
                )
            except ValueError:
                raise _Bad(f"malformed date-time {_show(value)}") from None
        else:
            raise _Bad(f"expected a date-time, got {_show(value)}")
        if parsed.tzinfo is None:
            # CRMs send naive times in the org's zone; the mapping says which zone that is.
            parsed = parsed.replace(tzinfo=zone)
        return parsed

    return parse


def _make_date_parser(fmt: str | None, zone: tzinfo) -> Callable[[Any], date]:
    def parse(value: Any) -> date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        try:
            if isinstance(value, datetime):
                moment = value
            elif not isinstance(value, str):
                raise _Bad(f"expected a date, got {_show(value)}")
            else:
                text = value.strip()
                if fmt:
                    return datetime.strptime(text, fmt).date()
                if len(text) == 10:
                    return date.fromisoformat(text)
                moment = datetime.fromisoformat(text)
            # A date-time in a date field: the calendar day in the org's zone.
            return moment.astimezone(zone).date() if moment.tzinfo else moment.date()
        except (ValueError, OverflowError):
            # OverflowError: year 1 or 9999 shifted across midnight by the zone.
            raise _Bad(f"malformed date {_show(value)}") from None

    return parse


def _currency_code(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a currency code, got {_show(value)}", "UNKNOWN_CURRENCY")
    code = value.strip().upper()
    if code not in ISO_CURRENCIES:
        raise _Bad(f"unknown currency code {_show(value)}", "UNKNOWN_CURRENCY")
    return code


def _status(value: Any) -> InvoiceStatus:
    if isinstance(value, InvoiceStatus):
        return value
    text = _to_str(value).strip().lower().replace(" ", "_").replace("-", "_")
    try:
        return InvoiceStatus(text)
    except ValueError:
        raise _Bad(
            f"status {_show(value)} is not in the mapping's values map", "UNKNOWN_STATUS"
        ) from None


def _builder(model: type[_M]) -> Callable[[dict[str, Any]], _M]:
    """A constructor for values already converted and checked here, for the 1M-invoice path.

    `model_construct` costs ~5 us per Invoice (it walks every field and its default); this
    fills the same instance slots in ~1 us. Only for values this module produced: nothing is
    validated. Field defaults of Account and Invoice are immutable, so sharing them is safe.
    """
    template = {
        name: (None if info.is_required() else info.get_default(call_default_factory=True))
        for name, info in model.model_fields.items()
    }
    new = model.__new__
    set_slot = object.__setattr__

    def build(values: dict[str, Any]) -> _M:
        instance = new(model)
        data = template.copy()
        data.update(values)
        set_slot(instance, "__dict__", data)
        set_slot(instance, "__pydantic_fields_set__", set(values))
        set_slot(instance, "__pydantic_extra__", None)
        set_slot(instance, "__pydantic_private__", None)
        return instance

    return build


def _getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    head, _, rest = path.partition(".")
    if not rest:
        return lambda fields: fields.get(path)
    parts = rest.split(".")

    def get(fields: Mapping[str, Any]) -> Any:
        value = fields.get(head)
        if value is None:
            # An adapter that flattens relationships returns the dotted name as the key.
            return fields.get(path)
        for part in parts:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    return get


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
        except _Bad:
            return False
        return True

    def read(self, fields: Mapping[str, Any]) -> Any:
        """The canonical value in a record's CRM fields; None when empty. Raises _Bad."""
        if self.has_static:
            return self.static
        value = self.get(fields)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            _refuse_unstorable_text(value)
        return self.convert(value)


def _converter(
    canonical: str, crm_type: CrmType, spec: FieldSpec, zone: tzinfo
) -> Callable[[Any], Any]:
    base: Callable[[Any], Any]
    if canonical in ("money", "decimal"):
        base = _to_decimal
        if crm_type == "percent":

            def base(value: Any) -> Decimal:
                # CRM percent fields hold 0-100; canonical probabilities are 0-1.
                return _to_decimal(value) / 100

        elif crm_type in ("string", "text", "picklist"):
            base = _to_decimal
    elif canonical == "integer":
        base = _to_int
    elif canonical == "boolean":
        base = _to_bool
    elif canonical == "date":
        base = _make_date_parser(spec.format, zone)
    elif canonical == "datetime":
        base = _make_datetime_parser(spec.format, zone)
    elif canonical == "currency_code":
        base = _currency_code
    elif canonical == "status":
        base = _status
    else:
        base = _to_str
    if not spec.values:
        return base
    table = {str(key): value for key, value in spec.values.items()}

    def mapped(value: Any) -> Any:
        key = value if isinstance(value, str) else _to_str(value)
        if key in table:
            return base(table[key])
        return base(value)

    return mapped


def _compile(
    kind: str, name: str, spec: FieldSpec, file: str, key: str
) -> tuple[CompiledField | None, list[MappingError]]:
    errors: list[MappingError] = []
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
    if (spec.crm is None) == (spec.value is None):
        errors.append(
            MappingError(
                "set exactly one of `crm` (a CRM field) or `value` (a constant)",
                mapping_file=file,
                key=key,
            )
        )
    default_direction: Direction = "read" if read_type else "write"
    direction = spec.direction or default_direction
    if direction in ("write", "read_write") and write_type is None:
        errors.append(
            MappingError(
                f"{name} is read from the CRM and cannot be written",
                mapping_file=file,
                key=f"{key}.direction",
            )
        )
    if direction in ("read", "read_write") and read_type is None and kind != "task":
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
    try:
        zone = _zone(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
        errors.append(
            MappingError(
                f"unknown time zone {spec.timezone!r}", mapping_file=file, key=f"{key}.timezone"
            )
        )
    crm_type: CrmType = spec.type or DEFAULT_CRM_TYPE[canonical]
    convert = _converter(canonical, crm_type, spec, zone)
    static: Any = None
    if spec.value is not None and not errors:
        try:
            static = convert(spec.value)
        except _Bad as exc:
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
        get=_getter(spec.crm or ""),
        convert=convert,
        static=static,
        has_static=spec.value is not None,
        reverse_values=reverse,
        zone=zone,
    )
    return compiled, []


# -- the mapping ---------------------------------------------------------------------------------


def _needs_write(direction: str) -> bool:
    return direction in ("write", "read_write")


def _needs_read(direction: str) -> bool:
    return direction in ("read", "read_write")


class FieldMapping:
    """A validated mapping: CRM names per canonical object and field, with compiled converters."""

    def __init__(
        self,
        spec: MappingFile,
        *,
        source: str,
        chain: Iterable[str] = (),
        origin: Callable[[str], str] | None = None,
    ) -> None:
        """Compile a mapping; raises MappingErrors naming file and key for every problem."""
        self.spec = spec
        self.rules = spec.validation
        self.source = source
        self.chain = list(chain)
        self.name = spec.name
        self.crm = spec.crm
        self._objects: dict[str, ObjectSpec] = {
            str(k): v for k, v in spec.objects.items() if v.enabled or k in ("account", "invoice")
        }
        where = origin or (lambda _key: source)
        self._origin = where
        errors: list[MappingError] = []
        self._fields: dict[str, dict[str, CompiledField]] = {}
        self._filters: dict[
            str, list[tuple[Callable[[Mapping[str, Any]], Any], frozenset[str], bool]]
        ] = {}
        self._filter_paths: dict[str, list[str]] = {}
        for kind in ("account", "invoice"):
            if kind not in spec.objects:
                errors.append(
                    MappingError(
                        f"missing [objects.{kind}]", mapping_file=source, key=f"objects.{kind}"
                    )
                )
        for kind, obj in spec.objects.items():
            if str(kind) not in self._objects:
                continue
            if not obj.crm_object:
                errors.append(
                    MappingError(
                        "crm_object is required",
                        mapping_file=where(f"objects.{kind}"),
                        key=f"objects.{kind}.crm_object",
                    )
                )
            compiled: dict[str, CompiledField] = {}
            for name, field_spec in obj.fields.items():
                if not field_spec.enabled:
                    continue
                key = f"objects.{kind}.fields.{name}"
                item, problems = _compile(kind, name, field_spec, where(key), key)
                errors.extend(problems)
                if item is not None:
                    compiled[name] = item
            self._fields[kind] = compiled
            filters = []
            paths = []
            for rule, negate in ((obj.exclude, True), (obj.include, False)):
                for filter_key, listed in rule.items():
                    target = compiled.get(filter_key)
                    path = target.crm if target is not None else filter_key
                    if not path:
                        errors.append(
                            MappingError(
                                "filter on a static value",
                                mapping_file=where(f"objects.{kind}"),
                                key=f"objects.{kind}.{'exclude' if negate else 'include'}.{filter_key}",
                            )
                        )
                        continue
                    filters.append(
                        (_getter(path), frozenset(_to_str(value) for value in listed), negate)
                    )
                    paths.append(path)
            self._filters[kind] = filters
            self._filter_paths[kind] = paths
        for kind, required in _REQUIRED_FIELDS.items():
            mapped = self._objects.get(kind)
            if mapped is None:
                continue
            for name in required:
                declared = mapped.fields.get(name)
                if declared is None or not declared.enabled:
                    errors.append(
                        MappingError(
                            f"{name} must be mapped",
                            mapping_file=source,
                            key=f"objects.{kind}.fields.{name}",
                        )
                    )
        if errors:
            raise MappingErrors(errors)
        self._account_readers = [
            item
            for item in self._fields["account"].values()
            if _needs_read(item.direction) and item.name in _ACCOUNT_READ
        ]
        self._invoice_readers = list(self._fields["invoice"].values())

    # -- lookups ---------------------------------------------------------------------------------

    def fields(self, kind: str) -> dict[str, CompiledField]:
        """The compiled fields of one object, by canonical name."""
        return dict(self._fields.get(kind, {}))

    def field(self, kind: str, name: str) -> CompiledField:
        """One compiled field; raises MappingError when the mapping does not map it."""
        try:
            return self._fields[kind][name]
        except KeyError:
            raise MappingError(
                f"{name} is not mapped",
                mapping_file=self.source,
                key=f"objects.{kind}.fields.{name}",
            ) from None

    def file_for(self, key: str) -> str:
        """The mapping file that set a key (the user's file or the preset it extends)."""
        return self._origin(key)

    def crm_object(self, kind: str) -> str:
        """The CRM object (Salesforce sObject, Zoho module) holding this canonical kind."""
        obj = self._objects.get(kind)
        if obj is None or not obj.crm_object:
            raise MappingError(
                f"no [objects.{kind}] in the mapping",
                mapping_file=self.source,
                key=f"objects.{kind}",
            )
        return str(obj.crm_object)

    def object_spec(self, kind: str) -> ObjectSpec | None:
        """The object section as written (after extends), or None when absent."""
        return self._objects.get(kind)

    def has_object(self, kind: str) -> bool:
        """Whether the mapping configures this kind (task is optional)."""
        return kind in self._objects

    def read_fields(self, kind: str) -> list[str]:
        """CRM field paths to request: every mapped field (write fields too, for diffing) and filters."""
        paths: list[str] = []
        for item in self._fields.get(kind, {}).values():
            if item.crm:
                paths.append(item.crm)
        paths.extend(self._filter_paths.get(kind, []))
        return list(dict.fromkeys(paths))

    def write_fields(self) -> list[str]:
        """Canonical account fields the mapping writes, in file order."""
        return [
            name for name, item in self._fields["account"].items() if _needs_write(item.direction)
        ]

    def write_mode(self, kind: str, name: str) -> str:
        """always | if_empty | respect_manual for one write field."""
        return self.field(kind, name).spec.write_mode

    def on_null(self, kind: str, name: str) -> str:
        """skip | clear: what a None canonical value does on write."""
        return self.field(kind, name).spec.on_null

    def max_lengths(self, kind: str) -> dict[str, int]:
        """Configured text lengths by canonical name (the planner truncates reasons to them)."""
        return {
            name: item.spec.max_length
            for name, item in self._fields.get(kind, {}).items()
            if item.spec.max_length is not None
        }

    # -- reading -------------------------------------------------------------------------------

    def _excluded(self, kind: str, fields: Mapping[str, Any]) -> bool:
        for get, listed, negate in self._filters[kind]:
            value = get(fields)
            present = isinstance(value, str | int | float) and _to_str(value) in listed
            if present == negate:
                return True
        return False

    def filters_out(self, kind: str, crm_path: str, crm_value: Any) -> bool:
        """Whether a static filter on this CRM field drops records holding this value."""
        for (_get, listed, negate), path in zip(
            self._filters.get(kind, []), self._filter_paths.get(kind, []), strict=True
        ):
            if path == crm_path and (str(crm_value) in listed) == negate:
                return True
        return False

    def _record_error(self, raw: RawRecord, item: CompiledField, exc: _Bad) -> RecordError:
        where = f"{item.name} ({item.crm})" if item.crm else item.name
        value = item.get(raw.fields) if item.crm else item.static
        return RecordError(
            f"{where}: {exc.reason}",
            record_id=raw.crm_id,
            code=exc.code,
            fields=[item.crm or item.name],
            value=_show(value),
        )

    def record_label(self, kind: str, raw: RawRecord) -> str:
        """What a person calls the record (account name, invoice number), or "" when unreadable."""
        item = self._fields.get(kind, {}).get("name" if kind == "account" else "number")
        if item is None:
            return ""
        try:
            value = item.read(raw.fields)
        except _Bad:
            return ""
        return "" if value is None else str(value)[:200]

    def invoice_account_id(self, raw: RawRecord) -> str | None:
        """The account an invoice record names, even when the rest of it is invalid."""
        item = self._fields["invoice"].get("account_id")
        if item is None:
            return None
        try:
            value = item.read(raw.fields)
        except _Bad:
            return None
        return None if value is None else str(value)

    def to_account(self, raw: RawRecord) -> Account:
        """Convert a CRM account record; raises RecordError (record id, field, reason) on bad input."""
        fields = raw.fields
        values: dict[str, Any] = {}
        for item in self._account_readers:
            try:
                value = item.read(fields)
            except _Bad as exc:
                raise self._record_error(raw, item, exc) from None
            if value is not None:
                values[item.name] = value
        values["crm_id"] = values.get("crm_id") or raw.crm_id
        values.setdefault("modified_at", raw.modified_at)
        for flag in ("insolvency_flag", "manual_override"):
            if flag in values and values[flag] is None:
                del values[flag]
        rules = self.rules
        for name in (
            "annual_revenue",
            "current_credit_limit",
            "manual_credit_limit",
            "agency_limit",
            "insured_limit",
        ):
            amount = values.get(name)
            if amount is not None and (amount < 0 or amount > rules.max_amount):
                item = self._fields["account"][name]
                raise self._record_error(
                    raw,
                    item,
                    _Bad(
                        f"amount out of range: {_show(amount)} (0 to [validation] max_amount "
                        f"{rules.max_amount:,.0f})",
                        "AMOUNT_OUT_OF_RANGE",
                    ),
                )
        terms = values.get("payment_terms_days")
        if terms is not None and not rules.payment_terms_min <= terms <= rules.payment_terms_max:
            raise self._record_error(
                raw,
                self._fields["account"]["payment_terms_days"],
                _Bad(
                    f"payment terms of {terms} days are outside [validation] payment_terms_min "
                    f"{rules.payment_terms_min} to payment_terms_max {rules.payment_terms_max}",
                    "PAYMENT_TERMS_OUT_OF_RANGE",
                ),
            )
        self._check_account_dates(raw, values)
        values["deleted"] = raw.deleted
        return _build_account(values)

    def _check_account_dates(self, raw: RawRecord, values: dict[str, Any]) -> None:
        """Created and external-score dates: not before `created_floor`, not after the record's
        last change by more than `max_days_ahead` (a date a record cannot have been given yet)."""
        rules = self.rules
        edited = raw.modified_at.date()
        for name in ("created_at", "external_score_date"):
            value = values.get(name)
            if value is None:
                continue
            day = value.date() if isinstance(value, datetime) else value
            item = self._fields["account"][name]
            if day < rules.created_floor:
                raise self._record_error(
                    raw,
                    item,
                    _Bad(
                        f"{day.isoformat()} is before [validation] created_floor "
                        f"{rules.created_floor.isoformat()}",
                        "DATE_BEFORE_FLOOR",
                    ),
                )
            if (day - edited).days > rules.max_days_ahead:
                raise self._record_error(
                    raw,
                    item,
                    _Bad(
                        f"{day.isoformat()} is more than [validation] max_days_ahead "
                        f"{rules.max_days_ahead} days after the record's last change "
                        f"({edited.isoformat()})",
                        "DATE_IN_FUTURE",
                    ),
                )

    def paid_date_source(self) -> str | None:
        """Where paid dates come from: "field" (the invoice's own), "payments", or None."""
        if "paid_date" in self._fields["invoice"]:
            return "field"
        if "payment" in self._objects:
            return "payments"
        return None

    def to_payment(self, raw: RawRecord) -> PaymentEntry:
        """Convert a payment allocation record.

        Raises:
            RecordError: a missing invoice or payment, or a value that does not convert.
        """
        values: dict[str, Any] = {}
        for item in self._fields["payment"].values():
            try:
                value = item.read(raw.fields)
            except _Bad as exc:
                raise self._record_error(raw, item, exc) from None
            if value is not None:
                values[item.name] = value
        for name in ("invoice_id", "payment_id", "amount"):
            if name not in values:
                item = self._fields["payment"][name]
                raise RecordError(
                    f"{name} ({item.crm}): missing",
                    record_id=raw.crm_id,
                    code="MISSING_FIELD",
                    fields=[item.crm or name],
                )
        kind = str(values.get("entry_type") or "allocation").strip().lower()
        return PaymentEntry(
            crm_id=str(values.get("crm_id") or raw.crm_id),
            invoice_id=str(values["invoice_id"]),
            payment_id=str(values["payment_id"]),
            amount=values["amount"],
            paid_on=values.get("paid_on"),
            reversal=kind == "unallocation",
            reversed=bool(values.get("reversed")),
        )

    def to_invoice(self, raw: RawRecord, *, settled_on: date | None = None) -> Invoice | None:
        """Convert a CRM invoice record; None when a filter excludes it.

        `settled_on` is the paid date found elsewhere (payment allocations), used when the
        record's own paid date is not mapped or empty, and checked like one.

        Raises:
            RecordError: with the record id, field and reason, for missing or malformed dates,
                due before issue, negative or huge amounts, an unknown currency, an open amount
                above the total.
        """
        fields = raw.fields
        if self._filters["invoice"] and self._excluded("invoice", fields):
            return None
        values: dict[str, Any] = {}
        for item in self._invoice_readers:
            try:
                value = item.read(fields)
            except _Bad as exc:
                raise self._record_error(raw, item, exc) from None
            if value is not None:
                values[item.name] = value
        if settled_on is not None and "paid_date" not in values:
            values["paid_date"] = settled_on
        record_id = raw.crm_id
        fields_by_name = self._fields["invoice"]

        def fail(name: str, reason: str, code: str) -> RecordError:
            item = fields_by_name.get(name)
            crm = item.crm if item is not None else name
            label = f"{name} ({crm})" if crm and crm != name else name
            shown = values.get(name)
            return RecordError(
                f"{label}: {reason}",
                record_id=record_id,
                code=code,
                fields=[crm or name],
                value="" if shown is None else str(shown),
            )

        for name in ("account_id", "issue_date", "due_date", "amount"):
            if name not in values:
                raise fail(name, "missing", "MISSING_FIELD")
        issue, due = values["issue_date"], values["due_date"]
        if due < issue:
            raise fail(
                "due_date",
                f"due {due.isoformat()} before issue {issue.isoformat()}",
                "DUE_BEFORE_ISSUE",
            )
        rules = self.rules
        for name in ("issue_date", "due_date", "paid_date", "disputed_since"):
            day = values.get(name)
            if day is not None and day < rules.date_floor:
                raise fail(
                    name,
                    f"{day.isoformat()} is before [validation] date_floor "
                    f"{rules.date_floor.isoformat()}",
                    "DATE_BEFORE_FLOOR",
                )
        # "Ahead" is measured from the record's last change in the CRM, not from today: the
        # verdict must not change while the record stays the same (it is not read again).
        edited = raw.modified_at.date()
        for name in ("issue_date", "paid_date"):
            day = values.get(name)
            if day is not None and (day - edited).days > rules.max_days_ahead:
                raise fail(
                    name,
                    f"{day.isoformat()} is more than [validation] max_days_ahead "
                    f"{rules.max_days_ahead} days after the record's last change "
                    f"({edited.isoformat()})",
                    "DATE_IN_FUTURE",
                )
        if (due - issue).days > rules.max_due_days:
            raise fail(
                "due_date",
                f"{due.isoformat()} is more than [validation] max_due_days {rules.max_due_days} "
                f"days after the issue date {issue.isoformat()}",
                "DUE_DATE_TOO_FAR",
            )
        paid = values.get("paid_date")
        if rules.paid_before_issue and paid is not None and paid < issue:
            raise fail(
                "paid_date",
                f"paid {paid.isoformat()} before issue {issue.isoformat()} "
                "([validation] paid_before_issue)",
                "PAID_BEFORE_ISSUE",
            )
        amount: Decimal = values["amount"]
        if amount < 0:
            raise fail("amount", f"negative amount {amount}", "NEGATIVE_AMOUNT")
        if amount > rules.max_amount:
            raise fail(
                "amount",
                f"amount {_show(amount)} above [validation] max_amount {rules.max_amount:,.0f}",
                "AMOUNT_TOO_LARGE",
            )
        status: InvoiceStatus = values.get("status", InvoiceStatus.OPEN)
        values["status"] = status
        open_amount: Decimal | None = values.get("open_amount")
        if open_amount is None:
            # Zoho has no balance field by default: settled invoices owe nothing, others all.
            open_amount = Decimal(0) if status in _SETTLED else amount
            values["open_amount"] = open_amount
        elif open_amount < 0:
            raise fail("open_amount", f"negative open amount {open_amount}", "NEGATIVE_AMOUNT")
        elif open_amount > amount + OPEN_TOLERANCE:
            raise fail(
                "open_amount", f"open amount {open_amount} above total {amount}", "OPEN_ABOVE_TOTAL"
            )
        rate = values.get("exchange_rate")
        if rate is not None and (rate <= 0 or rate > rules.max_amount):
            raise fail(
                "exchange_rate", f"exchange rate {_show(rate)} out of range", "INVALID_FIELD_VALUE"
            )
        values["crm_id"] = values.get("crm_id") or record_id
        values.setdefault("modified_at", raw.modified_at)
        values["deleted"] = raw.deleted
        return _build_invoice(values)

    def crm_value_to_canonical(self, kind: str, canonical_name: str, raw_record: RawRecord) -> Any:
        """The CRM's current value of a mapped field, in canonical form (None when empty or junk).

        Junk (a text in a number field) reads as None, so the planner sees a difference and
        overwrites it instead of quarantining the whole account.
        """
        item = self.field(kind, canonical_name)
        try:
            return item.read(raw_record.fields)
        except _Bad:
            return None

    # -- writing -------------------------------------------------------------------------------

    def to_crm_values(
        self, kind: str, canonical: dict[str, Any], *, clear_nulls: bool = False
    ) -> dict[str, Any]:
        """Canonical values -> CRM field names and CRM value formats, ready for an adapter.

        Money and numbers become Decimal (percent fields x100), dates ISO dates, date-times ISO
        8601 with offset in the field's time zone (or its `format`), labels go through the
        inverted value map, text is cut to `max_length` with an ellipsis. A None value is sent
        as null only when the field says `on_null = "clear"` (or `clear_nulls`, when a
        revert restores a field that was empty).

        Raises:
            MappingError: a canonical name the mapping does not write.
        """
        out: dict[str, Any] = {}
        for name, value in canonical.items():
            item = self.field(kind, name)
            if not _needs_write(item.direction) or not item.crm:
                raise MappingError(
                    f"{name} is not mapped for writing",
                    mapping_file=self.source,
                    key=f"objects.{kind}.fields.{name}",
                )
            if value is None:
                if clear_nulls or item.spec.on_null == "clear":
                    out[item.crm] = None
                continue
            out[item.crm] = _crm_format(item, value)
        return out

    # -- showing -------------------------------------------------------------------------------

    def effective_dict(self) -> dict[str, Any]:
        """The mapping after `extends` and overrides, as the keys an admin would write."""
        data = self.spec.model_dump(mode="json", exclude_unset=True, exclude_none=True)
        return _ordered(data)

    def to_toml(self) -> str:
        """The effective mapping as a TOML file that loads back to the same mapping."""
        header = [f"# Effective mapping from {self.source}"]
        if len(self.chain) > 1:
            header.append("# extends chain: " + " -> ".join(self.chain))
        return "\n".join(header) + "\n" + dumps_toml(self.effective_dict())


_SETTLED = frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.WRITTEN_OFF})
_build_account = _builder(Account)
_build_invoice = _builder(Invoice)


def _crm_format(item: CompiledField, value: Any) -> Any:
    crm_type = item.crm_type
    canonical = item.canonical
    if canonical in ("money", "decimal", "integer"):
        number = _to_decimal(value) if not isinstance(value, Decimal) else value
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
                f"{item.name}: not an ISO {canonical}: {_show(value)}",
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


# -- TOML output -----------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOP_ORDER = ("name", "crm", "description", "validation", "objects")
_OBJECT_ORDER = ("crm_object", "exclude", "include", "fields")
_KIND_ORDER = ("account", "invoice", "task")


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    out = {key: data[key] for key in _TOP_ORDER if key in data}
    objects = out.get("objects")
    if isinstance(objects, dict):
        out["objects"] = {
            kind: {key: objects[kind][key] for key in _OBJECT_ORDER if key in objects[kind]}
            for kind in _KIND_ORDER
            if kind in objects
        }
    return out


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Write a mapping dict as TOML: scalars first, `[objects.KIND]` tables, one line per field."""
    lines: list[str] = []
    for key, value in data.items():
        if key != "objects":
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for kind, obj in (data.get("objects") or {}).items():
        lines.append("")
        lines.append(f"[objects.{_toml_key(kind)}]")
        for key, value in obj.items():
            if key != "fields":
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        if "fields" in obj:
            lines.append("")
            lines.append(f"[objects.{_toml_key(kind)}.fields]")
            for name, spec in obj["fields"].items():
                lines.append(f"{_toml_key(name)} = {_toml_value(spec)}")
    return "\n".join(lines) + "\n"
