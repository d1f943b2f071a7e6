"""Fxiaoke end to end over 10,500 accounts: offset pages hand over to key pages, nothing lost or repeated, then incremental.

The sandbox refuses `offset` above 10,000 (errorCode 10013, as deep-paging.html documents) and
an offset that is no multiple of `limit`, and counts 100 calls per 20 s per interface (14001),
so this also runs the adapter's rate waits at scale; the sandbox clock moves by each wait
instead of the test sleeping. The sandbox's query log (`emulator.query_log`) shows which
requests the adapter sent: offset pages, then key pages.
"""

from __future__ import annotations

import itertools
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


def account_queries(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    return [q for q in sandbox.emulator.query_log if q["object"] == "AccountObj"]


def is_offset_page(query: dict[str, Any]) -> bool:
    """A page found by its offset alone: no filter past a key, ordered by (time, _id)."""
    return query["filters"] == [] and [o["fieldName"] for o in query["orders"]] == [
        "last_modified_time",
        "_id",
    ]


def is_key_page(query: dict[str, Any]) -> bool:
    """A page found by key: offset 0 and a filter past the last row read."""
    return query["offset"] == 0 and any(
        f["operator"] in ("GT", "GTE", "EQ") for f in query["filters"]
    )


def offset_then_keys(queries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The offset pages of one full read, checked to come first and keep the API's rules."""
    kinds = ["offset" if is_offset_page(q) else "key" if is_key_page(q) else "?" for q in queries]
    assert "?" not in kinds
    switch = kinds.index("key")
    assert kinds == ["offset"] * switch + ["key"] * (len(kinds) - switch)
    pages = queries[:switch]
    assert pages[0]["offset"] == 0
    for query in pages:
        assert query["limit"] <= 100 and query["offset"] <= 10_000
        assert query["offset"] % query["limit"] == 0
    for before, after in itertools.pairwise(pages):
        # Each page starts on the last row of the one before, to check it has not moved.
        assert before["offset"] < after["offset"] <= before["offset"] + before["limit"] - 1
    return pages, len(kinds) - switch


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
        tenant.emulator.query_log.clear()
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
    # Offset pages to the cap, each overlapping the one before by a row, then key pages.
    offsets, key_pages = offset_then_keys(account_queries(tenant))
    assert offsets[-1]["offset"] + offsets[-1]["limit"] > 10_000  # the offsets went to the cap
    assert 5 <= key_pages <= 10  # the last ~450 rows by key, however the ties fall
    assert len(offsets) + key_pages <= 130  # ~one call per 85 rows
    assert waits and set(waits) == {20.0}  # 100 calls per 20 s: waited, never failed
    assert queries == len(offsets) + key_pages + len(waits)  # each wait follows one 14001
    # An offset reader stops at the cap where the key reader went on.
    token = {
        "authorization": f"Bearer {adapter.client.auth.token().value}",
        "x-fs-ea": tenant.emulator.ea,
        "x-fs-userid": tenant.emulator.username,
    }
    tenant.emulator.interface_limit = None
    assert _query(tenant, token, 10_100)["errorCode"] == 10013


def test_edits_and_invalidations_during_the_read_lose_nothing_where_offset_paging_would(
    tenant: RunningSandbox,
) -> None:
    tenant.emulator.interface_limit = None
    waits: list[float] = []
    adapter = adapter_for(tenant, waits)
    stored = sorted(
        tenant.emulator.records("AccountObj"), key=lambda r: (r["last_modified_time"], r["_id"])
    )
    ahead = stored[6_000]["_id"]  # edited before the read reaches it: read once, as edited
    early = stored[10]["_id"]  # read in the first page, then edited by someone
    gone_after_read = stored[100]["_id"]  # read, then invalidated (作废)
    later = stored[20]["_id"]  # read, then edited again while the read goes on by key
    gone_before_read = stored[9_000]["_id"]  # invalidated before the read reaches it
    events = {
        3_000: lambda: tenant.emulator.set_field("AccountObj", ahead, "name", "前面 Ahead Ltd"),
        5_000: lambda: (
            tenant.emulator.set_field("AccountObj", early, "name", "改名 Renamed Ltd"),
            tenant.emulator.invalidate("AccountObj", gone_after_read),
        ),
        8_000: lambda: (
            tenant.emulator.set_field("AccountObj", later, "name", "又改 Edited Ltd"),
            tenant.emulator.invalidate("AccountObj", gone_before_read),
        ),
    }
    tenant.emulator.query_log.clear()
    reader = adapter.read_changed("AccountObj", ["name"], None)
    seen: list[Any] = []
    try:
        for record in reader:
            seen.append(record)
            if len(seen) in events:
                events[len(seen)]()
    finally:
        adapter.close()
    live = {row["_id"]: row for row in tenant.emulator.records("AccountObj")}
    for record_id in (gone_after_read, gone_before_read):  # the module's tenant serves the others
        tenant.emulator.set_field("AccountObj", record_id, "life_status", "normal")
    ids = [r.crm_id for r in seen]
    keys = [(r.modified_at, r.crm_id) for r in seen]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # in order, no version twice
    assert set(live) <= set(ids)  # every live record read
    assert ids.count(early) == ids.count(later) == 2  # once as it was, once as edited
    assert ids.count(ahead) == ids.count(gone_after_read) == 1
    assert gone_before_read not in ids
    once = [i for i in ids if i not in (early, later)]
    assert len(once) == len(set(once)) == len(stored) - 3  # every other record exactly once
    for record_id in (early, later, ahead):  # the last version read is the current one
        last = max(r.modified_at for r in seen if r.crm_id == record_id)
        assert round(last.timestamp() * 1000) == live[record_id]["last_modified_time"]
    # The sandbox's log: the edit ahead left offset pages going; the invalidation behind the
    # read moved the last row read, so the next offset page saw it elsewhere and the read went
    # on by key from that row, long before the cap.
    offsets, key_pages = offset_then_keys(account_queries(tenant))
    assert 3_000 < offsets[-1]["offset"] <= 5_100
    assert key_pages >= 55

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
    """Why each offset page checks the last row read: even ordered by `_id` (which edits do not
    reorder), a record invalidated (作废) during a plain offset read leaves the list, every later
    row moves up a place and the row at the next page boundary is never read. The adapter's
    reader (in (last_modified_time, _id) order; offset pages checked, then key pages) reads it."""
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

    stored = sorted(
        tenant.emulator.records("AccountObj"), key=lambda r: (r["last_modified_time"], r["_id"])
    )
    tenant.emulator.query_log.clear()
    reader = adapter.read_changed("AccountObj", ["name"], None)
    seen: list[str] = []
    reading: dict[str, Any] = {}
    try:
        for record in reader:
            seen.append(record.crm_id)
            if len(seen) == 150:  # a row already read leaves the list: every later row moves up
                tenant.emulator.invalidate("AccountObj", seen[0])
                reading = account_queries(tenant)[-1]  # the offset page being handed out
    finally:
        adapter.close()
    still_live = {row["_id"] for row in tenant.emulator.records("AccountObj")}
    for record_id in (first[5], seen[0]):  # the module's tenant serves the other tests whole
        tenant.emulator.set_field("AccountObj", record_id, "life_status", "normal")
    assert seen[0] == stored[0]["_id"]
    assert still_live <= set(seen), "every record still live was read"
    assert len(seen) == len(set(seen)), "and none twice"
    # The row after the page being read moved up onto its last place: an offset reader's next
    # page (at offset + limit) would start past it. The adapter's next page overlapped the last
    # row read, found it a place earlier, and the read went on by key from that row.
    boundary = reading["offset"] + reading["limit"]
    assert 150 < boundary < 10_000
    assert stored[boundary]["_id"] in seen
    queries = account_queries(tenant)
    offsets, key_pages = offset_then_keys(queries)
    assert offsets[-2] == reading  # one offset page after the invalidation, then key pages
    assert key_pages >= 100
