"""Issue 22, points 4 and 5, at the HTTP layer: every transport failure is retried, slow answers
meet a deadline, and a stop request ends a waiting call within a fraction of a second.

Real sockets on loopback (tests/hostile_server.py), not mocks: the faults happen where requests,
urllib3 and http.client meet them.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from adapters._http import RetryingClient, RetryPolicy, make_session, parse_retry_after
from connector.errors import CrmError, RetriableCrmError, RunCancelled
from tests.hostile_server import HostileServer

BROKEN_ANSWERS = ["truncated", "reset", "bad_chunked", "bad_gzip", "cut_headers"]


def _never_an_error(response: requests.Response) -> CrmError | None:
    if response.status_code >= 500:
        return RetriableCrmError(
            "busy",
            status=response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    return None


def _client(
    *,
    retries: int = 3,
    timeout: float = 5.0,
    deadline: float | None = None,
    cancel: threading.Event | None = None,
    sleep: object = None,
) -> RetryingClient:
    policy = RetryPolicy(max_retries=retries, sleep=sleep or (lambda seconds: None))  # type: ignore[arg-type]
    return RetryingClient(
        make_session(),
        _never_an_error,
        timeout=timeout,
        policy=policy,
        deadline=deadline,
        cancel=cancel,
    )


@pytest.mark.parametrize("fault", BROKEN_ANSWERS)
def test_point4_a_broken_answer_is_retried_and_the_next_one_is_used(fault: str) -> None:
    with HostileServer([fault, "ok"]) as server:
        response = _client().request("GET", server.url)

        assert response.json()["ok"] is True
        assert server.connections == 2


@pytest.mark.parametrize("fault", BROKEN_ANSWERS)
def test_point4_a_broken_answer_every_time_ends_as_try_again_later(fault: str) -> None:
    with HostileServer([fault]) as server:
        with pytest.raises(RetriableCrmError) as raised:
            _client(retries=2).request("GET", server.url)

        assert raised.value.exit_code == 75
        assert raised.value.code == "CONNECTION"
        assert server.connections == 3


def test_point5_a_drip_fed_answer_is_abandoned_at_the_call_deadline() -> None:
    # One byte every 0.2 s: no single read waits anywhere near the 5 s read timeout, and the
    # whole answer would take over 7 minutes.
    with HostileServer(["drip", "ok"], drip_seconds=0.2) as server:
        started = time.monotonic()
        response = _client(timeout=5.0, deadline=1.0).request("GET", server.url)
        elapsed = time.monotonic() - started

        assert response.json()["ok"] is True
        assert server.connections == 2
        assert elapsed < 20, "abandoned at its deadline, then retried"


def test_point5_a_drip_fed_answer_every_time_ends_with_a_deadline_error() -> None:
    with HostileServer(["drip"], drip_seconds=0.2) as server:
        with pytest.raises(RetriableCrmError) as raised:
            _client(retries=1, timeout=5.0, deadline=1.0).request("GET", server.url)

        assert raised.value.code == "DEADLINE"
        assert "deadline" in str(raised.value)


def test_point5_a_stop_request_ends_a_waiting_call_at_once() -> None:
    cancel = threading.Event()
    with HostileServer(["drip"], drip_seconds=0.2) as server:
        threading.Timer(0.5, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(RunCancelled):
            _client(timeout=30.0, deadline=600.0, cancel=cancel).request("GET", server.url)
        elapsed = time.monotonic() - started

    assert elapsed < 10, f"a call waiting on the CRM must stop within seconds, took {elapsed:.1f}s"


def test_point5_a_stop_request_ends_a_retry_back_off_at_once() -> None:
    cancel = threading.Event()
    with HostileServer(["status:503"]) as server:
        threading.Timer(0.3, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(RunCancelled):
            # The real sleep: the server asks for 30 s before the retry.
            _client(retries=3, cancel=cancel, sleep=time.sleep).request("GET", server.url)
        elapsed = time.monotonic() - started

    assert server.connections == 1
    assert elapsed < 10
