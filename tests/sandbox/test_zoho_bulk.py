"""Zoho sandbox: a first full sync of over 12,000 invoices through Bulk Read equals the REST read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.zoho import ZohoAdapter
from sandboxes import RunningSandbox, start_zoho
from tests.adapters.zoho._support import sandbox_adapter

FIELDS = [
    "Account_Name.id",
    "Owner.id",
    "Grand_Total",
    "Balance",
    "Status",
    "Due_Date",
    "Paid_Date",
]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_zoho(accounts=1300, invoices_per_account=10, seed=5) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


def _adapter(sandbox: RunningSandbox, **options: Any) -> ZohoAdapter:
    return sandbox_adapter(sandbox, "bulk", max_retries=1, **options)


def _by_id_lookups(fields: dict[str, Any]) -> dict[str, Any]:
    # The export carries a lookup's id only; REST adds name (and email): compare by id.
    return {k: ({"id": v["id"]} if isinstance(v, dict) else v) for k, v in fields.items()}


def test_bulk_read_equals_rest_read(sandbox: RunningSandbox) -> None:
    emulator: Any = sandbox.emulator
    total = len(emulator.records("Invoices"))
    assert total >= 12_000  # some seeded accounts are thin files with one or two invoices
    emulator.bulk.polls_to_complete = 2
    emulator.bulk.page_size = 5_000  # three pages: the merge across pages is exercised
    jobs_before = len(emulator.bulk.jobs)
    bulk = _adapter(sandbox, bulk_poll_seconds=0)
    rest = _adapter(sandbox, bulk_read_threshold=0)
    try:
        via_bulk = list(bulk.read_changed("Invoices", FIELDS, None))
        via_rest = list(rest.read_changed("Invoices", FIELDS, None))
        bulk_calls, rest_calls = bulk.usage().calls, rest.usage().calls
    finally:
        bulk.close()
        rest.close()
    new_jobs = list(emulator.bulk.jobs.values())[jobs_before:]
    assert [job.page for job in new_jobs] == [1, 2, 3]
    assert sum(len(job.rows) for job in new_jobs) == total  # seeded stamps lie before the cutoff
    assert len(via_bulk) == len(via_rest) == total
    keys = [(r.modified_at, r.crm_id) for r in via_bulk]
    assert keys == sorted(keys) == [(r.modified_at, r.crm_id) for r in via_rest]
    for got, want in zip(via_bulk, via_rest, strict=True):
        assert got.fields == _by_id_lookups(want.fields)
    # REST: one call per 200 records; bulk: 1 list page, 1 count, 1 describe,
    # 3 x (create, 2 polls, download), 1 list call for what changed since the cutoff (304).
    assert sum(rest_calls.values()) == -(-total // 200) + 1  # + the token
    assert sum(bulk_calls.values()) == 1 + 1 + 1 + 3 * 4 + 1 + 1


def test_failed_job_falls_back_to_rest(sandbox: RunningSandbox) -> None:
    emulator: Any = sandbox.emulator
    emulator.bulk.polls_to_complete = 1
    emulator.bulk.page_size = 200_000
    emulator.bulk.fail_jobs = 1
    adapter = _adapter(sandbox, bulk_poll_seconds=0)
    try:
        records = list(adapter.read_changed("Invoices", ["Status"], None))
    finally:
        adapter.close()
    assert emulator.bulk.fail_jobs == 0
    total = len(emulator.records("Invoices"))
    assert len(records) == total == len({r.crm_id for r in records})
    assert [(r.modified_at, r.crm_id) for r in records] == sorted(
        (r.modified_at, r.crm_id) for r in records
    )
