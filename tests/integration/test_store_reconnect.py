"""A PostgreSQL store that loses its connection: fails cleanly, keeps nothing half-written, reconnects."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from connector.cli.main import main
from connector.errors import EXIT_TEMPFAIL, StoreUnavailableError
from connector.store import PostgresStore, open_store
from tests.pg_cluster import PgCluster, throwaway_cluster, unique_name

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def kill_sessions(url: str) -> None:
    """End every other session of the store's database, as a failover or an admin would."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def open_pg(url: str) -> PostgresStore:
    store = open_store(url, clock=lambda: T0)
    assert isinstance(store, PostgresStore)
    return store


def test_a_dropped_connection_fails_one_call_and_the_next_call_reconnects(pg_url: str) -> None:
    store = open_pg(pg_url)
    try:
        store.set_value("k", "before")
        kill_sessions(pg_url)
        with pytest.raises(StoreUnavailableError, match="lost the connection"):
            store.get_value("k")
        assert store.get_value("k") == "before"
        store.set_value("k", "after")
        assert store.get_value("k") == "after"
        assert store.reconnects == 1
    finally:
        store.close()


def test_a_connection_lost_inside_a_transaction_keeps_nothing_of_it(pg_url: str) -> None:
    store = open_pg(pg_url)
    try:

        def both_halves() -> None:
            with store.transaction():
                store.set_value("first_half", "1")
                kill_sessions(pg_url)
                # Everything after the drop fails too: the second half never commits alone.
                store.set_value("second_half", "2")

        with pytest.raises(StoreUnavailableError):
            both_halves()
        assert store.get_value("first_half") is None
        assert store.get_value("second_half") is None
    finally:
        store.close()


def test_a_dry_run_snapshot_does_not_reconnect_into_a_new_transaction(pg_url: str) -> None:
    store = open_pg(pg_url)
    snapshot = store.snapshot()
    try:
        snapshot.set_value("k", "draft")
        kill_sessions(pg_url)
        with pytest.raises(StoreUnavailableError):
            snapshot.get_value("k")
        with pytest.raises(StoreUnavailableError):
            snapshot.get_value("k")
        # The main store lost its session too; after reconnecting it never sees the draft.
        with pytest.raises(StoreUnavailableError):
            store.get_value("k")
        assert store.get_value("k") is None
    finally:
        snapshot.close()
        store.close()


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PgCluster]:
    """A cluster this module may stop and start (the session's is shared)."""
    with throwaway_cluster(max_connections=20) as cluster:
        yield cluster


def test_a_database_restart_fails_calls_while_down_then_the_store_carries_on(
    own_cluster: PgCluster,
) -> None:
    url = own_cluster.create_database(unique_name())
    store = open_pg(url)
    try:
        store.set_value("k", "kept")
        own_cluster.stop("fast")
        try:
            with pytest.raises(StoreUnavailableError, match=r"cannot connect|lost the connection"):
                store.get_value("k")
            with pytest.raises(StoreUnavailableError, match="cannot connect"):
                store.set_value("k", "while down")
            with pytest.raises(StoreUnavailableError, match="cannot connect"):
                open_store(url)
        finally:
            own_cluster.start()
        assert store.get_value("k") == "kept"
        store.set_value("k", "after restart")
        assert store.get_value("k") == "after restart"
    finally:
        store.close()


def test_sync_exits_75_with_a_clear_message_when_the_database_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = tmp_path / "no-server-here"
    nowhere.mkdir()
    config = tmp_path / "crm-risk.toml"
    config.write_text(
        f'[store]\nurl = "postgresql://postgres@/state?host={nowhere}"\n\n'
        '[connections.acme]\nkind = "zoho"\nmapping = "zoho.inventory"\n'
        'auth = "refresh_token"\nclient_id = "id"\n'
    )
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME__CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME__REFRESH_TOKEN", "r3fresh")
    code = main(["--log-format", "text", "sync", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == EXIT_TEMPFAIL, err
    assert "cannot connect to the PostgreSQL state store" in err
    assert "s3cret" not in err
