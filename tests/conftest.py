"""Markers by folder, so `pytest -m unit` picks the cheap tests (as singer-sdk does); fixtures every tier shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg_cluster import PgCluster, throwaway_cluster, unique_name
from tests.support import STORES, register_adapter

TESTS = Path(__file__).parent
MARKERS = {
    "unit": "unit",
    "adapters": "adapters",
    "conformance": "conformance",
    "integration": "integration",
    "sandbox": "sandbox",
    "chaos": "chaos",
    "clients": "clients",
    "browser": "browser",
    "badinput": "badinput",
    "security": "security",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            relative = Path(str(item.fspath)).relative_to(TESTS)
        except ValueError:
            continue
        marker = MARKERS.get(relative.parts[0]) if len(relative.parts) > 1 else None
        if marker:
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(autouse=True)
def fake_adapter_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kind = "fake"` names the in-memory CRM of tests/fakes.py (engine tests pass the adapter in)."""
    register_adapter(monkeypatch, "fake", "tests.fakes:FakeAdapter")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throw-away PostgreSQL cluster for the session (skipped only without initdb)."""
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_server(pg_cluster: PgCluster) -> str:
    """The session cluster's socket directory."""
    return pg_cluster.socket_dir


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database for one test, as a postgresql:// URL."""
    name = unique_name()
    url = pg_cluster.create_database(name)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture(params=sorted(STORES))
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every engine test runs once per store the connector ships: `[postgres]` and `[sqlite]`."""
    kind: str = request.param
    return kind


@pytest.fixture
def store_url(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store: a SQLite file in `tmp_path`, or an empty database on the session's PostgreSQL cluster."""
    if store_kind == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return str(tmp_path / "state.db")
