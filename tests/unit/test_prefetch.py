"""Issue 18: a record stream read ahead on a thread yields the same chunks in the same order, fails where the stream failed, and stops cleanly."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Generator
from datetime import UTC, datetime

import pytest

from connector.engine.prefetch import Chunks, Prefetch
from connector.errors import FatalCrmError
from connector.models import RawRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Stream:
    """A CRM read: records in pages, a pause per page, optionally an error after some records."""

    def __init__(self, count: int, *, fail_after: int | None = None) -> None:
        self.count = count
        self.fail_after = fail_after
        self.produced = 0
        self.closed = False
        self.thread: str | None = None

    def __call__(self) -> Generator[RawRecord, None, None]:
        try:
            for n in range(self.count):
                if n == self.fail_after:
                    raise FatalCrmError("INVALID_FIELD: Risk_Score__c", code="INVALID_FIELD")
                if n % 10 == 0:
                    time.sleep(0.002)  # a page's round trip
                self.produced += 1
                yield RawRecord(crm_id=f"r{n:04d}", modified_at=T0)
        finally:
            self.closed = True
            self.thread = threading.current_thread().name


def _ids(chunks: list[list[RawRecord]]) -> list[list[str]]:
    return [[record.crm_id for record in chunk] for chunk in chunks]


def test_read_ahead_yields_the_chunks_of_a_sequential_read_in_order() -> None:
    with Chunks(Stream(95)(), 10) as sequential:
        expected = _ids(list(sequential))
    with Prefetch(Stream(95)(), 10, 3, "test-read") as ahead:
        got = _ids(list(ahead))
    assert got == expected
    assert len(got) == 10
    assert got[-1] == [f"r{n:04d}" for n in range(90, 95)]


def test_an_error_in_the_stream_comes_after_the_chunks_read_before_it() -> None:
    stream = Stream(100, fail_after=35)
    seen: list[list[str]] = []

    def consume() -> None:
        with Prefetch(stream(), 10, 3, "test-read") as ahead:
            for chunk in ahead:
                seen.append([record.crm_id for record in chunk])

    with pytest.raises(FatalCrmError) as raised:
        consume()
    assert raised.value.code == "INVALID_FIELD"
    assert [chunk[0] for chunk in seen] == ["r0000", "r0010", "r0020"]
    assert stream.closed


def test_reading_ahead_stops_at_the_bound_and_close_stops_the_worker_on_its_thread() -> None:
    stream = Stream(10_000)
    ahead = Prefetch(stream(), 10, 2, "test-read")
    first = next(ahead)
    time.sleep(0.2)
    # One chunk taken, two waiting, one being filled: far from the 10,000 records.
    assert first[0].crm_id == "r0000"
    assert stream.produced <= 10 * 4 + 1
    ahead.close()
    assert stream.closed
    assert stream.thread == "test-read"
    with pytest.raises(StopIteration):
        next(ahead)


def test_a_stream_started_after_the_first_chunk_of_another_never_reads_when_that_one_fails() -> (
    None
):
    failing = Stream(100, fail_after=0)
    second = Stream(100)
    records = second()
    with Prefetch(records, 10, 3, "test-second", start=False) as later:
        with (
            pytest.raises(FatalCrmError),
            Prefetch(failing(), 10, 3, "test-first", after_first=later.start) as first,
        ):
            next(first)
        time.sleep(0.05)
        assert second.produced == 0, "the second stream read although the first one failed"
    assert inspect.getgeneratorstate(records) == "GEN_CLOSED"  # closed, never started


def test_a_stream_started_after_the_first_chunk_of_another_reads_once_that_one_answered() -> None:
    second = Stream(30)
    with (
        Prefetch(second(), 10, 3, "test-second", start=False) as later,
        Prefetch(Stream(30)(), 10, 3, "test-first", after_first=later.start) as first,
    ):
        assert second.produced == 0
        next(first)
        assert _ids(list(later)) == [[f"r{n:04d}" for n in range(k, k + 10)] for k in (0, 10, 20)]
