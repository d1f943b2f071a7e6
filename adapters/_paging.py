"""Offset-then-keyset paging over a total order: overlapping offset pages, checked, then pages by key.

Some APIs page by `offset`/`limit` up to a cap and document keyset paging past it (Fxiaoke:
`offset` ≤ 10,000, a multiple of `limit` ≤ 100). Offset pages are only safe while the list
does not move: a row before the read position that is edited (it moves to the end of a time
order) or removed (invalidated, deleted) makes every later row move up a place, and the row at
the next page boundary is never read. So each offset page here starts at or before the last row
already handed out, and that row must be exactly where it was; on any shift, or at the cap, the
read goes on by key from the last row handed out, which no shift can move.

The paginator is the two-method object STYLE.md §9 describes: `next_request()` says what to
ask for, `update()` takes the answer and returns the rows not yet handed out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

Row = dict[str, Any]


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_Ordered)


@dataclass(frozen=True)
class OffsetRequest:
    """One offset page to ask for: `offset` is a multiple of `limit`."""

    offset: int
    limit: int


class OffsetThenKeyset(Generic[K]):
    """State of one read: offset pages while they are safe, then the key to go on from.

    Args:
        key: the row's position in the order the API sorts by; unique per row.
        max_limit: rows a page at most (the API's `limit` cap, or a smaller setting).
        max_offset: the highest `offset` the API takes.

    After the offset phase, `handover` says why it ended: "end" (every row was read, nothing
    more to do), "cap" (the next page would pass `max_offset`) or "shift" (the last row handed
    out was not where it was: an edit or removal before it moved the list); `last` is the key
    to go on from.
    """

    def __init__(self, key: Callable[[Row], K], *, max_limit: int, max_offset: int) -> None:
        self.key = key
        self.max_limit = max_limit
        self.max_offset = max_offset
        self.last: K | None = None  # key of the last row handed out
        self.position = -1  # where that row stood in the list the last page showed
        # Overlap needs two rows a page; with one, the read is by key from the start.
        self.handover: str | None = None if max_limit >= 2 else "cap"

    def next_request(self) -> OffsetRequest | None:
        """The next offset page, or None once the offset phase is over (see `handover`)."""
        if self.handover is not None:
            return None
        if self.last is None:
            return OffsetRequest(0, self.max_limit)
        best: OffsetRequest | None = None
        for limit in range(self.max_limit, 1, -1):
            # The page must start at or before the last row handed out (an overlap to check),
            # and its offset must be a multiple of its limit: the furthest-reaching such page.
            offset = self.position - self.position % limit
            if offset > self.max_offset:
                continue
            if best is None or offset + limit > best.offset + best.limit:
                best = OffsetRequest(offset, limit)
        if best is None or best.offset + best.limit - 1 <= self.position:
            self.handover = "cap"
            return None
        return best

    def update(self, request: OffsetRequest, rows: list[Row]) -> list[Row]:
        """Rows of this page not yet handed out; ends the offset phase on a shift or at the end.

        Args:
            request: the page asked for.
            rows: the API's answer, in key order.

        Returns:
            The new rows, in key order (none when the page showed the list had moved).
        """
        fresh = rows
        if self.last is not None:
            at = self.position - request.offset
            if not (0 <= at < len(rows) and self.key(rows[at]) == self.last):
                self.handover = "shift"  # the last row handed out moved: go on by key from it
                return []
            fresh = rows[at + 1 :]
        if fresh:
            self.last = self.key(fresh[-1])
            self.position = request.offset + len(rows) - 1
        if len(rows) < request.limit:
            self.handover = "end"
        return fresh


def offset_then_keyset(
    paginator: OffsetThenKeyset[K],
    by_offset: Callable[[OffsetRequest], list[Row]],
    by_key: Callable[[K | None], Iterator[list[Row]]],
) -> Iterator[list[Row]]:
    """Pages of every row once, in key order: offset pages, then key pages from the last row.

    Args:
        paginator: the read's state (a fresh one per read).
        by_offset: asks the API for one offset page, in key order.
        by_key: pages of the rows after a key (all rows for None), in key order.

    Yields:
        Non-empty lists of rows, in key order, none handed out twice.
    """
    while (request := paginator.next_request()) is not None:
        fresh = paginator.update(request, by_offset(request))
        if fresh:
            yield fresh
    if paginator.handover != "end":
        yield from by_key(paginator.last)
