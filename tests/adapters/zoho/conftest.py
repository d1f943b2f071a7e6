"""Fixtures for the Zoho adapter tests: a `responses` mock that must use every registration."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses

from adapters.zoho import ZohoAdapter
from tests.support import MemoryKv

from ._support import TOKEN_URL, load, make_settings


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def kv() -> MemoryKv:
    return MemoryKv()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_adapter(kv: MemoryKv, sleeps: list[float]) -> Iterator[Callable[..., ZohoAdapter]]:
    built: list[ZohoAdapter] = []

    def factory(*, state: Any = kv, **overrides: Any) -> ZohoAdapter:
        adapter = ZohoAdapter(make_settings(**overrides), state=state, sleep=sleeps.append)
        built.append(adapter)
        return adapter

    yield factory
    for adapter in built:
        adapter.close()


@pytest.fixture
def adapter(make_adapter: Callable[..., ZohoAdapter]) -> ZohoAdapter:
    return make_adapter()


@pytest.fixture
def token_ok(mock: responses.RequestsMock) -> Callable[[], None]:
    """Register one successful token refresh."""

    def add() -> None:
        mock.post(TOKEN_URL, json=load("token__ok"))

    return add
