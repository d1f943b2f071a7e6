"""Issue 18: a CRM that refuses calls for concurrency narrows the engine's window; the batches still all go through, in order."""

from __future__ import annotations

import threading
import time

import pytest

from connector.engine import window as window_module
from connector.engine.calls import call_in_order
from connector.engine.window import GROW_AFTER, MAX_REFUSALS, Window
from connector.errors import ConcurrencyLimitError


class LimitedCrm:
    """Answers up to `limit` calls at once and refuses the rest, as Zoho's 429 TOO_MANY_REQUESTS does."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.in_flight = 0
        self.refused = 0
        self.answered: list[int] = []

    def __call__(self, batch: int) -> str:
        with self.lock:
            if self.in_flight >= self.limit:
                self.refused += 1
                raise ConcurrencyLimitError(
                    "the concurrency limit of the user for the app is exceeded",
                    code="TOO_MANY_REQUESTS",
                    status=429,
                )
            self.in_flight += 1
        try:
            time.sleep(0.01)
            with self.lock:
                self.answered.append(batch)
            return f"answer {batch}"
        finally:
            with self.lock:
                self.in_flight -= 1


def test_refusals_for_concurrency_narrow_the_window_and_every_batch_is_answered_in_order() -> None:
    crm = LimitedCrm(limit=2)
    waits: list[float] = []
    window = Window(8, sleep=waits.append)
    replies = call_in_order(crm, list(range(30)), window, "test")
    assert [reply.error for reply in replies] == [None] * 30
    assert [reply.answer for reply in replies] == [f"answer {n}" for n in range(30)]
    assert sorted(crm.answered) == list(range(30))
    assert crm.refused > 0
    assert window.refusals == crm.refused
    assert window.lowest <= 2
    assert waits and waits[0] == window_module.BASE_WAIT_SECONDS


def test_a_retry_after_the_crm_names_is_the_wait() -> None:
    calls = {"n": 0}

    def refuse_once() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConcurrencyLimitError("ConcurrentPerOrgLongTxn Limit exceeded.", retry_after=7)
        return "ok"

    waits: list[float] = []
    assert Window(4, sleep=waits.append).call(refuse_once) == "ok"
    assert waits == [7]


def test_a_crm_that_keeps_refusing_stops_the_batch_after_a_bounded_number_of_tries() -> None:
    tries = {"n": 0}

    def always_refuse(batch: int) -> str:
        tries["n"] += 1
        raise ConcurrencyLimitError("TOO_MANY_REQUESTS", code="TOO_MANY_REQUESTS", status=429)

    waits: list[float] = []
    window = Window(4, sleep=waits.append)
    replies = call_in_order(always_refuse, [0], window, "test")
    assert isinstance(replies[0].error, ConcurrencyLimitError)
    assert tries["n"] == MAX_REFUSALS + 1
    assert window.size == 1
    # Waits double and are capped.
    assert waits[:3] == [1.0, 2.0, 4.0]
    assert max(waits) <= window_module.MAX_WAIT_SECONDS


def test_the_window_grows_back_one_call_at_a_time_after_answers_in_a_row() -> None:
    window = Window(4)
    for _ in range(2):
        window.acquire()
        window.release(refused=True)
    assert window.size == 1
    for _ in range(GROW_AFTER):
        window.acquire()
        window.release()
    assert window.size == 2
    for _ in range(10 * GROW_AFTER):
        window.acquire()
        window.release()
    assert window.size == 4  # never above the connection's max_concurrency


def test_other_errors_pass_through_without_narrowing_the_window() -> None:
    window = Window(4)

    def fail() -> str:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        window.call(fail)
    assert window.size == 4
    assert window.refusals == 0
