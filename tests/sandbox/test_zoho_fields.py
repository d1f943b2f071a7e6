"""Zoho sandbox: fields the mapping lacks are created through settings/fields, then `check` passes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.zoho import ZohoAdapter
from connector.mapping import load_mapping
from connector.mapping.check import check_mapping, plan_fields
from connector.models import RecordChange
from connector.protocol import FieldCreator, FieldSpec
from sandboxes import RunningSandbox, start_zoho
from tests.adapters.zoho._support import sandbox_adapter


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_zoho(accounts=5) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


@pytest.fixture
def adapter(sandbox: RunningSandbox) -> Iterator[ZohoAdapter]:
    live = sandbox_adapter(sandbox, "fields", max_retries=1)
    yield live
    live.close()


def _spec(item: Any) -> FieldSpec:
    return FieldSpec(
        name=item.field,
        label=item.label,
        type=item.field_type,
        length=item.length,
        precision=item.precision,
        scale=item.scale,
        picklist_values=tuple(item.picklist_values),
        description=item.description,
    )


def test_missing_fields_are_created_and_check_passes(
    tmp_path: Path, adapter: ZohoAdapter, sandbox: RunningSandbox
) -> None:
    (tmp_path / "acme.toml").write_text(
        'extends = "zoho.inventory"\nname = "acme"\n[objects.account.fields]\n'
        'risk_score = { crm = "Credit_Risk_Score" }\n'
        'risk_band = { crm = "Credit_Grade" }\n'
        'risk_reasons = { crm = "Credit_Notes", max_length = 2000 }\n'
    )
    mapping = load_mapping("acme.toml", base_dir=tmp_path)
    assert isinstance(adapter, FieldCreator)
    before = [
        p
        for p in check_mapping(mapping, adapter.describe)
        if getattr(p, "severity", "error") == "error"
    ]
    assert {p.crm_field for p in before} == {"Credit_Risk_Score", "Credit_Grade", "Credit_Notes"}
    missing = plan_fields(mapping, adapter.describe)
    assert {m.field for m in missing} == {"Credit_Risk_Score", "Credit_Grade", "Credit_Notes"}

    results = adapter.create_fields("Accounts", [_spec(item) for item in missing])

    assert [r.status for r in results] == ["ok"] * len(missing)
    assert [r.crm_id for r in results] == [m.field for m in missing]
    after = [
        p
        for p in check_mapping(mapping, adapter.describe)
        if getattr(p, "severity", "error") == "error"
    ]
    assert after == []
    described = adapter.describe("Accounts").fields
    assert described["Credit_Grade"].family == "picklist"
    assert set(described["Credit_Grade"].picklist_values) >= {"A", "E"}
    assert described["Credit_Notes"].family == "text" and described["Credit_Notes"].updateable
    # Writable: a value lands and reads back.
    account = next(iter(sandbox.emulator.records("Accounts")))["id"]
    written = adapter.write(
        "Accounts", [RecordChange(crm_id=account, fields={"Credit_Risk_Score": 42.5})]
    )
    assert written[0].status == "ok"
    [row] = adapter.read_by_ids("Accounts", ["Credit_Risk_Score"], [account])
    assert row.fields["Credit_Risk_Score"] == 42.5


def test_creating_an_existing_field_is_rejected_per_field(adapter: ZohoAdapter) -> None:
    results = adapter.create_fields(
        "Accounts",
        [
            FieldSpec(name="Risk_Score", label="Risk Score", type="Number", precision=5, scale=1),
            FieldSpec(name="Fresh_Field", label="Fresh Field", type="Checkbox"),
            FieldSpec(name="Odd", label="Odd", type="Geolocation"),
        ],
    )
    assert [(r.status, r.error_code) for r in results] == [
        ("rejected", "DUPLICATE_DATA"),
        ("ok", ""),
        ("rejected", "UNSUPPORTED_TYPE"),
    ]
    assert adapter.describe("Accounts").fields["Fresh_Field"].family == "boolean"
