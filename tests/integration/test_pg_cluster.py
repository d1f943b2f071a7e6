"""The PostgreSQL test fixture skips only when the server binaries are missing, and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import pg_cluster


def test_missing_server_binaries_skip_with_where_they_were_looked_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CRMRISK_TEST_PG_BIN", str(tmp_path))
    monkeypatch.setattr(pg_cluster.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(pg_cluster.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match=r"initdb, pg_ctl\) not found in .*PATH"):
        pg_cluster.require_postgres()


def test_server_binaries_without_the_driver_fail_instead_of_skipping(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for program in ("initdb", "pg_ctl"):
        (tmp_path / program).touch()
    monkeypatch.setenv("CRMRISK_TEST_PG_BIN", str(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "psycopg", None)
    with pytest.raises(pytest.fail.Exception, match="postgres"):
        pg_cluster.require_postgres()


def test_a_cluster_that_cannot_start_fails_with_the_server_log(tmp_path: Path) -> None:
    binaries = pg_cluster.require_postgres()
    cluster = pg_cluster.PgCluster(binaries)
    try:
        cluster.max_connections = -1  # the server refuses to start with this setting
        with pytest.raises(RuntimeError, match="pg_ctl"):
            cluster.start()
    finally:
        cluster.destroy()
