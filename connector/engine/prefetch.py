"""Reads a CRM record stream on a worker thread, a few chunks ahead of the engine, in the stream's own order."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from connector.models import RawRecord

# How long the worker waits for room in the queue before it looks at the stop flag again.
_POLL_SECONDS = 0.1


def chunked(records: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    """The stream cut into lists of `size` records (the last one may be shorter)."""
    chunk: list[RawRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Chunks:
    """The stream in chunks read on the caller's thread (no read-ahead); closable like Prefetch."""

    def __init__(self, records: Iterator[RawRecord], size: int) -> None:
        self._records = records
        self._chunks = chunked(records, size)

    def __iter__(self) -> Chunks:
        return self

    def start(self) -> None:
        """Nothing to start: the caller's thread reads each chunk when it asks for it."""

    def __next__(self) -> list[RawRecord]:
        return next(self._chunks)

    def __enter__(self) -> Chunks:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        close = getattr(self._records, "close", None)
        if close is not None:
            close()


class Prefetch:
    """Iterates `records` in chunks on its own thread, at most `ahead` chunks before the consumer.

    The adapter's page calls then wait on the network while the engine stores and scores the
    chunks already read: on a real network a sync no longer pays each page's round trip on
    top of its own work. Order is the stream's; an error the stream raised is raised by
    `next()` where the stream raised it (after the chunks before it), so a read fails exactly
    as it would have without the thread. `close()` stops the worker and closes the stream on
    its thread (a generator can only be closed where it runs).
    """

    def __init__(
        self,
        records: Iterator[RawRecord],
        size: int,
        ahead: int,
        name: str,
        *,
        start: bool = True,
        after_first: Callable[[], None] | None = None,
    ) -> None:
        """`start=False`: read nothing until `start()` or the first `next()`; `after_first`: called
        once the first chunk has been handed over (the CRM answered), e.g. to start another stream."""
        self._records = records
        self._size = size
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self._done = False
        self._after_first = after_first
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._started = False
        if start:
            self.start()

    def start(self) -> None:
        """Begin reading ahead (once; later calls do nothing)."""
        if not self._started and not self._stop.is_set():
            self._started = True
            self._thread.start()

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for chunk in chunked(self._records, self._size):
                if not self._put(("chunk", chunk)):
                    return
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised in order
            self._put(("error", exc))
        finally:
            close = getattr(self._records, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> list[RawRecord]:
        if self._done:
            raise StopIteration
        self.start()
        kind, value = self._queue.get()
        if kind == "chunk":
            if self._after_first is not None:
                after, self._after_first = self._after_first, None
                after()
            chunk: list[RawRecord] = value
            return chunk
        self._done = True
        self._thread.join()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead; the stream is closed on the worker's thread."""
        self._stop.set()
        while True:  # make room, so a worker blocked on a full queue sees the flag
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._started:
            self._thread.join()
        else:
            # Never started: the stream is closed here (nothing runs it elsewhere).
            close = getattr(self._records, "close", None)
            if close is not None:
                close()
        self._done = True

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
