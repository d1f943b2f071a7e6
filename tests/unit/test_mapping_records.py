"""Bad CRM input: to_invoice and to_account raise RecordError with a reason, never anything else."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import RecordError
from connector.mapping import load_mapping
from connector.models import Account, Invoice, RawRecord

T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
ZOHO = load_mapping("zoho.inventory")
BILLING = load_mapping("salesforce.billing")

GOOD: dict[str, Any] = {
    "id": "9001",
    "Invoice_Number": "INV-1",
    "Account_Name": {"id": "100", "name": "Acme"},
    "Invoice_Date": "2026-08-01",
    "Due_Date": "2026-08-31",
    "Grand_Total": 1000,
    "Balance": 400,
    "Currency": "EUR",
    "Exchange_Rate": 1,
    "Status": "Partially Paid",
    "Modified_Time": "2026-09-01T10:00:00+02:00",
}


def zoho_invoice(**changes: Any) -> RawRecord:
    fields = {**GOOD, **changes}
    return RawRecord(crm_id="9001", modified_at=T0, fields={k: v for k, v in fields.items()})


def test_the_good_invoice_converts() -> None:
    invoice = ZOHO.to_invoice(zoho_invoice())
    assert invoice is not None and invoice.open_amount == Decimal(400)


CASES = [
    ("missing_issue_date", {"Invoice_Date": None}, "MISSING_FIELD", "issue_date"),
    ("missing_due_date", {"Due_Date": ""}, "MISSING_FIELD", "due_date"),
    ("missing_account", {"Account_Name": None}, "MISSING_FIELD", "account_id"),
    ("lookup_without_id", {"Account_Name": {"name": "Acme"}}, "MISSING_FIELD", "account_id"),
    ("malformed_date", {"Invoice_Date": "31/08/2026"}, "INVALID_FIELD_VALUE", "issue_date"),
    ("impossible_date", {"Due_Date": "2026-02-30"}, "INVALID_FIELD_VALUE", "due_date"),
    ("date_as_number", {"Due_Date": 20260831}, "INVALID_FIELD_VALUE", "due_date"),
    ("due_before_issue", {"Due_Date": "2026-07-01"}, "DUE_BEFORE_ISSUE", "due_date"),
    ("negative_amount", {"Grand_Total": -5}, "NEGATIVE_AMOUNT", "amount"),
    ("huge_amount", {"Grand_Total": "1e15"}, "AMOUNT_TOO_LARGE", "amount"),
    ("nan_amount", {"Grand_Total": "NaN"}, "INVALID_FIELD_VALUE", "amount"),
    ("infinite_amount", {"Grand_Total": float("inf")}, "INVALID_FIELD_VALUE", "amount"),
    ("text_amount", {"Grand_Total": "a lot"}, "INVALID_FIELD_VALUE", "amount"),
    ("boolean_amount", {"Grand_Total": True}, "INVALID_FIELD_VALUE", "amount"),
    ("negative_open", {"Balance": -1}, "NEGATIVE_AMOUNT", "open_amount"),
    ("open_above_total", {"Balance": 1000.5}, "OPEN_ABOVE_TOTAL", "open_amount"),
    ("unknown_currency", {"Currency": "EUX"}, "UNKNOWN_CURRENCY", "currency"),
    ("currency_as_number", {"Currency": 978}, "UNKNOWN_CURRENCY", "currency"),
    ("unknown_status", {"Status": "Haunted"}, "UNKNOWN_STATUS", "status"),
    ("zero_exchange_rate", {"Exchange_Rate": 0}, "INVALID_FIELD_VALUE", "exchange_rate"),
    ("nested_junk", {"Grand_Total": {"value": 1}}, "INVALID_FIELD_VALUE", "amount"),
    ("list_date", {"Invoice_Date": ["2026-08-01"]}, "INVALID_FIELD_VALUE", "issue_date"),
    (
        "year_one_shifted",
        {"Invoice_Date": "0001-01-01T00:00:00+05:00"},
        "INVALID_FIELD_VALUE",
        "issue_date",
    ),
    ("status_as_list", {"Status": []}, "INVALID_FIELD_VALUE", "status"),
]


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_invoice_raises_record_error_with_a_reason(
    changes: dict[str, Any], code: str, field: str
) -> None:
    with pytest.raises(RecordError) as raised:
        ZOHO.to_invoice(zoho_invoice(**changes))
    error = raised.value
    assert error.record_id == "9001"
    assert error.code == code
    assert field in str(error)
    assert error.fields  # the CRM field, for the quarantine list


def test_null_everywhere_is_a_record_error() -> None:
    record = RawRecord(crm_id="X", modified_at=T0, fields=dict.fromkeys(GOOD))
    with pytest.raises(RecordError) as raised:
        ZOHO.to_invoice(record)
    assert raised.value.code == "MISSING_FIELD"


def test_no_fields_at_all_is_a_record_error() -> None:
    with pytest.raises(RecordError):
        BILLING.to_invoice(
            RawRecord(crm_id="X", modified_at=T0, fields={"blng__InvoiceStatus__c": "Posted"})
        )


def test_unicode_and_very_long_names_are_kept() -> None:
    number = "Rechnung-Ünïcødé-😀-" + "x" * 10_000
    invoice = ZOHO.to_invoice(zoho_invoice(Invoice_Number=number))
    assert invoice is not None and invoice.number == number
    account = ZOHO.to_account(
        RawRecord(crm_id="1", modified_at=T0, fields={"Account_Name": "株式会社" * 1000})
    )
    assert account.name == "株式会社" * 1000


def test_bad_account_values_raise_record_error() -> None:
    for fields, name in [
        ({"Employees": "many"}, "employees"),
        ({"Credit_Limit": -10}, "current_credit_limit"),
        ({"Manual_Override": "perhaps"}, "manual_override"),
        ({"Created_Time": "yesterday"}, "created_at"),
        ({"Currency": "Euro"}, "currency"),
    ]:
        with pytest.raises(RecordError) as raised:
            ZOHO.to_account(RawRecord(crm_id="A", modified_at=T0, fields=fields))
        assert name in str(raised.value) and raised.value.record_id == "A"


def convert(call: Callable[[], Any]) -> Any:
    """The result, or the RecordError raised; any other exception fails the test."""
    try:
        return call()
    except RecordError as error:
        return error


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        ["2026-08-01", "2026-08-31T10:00:00Z", "EUR", "Paid", "1e400", "-0", "", "Draft"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(GOOD)), JSONISH, max_size=len(GOOD)))
def test_any_json_input_gives_an_invoice_none_or_record_error(changes: dict[str, Any]) -> None:
    outcome = convert(lambda: ZOHO.to_invoice(zoho_invoice(**changes)))
    if isinstance(outcome, RecordError):
        assert outcome.record_id == "9001" and str(outcome)
        return
    invoice = outcome
    if invoice is not None:
        # What passes is a valid canonical invoice.
        assert Invoice.model_validate(invoice.model_dump()) == invoice
        assert invoice.due_date >= invoice.issue_date
        assert Decimal(0) <= invoice.open_amount <= invoice.amount + Decimal("0.01")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["Account_Name", "Owner", "Currency", "Annual_Revenue", "Employees", "Created_Time",
             "Credit_Limit", "Manual_Override", "Payment_Terms_Days", "External_Score"]
        ),
        JSONISH,
    )
)  # fmt: skip
def test_any_json_input_gives_an_account_or_record_error(fields: dict[str, Any]) -> None:
    account = convert(lambda: ZOHO.to_account(RawRecord(crm_id="A", modified_at=T0, fields=fields)))
    if isinstance(account, RecordError):
        assert account.record_id == "A"
        return
    assert Account.model_validate(account.model_dump()) == account
