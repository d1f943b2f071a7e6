"""The contract every adapter must honour, run against each sandbox CRM over real HTTPS.

Failures read `test_partial_batch_failure[zoho]`: the same case for every CRM.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from connector.errors import AuthError, FatalCrmError
from connector.models import RecordChange, TaskAction, TaskPriority
from connector.protocol import (
    CrmAdapter,
    TaskDeleter,
    TaskFinder,
    TaskScanner,
    find_task_marker,
)
from tests.conformance.conftest import ADAPTERS, Crm, builtin_adapters, settings_for


def account_ids(sandbox: Any, crm: Crm) -> list[str]:
    return sorted(str(record[crm.id_field]) for record in sandbox.emulator.records(crm.account))


def carries_marker(task_record: dict[str, Any], key: str) -> bool:
    # Where a task keeps its text differs by CRM (and is the adapter's choice, not the mapping's):
    # any text field carrying our marker line counts.
    return any(find_task_marker(str(value)) == key for value in task_record.values())


def crm_value(sandbox: Any, crm: Crm, record_id: str, field: str) -> Any:
    for record in sandbox.emulator.records(crm.account):
        if str(record.get(crm.id_field)) == record_id:
            return record.get(field)
    raise KeyError(record_id)


def test_every_builtin_adapter_is_registered_and_has_a_sandbox() -> None:
    builtin = builtin_adapters()
    assert builtin, "pyproject.toml registers no adapter"
    missing = set(builtin) - set(ADAPTERS)
    assert not missing, f"not installed with a sandbox, so not under this suite: {sorted(missing)}"


def test_declares_capabilities(adapter: CrmAdapter) -> None:
    caps = adapter.capabilities
    assert caps.max_write_batch >= 1
    assert caps.max_read_page >= 1
    assert caps.supports_tasks


def test_describe_lists_mapped_fields(adapter: CrmAdapter, crm: Crm) -> None:
    description = adapter.describe(crm.account)
    assert crm.score_field in description.fields
    assert description.fields[crm.score_field].updateable
    assert description.fields[crm.score_field].family in (
        "number",
        "integer",
        "currency",
        "percent",
    )


def test_describe_unknown_object_is_fatal(adapter: CrmAdapter) -> None:
    with pytest.raises(FatalCrmError):
        adapter.describe("No_Such_Object__x")


def test_reads_every_record_to_the_last_page(adapter: CrmAdapter, crm: Crm, sandbox: Any) -> None:
    records = list(adapter.read_changed(crm.invoice, [], None))
    expected = len(sandbox.emulator.records(crm.invoice))
    assert expected > adapter.capabilities.max_read_page or expected >= 100
    assert len(records) == expected
    assert len({record.crm_id for record in records}) == expected
    stamps = [(record.modified_at, record.crm_id) for record in records]
    assert stamps == sorted(stamps), "records come oldest first, ties by id"


def test_honours_since_with_a_closed_start(adapter: CrmAdapter, crm: Crm, sandbox: Any) -> None:
    everything = list(adapter.read_changed(crm.account, [crm.name_field], None))
    pivot = everything[len(everything) // 2].modified_at
    later = list(adapter.read_changed(crm.account, [crm.name_field], pivot))
    expected = {record.crm_id for record in everything if record.modified_at >= pivot}
    assert {record.crm_id for record in later if not record.deleted} == expected


def test_sees_an_edit_made_after_a_read(adapter: CrmAdapter, crm: Crm, sandbox: Any) -> None:
    first = list(adapter.read_changed(crm.account, [crm.name_field], None))
    newest = max(record.modified_at for record in first)
    target = first[0].crm_id
    sandbox.emulator.set_field(crm.account, target, crm.name_field, "Renamed GmbH")
    changed = list(adapter.read_changed(crm.account, [crm.name_field], newest))
    assert target in {record.crm_id for record in changed}
    renamed = next(record for record in changed if record.crm_id == target)
    assert renamed.fields[crm.name_field] == "Renamed GmbH"


def test_write_is_confirmed_and_visible(adapter: CrmAdapter, crm: Crm, sandbox: Any) -> None:
    ids = account_ids(sandbox, crm)[:3]
    changes = [
        RecordChange(crm_id=record_id, fields={crm.score_field: Decimal("42.5")})
        for record_id in ids
    ]
    results = adapter.write(crm.account, changes)
    assert [result.status for result in results] == ["ok"] * 3
    assert [result.crm_id for result in results] == ids
    for record_id in ids:
        assert float(crm_value(sandbox, crm, record_id, crm.score_field)) == 42.5


def test_partial_batch_failure_is_reported_per_record(
    adapter: CrmAdapter, crm: Crm, sandbox: Any
) -> None:
    ids = account_ids(sandbox, crm)[:3]
    changes = [
        RecordChange(crm_id=ids[0], fields={crm.score_field: Decimal(10)}),
        RecordChange(crm_id=ids[1], fields={"No_Such_Field_Xyz": 1}),
        RecordChange(crm_id=ids[2], fields={crm.score_field: Decimal(30)}),
    ]
    results = adapter.write(crm.account, changes)
    assert [result.status for result in results] == ["ok", "rejected", "ok"]
    assert results[1].error_code
    assert float(crm_value(sandbox, crm, ids[0], crm.score_field)) == 10
    assert float(crm_value(sandbox, crm, ids[2], crm.score_field)) == 30


def test_write_batches_respect_the_declared_maximum(
    adapter: CrmAdapter, crm: Crm, sandbox: Any
) -> None:
    ids = account_ids(sandbox, crm)
    batch = [
        RecordChange(crm_id=record_id, fields={crm.score_field: Decimal(5)})
        for record_id in ids[: adapter.capabilities.max_write_batch]
    ]
    results = adapter.write(crm.account, batch)
    assert all(result.status == "ok" for result in results)


def test_transient_errors_are_retried(
    adapter: CrmAdapter, crm: Crm, sandbox: Any, sleeper: Any
) -> None:
    sandbox.server.faults.burst_429 = 2
    ids = account_ids(sandbox, crm)[:1]
    results = adapter.write(
        crm.account, [RecordChange(crm_id=ids[0], fields={crm.score_field: Decimal(7)})]
    )
    assert results[0].status == "ok"
    assert len(sleeper.waits) >= 2


def test_server_errors_are_retried(
    adapter: CrmAdapter, crm: Crm, sandbox: Any, sleeper: Any
) -> None:
    sandbox.server.faults.rate_503 = 1.0
    calls: list[int] = []

    def clear_after_two(seconds: float) -> None:
        calls.append(1)
        if len(calls) == 2:
            sandbox.server.faults.rate_503 = 0.0

    sleeper.hook = clear_after_two
    records = list(adapter.read_changed(crm.account, [crm.name_field], None))
    assert records
    assert len(calls) >= 2


def test_expired_session_refreshes_once(adapter: CrmAdapter, crm: Crm, sandbox: Any) -> None:
    list(adapter.read_changed(crm.account, [crm.name_field], None))
    sandbox.emulator.expire_tokens()
    records = list(adapter.read_changed(crm.account, [crm.name_field], None))
    assert records


def test_bad_credentials_fail_fast(crm: Crm, sandbox: Any, kv: Any) -> None:
    from connector.registry import create_adapter

    broken = create_adapter(
        settings_for(sandbox, client_id="wrong-client"), state=kv, sleep=lambda s: None
    )
    try:
        with pytest.raises(AuthError):
            list(broken.read_changed(crm.account, [crm.name_field], None))
    finally:
        broken.close()


def task(account_id: str, key: str) -> TaskAction:
    return TaskAction(
        action="create",
        account_id=account_id,
        rule="past_due",
        dedupe_key=key,
        subject="Invoices 95 days past due",
        description="Please call the customer.",
        priority=TaskPriority.HIGH,
    )


def finder(adapter: CrmAdapter) -> TaskFinder:
    """The suite looks tasks up through the optional TaskFinder every built-in adapter offers."""
    assert isinstance(adapter, TaskFinder)
    return adapter


def test_no_duplicate_task_for_one_dedupe_key(adapter: CrmAdapter, crm: Crm, sandbox: Any) -> None:
    account_id = account_ids(sandbox, crm)[0]
    first = adapter.create_tasks([task(account_id, "conf:1:past_due:1")])
    again = adapter.create_tasks([task(account_id, "conf:1:past_due:1")])
    assert first[0].status == "ok" and again[0].status == "ok"
    assert first[0].crm_id == again[0].crm_id
    ours = [t for t in sandbox.emulator.tasks() if carries_marker(t, "conf:1:past_due:1")]
    assert len(ours) == 1
    found = finder(adapter).find_tasks(
        {"conf:1:past_due:1": account_id, "conf:1:past_due:2": account_id}
    )
    assert set(found) == {"conf:1:past_due:1"}
    assert not found["conf:1:past_due:1"].is_closed


def test_lost_create_response_leaves_exactly_one_task(
    adapter: CrmAdapter, crm: Crm, sandbox: Any
) -> None:
    account_id = account_ids(sandbox, crm)[1]
    sandbox.server.faults.drop_after_commit = 1
    results = adapter.create_tasks([task(account_id, "conf:2:past_due:1")])
    sandbox.server.faults.drop_after_commit = 0
    assert results[0].status in ("ok", "unknown")
    if results[0].status == "unknown":
        results = adapter.create_tasks([task(account_id, "conf:2:past_due:1")])
    ours = [t for t in sandbox.emulator.tasks() if carries_marker(t, "conf:2:past_due:1")]
    assert len(ours) == 1
    assert results[0].status == "ok"


def test_complete_closes_the_task(adapter: CrmAdapter, crm: Crm, sandbox: Any) -> None:
    account_id = account_ids(sandbox, crm)[2]
    created = adapter.create_tasks([task(account_id, "conf:3:past_due:1")])[0]
    done = adapter.update_tasks(
        [
            TaskAction(
                action="complete",
                account_id=account_id,
                rule="past_due",
                dedupe_key="conf:3:past_due:1",
                crm_task_id=created.crm_id,
            )
        ]
    )
    assert done[0].status == "ok"
    assert (
        finder(adapter).find_tasks({"conf:3:past_due:1": account_id})["conf:3:past_due:1"].is_closed
    )


def test_a_create_of_an_existing_task_reports_it_as_found(
    adapter: CrmAdapter, crm: Crm, sandbox: Any
) -> None:
    account_id = account_ids(sandbox, crm)[4]
    made = adapter.create_tasks([task(account_id, "conf:5:past_due:1")])[0]
    assert made.status == "ok" and not made.existed
    again = adapter.create_tasks([task(account_id, "conf:5:past_due:1")])[0]
    assert again.existed and again.crm_id == made.crm_id


def test_open_tasks_lists_every_open_marked_task_and_no_closed_one(
    adapter: CrmAdapter, crm: Crm, sandbox: Any
) -> None:
    assert isinstance(adapter, TaskScanner)
    ids = account_ids(sandbox, crm)
    keys = [f"conf:{n}:past_due:1" for n in range(10, 14)]
    made = adapter.create_tasks([task(ids[n], key) for n, key in enumerate(keys)])
    adapter.update_tasks(
        [
            TaskAction(
                action="complete",
                account_id=ids[0],
                rule="past_due",
                dedupe_key=keys[0],
                crm_task_id=made[0].crm_id,
            )
        ]
    )
    scanned = {state.dedupe_key: state for state in adapter.open_tasks()}
    assert set(scanned) == set(keys[1:])
    assert {state.crm_task_id for state in scanned.values()} == {r.crm_id for r in made[1:]}
    assert not any(state.is_closed for state in scanned.values())


def test_delete_tasks_removes_them_and_refuses_an_unknown_id(
    adapter: CrmAdapter, crm: Crm, sandbox: Any
) -> None:
    assert isinstance(adapter, TaskDeleter)
    ids = account_ids(sandbox, crm)
    made = adapter.create_tasks([task(ids[20], "conf:20:past_due:1")])[0]
    assert made.crm_id is not None
    results = adapter.delete_tasks([made.crm_id])
    assert [r.status for r in results] == ["ok"]
    assert "conf:20:past_due:1" not in finder(adapter).find_tasks({"conf:20:past_due:1": ids[20]})
    again = adapter.delete_tasks([made.crm_id])
    assert [r.status for r in again] == ["rejected"]


def test_usage_counts_calls(adapter: CrmAdapter, crm: Crm) -> None:
    list(adapter.read_changed(crm.account, [crm.name_field], None))
    usage = adapter.usage()
    assert usage.total_calls >= 1


def test_overlap_window_rereads_are_idempotent(adapter: CrmAdapter, crm: Crm) -> None:
    everything = list(adapter.read_changed(crm.account, [crm.name_field], None))
    newest = max(record.modified_at for record in everything)
    window = list(
        adapter.read_changed(crm.account, [crm.name_field], newest - timedelta(days=3650))
    )
    assert {r.crm_id for r in window if not r.deleted} == {r.crm_id for r in everything}
