"""Canonical records shared by every part of the connector: accounts, invoices, assessments, writes."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ObjectKind = Literal["account", "invoice", "task", "payment"]
OBJECT_KINDS: tuple[ObjectKind, ...] = ("account", "invoice", "task", "payment")


class StrictModel(BaseModel):
    """Base for config and canonical models: unknown keys are errors and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _require_aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("datetime must carry a time zone")
    return value


class InvoiceStatus(enum.StrEnum):
    """Canonical invoice lifecycle; mappings translate each CRM's picklist to these."""

    OPEN = "open"
    PAID = "paid"
    PARTIALLY_PAID = "partially_paid"
    VOID = "void"
    DISPUTED = "disputed"
    WRITTEN_OFF = "written_off"


class Account(StrictModel):
    """A customer account as the connector sees it, whatever the CRM calls its fields."""

    crm_id: str
    name: str = ""
    owner_id: str | None = None
    owner_active: bool | None = None
    industry: str | None = None
    country: str | None = None
    currency: str | None = None
    annual_revenue: Decimal | None = None
    employees: int | None = None
    created_at: datetime | None = None
    payment_terms_days: int | None = None
    current_credit_limit: Decimal | None = None
    # A limit set by a credit expert by hand: the recommendation never exceeds it.
    manual_credit_limit: Decimal | None = None
    agency_limit: Decimal | None = None
    net_worth: Decimal | None = None
    external_score: Decimal | None = None
    external_score_date: date | None = None
    external_score_source: str | None = None
    insured_limit: Decimal | None = None
    insolvency_flag: bool = False
    # Freezes every write to the account except score and reasons.
    manual_override: bool = False
    # Altman Z'' inputs, all in the account currency; any missing -> factor unavailable.
    working_capital: Decimal | None = None
    retained_earnings: Decimal | None = None
    ebit: Decimal | None = None
    book_equity: Decimal | None = None
    total_assets: Decimal | None = None
    total_liabilities: Decimal | None = None
    modified_at: datetime | None = None
    deleted: bool = False

    _aware = field_validator("created_at", "modified_at")(_require_aware)


class Invoice(StrictModel):
    """One receivable: amounts in the invoice currency, dates as calendar dates."""

    crm_id: str
    account_id: str
    number: str = ""
    issue_date: date
    due_date: date
    amount: Decimal
    open_amount: Decimal
    currency: str | None = None
    exchange_rate: Decimal | None = None
    paid_date: date | None = None
    status: InvoiceStatus = InvoiceStatus.OPEN
    disputed_since: date | None = None
    modified_at: datetime | None = None
    deleted: bool = False

    _aware = field_validator("modified_at")(_require_aware)


@dataclass(frozen=True)
class PaymentEntry:
    """One application of a payment to an invoice (Salesforce Billing's payment allocation).

    An invoice has no paid date of its own in such CRMs: it is paid when its balance reaches
    zero, on the date of the payment that settled it.
    """

    crm_id: str
    invoice_id: str
    payment_id: str
    amount: Decimal
    paid_on: date | None
    # An unallocation record: it takes back (part of) an earlier allocation of the payment.
    reversal: bool = False
    # An allocation flagged as taken back later.
    reversed: bool = False


class Reason(StrictModel):
    """One reason code with its sentence and the points it contributed."""

    code: str
    text: str
    points: float = 0.0


class FactorContribution(StrictModel):
    """How one factor moved the score: raw value, points 0-100, weight and weighted contribution."""

    name: str
    value: float | None
    points: float | None
    weight: float
    contribution: float
    available: bool = True
    detail: str = ""


class RiskAssessment(StrictModel):
    """The explainable result of scoring one account at `as_of`."""

    account_id: str
    as_of: date
    score: float = Field(ge=0, le=100)
    band: str
    level: str
    confidence: float = Field(ge=0, le=1)
    probability_late: float | None = None
    recommended_credit_limit: Decimal | None = None
    reasons: tuple[Reason, ...] = ()
    factors: tuple[FactorContribution, ...] = ()
    hard_rules: tuple[str, ...] = ()
    features: dict[str, Any] = Field(default_factory=dict)
    limit_derivation: tuple[str, ...] = ()
    model_version: str = "v1"


class AccountUpdate(StrictModel):
    """Canonical field values to write onto one CRM account, with the cause for the audit log."""

    account_id: str
    fields: dict[str, Any]
    previous: dict[str, Any] = Field(default_factory=dict)
    cause: str = ""


class TaskPriority(enum.StrEnum):
    """Canonical task priority; adapters translate to the CRM's picklist."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class TaskAction(StrictModel):
    """A follow-up task to create, escalate, comment on or complete in the CRM."""

    action: Literal["create", "escalate", "comment", "complete"]
    account_id: str
    rule: str
    dedupe_key: str
    subject: str = ""
    description: str = ""
    owner_id: str | None = None
    due_date: date | None = None
    priority: TaskPriority = TaskPriority.NORMAL
    crm_task_id: str | None = None
    # Why, for the audit log (defaults to the rule).
    cause: str = ""
    # True when no create was ever sent for this dedupe key (the engine's intent log says so):
    # an adapter may then skip its look-up-before-create, which costs API calls.
    first_attempt: bool = False


class RawRecord(StrictModel):
    """A record as the CRM returned it: CRM field names to JSON-like values."""

    crm_id: str
    modified_at: datetime
    fields: dict[str, Any] = Field(default_factory=dict)
    deleted: bool = False

    _aware = field_validator("modified_at")(_require_aware)


class RecordChange(StrictModel):
    """CRM field values to write onto one record (what an adapter receives)."""

    crm_id: str
    fields: dict[str, Any]


WriteStatus = Literal["ok", "rejected", "unknown"]
# Why the CRM refused a record, in the core's words (the adapter reads its CRM's codes):
# owner_unavailable: the owner is inactive or cannot own it (a task goes to the fallback owner);
# locked: the record was locked by another transaction (retried); validation: a value or field
# refused; "" when the adapter cannot tell or the write did not fail.
WriteReason = Literal["", "owner_unavailable", "locked", "validation"]


class WriteResult(StrictModel):
    """The CRM's answer for one record: only `ok` counts as written."""

    crm_id: str | None
    status: WriteStatus
    error_code: str = ""
    reason: WriteReason = ""
    message: str = ""
    fields: tuple[str, ...] = ()
    retriable: bool = False
    key: str = ""  # dedupe key for task creates, so results match requests without positions
    # A task create that found the task already in the CRM (an earlier run or another store
    # made it): adopted, not created.
    existed: bool = False


class TaskState(StrictModel):
    """A task found in the CRM by its dedupe marker."""

    crm_task_id: str
    dedupe_key: str
    is_closed: bool
    owner_id: str | None = None
    priority: TaskPriority | None = None


@dataclass(frozen=True)
class DatedRate:
    """A rate valid from `start` (inclusive) to `next_start` (exclusive; None = still valid)."""

    currency: str
    start: date
    next_start: date | None
    rate: Decimal


@dataclass(frozen=True)
class CrmRates:
    """What a CRM says about currencies: its reference (corporate/home) currency and rates.

    `rates` and `dated` are units of each currency per one unit of `reference` (Salesforce's
    ConversionRate, Zoho's exchange_rate), so the reference amount is `amount / rate`.
    """

    reference: str | None
    rates: Mapping[str, Decimal] = field(default_factory=dict)
    dated: Sequence[DatedRate] = ()
