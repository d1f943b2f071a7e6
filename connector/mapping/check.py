"""Check a mapping against the CRM's live field metadata.

`check_mapping` answers "will this mapping work on this org?" before the first write: every
mapped field exists, has a compatible type and length, is writable where we write it, and the
picklist values we use exist. `schema_drift` keeps the errors that mean the CRM's schema changed.
The custom fields to create are planned in `plan.py`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from connector.errors import FatalCrmError, MappingError
from connector.mapping.compiled import FieldMapping
from connector.mapping.fields import CompiledField
from connector.mapping.lookup import Describe, resolve, written_values

# Re-exported: cli/commands/fields.py and the mapping tests import plan_fields from here.
from connector.mapping.plan import plan_fields as plan_fields
from connector.protocol import FieldDescription, ObjectDescription

# Below this a reasons field holds little more than the first reason.
MIN_REASONS_LENGTH = 255

# CRM type (mapping side) -> field families that can hold it.
_READ_FAMILIES: dict[str, frozenset[str]] = {
    "id": frozenset({"id", "reference", "string"}),
    "reference": frozenset({"reference", "id", "string"}),
    "string": frozenset({"string", "text", "picklist", "reference", "id", "other"}),
    "text": frozenset({"text", "string"}),
    "picklist": frozenset({"picklist", "string", "text"}),
    "integer": frozenset({"integer", "number"}),
    "number": frozenset({"number", "integer", "currency", "percent"}),
    "currency": frozenset({"currency", "number", "integer"}),
    "percent": frozenset({"percent", "number"}),
    "boolean": frozenset({"boolean"}),
    "date": frozenset({"date", "datetime"}),
    "datetime": frozenset({"datetime"}),
}
# Writes are stricter: a decimal into an integer field is rejected or silently rounded by the CRM.
_WRITE_FAMILIES: dict[str, frozenset[str]] = {
    **_READ_FAMILIES,
    "number": frozenset({"number", "currency"}),
    "currency": frozenset({"currency", "number"}),
    "date": frozenset({"date"}),
}
_TEXT_FAMILIES = frozenset({"string", "text", "picklist"})
_FAMILY_HINT = {
    "integer": "integer",
    "number": "number",
    "currency": "currency",
    "percent": "percent",
    "string": "string",
    "text": "text",
    "picklist": "picklist",
    "date": "date",
    "datetime": "datetime",
    "boolean": "boolean",
}


_GROUPS = (
    (
        frozenset({"money", "decimal", "integer"}),
        frozenset({"integer", "number", "currency", "percent"}),
    ),
    (
        frozenset({"string", "text", "label", "status", "id"}),
        frozenset({"string", "text", "picklist"}),
    ),
    (frozenset({"date", "datetime"}), frozenset({"date", "datetime"})),
)


def _same_group(canonical: str, family: str) -> bool:
    """Whether a `type` override can bridge this canonical type and CRM family (45.3 -> 45)."""
    return any(canonical in kinds and family in families for kinds, families in _GROUPS)


class MappingWarning(MappingError):
    """A mapping problem that does not stop a sync (the engine copes, but the admin should know)."""

    severity = "warning"


def _field_key(item: CompiledField) -> str:
    return f"objects.{item.kind}.fields.{item.name}"


def check_mapping(mapping: FieldMapping, describe: Describe) -> list[MappingError]:
    """Check every mapped field against the CRM's metadata; return all problems found.

    Args:
        mapping: a loaded mapping (shape and canonical names were checked at load).
        describe: the adapter's `describe(crm_object)`.

    Returns:
        Errors (the sync refuses to start) and MappingWarning instances (`severity == "warning"`),
        each naming the mapping file, the key, the CRM object and field, with close names.
    """
    problems: list[MappingError] = []
    for kind in ("account", "invoice", "task", "payment"):
        if not mapping.has_object(kind):
            continue
        compiled = mapping.fields(kind)
        if kind == "task" and not compiled:
            # The adapter owns task fields; only overridden ones are ours to check.
            continue
        crm_object = mapping.crm_object(kind)
        try:
            obj = describe(crm_object)
        except FatalCrmError as exc:
            problems.append(
                MappingError(
                    f"the CRM has no object {crm_object!r} or this user cannot see it ({exc.message})",
                    mapping_file=mapping.file_for(f"objects.{kind}.crm_object"),
                    key=f"objects.{kind}.crm_object",
                    crm_object=crm_object,
                    category="object",
                )
            )
            continue
        case_insensitive = obj.case_insensitive_names
        for item in compiled.values():
            if item.crm:
                problems.extend(_check_field(mapping, item, obj, case_insensitive))
        problems.extend(_check_filters(mapping, kind, obj, case_insensitive))
    if mapping.paid_date_source() is None:
        problems.append(payment_history_warning(mapping))
    return problems


NO_PAYMENT_HISTORY = "payment history not mapped"


def payment_history_warning(mapping: FieldMapping) -> MappingWarning:
    """The warning for a mapping with no paid-date source (the model then scores no payment
    behaviour: no late share, trend or thin-file reason that would blame the customer)."""
    return MappingWarning(
        f"{NO_PAYMENT_HISTORY}: invoices have no paid date, so payment behaviour (days late, "
        "late share, trend, settled invoices) cannot be scored; map "
        "objects.invoice.fields.paid_date to a paid-date field, or an [objects.payment] "
        "allocation object (as a billing preset does: `crm-risk mappings show` shows its keys)",
        mapping_file=mapping.source,
        key="objects.invoice.fields.paid_date",
        crm_object=mapping.crm_object("invoice"),
        category="missing",
    )


def _check_field(
    mapping: FieldMapping, item: CompiledField, obj: ObjectDescription, case_insensitive: bool
) -> list[MappingError]:
    key = _field_key(item)
    file = mapping.file_for(key)
    problems: list[MappingError] = []

    def problem(
        message: str, category: str, *, warning: bool = False, suggestions: Iterable[str] = ()
    ) -> None:
        cls = MappingWarning if warning else MappingError
        problems.append(
            cls(
                message,
                mapping_file=file,
                key=key,
                crm_object=obj.name,
                crm_field=item.crm,
                suggestions=list(suggestions),
                category=category,
            )
        )

    resolved = resolve(item.crm, obj, case_insensitive)
    if resolved is None:
        head = item.crm.partition(".")[0]
        names = list(obj.fields)
        # Prefer near-identical names (a typo); fall back to looser ones.
        close = difflib.get_close_matches(head, names, n=3, cutoff=0.8)
        close = close or difflib.get_close_matches(head, names, n=3, cutoff=0.6)
        if not close:
            close = [name for name in names if name.lower() == head.lower()]
        problem(
            "field not found (missing, or hidden from the integration user by its field permissions)",
            "missing",
            suggestions=close,
        )
        return problems
    desc = resolved.description
    if desc is None or resolved.via_relationship:
        # The leaf is on the related object (Owner.IsActive, Account_Name.id): only the
        # relationship itself is checked here.
        return problems
    writes = item.direction in ("write", "read_write")
    families = (_WRITE_FAMILIES if writes else _READ_FAMILIES)[item.crm_type]
    if item.spec.values and not writes:
        families = families | {"picklist", "string", "text"}
    if desc.family not in families:
        expected = ", ".join(sorted(families))
        hint = _FAMILY_HINT.get(desc.family) if _same_group(item.canonical, desc.family) else None
        tip = f'; if the CRM value is right, set type = "{hint}"' if hint else ""
        problem(
            f"type mismatch: {item.name} needs a field of type {expected}, "
            f"the CRM field is {desc.type} ({desc.family}){tip}",
            "type",
        )
        return problems
    if writes and not desc.updateable:
        problem(
            "read-only field mapped for writing (formula, system field, or no edit permission "
            "for the integration user)",
            "read_only",
        )
    if writes and desc.family in _TEXT_FAMILIES:
        problems.extend(_check_text_length(item, desc, file, key, obj.name))
    if desc.family == "picklist" and desc.picklist_values:
        problems.extend(_check_picklist(mapping, item, desc, file, key, obj.name, writes))
    return problems


def _check_text_length(
    item: CompiledField, desc: FieldDescription, file: str, key: str, crm_object: str
) -> list[MappingError]:
    out: list[MappingError] = []
    length, wanted = desc.length, item.spec.max_length

    def add(message: str, *, warning: bool = False) -> None:
        cls = MappingWarning if warning else MappingError
        out.append(
            cls(
                message,
                mapping_file=file,
                key=key,
                crm_object=crm_object,
                crm_field=item.crm,
                category="length",
            )
        )

    if length is None:
        return out
    if wanted is not None and length < wanted:
        add(
            f"text too short: the field holds {length} characters, the mapping writes up to "
            f"{wanted}; lengthen the field or set max_length = {length}"
        )
    elif item.name == "risk_reasons" and length < MIN_REASONS_LENGTH:
        add(
            f"text too short for the reasons: {length} characters (at least "
            f"{MIN_REASONS_LENGTH} recommended); most reasons will be cut",
            warning=True,
        )
    elif wanted is None and item.canonical == "text":
        add(
            f"no max_length: set max_length = {length} so long text is cut, not rejected",
            warning=True,
        )
    longest = max((len(value) for value in written_values(item)), default=0)
    if desc.family != "picklist" and longest > length:
        add(
            f"text too short: {item.name} values need {longest} characters, the field holds {length}"
        )
    return out


def _check_picklist(
    mapping: FieldMapping,
    item: CompiledField,
    desc: FieldDescription,
    file: str,
    key: str,
    crm_object: str,
    writes: bool,
) -> list[MappingError]:
    out: list[MappingError] = []
    allowed = set(desc.picklist_values)

    def add(message: str, *, warning: bool = False, suggestions: Iterable[str] = ()) -> None:
        cls = MappingWarning if warning else MappingError
        out.append(
            cls(
                message,
                mapping_file=file,
                key=key,
                crm_object=crm_object,
                crm_field=item.crm,
                suggestions=list(suggestions),
                category="picklist",
            )
        )

    if writes:
        absent = [value for value in written_values(item) if value not in allowed]
        if absent:
            listed = ", ".join(repr(value) for value in absent)
            add(
                f"picklist value missing: the connector writes {listed}; add them to the "
                "picklist or map them with values",
                suggestions=[
                    match
                    for value in absent
                    for match in difflib.get_close_matches(value, sorted(allowed), n=1)
                ],
            )
        return out
    for crm_value in item.spec.values or {}:
        if crm_value not in allowed:
            add(
                f"picklist value missing: values maps {crm_value!r}, which the picklist lacks",
                warning=True,
                suggestions=difflib.get_close_matches(crm_value, sorted(allowed), n=3),
            )
    if item.canonical == "status":
        unmapped = []
        for crm_value in desc.picklist_values:
            if crm_value in (item.spec.values or {}) or mapping.filters_out(
                item.kind, item.crm, crm_value
            ):
                continue
            if not item.accepts(crm_value):
                unmapped.append(crm_value)
        if unmapped:
            add(
                "picklist values without a canonical status (records with them are quarantined "
                f"unless a filter excludes them): {', '.join(unmapped)}",
                warning=True,
            )
    return out


def _check_filters(
    mapping: FieldMapping, kind: str, obj: ObjectDescription, case_insensitive: bool
) -> list[MappingError]:
    out: list[MappingError] = []
    spec = mapping.object_spec(kind)
    if spec is None:
        return out
    compiled = mapping.fields(kind)
    for rule_name, rule in (("exclude", spec.exclude), ("include", spec.include)):
        for filter_key, listed in rule.items():
            path = compiled[filter_key].crm if filter_key in compiled else filter_key
            key = f"objects.{kind}.{rule_name}.{filter_key}"
            file = mapping.file_for(key)
            resolved = resolve(path, obj, case_insensitive)
            if resolved is None:
                out.append(
                    MappingError(
                        "filter field not found",
                        mapping_file=file,
                        key=key,
                        crm_object=obj.name,
                        crm_field=path,
                        suggestions=difflib.get_close_matches(path, list(obj.fields), n=3),
                        category="missing",
                    )
                )
                continue
            desc = resolved.description
            if desc is None or desc.family != "picklist" or not desc.picklist_values:
                continue
            for value in listed:
                if str(value) not in desc.picklist_values:
                    out.append(
                        MappingWarning(
                            f"filter value {value!r} is not a picklist value",
                            mapping_file=file,
                            key=key,
                            crm_object=obj.name,
                            crm_field=path,
                            suggestions=difflib.get_close_matches(
                                str(value), list(desc.picklist_values), n=3
                            ),
                        )
                    )
    return out


# Problems that mean the CRM's schema no longer fits the mapping (as opposed to a value the CRM
# refuses, such as a picklist value it lacks): a run that meets one stops with exit 78.
SCHEMA_CATEGORIES = frozenset({"object", "missing", "type", "read_only"})


def schema_drift(
    mapping: FieldMapping, describe: Describe, crm_fields: Iterable[str] | None = None
) -> list[MappingError]:
    """The mapping errors that mean the CRM's schema changed, optionally for some CRM fields only.

    Args:
        mapping: the mapping the run uses.
        describe: the adapter's describe (callers cache it: this runs only when a call failed).
        crm_fields: CRM field names the CRM's answer named; None checks every mapped field.

    Returns:
        Errors of the categories object, missing, type and read_only.
    """
    wanted = {name.lower() for name in crm_fields} if crm_fields is not None else None
    found = []
    for problem in check_mapping(mapping, describe):
        if getattr(problem, "severity", "error") != "error":
            continue
        if problem.category not in SCHEMA_CATEGORIES:
            continue
        head = problem.crm_field.split(".", 1)[0].lower()
        if wanted is None or problem.category == "object" or head in wanted:
            found.append(problem)
    return found
