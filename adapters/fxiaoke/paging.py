"""Reading an object in (last_modified_time, _id) order: offset pages to the 10,000 cap, then by key.

Offset pages come first (adapters/_paging.py: each overlaps the last row already read and
checks it has not moved); past the cap (errorCode 10013), or as soon as an edit or an
invalidation moves the list, the read goes on by key from the last row read. The vendor's
answer to the cap (developer.fxiaoke.com .../FAQ/deep-paging.html) is keyset paging: keep
`offset` at 0 and filter past the last key. Reading changed records oldest first needs the key
(last_modified_time, _id), and filters are ANDed, so each key page asks for
`last_modified_time GTE <last time>` ordered by (time, _id) and drops the rows of the last
timestamp already yielded. Only when one timestamp fills a whole page (a bulk import) does it page
that timestamp by `_id GT` and then go on with `last_modified_time GT`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

TIME = "last_modified_time"
ORDER = [{"fieldName": TIME, "isAsc": True}, {"fieldName": "_id", "isAsc": True}]

Query = Callable[[list[dict[str, Any]], list[dict[str, Any]]], list[dict[str, Any]]]


def row_key(row: dict[str, Any]) -> tuple[int, str]:
    """A row's place in (last_modified_time, _id) order."""
    return (int(row.get(TIME) or 0), str(row.get("_id")))


def _cond(field: str, operator: str, value: Any) -> dict[str, Any]:
    return {"field_name": field, "operator": operator, "field_values": [value]}


def changed_pages(
    query: Query,
    base: list[dict[str, Any]],
    page_size: int,
    after: tuple[int, str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Pages of rows matching `base`, ascending by (last_modified_time, _id), each row once.

    Args:
        query: sends one query with (filters, orders) at offset 0 and `page_size` rows.
        base: the caller's filters (e.g. `last_modified_time GTE since`).
        page_size: rows per query (at most 100).
        after: the key of the last row already read (rows up to it are skipped).

    Yields:
        Lists of rows, in key order; a row edited during the read comes again with its new time.
    """
    last = after
    strictly_after: int | None = None  # set after paging a whole timestamp by _id
    while True:
        filters = list(base)
        if strictly_after is not None:
            filters.append(_cond(TIME, "GT", strictly_after))
        elif last is not None:
            filters.append(_cond(TIME, "GTE", last[0]))
        rows = query(filters, ORDER)
        fresh = [row for row in rows if last is None or row_key(row) > last]
        if fresh:
            yield fresh
            last = row_key(fresh[-1])
            strictly_after = None
        if len(rows) < page_size:
            return
        if fresh:
            continue
        # One timestamp fills the whole page: walk it by _id, then go on after it.
        assert last is not None
        stamp, after_id = last
        while True:
            tie = query(
                [*base, _cond(TIME, "EQ", stamp), _cond("_id", "GT", after_id)],
                [{"fieldName": "_id", "isAsc": True}],
            )
            if tie:
                yield tie
                after_id = str(tie[-1]["_id"])
                last = (stamp, after_id)
            if len(tie) < page_size:
                break
        strictly_after = stamp
