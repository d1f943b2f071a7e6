"""check_mapping against describe(): one test per error class; fields plan as metadata and steps."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from adapters.salesforce.metadata import CREATABLE_FIELD
from adapters.salesforce.metadata import field_plan_files as salesforce_metadata
from adapters.zoho.setup_steps import field_plan_text as zoho_field_instructions
from connector.errors import FatalCrmError, MappingError
from connector.mapping import FieldMapping, load_mapping
from connector.mapping.check import check_mapping, plan_fields
from connector.protocol import FieldDescription, ObjectDescription

NS = {"md": "http://soap.sforce.com/2006/04/metadata"}


def fd(name: str, family: str, **kw: object) -> FieldDescription:
    kw.setdefault("updateable", True)
    return FieldDescription(name=name, type=str(kw.pop("type", family)), family=family, **kw)  # type: ignore[arg-type]


def sf_object(name: str, fields: dict[str, FieldDescription]) -> ObjectDescription:
    """An sObject as the Salesforce adapter describes it: names match in any case, and only
    unmanaged custom fields can be created."""
    return ObjectDescription(
        name, fields, case_insensitive_names=True, creatable_field_pattern=CREATABLE_FIELD
    )


def salesforce_org() -> dict[str, ObjectDescription]:
    """An org that has every field the salesforce.billing preset maps."""
    account = [
        fd("Id", "id", updateable=False),
        fd("Name", "string", length=255),
        fd("OwnerId", "reference", relationship="Owner"),
        fd("Industry", "picklist", picklist_values=("Retail", "Banking")),
        fd("BillingCountry", "string", length=80),
        fd("CurrencyIsoCode", "picklist", picklist_values=("EUR", "USD")),
        fd("AnnualRevenue", "currency"),
        fd("NumberOfEmployees", "integer"),
        fd("CreatedDate", "datetime", updateable=False),
        fd("SystemModstamp", "datetime", updateable=False),
        fd("Payment_Terms_Days__c", "number", custom=True),
        fd("External_Score__c", "number", custom=True),
        fd("Insured_Limit__c", "currency", custom=True),
        fd("Manual_Override__c", "boolean", custom=True),
        fd("Credit_Limit__c", "currency", custom=True),
        fd("Risk_Score__c", "number", custom=True),
        fd("Risk_Rating__c", "picklist", picklist_values=tuple("ABCDE"), custom=True),
        fd(
            "Risk_Level__c",
            "picklist",
            picklist_values=("Low", "Medium", "High", "Critical"),
            custom=True,
        ),
        fd("Risk_Reasons__c", "text", type="textarea", length=32768, custom=True),
        fd("Recommended_Credit_Limit__c", "currency", custom=True),
        fd("Credit_Limit_Basis__c", "currency", custom=True),
        fd("Risk_Reviewed_At__c", "datetime", custom=True),
    ]
    invoice = [
        fd("Id", "id", updateable=False),
        fd("Name", "string", updateable=False, length=80),
        fd("blng__Account__c", "reference", relationship="blng__Account__r"),
        fd("blng__InvoiceDate__c", "date"),
        fd("blng__DueDate__c", "date"),
        fd("CurrencyIsoCode", "picklist", picklist_values=("EUR", "USD")),
        fd("blng__TotalAmount__c", "currency", updateable=False),
        fd("blng__Balance__c", "currency", updateable=False),
        fd("blng__PaymentStatus__c", "string", updateable=False, length=255),
        fd(
            "blng__InvoiceStatus__c",
            "picklist",
            picklist_values=("Draft", "Posted", "Cancelled", "Error", "Rebilled"),
        ),
        fd("SystemModstamp", "datetime", updateable=False),
    ]
    allocation = [
        fd("Id", "id", updateable=False),
        fd("blng__Invoice__c", "reference"),
        fd("blng__Payment__c", "reference", relationship="blng__Payment__r"),
        fd("blng__Amount__c", "currency"),
        fd("blng__Type__c", "picklist", picklist_values=("Allocation", "Unallocation")),
        fd("blng__Unallocated__c", "boolean"),
        fd("SystemModstamp", "datetime", updateable=False),
    ]
    return {
        "Account": sf_object("Account", {f.name: f for f in account}),
        "blng__Invoice__c": sf_object("blng__Invoice__c", {f.name: f for f in invoice}),
        "blng__PaymentAllocationInvoice__c": sf_object(
            "blng__PaymentAllocationInvoice__c", {f.name: f for f in allocation}
        ),
    }


def describer(org: dict[str, ObjectDescription]):
    def describe(crm_object: str) -> ObjectDescription:
        if crm_object not in org:
            raise FatalCrmError(f"sObject type '{crm_object}' is not supported", status=404)
        return org[crm_object]

    return describe


def edit(org: dict[str, ObjectDescription], obj: str, name: str, **changes: object) -> None:
    fields = dict(org[obj].fields)
    if changes.pop("drop", False):
        del fields[name]
    else:
        fields[name] = replace(fields[name], **changes)  # type: ignore[arg-type]
    org[obj] = replace(org[obj], fields=fields)


def errors_only(problems: list[MappingError]) -> list[MappingError]:
    return [p for p in problems if getattr(p, "severity", "error") == "error"]


@pytest.fixture
def user_mapping(tmp_path: Path) -> tuple[FieldMapping, Path]:
    """A user's file extending the Billing preset, so messages must name the user's file."""
    path = tmp_path / "acme.toml"
    path.write_text(
        textwrap.dedent(
            """
            extends = "salesforce.billing"
            [objects.account.fields]
            risk_reasons = { crm = "Risk_Reasons__c", max_length = 4000 }
            """
        )
    )
    return load_mapping(str(path)), path


def test_billing_preset_passes_on_a_complete_org() -> None:
    assert (
        errors_only(check_mapping(load_mapping("salesforce.billing"), describer(salesforce_org())))
        == []
    )


def test_unknown_field_suggests_the_close_name(user_mapping) -> None:
    mapping, path = user_mapping
    org = salesforce_org()
    edit(org, "Account", "Risk_Reasons__c", drop=True)
    fields = dict(org["Account"].fields)
    fields["Risk_Reason__c"] = fd("Risk_Reason__c", "text", length=32768)
    org["Account"] = replace(org["Account"], fields=fields)
    [error] = errors_only(check_mapping(mapping, describer(org)))
    assert error.key == "objects.account.fields.risk_reasons"
    assert error.crm_object == "Account" and error.crm_field == "Risk_Reasons__c"
    assert error.suggestions == ["Risk_Reason__c"]
    assert str(path) in str(error) and "objects.account.fields.risk_reasons" in str(error)
    assert "did you mean: Risk_Reason__c" in str(error)


def test_read_only_field_mapped_for_writing() -> None:
    org = salesforce_org()
    edit(org, "Account", "Risk_Score__c", updateable=False)
    [error] = errors_only(check_mapping(load_mapping("salesforce.billing"), describer(org)))
    assert error.key == "objects.account.fields.risk_score"
    assert "read-only field mapped for writing" in error.message
    assert error.mapping_file.endswith("salesforce.billing.toml")
    assert "salesforce.billing.toml:objects.account.fields.risk_score" in str(error)


def test_type_mismatch() -> None:
    org = salesforce_org()
    edit(org, "Account", "Recommended_Credit_Limit__c", family="date", type="date")
    [error] = errors_only(check_mapping(load_mapping("salesforce.billing"), describer(org)))
    assert error.key == "objects.account.fields.recommended_credit_limit"
    assert "type mismatch" in error.message and "date" in error.message


def test_number_into_an_integer_field_is_a_mismatch_with_a_hint() -> None:
    org = salesforce_org()
    edit(org, "Account", "Risk_Score__c", family="integer", type="int")
    [error] = errors_only(check_mapping(load_mapping("salesforce.billing"), describer(org)))
    assert 'set type = "integer"' in error.message


def test_text_too_short_for_the_configured_reasons(user_mapping) -> None:
    mapping, path = user_mapping
    org = salesforce_org()
    edit(org, "Account", "Risk_Reasons__c", length=1000)
    [error] = errors_only(check_mapping(mapping, describer(org)))
    assert error.key == "objects.account.fields.risk_reasons"
    assert "text too short" in error.message and "1000" in error.message
    assert str(path) in str(error)


def test_reasons_field_below_255_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        'extends = "salesforce.billing"\n[objects.account.fields]\n'
        "risk_reasons = { max_length = 100 }\n"
    )
    org = salesforce_org()
    edit(org, "Account", "Risk_Reasons__c", family="string", type="string", length=120)
    problems = check_mapping(load_mapping(str(path)), describer(org))
    assert errors_only(problems) == []
    [warning] = problems
    assert warning.severity == "warning" and warning.key == "objects.account.fields.risk_reasons"
    assert str(path) in str(warning)


def test_picklist_value_missing() -> None:
    org = salesforce_org()
    edit(org, "Account", "Risk_Rating__c", picklist_values=("A", "B", "C", "D"))
    [error] = errors_only(check_mapping(load_mapping("salesforce.billing"), describer(org)))
    assert error.key == "objects.account.fields.risk_band"
    assert "picklist value missing" in error.message and "'E'" in error.message
    assert error.suggestions == []


def test_picklist_check_uses_the_value_map(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        'extends = "salesforce.billing"\n[objects.account.fields]\n'
        'risk_level = { values = { "1 Low" = "Low", "2 Medium" = "Medium", "3 High" = "High", "4 Critical" = "Critical" } }\n'
    )
    org = salesforce_org()
    edit(
        org,
        "Account",
        "Risk_Level__c",
        picklist_values=("1 Low", "2 Medium", "3 High", "4 Critical"),
    )
    assert errors_only(check_mapping(load_mapping(str(path)), describer(org))) == []


def test_missing_object_is_an_error_naming_crm_object() -> None:
    org = salesforce_org()
    del org["blng__Invoice__c"]
    [error] = errors_only(check_mapping(load_mapping("salesforce.billing"), describer(org)))
    assert error.key == "objects.invoice.crm_object" and error.crm_object == "blng__Invoice__c"


def test_filter_value_not_in_picklist_is_a_warning() -> None:
    org = salesforce_org()
    edit(org, "blng__Invoice__c", "blng__InvoiceStatus__c", picklist_values=("Draft", "Final"))
    problems = check_mapping(load_mapping("salesforce.billing"), describer(org))
    assert errors_only(problems) == []
    assert [p.key for p in problems] == ["objects.invoice.include.blng__InvoiceStatus__c"]
    assert "Posted" in problems[0].message


def test_relationship_paths_resolve_through_the_reference_field() -> None:
    org = salesforce_org()
    edit(org, "Account", "OwnerId", drop=True)
    errors = errors_only(check_mapping(load_mapping("salesforce.billing"), describer(org)))
    # Owner.IsActive cannot resolve without OwnerId, and owner_id itself is missing.
    assert {e.key for e in errors} == {
        "objects.account.fields.owner_id",
        "objects.account.fields.owner_active",
    }


def test_salesforce_names_compare_case_insensitively() -> None:
    org = salesforce_org()
    fields = {
        ("RISK_SCORE__C" if name == "Risk_Score__c" else name): (
            replace(f, name="RISK_SCORE__C") if name == "Risk_Score__c" else f
        )
        for name, f in org["Account"].fields.items()
    }
    org["Account"] = replace(org["Account"], fields=fields)
    assert errors_only(check_mapping(load_mapping("salesforce.billing"), describer(org))) == []


# -- fields plan -----------------------------------------------------------------------------------


def bare_org() -> dict[str, ObjectDescription]:
    """The org before the admin created any custom risk field."""
    org = salesforce_org()
    fields = {n: f for n, f in org["Account"].fields.items() if not n.endswith("__c")}
    org["Account"] = replace(org["Account"], fields=fields)
    return org


def test_plan_lists_only_missing_unmanaged_custom_fields() -> None:
    org = bare_org()
    edit(org, "blng__Invoice__c", "blng__Balance__c", drop=True)  # managed: comes with the package
    missing = plan_fields(load_mapping("salesforce.billing"), describer(org))
    names = {m.field for m in missing}
    assert names == {
        "Payment_Terms_Days__c",
        "External_Score__c",
        "Insured_Limit__c",
        "Manual_Override__c",
        "Credit_Limit__c",
        "Risk_Score__c",
        "Risk_Rating__c",
        "Risk_Level__c",
        "Risk_Reasons__c",
        "Recommended_Credit_Limit__c",
        "Credit_Limit_Basis__c",
        "Risk_Reviewed_At__c",
    }
    by_name = {m.field: m for m in missing}
    assert by_name["Risk_Rating__c"].picklist_values == ("A", "B", "C", "D", "E")
    assert by_name["Risk_Score__c"].field_type == "Number"
    assert (by_name["Risk_Score__c"].precision, by_name["Risk_Score__c"].scale) == (4, 1)
    assert by_name["Risk_Reasons__c"].field_type == "LongTextArea"
    assert by_name["Credit_Limit__c"].field_type == "Currency"
    assert by_name["Manual_Override__c"].writable is False
    assert "Account.Risk_Score__c: Number(4,1)" in str(by_name["Risk_Score__c"])


def test_salesforce_metadata_parses_and_names_every_missing_field() -> None:
    missing = plan_fields(load_mapping("salesforce.billing"), describer(bare_org()))
    files = salesforce_metadata(missing)
    for item in missing:
        path = f"objects/Account/fields/{item.field}.field-meta.xml"
        root = ET.fromstring(files[path])
        assert root.tag == "{http://soap.sforce.com/2006/04/metadata}CustomField"
        assert root.findtext("md:fullName", namespaces=NS) == item.field
        assert root.findtext("md:type", namespaces=NS) == item.field_type
    rating = ET.fromstring(files["objects/Account/fields/Risk_Rating__c.field-meta.xml"])
    values = rating.findall("md:valueSet/md:valueSetDefinition/md:value/md:fullName", NS)
    assert [v.text for v in values] == ["A", "B", "C", "D", "E"]
    reasons = ET.fromstring(files["objects/Account/fields/Risk_Reasons__c.field-meta.xml"])
    assert reasons.findtext("md:length", namespaces=NS) == "32768"
    assert reasons.findtext("md:visibleLines", namespaces=NS) == "5"
    permission = ET.fromstring(files["permissionsets/CRM_Risk_Connector.permissionset-meta.xml"])
    grants = {
        g.findtext("md:field", namespaces=NS): g.findtext("md:editable", namespaces=NS)
        for g in permission.findall("md:fieldPermissions", NS)
    }
    assert grants == {f"Account.{m.field}": str(m.writable).lower() for m in missing}
    assert len(files) == len(missing) + 1


def test_zoho_instructions_name_every_missing_field() -> None:
    mapping = load_mapping("zoho.inventory")
    accounts = ObjectDescription(
        "Accounts",
        {
            f.name: f
            for f in [
                fd("id", "id", updateable=False),
                fd("Account_Name", "string", length=200),
                fd("Owner", "reference"),
            ]
        },
    )
    invoices = ObjectDescription("Invoices", {"id": fd("id", "id")})
    missing = plan_fields(mapping, describer({"Accounts": accounts, "Invoices": invoices}))
    text = zoho_field_instructions(missing)
    for item in missing:
        assert f"API name {item.field})" in text
    assert "Risk Reviewed At  (API name Risk_Reviewed_At): Date/Time" in text
    assert "Pick List with options: A, B, C, D, E" in text
    assert "Multi Line (Large) (up to 2000 characters)" in text
    assert "Risk_Score" in {m.field for m in missing}
    assert zoho_field_instructions([]).startswith("Every mapped custom field exists")


def test_every_problem_names_file_key_object_and_field(user_mapping) -> None:
    mapping, path = user_mapping
    org = salesforce_org()
    edit(org, "Account", "Risk_Score__c", updateable=False)
    edit(org, "Account", "Risk_Reasons__c", length=100)
    edit(org, "Account", "Recommended_Credit_Limit__c", family="boolean", type="boolean")
    edit(org, "Account", "Risk_Level__c", picklist_values=("Low", "High"))
    edit(org, "Account", "Industry", drop=True)
    problems = check_mapping(mapping, describer(org))
    assert len(errors_only(problems)) == 5
    for problem in problems:
        text = str(problem)
        assert problem.mapping_file in text and problem.key in text
        assert f"{problem.crm_object}.{problem.crm_field}" in text
    assert {p.mapping_file for p in problems} == {
        str(path),
        str(Path(mapping.chain[-1])),
    }


def test_a_mapping_without_a_paid_date_source_gets_one_warning(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text('extends = "salesforce.billing"\n[objects.payment]\nenabled = false\n')
    problems = check_mapping(load_mapping(str(own)), describer(salesforce_org()))
    assert errors_only(problems) == []
    [warning] = [p for p in problems if "payment history not mapped" in str(p)]
    assert warning.key == "objects.invoice.fields.paid_date"
    assert all(
        "payment history" not in str(p)
        for p in check_mapping(load_mapping("salesforce.billing"), describer(salesforce_org()))
    )
