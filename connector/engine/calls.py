"""Calls to the CRM sent as many at once as a window allows, their replies kept in order."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from connector.engine.window import Window

Sent = TypeVar("Sent")
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class Reply(Generic[Answer]):
    """What one call in a concurrent round came back with: its answer, its error, or neither (not sent)."""

    answer: Answer | None = None
    error: BaseException | None = None


def call_in_order(
    call: Callable[[Sent], Answer], items: Sequence[Sent], window: Window, name: str
) -> list[Reply[Answer]]:
    """Call `call` once per item, as many at once as the window allows; replies in the items' order.

    Only the CRM calls run on worker threads: the caller applies the replies one by one, in
    order, on its own thread, so the store and the audit log end as after a sequential run.
    After a failed call nothing not yet started is sent (a sequential run would have stopped
    there); calls already in flight finish, so what the CRM confirmed can still be recorded.
    A call the CRM refused for concurrency narrows the window and is sent again (`Window`).
    """
    concurrency = window.ceiling

    def send(item: Sent) -> Answer:
        return window.call(lambda: call(item))

    if concurrency <= 1 or len(items) <= 1:
        replies: list[Reply[Answer]] = []
        for item in items:
            if any(reply.error is not None for reply in replies):
                replies.append(Reply())  # after a failure: never sent
                continue
            try:
                replies.append(Reply(answer=send(item)))
            except BaseException as exc:  # the caller raises it in order
                replies.append(Reply(error=exc))
        return replies
    # The first item (in order) whose call failed: items after it that have not started are
    # never sent; those before it are, as in a sequential run.
    first_failed = [len(items)]
    guard = threading.Lock()

    def guarded(index: int, item: Sent) -> Answer:
        with guard:
            if index > first_failed[0]:
                raise CancelledError  # an earlier batch failed before this one started
        try:
            return send(item)
        except BaseException:
            with guard:
                first_failed[0] = min(first_failed[0], index)
            raise

    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(items)), thread_name_prefix=name
    ) as pool:
        futures = [pool.submit(guarded, index, item) for index, item in enumerate(items)]
        replies = []
        for future in futures:
            try:
                replies.append(Reply(answer=future.result()))
            except CancelledError:
                replies.append(Reply())
            except BaseException as exc:  # the caller raises it in order
                replies.append(Reply(error=exc))
    return replies


__all__ = ["Reply", "call_in_order"]
