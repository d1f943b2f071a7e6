"""A state store of schema version 1 is upgraded in place to version 2 and keeps its rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from connector.store import open_store
from connector.store.coordination import WorkQueue
from connector.store.migrations import SCHEMA_VERSION

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "store"
V1_RUN = (
    "INSERT INTO runs (run_id, connection, trigger, status, started_at, ended_at, dry_run, report) "
    "VALUES ('r1', 'acme', 'cli', 'succeeded', '2026-01-01T00:00:00+00:00', "
    "'2026-01-01T00:01:00+00:00', 0, '{}')"
)


def make_v1(url: str, tmp_path: Path) -> None:
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as db:
            db.execute((FIXTURES / "schema_v1.postgres.sql").read_text())
            db.execute("INSERT INTO schema_version (version) VALUES (1)")
            db.execute(V1_RUN)
    else:
        with sqlite3.connect(url) as db:
            db.executescript((FIXTURES / "schema_v1.sql").read_text())
            db.execute(V1_RUN)
            db.execute("PRAGMA user_version = 1")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return str(request.getfixturevalue("pg_url"))


def test_a_version_1_store_is_upgraded_and_keeps_its_history(url: str, tmp_path: Path) -> None:
    make_v1(url, tmp_path)
    store = open_store(url)
    try:
        [run] = store.recent_runs("acme")
        assert (run["run_id"], run["status"], run["worker"]) == ("r1", "succeeded", None)
        store.start_run("r2", "acme", "schedule", worker="host:1:abc")
        assert store.recent_runs("acme")[0]["worker"] == "host:1:abc"
        WorkQueue(store).due_no_later_than({"acme": store.now()})
        assert "acme" in WorkQueue(store).schedule()
    finally:
        store.close()
    # Opening again is a no-op: the version is recorded.
    open_store(url).close()
    if not url.startswith("postgresql://"):
        with sqlite3.connect(url) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
