"""The Salesforce sandbox org's objects and their fields, one builder per object; build_schema() gathers them.

Field choices (documented for mapping authors): `Risk_Score__c` is Number(5,1) so 42.5 round-trips;
`Risk_Reasons__c` is Long Text Area(32768); `Risk_Rating__c` (A-E) and `Risk_Level__c`
(Low/Medium/High/Critical) are restricted picklists; `blng__TotalAmount__c`, `blng__Balance__c`
and `blng__PaymentStatus__c` are calculated (read-only) as in Salesforce Billing.
"""

from __future__ import annotations

from sandboxes.sf_schema import (
    BLNG_STATUSES,
    CURRENCIES,
    INDUSTRIES,
    INVOICE_STATUSES,
    TASK_STATUSES,
    FieldDef,
    SObject,
)


def _system() -> list[FieldDef]:
    return [
        FieldDef("Id", "id", "Record ID", length=18, updateable=False, createable=False),
        FieldDef("IsDeleted", "boolean", "Deleted", updateable=False, createable=False),
        FieldDef("CreatedDate", "datetime", "Created Date", updateable=False, createable=False),
        FieldDef(
            "LastModifiedDate", "datetime", "Last Modified Date", updateable=False, createable=False
        ),
        FieldDef(
            "SystemModstamp", "datetime", "System Modstamp", updateable=False, createable=False
        ),
        FieldDef(
            "CreatedById",
            "reference",
            "Created By ID",
            length=18,
            reference_to=("User",),
            relationship_name="CreatedBy",
            updateable=False,
            createable=False,
        ),
        FieldDef(
            "LastModifiedById",
            "reference",
            "Last Modified By ID",
            length=18,
            reference_to=("User",),
            relationship_name="LastModifiedBy",
            updateable=False,
            createable=False,
        ),
    ]


def _record_currency(label: str = "Currency") -> FieldDef:
    """`CurrencyIsoCode` of a multi-currency org: each record's own currency, EUR unless set."""
    return FieldDef(
        "CurrencyIsoCode",
        "picklist",
        label,
        length=3,
        picklist=CURRENCIES,
        restricted=True,
        default="EUR",
    )


def _billing_head(name_label: str, *, name_updateable: bool = True) -> list[FieldDef]:
    """The fields every Billing object starts with: system fields, Name and its currency."""
    return [
        *_system(),
        FieldDef("Name", "string", name_label, length=80, updateable=name_updateable),
        _record_currency(),
    ]


def _required_lookup(name: str, label: str, target: str) -> FieldDef:
    """A custom master lookup `X__c` to `target`, traversed as `X__r` in SOQL."""
    return FieldDef(
        name,
        "reference",
        label,
        length=18,
        custom=True,
        reference_to=(target,),
        relationship_name=name.removesuffix("__c") + "__r",
        nillable=False,
    )


def _formula(
    name: str, type_: str, label: str, *, length: int = 0, precision: int = 0, scale: int = 0
) -> FieldDef:
    """A custom formula or roll-up field: the CRM computes it, so it is never written."""
    return FieldDef(
        name,
        type_,
        label,
        length=length,
        precision=precision,
        scale=scale,
        custom=True,
        calculated=True,
        updateable=False,
        createable=False,
    )


def _custom_picklist(
    name: str, label: str, values: tuple[str, ...], default: str | None = None
) -> FieldDef:
    """A custom restricted picklist: the CRM refuses a value outside `values`."""
    return FieldDef(
        name,
        "picklist",
        label,
        length=255,
        picklist=values,
        restricted=True,
        custom=True,
        default=default,
    )


_BLNG_AMOUNT = FieldDef("blng__Amount__c", "currency", "Amount", precision=18, scale=2, custom=True)


def _iso_code() -> FieldDef:
    """`IsoCode` of the currency tables: one of the org's currencies."""
    return FieldDef(
        "IsoCode",
        "picklist",
        "Currency ISO Code",
        length=40,
        picklist=CURRENCIES,
        restricted=True,
    )


def _user() -> SObject:
    return SObject(
        "User",
        "User",
        "005",
        False,
        [
            *_system(),
            FieldDef("Name", "string", "Full Name", length=121, updateable=False),
            FieldDef("Username", "string", length=80, updateable=False),
            FieldDef("Email", "email", length=128, updateable=False),
            FieldDef("IsActive", "boolean", "Active", updateable=False),
        ],
    )


def _account() -> SObject:
    return SObject(
        "Account",
        "Account",
        "001",
        False,
        [
            *_system(),
            FieldDef("Name", "string", "Account Name", length=255, nillable=False),
            FieldDef(
                "OwnerId",
                "reference",
                "Owner ID",
                length=18,
                reference_to=("User",),
                relationship_name="Owner",
                nillable=False,
            ),
            FieldDef("Industry", "picklist", length=255, picklist=INDUSTRIES),
            FieldDef("BillingCountry", "string", "Billing Country", length=80),
            FieldDef("AnnualRevenue", "currency", "Annual Revenue", precision=18, scale=0),
            FieldDef("NumberOfEmployees", "int", "Employees", digits=8),
            _record_currency("Account Currency"),
            FieldDef("Payment_Terms_Days__c", "double", precision=3, scale=0, custom=True),
            FieldDef("Credit_Limit__c", "currency", precision=16, scale=2, custom=True),
            FieldDef("Recommended_Credit_Limit__c", "currency", precision=16, scale=2, custom=True),
            FieldDef("Credit_Limit_Basis__c", "currency", precision=16, scale=2, custom=True),
            FieldDef("Risk_Score__c", "double", precision=5, scale=1, custom=True),
            FieldDef(
                "Risk_Rating__c",
                "picklist",
                length=255,
                picklist=("A", "B", "C", "D", "E"),
                restricted=True,
                custom=True,
            ),
            FieldDef(
                "Risk_Level__c",
                "picklist",
                length=255,
                picklist=("Low", "Medium", "High", "Critical"),
                restricted=True,
                custom=True,
            ),
            FieldDef("Risk_Reasons__c", "textarea", length=32768, custom=True),
            FieldDef("Risk_Reviewed_At__c", "datetime", custom=True),
            FieldDef("Risk_Model_Version__c", "string", length=20, custom=True),
            FieldDef("External_Score__c", "double", precision=3, scale=0, custom=True),
            FieldDef("Insured_Limit__c", "currency", precision=16, scale=2, custom=True),
            FieldDef("Credit_Hold__c", "boolean", custom=True, nillable=False, default=False),
            FieldDef("Manual_Override__c", "boolean", custom=True, nillable=False, default=False),
        ],
    )


def _blng() -> SObject:
    return SObject(
        "blng__Invoice__c",
        "Invoice",
        "a1B",
        True,
        [
            *_billing_head("Invoice Number", name_updateable=False),
            _required_lookup("blng__Account__c", "Account", "Account"),
            FieldDef("blng__InvoiceDate__c", "date", "Invoice Date", custom=True),
            FieldDef("blng__DueDate__c", "date", "Due Date", custom=True),
            FieldDef("blng__InvoicePostedDate__c", "date", "Posted Date", custom=True),
            _formula(
                "blng__TotalAmount__c", "currency", "Total Amount (With Tax)", precision=18, scale=2
            ),
            _formula("blng__Balance__c", "currency", "Balance", precision=18, scale=2),
            _custom_picklist("blng__InvoiceStatus__c", "Status", BLNG_STATUSES, default="Draft"),
            _formula("blng__PaymentStatus__c", "string", "Payment Status", length=1300),
            _formula(
                "blng__DaysOutstanding__c", "double", "Days Outstanding", precision=18, scale=0
            ),
            FieldDef(
                "blng__UniqueId__c",
                "string",
                "Unique Id",
                length=255,
                custom=True,
                external_id=True,
                unique=True,
            ),
        ],
    )


# Billing's payments and their allocations to invoices (Billing developer guide:
# blng__Payment__c, blng__PaymentAllocationInvoice__c): where a paid date comes from.
def _payment() -> SObject:
    return SObject(
        "blng__Payment__c",
        "Payment",
        "a1C",
        True,
        [
            *_billing_head("Payment Number", name_updateable=False),
            _required_lookup("blng__Account__c", "Account", "Account"),
            _BLNG_AMOUNT,
            FieldDef("blng__PaymentDate__c", "date", "Payment Date", custom=True),
            _custom_picklist(
                "blng__Status__c",
                "Status",
                ("Cancelled", "Draft", "Processed", "Failed"),
                default="Draft",
            ),
        ],
    )


def _allocation() -> SObject:
    return SObject(
        "blng__PaymentAllocationInvoice__c",
        "Payment Allocation Invoice",
        "a1D",
        True,
        [
            *_billing_head("Payment Allocation Invoice Name"),
            _BLNG_AMOUNT,
            _required_lookup("blng__Invoice__c", "Invoice", "blng__Invoice__c"),
            _required_lookup("blng__Payment__c", "Payment", "blng__Payment__c"),
            _custom_picklist("blng__Type__c", "Type", ("Allocation", "Unallocation")),
            FieldDef(
                "blng__Unallocated__c",
                "boolean",
                "Unallocated",
                custom=True,
                nillable=False,
                default=False,
            ),
        ],
    )


def _invoice() -> SObject:
    return SObject(
        "Invoice__c",
        "Invoice",
        "a2C",
        True,
        [
            *_system(),
            FieldDef("Name", "string", "Invoice Number", length=80),
            _record_currency(),
            _required_lookup("Account__c", "Account", "Account"),
            FieldDef("Invoice_Date__c", "date", custom=True),
            FieldDef("Due_Date__c", "date", custom=True),
            FieldDef("Amount__c", "currency", precision=16, scale=2, custom=True),
            FieldDef("Balance__c", "currency", precision=16, scale=2, custom=True),
            FieldDef("Paid_Date__c", "date", custom=True),
            FieldDef(
                "Status__c",
                "picklist",
                length=255,
                picklist=INVOICE_STATUSES,
                restricted=True,
                custom=True,
                default="Open",
            ),
        ],
    )


def _task() -> SObject:
    return SObject(
        "Task",
        "Task",
        "00T",
        False,
        [
            *_system(),
            FieldDef(
                "WhatId",
                "reference",
                "Related To ID",
                length=18,
                reference_to=("Account",),
                relationship_name="What",
            ),
            FieldDef(
                "AccountId",
                "reference",
                "Account ID",
                length=18,
                reference_to=("Account",),
                relationship_name="Account",
                updateable=False,
                createable=False,
            ),
            FieldDef(
                "OwnerId",
                "reference",
                "Assigned To ID",
                length=18,
                reference_to=("User",),
                relationship_name="Owner",
                nillable=False,
            ),
            FieldDef("Subject", "combobox", length=255),
            FieldDef("ActivityDate", "date", "Due Date Only"),
            FieldDef(
                "Status",
                "picklist",
                length=255,
                picklist=TASK_STATUSES,
                restricted=True,
                nillable=False,
                default="Not Started",
            ),
            FieldDef(
                "Priority",
                "picklist",
                length=255,
                picklist=("High", "Normal", "Low"),
                restricted=True,
                nillable=False,
                default="Normal",
            ),
            FieldDef("Description", "textarea", "Comments", length=32000),
            FieldDef("IsClosed", "boolean", "Closed", updateable=False, createable=False),
            FieldDef("Crm_Risk_Key__c", "string", length=255, custom=True, external_id=True),
            FieldDef("Risk_Task_Key__c", "string", length=255, custom=True, external_id=True),
        ],
    )


def _currency_type() -> SObject:
    return SObject(
        "CurrencyType",
        "Currency Type",
        "02T",
        False,
        [
            *_system(),
            _iso_code(),
            FieldDef("ConversionRate", "double", "Conversion Rate", precision=18, scale=6),
            FieldDef("DecimalPlaces", "int", "Decimal Places", digits=9),
            FieldDef("IsActive", "boolean", "Active", nillable=False, default=False),
            FieldDef("IsCorporate", "boolean", "Corporate Currency", nillable=False, default=False),
        ],
    )


def _dated_rate() -> SObject:
    return SObject(
        "DatedConversionRate",
        "Dated Conversion Rate",
        "04w",
        False,
        [
            *_system(),
            _iso_code(),
            FieldDef("ConversionRate", "double", "Exchange Rate", precision=18, scale=6),
            FieldDef("StartDate", "date", "Date"),
            FieldDef(
                "NextStartDate", "date", "Next Start Date", updateable=False, createable=False
            ),
        ],
    )


def _organization() -> SObject:
    return SObject(
        "Organization",
        "Organization",
        "00D",
        False,
        [
            *_system(),
            FieldDef("Name", "string", length=80, updateable=False),
            FieldDef(
                "DefaultCurrencyIsoCode",
                "picklist",
                "Locale Currency",
                length=40,
                picklist=CURRENCIES,
                updateable=False,
            ),
        ],
    )


def build_schema() -> dict[str, SObject]:
    """All objects of the sandbox org, keyed by API name."""
    objects = (
        _user(),
        _account(),
        _blng(),
        _payment(),
        _allocation(),
        _invoice(),
        _task(),
        _currency_type(),
        _dated_rate(),
        _organization(),
    )
    return {obj.name: obj for obj in objects}
