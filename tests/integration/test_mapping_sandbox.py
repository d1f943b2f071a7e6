"""Every preset passes check_mapping against its sandbox CRM's describe, and reads its records.

Loopback HTTPS through the real adapters (skipped until the adapter and sandbox are installed).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import pytest

from connector.errors import RecordError
from connector.mapping import load_mapping, preset_names
from connector.mapping.check import check_mapping, plan_fields
from connector.protocol import CrmAdapter, ObjectDescription
from connector.registry import (
    create_adapter,
    sandbox_starter,
)
from tests.support import MemoryKv

pytestmark = pytest.mark.integration


def _settings(sandbox: Any) -> Any:
    # The conformance suite builds settings from the sandbox's own snippet, as a user would.
    from tests.conformance.conftest import settings_for

    return settings_for(sandbox)


@pytest.fixture(scope="module", params=["salesforce", "zoho", "fxiaoke"])
def crm_adapter(request: pytest.FixtureRequest) -> Iterator[tuple[str, CrmAdapter]]:
    kind = str(request.param)
    with sandbox_starter(kind)(accounts=20, seed=5) as sandbox:
        adapter = create_adapter(_settings(sandbox), state=MemoryKv(), sleep=lambda _s: None)
        try:
            yield kind, adapter
        finally:
            adapter.close()


def _cached(adapter: CrmAdapter) -> Any:
    seen: dict[str, ObjectDescription] = {}

    def describe(crm_object: str) -> ObjectDescription:
        if crm_object not in seen:
            seen[crm_object] = adapter.describe(crm_object)
        return seen[crm_object]

    return describe


def test_every_preset_passes_check_against_its_sandbox(crm_adapter: tuple[str, CrmAdapter]) -> None:
    kind, adapter = crm_adapter
    describe = _cached(adapter)
    presets = [name for name in preset_names() if name.startswith(f"{kind}.")]
    assert presets
    for name in presets:
        mapping = load_mapping(name)
        errors = [
            problem
            for problem in check_mapping(mapping, describe)
            if getattr(problem, "severity", "error") == "error"
        ]
        if name == "salesforce.custom-invoice":
            # The sandbox models Salesforce Billing; a custom Invoice__c may be absent there.
            errors = [e for e in errors if e.key != "objects.invoice.crm_object"]
        assert errors == [], f"{name}: " + "; ".join(str(e) for e in errors)
        assert [
            m.field for m in plan_fields(mapping, describe) if m.crm_object != "Invoice__c"
        ] == []


def test_the_default_preset_reads_sandbox_records(crm_adapter: tuple[str, CrmAdapter]) -> None:
    kind, adapter = crm_adapter
    default = {"zoho": "zoho.inventory", "fxiaoke": "fxiaoke.payment-plan"}
    mapping = load_mapping(default.get(kind, "salesforce.billing"))
    accounts = list(
        islice(
            adapter.read_changed(
                mapping.crm_object("account"), mapping.read_fields("account"), None
            ),
            50,
        )
    )
    assert accounts
    for raw in accounts:
        account = mapping.to_account(raw)
        assert account.crm_id == raw.crm_id and account.name
    converted = rejected = 0
    for raw in islice(
        adapter.read_changed(mapping.crm_object("invoice"), mapping.read_fields("invoice"), None),
        500,
    ):
        try:
            invoice = mapping.to_invoice(raw)
        except RecordError:
            rejected += 1
            continue
        if invoice is not None:
            converted += 1
            assert invoice.account_id
    # Seeded data may hold a few deliberately bad invoices; almost all must convert.
    assert converted > 0 and rejected <= converted // 10
