"""Smoke test over real HTTPS against the loopback Salesforce sandbox: reads, Bulk parity, writes, tasks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from adapters.salesforce import SalesforceAdapter
from adapters.salesforce.settings import SalesforceSettings
from connector.models import RecordChange, TaskAction, TaskPriority
from connector.protocol import find_task_marker
from tests.support import MemoryKv

INVOICE_FIELDS = [
    "Name",
    "blng__Account__c",
    "blng__Account__r.Name",
    "blng__InvoiceDate__c",
    "blng__DueDate__c",
    "blng__TotalAmount__c",
    "blng__Balance__c",
    "blng__InvoiceStatus__c",
    "blng__DaysOutstanding__c",
]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    from sandboxes import start

    with start("salesforce", accounts=60) as running:
        yield running


@pytest.fixture
def connect(sandbox: Any) -> Iterator[Callable[..., SalesforceAdapter]]:
    made: list[SalesforceAdapter] = []

    def build(**overrides: Any) -> SalesforceAdapter:
        values: dict[str, Any] = {
            "name": "smoke",
            "kind": "salesforce",
            "login_url": sandbox.login_url,
            "token_url": sandbox.token_url,
            "auth": "client_credentials",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "ca_bundle": sandbox.ca_bundle,
            "api_version": "62.0",
        }
        values.update(overrides)
        adapter = SalesforceAdapter(
            SalesforceSettings(**values), state=MemoryKv(), sleep=lambda s: None
        )
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


def account_ids(sandbox: Any) -> list[str]:
    return sorted(str(r["Id"]) for r in sandbox.emulator.records("Account"))


def test_full_reads_of_accounts_and_invoices(sandbox, connect) -> None:
    adapter = connect(options={"query_batch_size": 200})
    accounts = list(adapter.read_changed("Account", ["Name", "Owner.IsActive"], None))
    assert {a.crm_id for a in accounts} == set(account_ids(sandbox))
    assert all(isinstance(a.fields["Owner"], dict) for a in accounts)
    invoices = list(adapter.read_changed("blng__Invoice__c", INVOICE_FIELDS, None))
    assert len(invoices) == len(sandbox.emulator.records("blng__Invoice__c")) > 400
    keys = [(r.modified_at, r.crm_id) for r in invoices]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert adapter.usage().calls["GET query/{locator}"] >= 2  # paged through nextRecordsUrl


def test_bulk_read_equals_rest_read(sandbox, connect) -> None:
    rest = list(connect().read_changed("blng__Invoice__c", INVOICE_FIELDS, None))
    bulky = connect(options={"bulk_read_threshold": 100, "bulk_page_size": 1000})
    via_bulk = list(bulky.read_changed("blng__Invoice__c", INVOICE_FIELDS, None))
    assert bulky.usage().calls.get("POST jobs/query") == 1
    assert [r.fields for r in via_bulk] == [r.fields for r in rest]


def test_a_write_is_confirmed_and_visible(sandbox, connect) -> None:
    adapter = connect()
    ids = account_ids(sandbox)[:3]
    sandbox.emulator.lock_record(ids[1], times=1)
    changes = [RecordChange(crm_id=i, fields={"Risk_Score__c": Decimal("61.5")}) for i in ids]
    results = adapter.write("Account", changes)
    assert [r.status for r in results] == ["ok", "ok", "ok"]  # the lock cleared on retry
    rows = {r["Id"]: r for r in sandbox.emulator.records("Account")}
    assert [float(rows[i]["Risk_Score__c"]) for i in ids] == [61.5] * 3


def test_a_bulk_write_is_confirmed_and_visible(sandbox, connect) -> None:
    adapter = connect(options={"bulk_write": True, "bulk_write_threshold": 5})
    ids = account_ids(sandbox)[10:20]
    results = adapter.write(
        "Account", [RecordChange(crm_id=i, fields={"Risk_Score__c": Decimal(17)}) for i in ids]
    )
    assert [r.status for r in results] == ["ok"] * 10
    assert adapter.usage().calls.get("POST jobs/ingest") == 1
    rows = {r["Id"]: r for r in sandbox.emulator.records("Account")}
    assert {float(rows[i]["Risk_Score__c"]) for i in ids} == {17.0}


def test_task_create_find_close(sandbox, connect) -> None:
    adapter = connect()
    account = account_ids(sandbox)[5]
    task = TaskAction(
        action="create",
        account_id=account,
        rule="past_due",
        dedupe_key="smoke:5:past_due:1",
        subject="Invoices 95 days past due",
        description="Please call the customer.",
        priority=TaskPriority.HIGH,
    )
    created = adapter.create_tasks([task])[0]
    assert created.status == "ok"
    assert adapter.create_tasks([task])[0].crm_id == created.crm_id
    ours = [
        t
        for t in sandbox.emulator.tasks()
        if find_task_marker(str(t.get("Description"))) == "smoke:5:past_due:1"
    ]
    assert len(ours) == 1 and ours[0]["Priority"] == "High"
    found = connect().find_tasks({"smoke:5:past_due:1": None})  # a fresh adapter, no account
    assert found["smoke:5:past_due:1"].crm_task_id == created.crm_id
    closed = adapter.update_tasks(
        [task.model_copy(update={"action": "complete", "crm_task_id": created.crm_id})]
    )
    assert closed[0].status == "ok"
    assert adapter.find_tasks({"smoke:5:past_due:1": None})["smoke:5:past_due:1"].is_closed


def test_jwt_and_password_logins(sandbox, connect) -> None:
    jwt_adapter = connect(
        auth="jwt_bearer",
        client_secret=None,
        username=sandbox.username,
        private_key=sandbox.emulator.jwt_private_key,
    )
    assert list(jwt_adapter.read_by_ids("Account", ["Name"], account_ids(sandbox)[:2]))
    password_adapter = connect(
        auth="password",
        username=sandbox.username,
        password=sandbox.password,
        security_token=sandbox.emulator.security_token,
    )
    assert list(password_adapter.read_by_ids("Account", ["Name"], account_ids(sandbox)[:1]))
