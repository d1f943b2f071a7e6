"""Plan the custom fields a mapping names that the CRM lacks, with a type and size for each."""

from __future__ import annotations

import re
from typing import Any

from connector.errors import FatalCrmError
from connector.mapping.compiled import FieldMapping
from connector.mapping.fields import CompiledField
from connector.mapping.lookup import Describe, resolve, written_values
from connector.protocol import MissingField, ObjectDescription

# Digits for numbers the connector writes: the score has one decimal (0-100.0).
_NUMBER_SIZES: dict[str, tuple[int, int]] = {
    "risk_score": (4, 1),
    "probability_late": (5, 4),
    "external_score": (6, 2),
    "exchange_rate": (12, 6),
    "payment_terms_days": (4, 0),
    "employees": (8, 0),
}


def _creatable(obj: ObjectDescription, path: str) -> bool:
    if "." in path:
        return False
    # The CRM says which names we may create (only unmanaged custom fields, for instance).
    pattern = obj.creatable_field_pattern
    return not pattern or re.fullmatch(pattern, path) is not None


def _label(name: str) -> str:
    # A CRM's custom-field suffix (`__c`) is no part of what a person reads.
    return re.sub(r"__[a-z]$", "", name).replace("_", " ").strip()


def _missing_field(item: CompiledField, crm_object: str, crm: str) -> MissingField:
    common: dict[str, Any] = {
        "crm": crm,
        "crm_object": crm_object,
        "field": item.crm,
        "canonical": item.name,
        "label": _label(item.crm),
        "writable": item.direction in ("write", "read_write"),
        "description": f"crm-risk-connector: {item.name}",
    }
    crm_type = item.crm_type
    if crm_type == "picklist":
        values = written_values(item) or [str(key) for key in item.spec.values or {}]
        if values:
            return MissingField(
                **common, field_type="Picklist", picklist_values=tuple(dict.fromkeys(values))
            )
        return MissingField(**common, field_type="Text", length=255)
    if crm_type == "text":
        wanted = item.spec.max_length or 32768
        if wanted <= 255:
            return MissingField(**common, field_type="Text", length=wanted)
        return MissingField(**common, field_type="LongTextArea", length=max(wanted, 256))
    if crm_type in ("string", "id", "reference"):
        return MissingField(**common, field_type="Text", length=item.spec.max_length or 255)
    if crm_type == "currency":
        return MissingField(**common, field_type="Currency", precision=16, scale=2)
    if crm_type == "percent":
        return MissingField(**common, field_type="Percent", precision=5, scale=2)
    if crm_type in ("number", "integer"):
        precision, scale = _NUMBER_SIZES.get(item.name, (18, 0 if crm_type == "integer" else 2))
        return MissingField(**common, field_type="Number", precision=precision, scale=scale)
    if crm_type == "boolean":
        return MissingField(**common, field_type="Checkbox")
    if crm_type == "date":
        return MissingField(**common, field_type="Date")
    return MissingField(**common, field_type="DateTime")


def plan_fields(mapping: FieldMapping, describe: Describe) -> list[MissingField]:
    """List the custom fields the mapping names that the CRM lacks (objects must exist).

    Returns:
        One MissingField per field to create, with a type and size fit for what the connector
        reads or writes there.
    """
    missing: list[MissingField] = []
    for kind in ("account", "invoice"):
        crm_object = mapping.crm_object(kind)
        try:
            obj = describe(crm_object)
        except FatalCrmError:
            continue
        for item in mapping.fields(kind).values():
            if not item.crm or not _creatable(obj, item.crm):
                continue
            if resolve(item.crm, obj, obj.case_insensitive_names) is None:
                missing.append(_missing_field(item, crm_object, mapping.crm))
    return missing
