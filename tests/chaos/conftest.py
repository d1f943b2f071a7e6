"""Chaos fixtures: sandboxes with TCP_NODELAY, the seed list, and the fault-free reference state per CRM."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from connector.registry import available_sandboxes, sandbox_starter

CRMS = ["salesforce", "zoho"]
SEEDS = int(os.environ.get("CHAOS_SEEDS", "20"))
DATA_SEED = 7
ACCOUNTS = 24


@pytest.fixture(scope="session", autouse=True)
def _nodelay() -> Iterator[None]:
    """Without TCP_NODELAY the sandbox stalls ~40 ms on some answers (Nagle + delayed ACK).

    That makes the suite 10x slower without changing what it checks; reported to the sandbox owner.
    """
    try:
        import sandboxes.server as server
    except ImportError:
        yield
        return
    original = server._HTTPServer.finish_request

    def finish_request(self: Any, request: Any, client_address: Any) -> None:
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        original(self, request, client_address)

    server._HTTPServer.finish_request = finish_request  # type: ignore[method-assign]
    yield
    server._HTTPServer.finish_request = original  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_ca_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """This suite is about faults; tests/security checks that REQUESTS_CA_BUNDLE cannot override ca_bundle."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def start_sandbox(crm: str, **options: Any) -> Any:
    """A fresh sandbox with the suite's data; skips when that CRM's sandbox is not there yet."""
    if crm not in available_sandboxes():
        pytest.skip(f"{crm} sandbox not installed")
    try:
        return sandbox_starter(crm)(accounts=ACCOUNTS, seed=DATA_SEED, **options)
    except NotImplementedError:
        pytest.skip(f"{crm} sandbox not implemented yet")
