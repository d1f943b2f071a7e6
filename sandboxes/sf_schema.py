"""Metadata types of the Salesforce sandbox org (FieldDef, SObject), its picklist values and Salesforce-style record ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandboxes.seed import INDUSTRIES as SEED_INDUSTRIES
from sandboxes.seed import RATES_PER_EUR

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id_suffix(id15: str) -> str:
    """The 3-character case-safe checksum Salesforce appends to a 15-character id."""
    out = []
    for chunk in range(3):
        bits = 0
        for pos, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << pos
        out.append(_SUFFIX[bits])
    return "".join(out)


def make_id(prefix: str, number: int) -> str:
    """An 18-character id: key prefix, pod `5g0`, a base-62 counter and the checksum."""
    digits = []
    for _ in range(9):
        number, rem = divmod(number, 62)
        digits.append(_B62[rem])
    id15 = prefix + "5g0" + "".join(reversed(digits))
    return id15 + id_suffix(id15)


def to_id18(value: str) -> str | None:
    """Normalise a 15- or 18-character id to 18 characters; None when it is not id-shaped."""
    if len(value) == 18 and value.isalnum():
        return value[:15] + id_suffix(value[:15])
    if len(value) == 15 and value.isalnum():
        return value + id_suffix(value)
    return None


@dataclass(frozen=True)
class FieldDef:
    """One field as describe() shows it."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    updateable: bool = True
    createable: bool = True
    nillable: bool = True
    custom: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    external_id: bool = False
    calculated: bool = False
    unique: bool = False
    default: Any = None

    def describe(self) -> dict[str, Any]:
        """The describe() entry of this field."""
        return {
            "name": self.name,
            "label": self.label or self.name.replace("__c", "").replace("_", " "),
            "type": self.type,
            "length": self.length,
            "byteLength": self.length * 3,
            "precision": self.precision,
            "scale": self.scale,
            "digits": self.digits,
            "updateable": self.updateable,
            "createable": self.createable,
            "nillable": self.nillable,
            "custom": self.custom,
            "calculated": self.calculated,
            "autoNumber": False,
            "externalId": self.external_id,
            "unique": self.unique,
            "idLookup": self.name == "Id" or self.external_id,
            "filterable": True,
            "sortable": self.type not in ("textarea",),
            "defaultValue": self.default,
            "defaultedOnCreate": self.default is not None,
            "restrictedPicklist": self.restricted,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist
            ],
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
        }


_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}

STRING_TYPES = frozenset(
    {"string", "textarea", "picklist", "combobox", "email", "phone", "url", "id", "reference"}
)
NUMBER_TYPES = frozenset({"double", "currency", "percent", "int"})


@dataclass
class SObject:
    """An object of the org with its fields, indexed case-insensitively."""

    name: str
    label: str
    key_prefix: str
    custom: bool
    fields: list[FieldDef]
    by_lower: dict[str, FieldDef] = field(init=False)
    position: dict[str, int] = field(init=False)
    relationships: dict[str, FieldDef] = field(init=False)

    def __post_init__(self) -> None:
        self.by_lower = {f.name.lower(): f for f in self.fields}
        self.position = {f.name: i for i, f in enumerate(self.fields)}
        self.relationships = {
            f.relationship_name.lower(): f for f in self.fields if f.relationship_name
        }

    def field(self, name: str) -> FieldDef | None:
        """The field of this name, any case."""
        return self.by_lower.get(name.lower())


# The org's currencies are the seed's (its rates per EUR); picklists list industries by name.
CURRENCIES = tuple(RATES_PER_EUR)
INDUSTRIES = tuple(sorted(SEED_INDUSTRIES))
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
CLOSED_TASK_STATUSES = frozenset({"Completed"})
INVOICE_STATUSES = (
    "Open",
    "Paid",
    "Partially Paid",
    "Disputed",
    "Written Off",
    "Void",
    "Draft",
    "Cancelled",
)
BLNG_STATUSES = (
    "Cancelled",
    "Draft",
    "Error",
    "Initiated",
    "Post In progress",
    "Posted",
    "Rebilled",
)
