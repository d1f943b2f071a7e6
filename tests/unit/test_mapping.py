"""Mapping files: presets, extends, load errors naming file and key, conversions both ways."""

from __future__ import annotations

import re
import textwrap
import tomllib
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from connector.errors import MappingError, MappingErrors
from connector.mapping import PRESET_DIR, load_mapping, preset_names
from connector.models import Account, Invoice, InvoiceStatus, RawRecord

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)

MINIMAL = """
name = "mine"
crm = "salesforce"
[objects.account]
crm_object = "Account"
[objects.account.fields]
crm_id = { crm = "Id" }
name = { crm = "Name" }
risk_band = { crm = "Risk_Rating__c", values = { "Grade A" = "A", "Grade B" = "B" } }
[objects.invoice]
crm_object = "Invoice__c"
[objects.invoice.fields]
account_id = { crm = "Account__c" }
issue_date = { crm = "Invoice_Date__c" }
due_date = { crm = "Due_Date__c" }
amount = { crm = "Amount__c" }
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_errors(path: Path) -> list[MappingError]:
    with pytest.raises(MappingErrors) as raised:
        load_mapping(str(path))
    return raised.value.errors


# -- presets -----------------------------------------------------------------------------------


def test_the_four_presets_ship_and_load() -> None:
    assert preset_names() == [
        "fxiaoke.payment-plan",
        "salesforce.billing",
        "salesforce.custom-invoice",
        "zoho.inventory",
    ]
    for name in preset_names():
        mapping = load_mapping(name)
        assert mapping.name == name
        assert mapping.crm in ("salesforce", "zoho", "fxiaoke")
        assert "risk_band" in mapping.write_fields()
        assert "risk_reasons" in mapping.max_lengths("account")


def test_presets_are_loaded_from_the_one_mappings_folder_shipped_as_package_data() -> None:
    # One copy: the files admins read in mappings/ are the files the connector loads and ships.
    assert PRESET_DIR.resolve() == (ROOT / "mappings").resolve()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    assert "mappings" in setuptools["packages"]["find"]["include"]
    assert setuptools["package-data"]["mappings"] == ["*.toml"]


def test_presets_use_the_agreed_custom_risk_field_names() -> None:
    expected = {
        "risk_score": "Risk_Score",
        "risk_band": "Risk_Rating",
        "risk_level": "Risk_Level",
        "risk_reasons": "Risk_Reasons",
        "current_credit_limit": "Credit_Limit",
        "recommended_credit_limit": "Recommended_Credit_Limit",
        "risk_reviewed_at": "Risk_Reviewed_At",
        "external_score": "External_Score",
        "insured_limit": "Insured_Limit",
        "payment_terms_days": "Payment_Terms_Days",
        "manual_override": "Manual_Override",
    }
    for name in preset_names():
        mapping = load_mapping(name)
        fields = mapping.fields("account")
        if mapping.crm == "fxiaoke":
            # Fxiaoke generates custom field names (field_<5 chars>__c): no name can be agreed,
            # so the preset names the sandbox tenant's fields and users extend it with theirs.
            for canonical in expected:
                assert re.fullmatch(r"field_\w{5}__c", fields[canonical].crm or ""), canonical
            continue
        suffix = "__c" if mapping.crm == "salesforce" else ""
        for canonical, crm in expected.items():
            assert fields[canonical].crm == crm + suffix, (name, canonical)


# -- load errors ---------------------------------------------------------------------------------


def test_bad_toml_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", 'name = "x"\n[objects.account]\ncrm_object = \n')
    [error] = load_errors(path)
    assert str(path) in str(error)
    assert error.key == "line 3, column 14"
    assert "invalid TOML" in str(error)


def test_unknown_canonical_field_is_reported_with_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path, "m.toml", MINIMAL.replace('name = { crm = "Name" }', 'nme = { crm = "Name" }')
    )
    [error] = load_errors(path)
    assert error.key == "objects.account.fields.nme"
    assert "name" in error.suggestions
    assert str(path) in str(error) and "objects.account.fields.nme" in str(error)


def test_unknown_option_key_is_reported_with_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path, "m.toml", MINIMAL.replace('{ crm = "Name" }', '{ crm = "Name", on_nul = "skip" }')
    )
    [error] = load_errors(path)
    assert error.key == "objects.account.fields.name.on_nul"
    assert error.suggestions == ["on_null"]
    assert str(path) in str(error)


def test_invalid_option_value_is_reported_without_the_input(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.toml",
        MINIMAL.replace('{ crm = "Name" }', '{ crm = "Name", write_mode = "sometimes" }'),
    )
    [error] = load_errors(path)
    assert error.key == "objects.account.fields.name.write_mode"
    assert "sometimes" not in error.message


def test_read_only_canonical_field_cannot_be_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.toml",
        MINIMAL.replace('{ crm = "Name" }', '{ crm = "Name", direction = "write" }'),
    )
    [error] = load_errors(path)
    assert error.key == "objects.account.fields.name.direction"
    assert "cannot be written" in error.message


def test_missing_required_invoice_field_and_bad_time_zone_are_reported_together(
    tmp_path: Path,
) -> None:
    text = MINIMAL.replace('amount = { crm = "Amount__c" }\n', "").replace(
        'due_date = { crm = "Due_Date__c" }',
        'due_date = { crm = "Due_Date__c", timezone = "Mars/Base" }',
    )
    errors = load_errors(write(tmp_path, "m.toml", text))
    keys = {error.key for error in errors}
    assert keys == {"objects.invoice.fields.amount", "objects.invoice.fields.due_date.timezone"}


def test_unknown_preset_suggests_close_names() -> None:
    with pytest.raises(MappingErrors) as raised:
        load_mapping("zoho.inventroy")
    assert "zoho.inventory" in raised.value.errors[0].suggestions


# -- extends -------------------------------------------------------------------------------------


def test_user_mapping_with_extends_and_two_overrides_round_trips(tmp_path: Path) -> None:
    user = write(
        tmp_path,
        "acme.toml",
        """
        extends = "zoho.inventory"
        name = "acme"
        [objects.account.fields]
        risk_reasons = { max_length = 500 }
        risk_band = { crm = "Credit_Grade", values = { "Grade A" = "A" } }
        """,
    )
    mapping = load_mapping("acme.toml", base_dir=tmp_path)
    assert mapping.source == str(user.resolve())
    fields = mapping.fields("account")
    # Override one key of a field, keep the preset's others.
    assert fields["risk_reasons"].crm == "Risk_Reasons" and mapping.max_lengths("account") == {
        "risk_reasons": 500
    }
    assert fields["risk_band"].crm == "Credit_Grade"
    assert fields["name"].crm == "Account_Name"
    # Keys the user set are blamed on the user's file, the rest on the preset.
    assert mapping.file_for("objects.account.fields.risk_band") == str(user.resolve())
    assert mapping.file_for("objects.account.fields.name").endswith("zoho.inventory.toml")

    effective = mapping.effective_dict()
    assert "extends" not in effective
    assert effective["objects"]["account"]["fields"]["risk_reasons"] == {
        "crm": "Risk_Reasons",
        "max_length": 500,
    }
    text = mapping.to_toml()
    assert "zoho.inventory" in text.splitlines()[1]  # the extends chain, as a comment
    again = write(tmp_path, "effective.toml", text)
    reloaded = load_mapping(str(again))
    assert reloaded.effective_dict() == effective

    def body(toml_text: str) -> list[str]:
        return [line for line in toml_text.splitlines() if not line.startswith("#")]

    assert body(reloaded.to_toml()) == body(text)


def test_every_preset_round_trips_through_to_toml(tmp_path: Path) -> None:
    for name in preset_names():
        mapping = load_mapping(name)
        path = write(tmp_path, f"{name}.copy.toml", mapping.to_toml())
        assert load_mapping(str(path)).effective_dict() == mapping.effective_dict()


def test_a_value_map_override_replaces_the_parents_map(tmp_path: Path) -> None:
    write(
        tmp_path,
        "child.toml",
        """
        extends = "zoho.inventory"
        [objects.invoice.fields]
        status = { values = { Settled = "paid" } }
        """,
    )
    mapping = load_mapping("child.toml", base_dir=tmp_path)
    assert mapping.fields("invoice")["status"].spec.values == {"Settled": "paid"}


def test_a_field_can_be_disabled_in_a_child(tmp_path: Path) -> None:
    write(
        tmp_path,
        "child.toml",
        """
        extends = "zoho.inventory"
        [objects.invoice.fields]
        open_amount = { enabled = false }
        paid_date = { enabled = false }
        """,
    )
    mapping = load_mapping("child.toml", base_dir=tmp_path)
    assert "Balance" not in mapping.read_fields("invoice")
    assert "open_amount" not in mapping.fields("invoice")


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'extends = "./b.toml"\n')
    write(tmp_path, "b.toml", 'extends = "./a.toml"\n')
    errors = load_errors(tmp_path / "a.toml")
    assert errors[0].key == "extends" and "cycle" in errors[0].message


def test_extends_of_a_missing_file_names_the_extending_file(tmp_path: Path) -> None:
    path = write(tmp_path, "a.toml", 'extends = "./nowhere.toml"\n')
    [error] = load_errors(path)
    assert error.key == "extends" and error.mapping_file == str(path)


# -- conversions -----------------------------------------------------------------------------------


def raw(record_id: str, **fields: object) -> RawRecord:
    return RawRecord(crm_id=record_id, modified_at=T0, fields=fields)


def test_zoho_account_lookups_and_types_convert() -> None:
    mapping = load_mapping("zoho.inventory")
    account = mapping.to_account(
        raw(
            "100",
            id="100",
            Account_Name="Müller & Söhne GmbH",
            Owner={"id": "U7", "name": "Ann"},
            Currency="eur",
            Annual_Revenue=1250000.5,
            Employees="42",
            Created_Time="2024-03-01T10:00:00+05:30",
            Modified_Time="2026-10-01T09:00:00+02:00",
            Payment_Terms_Days=30,
            Credit_Limit="20000.00",
            Manual_Override=True,
            Risk_Rating="B",
        )
    )
    assert account == Account.model_validate(account.model_dump())
    assert account.owner_id == "U7"
    assert account.currency == "EUR"
    assert account.annual_revenue == Decimal("1250000.5")
    assert account.employees == 42
    assert account.created_at == datetime(2024, 3, 1, 4, 30, tzinfo=UTC)
    assert account.modified_at == datetime(2026, 10, 1, 7, 0, tzinfo=UTC)
    assert account.current_credit_limit == Decimal("20000.00")
    assert account.manual_override is True
    assert (
        mapping.crm_value_to_canonical("account", "risk_band", raw("100", Risk_Rating="B")) == "B"
    )


def test_salesforce_relationship_paths_read_nested_records() -> None:
    mapping = load_mapping("salesforce.billing")
    assert "Owner.IsActive" in mapping.read_fields("account")
    account = mapping.to_account(
        raw("001A", Id="001A", Name="Acme", OwnerId="005X", Owner={"IsActive": False})
    )
    assert account.owner_active is False and account.owner_id == "005X"
    assert account.modified_at == T0  # SystemModstamp absent: the adapter's modified time


def test_read_fields_are_deduplicated_and_include_filter_fields() -> None:
    mapping = load_mapping("salesforce.billing")
    fields = mapping.read_fields("invoice")
    assert len(fields) == len(set(fields))
    assert {"Id", "SystemModstamp", "blng__InvoiceStatus__c", "blng__Balance__c"} <= set(fields)
    # Write fields are read too, so the planner can compare with what the CRM holds.
    assert "Risk_Rating__c" in mapping.read_fields("account")


def billing_invoice(**overrides: object) -> RawRecord:
    fields: dict[str, object] = {
        "Id": "a0B1",
        "Name": "INV-0001",
        "blng__Account__c": "001A",
        "blng__InvoiceDate__c": "2026-08-01",
        "blng__DueDate__c": "2026-08-31",
        "blng__TotalAmount__c": 1190.0,
        "blng__Balance__c": 190.0,
        "blng__PaymentStatus__c": "Partially Paid",
        "blng__InvoiceStatus__c": "Posted",
        "SystemModstamp": "2026-09-01T10:00:00.000+0000",
    }
    fields.update(overrides)
    return RawRecord(crm_id="a0B1", modified_at=T0, fields=fields)


def test_billing_invoice_converts_and_filters_on_posted() -> None:
    mapping = load_mapping("salesforce.billing")
    invoice = mapping.to_invoice(billing_invoice())
    assert isinstance(invoice, Invoice)
    assert invoice == Invoice.model_validate(invoice.model_dump())
    assert invoice.status is InvoiceStatus.PARTIALLY_PAID
    assert invoice.issue_date == date(2026, 8, 1) and invoice.due_date == date(2026, 8, 31)
    assert invoice.amount == Decimal("1190.0") and invoice.open_amount == Decimal("190.0")
    assert invoice.number == "INV-0001" and invoice.account_id == "001A"
    assert invoice.modified_at == datetime(2026, 9, 1, 10, tzinfo=UTC)
    assert mapping.to_invoice(billing_invoice(blng__InvoiceStatus__c="Draft")) is None
    assert mapping.to_invoice(billing_invoice(blng__InvoiceStatus__c=None)) is None


def test_zoho_invoice_without_balance_derives_open_amount_from_status(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.toml",
        """
        extends = "zoho.inventory"
        [objects.invoice.fields]
        open_amount = { enabled = false }
        """,
    )
    mapping = load_mapping("m.toml", base_dir=tmp_path)
    base = {
        "id": "9",
        "Account_Name": {"id": "100", "name": "Acme"},
        "Invoice_Date": "2026-08-01",
        "Due_Date": "2026-08-31",
        "Grand_Total": 500,
        "Currency": "USD",
        "Exchange_Rate": 0.92,
    }
    unpaid = mapping.to_invoice(raw("9", **base, Status="Sent"))
    paid = mapping.to_invoice(raw("9", **base, Status="Paid"))
    assert unpaid is not None and unpaid.open_amount == Decimal(500)
    assert unpaid.account_id == "100" and unpaid.exchange_rate == Decimal("0.92")
    assert paid is not None and paid.open_amount == Decimal(0)
    assert mapping.to_invoice(raw("9", **base, Status="Draft")) is None


def test_static_values_and_percent_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.toml",
        MINIMAL.replace(
            'name = { crm = "Name" }',
            'name = { crm = "Name" }\npayment_terms_days = { value = 30 }\n'
            'probability_late = { crm = "Late_Pct__c", type = "percent" }',
        ),
    )
    mapping = load_mapping(str(path))
    assert mapping.to_account(raw("1", Id="1")).payment_terms_days == 30
    assert mapping.to_crm_values("account", {"probability_late": Decimal("0.1234")}) == {
        "Late_Pct__c": Decimal("12.3400")
    }
    assert mapping.crm_value_to_canonical(
        "account", "probability_late", raw("1", Late_Pct__c=12.5)
    ) == Decimal("0.125")
    assert "Late_Pct__c" in mapping.read_fields("account")


def test_to_crm_values_formats_for_the_crm() -> None:
    mapping = load_mapping("zoho.inventory")
    reviewed = datetime(2026, 10, 1, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    values = mapping.to_crm_values(
        "account",
        {
            "risk_score": Decimal("45.3"),
            "risk_band": "C",
            "risk_reasons": "DBT_HIGH: " + "ß" * 3000,
            "recommended_credit_limit": Decimal("15000.00"),
            "risk_reviewed_at": reviewed,
        },
    )
    assert values["Risk_Score"] == Decimal("45.3")
    assert values["Risk_Rating"] == "C"
    assert len(values["Risk_Reasons"]) == 2000 and values["Risk_Reasons"].endswith("…")
    assert values["Recommended_Credit_Limit"] == Decimal("15000.00")
    assert values["Risk_Reviewed_At"] == "2026-10-01T06:30:15+00:00"
    # The planner may hand over its normalised (ISO text) form.
    again = mapping.to_crm_values("account", {"risk_reviewed_at": reviewed.isoformat()})
    assert again == {"Risk_Reviewed_At": "2026-10-01T06:30:15+00:00"}


def test_value_maps_invert_on_write_and_apply_on_read(tmp_path: Path) -> None:
    mapping = load_mapping(str(write(tmp_path, "m.toml", MINIMAL)))
    assert mapping.to_crm_values("account", {"risk_band": "A"}) == {"Risk_Rating__c": "Grade A"}
    # A band without an entry is written as is (check_mapping flags it against the picklist).
    assert mapping.to_crm_values("account", {"risk_band": "E"}) == {"Risk_Rating__c": "E"}
    assert (
        mapping.crm_value_to_canonical("account", "risk_band", raw("1", Risk_Rating__c="Grade B"))
        == "B"
    )


def test_on_null_clear_sends_null_and_skip_leaves_the_field_alone(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'name = { crm = "Name" }',
        'name = { crm = "Name" }\nrisk_level = { crm = "Level__c", on_null = "clear" }',
    )
    mapping = load_mapping(str(write(tmp_path, "m.toml", text)))
    assert mapping.to_crm_values("account", {"risk_band": None, "risk_level": None}) == {
        "Level__c": None
    }
    assert mapping.on_null("account", "risk_level") == "clear"
    assert mapping.write_mode("account", "risk_band") == "always"


def test_writing_an_unmapped_field_is_an_error_not_a_silent_drop() -> None:
    mapping = load_mapping("zoho.inventory")
    with pytest.raises(MappingError):
        mapping.to_crm_values("account", {"probability_late": Decimal("0.2")})
    with pytest.raises(MappingError):
        mapping.to_crm_values("account", {"name": "x"})


def test_junk_in_a_write_field_reads_as_none() -> None:
    mapping = load_mapping("zoho.inventory")
    record = raw("1", Risk_Score="not a number")
    assert mapping.crm_value_to_canonical("account", "risk_score", record) is None


def test_datetime_format_and_time_zone_options(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'issue_date = { crm = "Invoice_Date__c" }',
        'issue_date = { crm = "Invoice_Date__c", format = "%d.%m.%Y" }',
    ).replace(
        'name = { crm = "Name" }',
        'name = { crm = "Name" }\n'
        'created_at = { crm = "Created__c", timezone = "Europe/Berlin" }\n'
        'risk_reviewed_at = { crm = "Reviewed__c", timezone = "Europe/Berlin", format = "%Y-%m-%d %H:%M" }',
    )
    mapping = load_mapping(str(write(tmp_path, "m.toml", text)))
    account = mapping.to_account(raw("1", Created__c="2026-07-01T12:00:00"))
    assert account.created_at == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    assert mapping.to_crm_values("account", {"risk_reviewed_at": T0}) == {
        "Reviewed__c": "2026-10-01 10:00"
    }
    invoice = mapping.to_invoice(
        raw(
            "I",
            Account__c="1",
            Invoice_Date__c="01.08.2026",
            Due_Date__c="2026-08-31",
            Amount__c="10",
        )
    )
    assert invoice is not None and invoice.issue_date == date(2026, 8, 1)
