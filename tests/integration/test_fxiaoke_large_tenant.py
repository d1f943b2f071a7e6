"""Fxiaoke end to end over 10,500 accounts: past the 10,000-offset cap with nothing lost or repeated, then incremental.

The sandbox refuses `offset` above 10,000 (errorCode 10013, as deep-paging.html documents) and
counts 100 calls per 20 s per interface (14001), so this also runs the adapter's rate waits at
scale; the sandbox clock moves by each wait instead of the test sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from adapters.fxiaoke import FxiaokeAdapter
from adapters.fxiaoke.auth import forget_all
from adapters.fxiaoke.settings import FxiaokeSettings
from sandboxes import RunningSandbox, start_fxiaoke

pytestmark = pytest.mark.slow

ACCOUNTS = 10_500
FROZEN = 1_796_083_200.0  # 2026-12-01, a month after the seed's day


@pytest.fixture(scope="module")
def tenant() -> Iterator[RunningSandbox]:
    forget_all()
    # One plan per account (thin files get two): the account list is what is being paged.
    # The sandbox's clock stands still unless a wait moves it, so the 20 s windows are exact.
    with start_fxiaoke(
        accounts=ACCOUNTS, seed=3, tls=False, invoices_per_account=1, clock=lambda: FROZEN
    ) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]
    forget_all()


def adapter_for(sandbox: RunningSandbox, waits: list[float]) -> FxiaokeAdapter:
    def sleep(seconds: float) -> None:
        waits.append(seconds)
        sandbox.emulator.advance(seconds)

    settings = FxiaokeSettings.model_validate(
        dict(
            name="fx_large",
            kind="fxiaoke",
            base_url=sandbox.base_url,
            auth="app_secret",
            client_id=sandbox.client_id,
            client_secret=sandbox.client_secret,
            refresh_token=sandbox.refresh_token,
            username=sandbox.emulator.username,
        )
    )
    return FxiaokeAdapter(settings, sleep=sleep)


BY_TIME = [{"fieldName": "last_modified_time", "isAsc": True}, {"fieldName": "_id", "isAsc": True}]


def _query(
    sandbox: RunningSandbox,
    token: dict[str, str],
    offset: int,
    orders: list[dict[str, Any]] = BY_TIME,
) -> dict[str, Any]:
    body = {
        "data": {
            "dataObjectApiName": "AccountObj",
            "search_query_info": {
                "limit": 100,
                "offset": offset,
                "filters": [],
                "orders": orders,
                "fieldProjection": ["_id"],
            },
        }
    }
    return dict(
        requests.post(
            f"{sandbox.base_url}/cgi/crm/v2/data/query", json=body, headers=token, timeout=30
        ).json()
    )


def test_every_account_is_read_once_in_order_past_the_offset_cap(tenant: RunningSandbox) -> None:
    stored = {row["_id"] for row in tenant.emulator.records("AccountObj")}
    assert len(stored) == ACCOUNTS
    waits: list[float] = []
    adapter = adapter_for(tenant, waits)
    try:
        tenant.server.reset_calls()
        records = list(adapter.read_changed("AccountObj", ["name", "owner.id"], None))
    finally:
        adapter.close()
    ids = [r.crm_id for r in records]
    assert len(ids) == ACCOUNTS and set(ids) == stored  # nothing lost, nothing repeated
    keys = [(r.modified_at, r.crm_id) for r in records]
    assert keys == sorted(keys)
    # Shared timestamps straddle page boundaries (whole-day stamps), so the key hand-over ran.
    assert len({r.modified_at for r in records}) < ACCOUNTS // 2
    queries = tenant.server.calls[("POST", "/cgi/crm/v2/data/query")]
    assert 106 <= queries <= 125  # ~one call per 100 rows, however the ties fall
    assert waits and set(waits) == {20.0}  # 100 calls per 20 s: waited, never failed
    # An offset reader stops at the cap where the key reader went on.
    token = {
        "authorization": f"Bearer {adapter.client.auth.token().value}",
        "x-fs-ea": tenant.emulator.ea,
        "x-fs-userid": tenant.emulator.username,
    }
    tenant.emulator.interface_limit = None
    assert _query(tenant, token, 10_100)["errorCode"] == 10013


def test_an_edit_during_the_read_loses_nothing_where_offset_paging_would(
    tenant: RunningSandbox,
) -> None:
    tenant.emulator.interface_limit = None
    waits: list[float] = []
    adapter = adapter_for(tenant, waits)
    stored = sorted(
        tenant.emulator.records("AccountObj"), key=lambda r: (r["last_modified_time"], r["_id"])
    )
    early = stored[10]["_id"]  # read in the first page, then edited by someone
    reader = adapter.read_changed("AccountObj", ["name"], None)
    seen: list[Any] = []
    try:
        for record in reader:
            seen.append(record)
            if len(seen) == 150:
                tenant.emulator.set_field("AccountObj", early, "name", "改名 Renamed Ltd")
    finally:
        adapter.close()
    ids = [r.crm_id for r in seen]
    assert set(ids) == {row["_id"] for row in stored}
    assert ids.count(early) == 2  # once as it was, once as edited (a newer modified_at)
    assert len(ids) == ACCOUNTS + 1
    # Offset paging over the same list: the edit moves one row to the end, every later row
    # shifts up a place, and the row at the next page boundary is never read.
    token = {
        "authorization": f"Bearer {adapter.client.auth.token().value}",
        "x-fs-ea": tenant.emulator.ea,
        "x-fs-userid": tenant.emulator.username,
    }
    first = [row["_id"] for row in _query(tenant, token, 0)["data"]["dataList"]]
    tenant.emulator.set_field("AccountObj", first[5], "name", "又改名 Renamed Again Ltd")
    second = [row["_id"] for row in _query(tenant, token, 100)["data"]["dataList"]]
    now_sorted = sorted(
        tenant.emulator.records("AccountObj"), key=lambda r: (r["last_modified_time"], r["_id"])
    )
    skipped = now_sorted[99]["_id"]  # was 101st, now 100th: behind the boundary already read
    assert skipped not in first and skipped not in second


def test_an_incremental_run_after_edits_reads_only_what_changed(tenant: RunningSandbox) -> None:
    tenant.emulator.interface_limit = None
    waits: list[float] = []
    adapter = adapter_for(tenant, waits)
    try:
        everything = list(adapter.read_changed("AccountObj", ["name"], None))
        watermark = max(r.modified_at for r in everything)
        edited = [r.crm_id for r in everything[::1500]]
        for record_id in edited:
            tenant.emulator.set_field("AccountObj", record_id, "field_Trm3b__c", "45")
        tenant.server.reset_calls()
        # The engine's look-back overlap: a minute before the watermark.
        changed = list(
            adapter.read_changed("AccountObj", ["name"], watermark - timedelta(seconds=60))
        )
    finally:
        adapter.close()
    at_watermark = {
        r.crm_id for r in everything if r.modified_at >= watermark - timedelta(seconds=60)
    }
    assert {r.crm_id for r in changed} == set(edited) | at_watermark
    assert len(changed) < 30  # not the 10,500
    assert tenant.server.calls[("POST", "/cgi/crm/v2/data/query")] <= 3  # a page, plus deletions


def test_an_invalidation_during_an_id_ordered_offset_read_skips_a_row_where_keys_do_not(
    tenant: RunningSandbox,
) -> None:
    """Why there is no offset-then-keyset hand-over: even ordered by `_id` (which edits do not
    reorder), a record invalidated (作废) during an offset read leaves the list, every later row
    moves up a place and the row at the next page boundary is never read. Key paging reads it."""
    tenant.emulator.interface_limit = None
    waits: list[float] = []
    adapter = adapter_for(tenant, waits)
    token = {
        "authorization": f"Bearer {adapter.client.auth.token().value}",
        "x-fs-ea": tenant.emulator.ea,
        "x-fs-userid": tenant.emulator.username,
    }
    by_id = [{"fieldName": "_id", "isAsc": True}]
    first = [row["_id"] for row in _query(tenant, token, 0, by_id)["data"]["dataList"]]
    tenant.emulator.invalidate("AccountObj", first[5])
    second = [row["_id"] for row in _query(tenant, token, 100, by_id)["data"]["dataList"]]
    live = sorted(row["_id"] for row in tenant.emulator.records("AccountObj"))
    skipped = live[99]  # was 101st, now 100th: behind the boundary already read
    assert skipped not in first and skipped not in second

    doomed = live[150]
    reader = adapter.read_changed("AccountObj", ["name"], None)
    seen: list[str] = []
    try:
        for record in reader:
            seen.append(record.crm_id)
            if len(seen) == 50:
                tenant.emulator.invalidate("AccountObj", doomed)
    finally:
        adapter.close()
    still_live = {row["_id"] for row in tenant.emulator.records("AccountObj")}
    for record_id in (first[5], doomed):  # the module's tenant serves the other tests whole
        tenant.emulator.set_field("AccountObj", record_id, "life_status", "normal")
    assert still_live <= set(seen), "every record still live was read"
    assert len(seen) == len(set(seen)), "and none twice"
