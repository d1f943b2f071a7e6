"""Fixtures: a strict RequestsMock, an adapter factory with recorded sleeps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses

from adapters.salesforce import SalesforceAdapter
from tests.adapters.salesforce._support import settings
from tests.support import MemoryKv


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def kv() -> MemoryKv:
    return MemoryKv()


@pytest.fixture
def make_adapter(sleeps: list[float], kv: MemoryKv) -> Iterator[Callable[..., SalesforceAdapter]]:
    made: list[SalesforceAdapter] = []

    def build(**overrides: Any) -> SalesforceAdapter:
        adapter = SalesforceAdapter(settings(**overrides), state=kv, sleep=sleeps.append)
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


@pytest.fixture
def adapter(make_adapter: Callable[..., SalesforceAdapter]) -> SalesforceAdapter:
    return make_adapter()
