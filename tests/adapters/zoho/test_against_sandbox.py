"""Smoke test over real HTTPS against the loopback Zoho sandbox: reads, a write, a task round trip."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from adapters.zoho import ZohoAdapter
from connector.models import RecordChange, TaskAction, TaskPriority
from tests.adapters.zoho._support import sandbox_adapter


@pytest.fixture
def sandbox() -> Iterator[Any]:
    from sandboxes import start

    with start("zoho", accounts=60) as running:
        yield running


@pytest.fixture
def live(sandbox: Any) -> Iterator[ZohoAdapter]:
    adapter = sandbox_adapter(sandbox, "smoke", max_retries=2)
    yield adapter
    adapter.close()


def test_read_write_and_task_round_trip(live: ZohoAdapter, sandbox: Any) -> None:
    accounts = list(live.read_changed("Accounts", ["Account_Name", "Owner.id"], None))
    assert len(accounts) == len(sandbox.emulator.records("Accounts")) == 60
    invoices = list(
        live.read_changed(
            "Invoices", ["Account_Name.id", "Grand_Total", "Status", "Due_Date"], None
        )
    )
    assert len(invoices) == len(sandbox.emulator.records("Invoices"))
    assert len({r.crm_id for r in invoices}) == len(invoices)
    keys = [(r.modified_at, r.crm_id) for r in invoices]
    assert keys == sorted(keys)

    target = accounts[0].crm_id
    written = live.write(
        "Accounts", [RecordChange(crm_id=target, fields={"Risk_Score": Decimal(57)})]
    )
    assert written[0].status == "ok"
    stored = next(r for r in sandbox.emulator.records("Accounts") if str(r["id"]) == target)
    assert float(stored["Risk_Score"]) == 57

    key = f"smoke:{target}:past_due:1"
    task = TaskAction(
        action="create",
        account_id=target,
        rule="past_due",
        dedupe_key=key,
        subject="Invoices past due",
        description="Please call.",
        priority=TaskPriority.HIGH,
    )
    created = live.create_tasks([task])[0]
    assert created.status == "ok" and created.crm_id
    assert live.create_tasks([task])[0].crm_id == created.crm_id
    found = live.find_tasks({key: task.account_id})
    assert found[key].crm_task_id == created.crm_id and not found[key].is_closed
    done = live.update_tasks(
        [task.model_copy(update={"action": "complete", "crm_task_id": created.crm_id})]
    )
    assert done[0].status == "ok"
    assert live.find_tasks({key: task.account_id})[key].is_closed
    assert live.usage().total_calls >= 8
