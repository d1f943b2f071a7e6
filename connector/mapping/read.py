"""CRM records to canonical accounts, invoices and payments, with the plausibility rules applied."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connector.errors import RecordError
from connector.mapping.convert import BadValue, builder, show, to_str
from connector.mapping.fields import CompiledField
from connector.mapping.schema import ObjectSpec, ValidationRules
from connector.models import Account, Invoice, InvoiceStatus, PaymentEntry, RawRecord

# Cents of tolerance when comparing the open amount with the total (CRM rounding of tax lines).
OPEN_TOLERANCE = Decimal("0.01")
_SETTLED = frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.WRITTEN_OFF})
_build_account = builder(Account)
_build_invoice = builder(Invoice)

# A static filter: reads the CRM value, the listed values, and whether listed means "drop".
Filter = tuple[Callable[[Mapping[str, Any]], Any], frozenset[str], bool]
# Makes the RecordError of one invoice: (canonical field, reason, code).
_Fail = Callable[[str, str, str], RecordError]


class RecordReader:
    """The read side of a FieldMapping: what it compiled, applied to one CRM record at a time."""

    rules: ValidationRules
    _objects: dict[str, ObjectSpec]
    _fields: dict[str, dict[str, CompiledField]]
    _filters: dict[str, list[Filter]]
    _filter_paths: dict[str, list[str]]
    _account_readers: list[CompiledField]
    _invoice_readers: list[CompiledField]

    def _excluded(self, kind: str, fields: Mapping[str, Any]) -> bool:
        for get, listed, negate in self._filters[kind]:
            value = get(fields)
            present = isinstance(value, str | int | float) and to_str(value) in listed
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

    def _read_values(self, raw: RawRecord, readers: Iterable[CompiledField]) -> dict[str, Any]:
        """The canonical values of a record's mapped fields, empty ones left out.

        Raises:
            RecordError: the first value that does not convert, naming its field.
        """
        fields = raw.fields
        values: dict[str, Any] = {}
        for item in readers:
            try:
                value = item.read(fields)
            except BadValue as exc:
                raise self._record_error(raw, item, exc) from None
            if value is not None:
                values[item.name] = value
        return values

    def _record_error(self, raw: RawRecord, item: CompiledField, exc: BadValue) -> RecordError:
        where = f"{item.name} ({item.crm})" if item.crm else item.name
        value = item.get(raw.fields) if item.crm else item.static
        return RecordError(
            f"{where}: {exc.reason}",
            record_id=raw.crm_id,
            code=exc.code,
            fields=[item.crm or item.name],
            value=show(value),
        )

    def record_label(self, kind: str, raw: RawRecord) -> str:
        """What a person calls the record (account name, invoice number), or "" when unreadable."""
        item = self._fields.get(kind, {}).get("name" if kind == "account" else "number")
        if item is None:
            return ""
        try:
            value = item.read(raw.fields)
        except BadValue:
            return ""
        return "" if value is None else str(value)[:200]

    def invoice_account_id(self, raw: RawRecord) -> str | None:
        """The account an invoice record names, even when the rest of it is invalid."""
        item = self._fields["invoice"].get("account_id")
        if item is None:
            return None
        try:
            value = item.read(raw.fields)
        except BadValue:
            return None
        return None if value is None else str(value)

    def to_account(self, raw: RawRecord) -> Account:
        """Convert a CRM account record; raises RecordError (record id, field, reason) on bad input."""
        values = self._read_values(raw, self._account_readers)
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
                    BadValue(
                        f"amount out of range: {show(amount)} (0 to [validation] max_amount "
                        f"{rules.max_amount:,.0f})",
                        "AMOUNT_OUT_OF_RANGE",
                    ),
                )
        terms = values.get("payment_terms_days")
        if terms is not None and not rules.payment_terms_min <= terms <= rules.payment_terms_max:
            raise self._record_error(
                raw,
                self._fields["account"]["payment_terms_days"],
                BadValue(
                    f"payment terms of {terms} days are outside [validation] payment_terms_min "
                    f"{rules.payment_terms_min} to payment_terms_max {rules.payment_terms_max}",
                    "PAYMENT_TERMS_OUT_OF_RANGE",
                ),
            )
        self._check_account_dates(raw, values)
        values["deleted"] = raw.deleted
        return _build_account(values)

    def _check_account_dates(self, raw: RawRecord, values: dict[str, Any]) -> None:
        """Check the created and external-score dates against the floor and the record's age.

        Not before `created_floor`, not after the record's last change by more than
        `max_days_ahead` (a date a record cannot have been given yet).
        """
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
                    BadValue(
                        f"{day.isoformat()} is before [validation] created_floor "
                        f"{rules.created_floor.isoformat()}",
                        "DATE_BEFORE_FLOOR",
                    ),
                )
            if (day - edited).days > rules.max_days_ahead:
                raise self._record_error(
                    raw,
                    item,
                    BadValue(
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
        values = self._read_values(raw, self._fields["payment"].values())
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
        if self._filters["invoice"] and self._excluded("invoice", raw.fields):
            return None
        values = self._read_values(raw, self._invoice_readers)
        if settled_on is not None and "paid_date" not in values:
            values["paid_date"] = settled_on
        record_id = raw.crm_id
        fail = _invoice_failure(record_id, self._fields["invoice"], values)
        for name in ("account_id", "issue_date", "due_date", "amount"):
            if name not in values:
                raise fail(name, "missing", "MISSING_FIELD")
        self._check_invoice_dates(raw, values, fail)
        self._check_invoice_amounts(values, fail)
        values["crm_id"] = values.get("crm_id") or record_id
        values.setdefault("modified_at", raw.modified_at)
        values["deleted"] = raw.deleted
        return _build_invoice(values)

    def _check_invoice_dates(self, raw: RawRecord, values: dict[str, Any], fail: _Fail) -> None:
        """Due after issue, no date before the floor or too far ahead, paid after issue."""
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

    def _check_invoice_amounts(self, values: dict[str, Any], fail: _Fail) -> None:
        """Amounts in range and the open amount within the total; fills status and open amount."""
        rules = self.rules
        amount: Decimal = values["amount"]
        if amount < 0:
            raise fail("amount", f"negative amount {amount}", "NEGATIVE_AMOUNT")
        if amount > rules.max_amount:
            raise fail(
                "amount",
                f"amount {show(amount)} above [validation] max_amount {rules.max_amount:,.0f}",
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
                "exchange_rate", f"exchange rate {show(rate)} out of range", "INVALID_FIELD_VALUE"
            )


def _invoice_failure(
    record_id: str, fields_by_name: Mapping[str, CompiledField], values: Mapping[str, Any]
) -> _Fail:
    """A RecordError maker naming the invoice, the field (canonical and CRM) and its value.

    It reads `values` when it is called, so a failure names the value as checked.
    """

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

    return fail
