"""Issue 18: batches sent concurrently come back in batch order, and a failure stops what a sequential run would not have sent."""

from __future__ import annotations

import threading
import time

import pytest

from connector.engine.calls import call_in_order
from connector.engine.window import Window


class Crm:
    """Answers each batch after a delay; fails the batches named in `failing`."""

    def __init__(self, delays: dict[int, float], failing: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.delays = delays
        self.failing = failing
        self.sent: list[int] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0

    def __call__(self, batch: int) -> str:
        with self.lock:
            self.sent.append(batch)
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(self.delays.get(batch, 0.0))
            if batch in self.failing:
                raise RuntimeError(f"batch {batch} refused")
            return f"answer {batch}"
        finally:
            with self.lock:
                self.in_flight -= 1


def test_replies_come_in_batch_order_whatever_order_the_crm_answers_in() -> None:
    crm = Crm({0: 0.15, 1: 0.0, 2: 0.05, 3: 0.0})
    replies = call_in_order(crm, [0, 1, 2, 3], Window(4), "test")
    assert [reply.answer for reply in replies] == [f"answer {n}" for n in range(4)]
    assert crm.most > 1
    assert crm.most <= 4


def test_no_more_than_the_window_is_in_flight() -> None:
    crm = Crm({n: 0.02 for n in range(12)})
    call_in_order(crm, list(range(12)), Window(3), "test")
    assert sorted(crm.sent) == list(range(12))
    assert 1 < crm.most <= 3


def test_sequentially_nothing_after_a_failed_batch_is_sent() -> None:
    crm = Crm({}, failing={1})
    replies = call_in_order(crm, [0, 1, 2, 3], Window(1), "test")
    assert crm.sent == [0, 1]
    assert replies[0].answer == "answer 0"
    assert isinstance(replies[1].error, RuntimeError)
    assert [(r.answer, r.error) for r in replies[2:]] == [(None, None), (None, None)]


def test_concurrently_batches_before_a_failure_are_answered_and_unstarted_later_ones_never_sent() -> (
    None
):
    # Batch 0 fails while 1 is in flight with it (1's answer is kept); 2.. wait for a slot.
    crm = Crm({0: 0.05, 1: 0.15}, failing={0})
    replies = call_in_order(crm, [0, 1, 2, 3, 4], Window(2), "test")
    assert isinstance(replies[0].error, RuntimeError)
    assert replies[1].answer == "answer 1"
    assert sorted(crm.sent) == [0, 1]
    assert [(r.answer, r.error) for r in replies[2:]] == [(None, None)] * 3


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_failure_after_answered_batches_keeps_their_answers(concurrency: int) -> None:
    crm = Crm({2: 0.05}, failing={2})
    replies = call_in_order(crm, [0, 1, 2], Window(concurrency), "test")
    assert [r.answer for r in replies[:2]] == ["answer 0", "answer 1"]
    assert isinstance(replies[2].error, RuntimeError)
