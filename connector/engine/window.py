"""How many CRM calls the engine keeps in flight: the connection's limit, lowered while the CRM says it is over its own."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from connector.errors import ConcurrencyLimitError

log = logging.getLogger("crm_risk.window")

T = TypeVar("T")

# A call refused for concurrency is tried again this many times before the run stops on it
# (exit 75, resumed next run): the window is 1 long before that, so what is left is another
# client holding the org's slots, or a daily limit the CRM reports with the same code (Zoho).
MAX_REFUSALS = 6
# Waits between tries when the CRM names none (Zoho sends no Retry-After): 1, 2, 4, ... s.
BASE_WAIT_SECONDS = 1.0
MAX_WAIT_SECONDS = 30.0
# Answers in a row without a refusal before the window grows back by one call.
GROW_AFTER = 8


class Window:
    """A counting gate whose size starts at the connection's `max_concurrency`.

    Additive increase, multiplicative decrease, as TCP does: a refusal for concurrency halves
    the calls allowed in flight (never below 1); `GROW_AFTER` answers in a row add one back, up to
    the configured ceiling. Calls already in flight finish; new ones wait for room.
    """

    def __init__(self, ceiling: int, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.ceiling = max(1, ceiling)
        self.size = self.ceiling
        self.lowest = self.ceiling
        self.refusals = 0
        self._sleep = sleep
        self._in_flight = 0
        self._answered = 0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while self._in_flight >= self.size:
                self._cond.wait()
            self._in_flight += 1

    def release(self, *, refused: bool = False) -> None:
        with self._cond:
            self._in_flight -= 1
            if refused:
                self.refusals += 1
                self._answered = 0
                smaller = max(1, self.size // 2)
                if smaller < self.size:
                    log.warning(
                        "the CRM refused a call for concurrency; %d calls in flight from now on "
                        "(was %d)",
                        smaller,
                        self.size,
                    )
                self.size = smaller
                self.lowest = min(self.lowest, self.size)
            else:
                self._answered += 1
                if self._answered >= GROW_AFTER and self.size < self.ceiling:
                    self.size += 1
                    self._answered = 0
            self._cond.notify_all()

    def call(self, send: Callable[[], T]) -> T:
        """Send one call within the window; a refusal for concurrency shrinks it and tries again."""
        refusals = 0
        while True:
            self.acquire()
            try:
                answer = send()
            except ConcurrencyLimitError as exc:
                self.release(refused=True)
                refusals += 1
                if refusals > MAX_REFUSALS:
                    raise
                wait = exc.retry_after
                if wait is None:
                    wait = min(MAX_WAIT_SECONDS, BASE_WAIT_SECONDS * 2 ** (refusals - 1))
                self._sleep(wait)
                continue
            except BaseException:
                self.release()
                raise
            self.release()
            return answer
