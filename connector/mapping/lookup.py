"""Where a mapped CRM path lands in the CRM's described fields, and what we write into labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from connector.mapping.fields import CompiledField
from connector.mapping.schema import CANONICAL_LABELS
from connector.protocol import FieldDescription, ObjectDescription

# The adapter's `describe(crm_object)`.
Describe = Callable[[str], ObjectDescription]


@dataclass(frozen=True)
class Resolved:
    """The described field a mapped path starts from."""

    description: FieldDescription | None
    # True when the path goes through a relationship: the leaf lives on another object.
    via_relationship: bool = False


def resolve(path: str, obj: ObjectDescription, case_insensitive: bool) -> Resolved | None:
    """The field a path names (or the reference field its relationship goes through), or None."""
    head, dot, _rest = path.partition(".")
    fields = obj.fields
    found = fields.get(head)
    if found is None and case_insensitive:
        lowered = {name.lower(): desc for name, desc in fields.items()}
        found = lowered.get(head.lower())
    if not dot:
        return Resolved(found) if found is not None else None
    if found is not None:
        return Resolved(found, via_relationship=True)
    # A relationship name the CRM gives a reference field (Owner for OwnerId).
    wanted = head.lower() if case_insensitive else head
    for desc in fields.values():
        name = desc.relationship.lower() if case_insensitive else desc.relationship
        if desc.relationship and name == wanted:
            return Resolved(desc, via_relationship=True)
    return None


def written_values(item: CompiledField) -> list[str]:
    """The CRM values the connector can write into a label field."""
    labels = CANONICAL_LABELS.get(item.name, ())
    return [str(item.reverse_values.get(label, label)) for label in labels]
