"""Offset-then-keyset paging (adapters/_paging.py) over a list that moves while it is read."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters._paging import OffsetRequest, OffsetThenKeyset, offset_then_keyset

Row = dict[str, Any]


class MovingList:
    """A list ordered by (time, id) with the API's offset rules, that a hook may change mid-read."""

    def __init__(self, count: int, *, max_offset: int = 10_000) -> None:
        self.rows = {f"r{i:05d}": i // 3 for i in range(count)}  # id -> time; ties of three
        self.clock = count
        self.max_offset = max_offset
        self.asked: list[tuple[str, Any]] = []
        self.before_page: Callable[[], None] = lambda: None

    def ordered(self) -> list[Row]:
        keys = sorted((time, row_id) for row_id, time in self.rows.items())
        return [{"id": row_id, "time": time} for time, row_id in keys]

    def by_offset(self, request: OffsetRequest) -> list[Row]:
        assert 1 <= request.limit <= 100 and request.offset % request.limit == 0
        assert request.offset <= self.max_offset  # the API refuses it past the cap
        self.before_page()
        self.asked.append(("offset", request))
        return self.ordered()[request.offset : request.offset + request.limit]

    def by_key(self, after: tuple[int, str] | None) -> Iterator[list[Row]]:
        while True:
            self.before_page()
            self.asked.append(("key", after))
            page = [r for r in self.ordered() if after is None or key(r) > after][:100]
            if page:
                yield page
                after = key(page[-1])
            if len(page) < 100:
                return

    def edit(self, row_id: str) -> None:
        self.clock += 1
        self.rows[row_id] = self.clock  # an edit moves the row to the end of the time order

    def edit_before_page(self, number: int, row_id: str) -> None:
        """Edit `row_id` just before the `number`th page is read."""
        pages = 0

        def hook() -> None:
            nonlocal pages
            pages += 1
            if pages == number:
                self.edit(row_id)

        self.before_page = hook


def key(row: Row) -> tuple[int, str]:
    return (int(row["time"]), str(row["id"]))


def read(rows: MovingList, max_limit: int = 100) -> tuple[list[Row], OffsetThenKeyset[Any]]:
    paginator = OffsetThenKeyset(key, max_limit=max_limit, max_offset=rows.max_offset)
    out = [r for page in offset_then_keyset(paginator, rows.by_offset, rows.by_key) for r in page]
    return out, paginator


def test_offset_pages_overlap_by_a_row_and_hand_over_to_keys_at_the_cap() -> None:
    rows = MovingList(10_500)
    seen, paginator = read(rows)
    assert [r["id"] for r in seen] == [r["id"] for r in rows.ordered()]  # each once, in order
    assert paginator.handover == "cap"
    offsets = [a for kind, a in rows.asked if kind == "offset"]
    keys = [a for kind, a in rows.asked if kind == "key"]
    assert [kind for kind, _ in rows.asked] == ["offset"] * len(offsets) + ["key"] * len(keys)
    for before, after in itertools.pairwise(offsets):
        assert after.offset <= before.offset + before.limit - 1  # starts on a row already read
        assert after.offset + after.limit > before.offset + before.limit  # and goes further
    assert offsets[-1].offset + offsets[-1].limit > 10_000  # offsets were used to the cap
    assert keys[0] == key(rows.ordered()[offsets[-1].offset + offsets[-1].limit - 1])
    assert len(offsets) <= 10_100 / 85  # overlap costs about one call in nine, not one in two


def test_a_list_that_ends_before_the_cap_is_read_by_offset_alone() -> None:
    rows = MovingList(250)
    seen, paginator = read(rows)
    assert len(seen) == 250 and paginator.handover == "end"
    assert all(kind == "offset" for kind, _ in rows.asked)


def test_an_edit_before_the_read_position_switches_to_keys_from_the_last_row_read() -> None:
    rows = MovingList(1_000)
    # Two pages read, then the edit moves a row already read to the end.
    rows.edit_before_page(3, rows.ordered()[5]["id"])
    seen, paginator = read(rows)
    assert paginator.handover == "shift"
    ids = [r["id"] for r in seen]
    assert set(ids) == set(rows.rows) and len(ids) == 1_001  # the edited row twice: two versions
    assert len({key(r) for r in seen}) == len(seen)  # no version twice
    assert [kind for kind, _ in rows.asked[:3]] == ["offset", "offset", "offset"]
    assert rows.asked[3][0] == "key"


def test_an_edit_ahead_of_the_read_position_keeps_offset_pages_going() -> None:
    rows = MovingList(1_000)
    # Rows after the cursor move up; the last row read stays put.
    rows.edit_before_page(3, rows.ordered()[600]["id"])
    seen, paginator = read(rows)
    assert paginator.handover == "end"
    assert sorted(r["id"] for r in seen) == sorted(rows.rows)  # once, as edited


@pytest.mark.parametrize("seed", range(40))
def test_no_live_row_is_lost_or_repeated_however_the_list_moves(seed: int) -> None:
    chance = random.Random(seed)
    rows = MovingList(chance.randrange(300, 2_500), max_offset=chance.choice([1_000, 10_000]))
    live_throughout = set(rows.rows)
    gone: set[str] = set()

    def churn() -> None:
        for _ in range(chance.choice([0, 0, 0, 0, 0, 0, 1, 2])):
            row_id = chance.choice(sorted(rows.rows))
            if chance.random() < 0.3:
                del rows.rows[row_id]  # invalidated: it leaves the list
                gone.add(row_id)
            else:
                rows.edit(row_id)
            live_throughout.discard(row_id)
        if chance.random() < 0.2:
            new_id = f"n{chance.randrange(10**6):06d}"
            rows.clock += 1
            rows.rows[new_id] = rows.clock

    rows.before_page = churn
    seen, _ = read(rows, max_limit=chance.choice([2, 7, 100]))
    keys = [key(r) for r in seen]
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    assert live_throughout <= {r["id"] for r in seen}
    # Every row still there at the end is read in its last version.
    assert {(t, i) for i, t in rows.rows.items()} <= set(keys)


def test_a_page_of_one_row_cannot_overlap_so_the_read_is_by_key_from_the_start() -> None:
    rows = MovingList(30)
    seen, paginator = read(rows, max_limit=1)
    assert len(seen) == 30 and all(kind == "key" for kind, _ in rows.asked)
    assert paginator.handover == "cap"
