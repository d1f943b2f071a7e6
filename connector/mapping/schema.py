"""What a mapping file may say: the canonical fields and their types, and the file's models."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field

from connector.models import ObjectKind, StrictModel

# Amounts above this are almost certainly unit or parsing mistakes (cents read as units, a phone
# number in an amount field); the record is quarantined rather than skewing a portfolio.
MAX_AMOUNT = Decimal("1e12")

Direction = Literal["read", "write", "read_write"]
OnNull = Literal["skip", "clear"]
WriteMode = Literal["always", "if_empty", "respect_manual"]
# How the CRM stores a value; defaults to the canonical field's own type.
CrmType = Literal[
    "string", "text", "picklist", "integer", "number", "currency", "percent", "boolean", "date",
    "datetime", "id", "reference",
]  # fmt: skip

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
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
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
