"""CRM values to canonical ones: numbers, flags, text, dates in the org's zone, codes, statuses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from connector.mapping.schema import CrmType, FieldSpec
from connector.models import InvoiceStatus, StrictModel
from connector.redaction import LONE_SURROGATE

_M = TypeVar("_M", bound=StrictModel)

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


class BadValue(Exception):
    """A CRM value that cannot be converted; carries the reason and an error code."""

    def __init__(self, reason: str, code: str = "INVALID_FIELD_VALUE") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def refuse_unstorable_text(text: str) -> None:
    """Refuse text that no store can keep: a NUL character or half of a UTF-16 pair.

    A string with half of a UTF-16 pair cannot be stored, logged or printed as UTF-8; one
    with a NUL character cannot be stored in a PostgreSQL text column (nor safely in C strings).
    Both quarantine the record on every store alike.
    """
    nul = text.find("\x00")
    if nul >= 0:
        raise BadValue(
            f"text holds a NUL character \\u0000 at character {nul + 1} (a control byte no "
            "text field should hold, e.g. from an import or a binary paste); "
            "correct the value in the CRM",
            "INVALID_TEXT",
        )
    if text.isascii():
        return
    found = LONE_SURROGATE.search(text)
    if found is not None:
        raise BadValue(
            f"text is not valid Unicode: a lone surrogate \\u{ord(found.group()):04x} at "
            f"character {found.start() + 1} (half of a character, e.g. a cut emoji); "
            "correct the value in the CRM",
            "INVALID_TEXT",
        )


def show(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def to_decimal(value: Any) -> Decimal:
    """A finite number from a CRM number, float or numeric text; BadValue otherwise."""
    if isinstance(value, bool):
        raise BadValue(f"expected a number, got {show(value)}")
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
            raise BadValue(f"expected a number, got {show(value)}") from None
    else:
        raise BadValue(f"expected a number, got {show(value)}")
    if not number.is_finite():
        raise BadValue(f"expected a finite number, got {show(value)}")
    return number


def _to_int(value: Any) -> int:
    number = to_decimal(value)
    if number != number.to_integral_value():
        raise BadValue(f"expected a whole number, got {show(value)}")
    if abs(number) > 10**15:
        raise BadValue(f"number out of range: {show(value)}")
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
    raise BadValue(f"expected true or false, got {show(value)}")


def to_str(value: Any) -> str:
    """Text from a CRM scalar (or a lookup's id); BadValue for anything else."""
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
    raise BadValue(f"expected text, got {type(value).__name__}")


def time_zone(name: str | None) -> tzinfo:
    """The zone a mapping names (UTC when it names none); ZoneInfo's errors for unknown ones."""
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
                raise BadValue(f"malformed date-time {show(value)}") from None
        else:
            raise BadValue(f"expected a date-time, got {show(value)}")
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
                raise BadValue(f"expected a date, got {show(value)}")
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
            raise BadValue(f"malformed date {show(value)}") from None

    return parse


def _currency_code(value: Any) -> str:
    if not isinstance(value, str):
        raise BadValue(f"expected a currency code, got {show(value)}", "UNKNOWN_CURRENCY")
    code = value.strip().upper()
    if code not in ISO_CURRENCIES:
        raise BadValue(f"unknown currency code {show(value)}", "UNKNOWN_CURRENCY")
    return code


def _status(value: Any) -> InvoiceStatus:
    if isinstance(value, InvoiceStatus):
        return value
    text = to_str(value).strip().lower().replace(" ", "_").replace("-", "_")
    try:
        return InvoiceStatus(text)
    except ValueError:
        raise BadValue(
            f"status {show(value)} is not in the mapping's values map", "UNKNOWN_STATUS"
        ) from None


def builder(model: type[_M]) -> Callable[[dict[str, Any]], _M]:
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


def getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    """A reader of one CRM field path (`Owner.IsActive`) from a record's fields."""
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


def converter(
    canonical: str, crm_type: CrmType, spec: FieldSpec, zone: tzinfo
) -> Callable[[Any], Any]:
    """The CRM-to-canonical converter of one field: its type's parser behind its values map."""
    base: Callable[[Any], Any]
    if canonical in ("money", "decimal"):
        base = to_decimal
        if crm_type == "percent":

            def base(value: Any) -> Decimal:
                # CRM percent fields hold 0-100; canonical probabilities are 0-1.
                return to_decimal(value) / 100

        elif crm_type in ("string", "text", "picklist"):
            base = to_decimal
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
        base = to_str
    if not spec.values:
        return base
    table = {str(key): value for key, value in spec.values.items()}

    def mapped(value: Any) -> Any:
        key = value if isinstance(value, str) else to_str(value)
        if key in table:
            return base(table[key])
        return base(value)

    return mapped
