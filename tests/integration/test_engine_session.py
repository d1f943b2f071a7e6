"""The engine session: `sync`, the scheduler and `demo` open a connection one way, with one mapping check.

A mapping that fails its check stops all three the same way (MappingErrors, exit 78, naming the
field and the mapping key) before anything is written. A passing check is remembered in the state
store: whatever runs next (another scheduled run, `crm-risk sync` in a new process) does not
check again, unless a run found the CRM changed under it, a day passed or `--full` asks.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from connector.cli import demo
from connector.cli.main import main
from connector.config import AppConfig, load_config
from connector.engine import drift, session
from connector.engine.session import open_session
from connector.errors import EXIT_CONFIG, MappingError, MappingErrors
from connector.service.runner import ConnectionRunner, RunResult
from connector.store import open_store
from tests.chaos._sandbox_sync import write_config
from tests.chaos.conftest import start_sandbox
from tests.fakes import FakeAdapter, FakeCrm
from tests.integration.test_engine import AS_OF, MAPPING, seed
from tests.integration.test_service_engine import use_adapter

# A mapped field the admin deleted in the CRM (as in test_field_drift) and its mapping key.
CRM = "zoho"
CRM_OBJECT, CRM_FIELD = "Accounts", "Risk_Reasons"
KEY = "objects.account.fields.risk_reasons"


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every mapping check that asked the CRM for its metadata, by mapping file."""
    made: list[str] = []
    real = drift.check_mapping

    def counted(mapping: Any, describe: Any) -> Any:
        made.append(str(mapping.source))
        return real(mapping, describe)

    monkeypatch.setattr(drift, "check_mapping", counted)
    return made


@pytest.fixture
def fake_org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, AppConfig]:
    """A config file for the in-memory fake CRM, whose metadata fits the mapping."""
    monkeypatch.setenv("CRMRISK_CONNECTIONS__FAKE__CLIENT_SECRET", "fake-secret")
    monkeypatch.setenv("CRMRISK_CONNECTIONS__FAKE__REFRESH_TOKEN", "fake-refresh")
    path = tmp_path / "crm-risk.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [store]
            url = "{tmp_path / "state.db"}"
            [connections.fake]
            kind = "fake"
            mapping = "{MAPPING}"
            """
        )
    )
    crm = FakeCrm()
    seed(crm)
    use_adapter(monkeypatch, FakeAdapter(crm))
    return path, load_config(path)


def scheduled_run(config: AppConfig) -> RunResult:
    return ConnectionRunner(config)(config.connection("fake"), threading.Event())


def cli_sync(path: Path, *extra: str) -> int:
    return main(["sync", "--config", str(path), "--as-of", AS_OF.isoformat(), *extra])


def test_a_mapping_failing_its_check_stops_sync_the_scheduler_and_the_demo_with_exit_78(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with start_sandbox(CRM) as sandbox:
        sandbox.emulator.edit_field(CRM_OBJECT, CRM_FIELD, delete=True)
        path = write_config(sandbox, tmp_path)
        for name, value in sandbox.env_vars().items():
            monkeypatch.setenv(name, value)
        config = load_config(path)
        connection = next(iter(config.connections.values()))

        code = main(["sync", "--config", str(path)])
        err = capsys.readouterr().err
        assert code == EXIT_CONFIG, err
        assert CRM_FIELD in err and KEY in err

        with open_session(config, connection) as opened, pytest.raises(MappingErrors) as raised:
            opened.check_mapping()
        assert raised.value.exit_code == EXIT_CONFIG

        result = ConnectionRunner(config)(connection, threading.Event())
        assert result.report["status"] == "failed"
        assert result.report["message"] == str(raised.value)
        store = open_store(config.store.url)
        try:
            runs = store.recent_runs(connection.name, limit=5)
            written = store.audit(connection.name)
        finally:
            store.close()
        # `status` shows why the scheduled run failed; neither run wrote anything.
        assert runs[0]["status"] == "failed" and KEY in runs[0]["report"]["message"]
        assert written == []

    start = demo.sandbox_starter

    def with_the_field_deleted(kind: str) -> Any:
        @contextmanager
        def started(**options: Any) -> Iterator[Any]:
            with start(kind)(**options) as running:
                running.emulator.edit_field(CRM_OBJECT, CRM_FIELD, delete=True)
                yield running

        return started

    monkeypatch.setattr(demo, "sandbox_starter", with_the_field_deleted)
    kept = tmp_path / "demo"
    code = main(["demo", "--crm", CRM, "--accounts", "5", "--keep", str(kept)])
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG, err
    assert CRM_FIELD in err and KEY in err
    # Stopped by the check before its first sync began: no run in the demo's history.
    store = open_store(str(kept / CRM / "crm-risk-state.db"), create=False)
    try:
        assert store.recent_runs(None, limit=5) == []
    finally:
        store.close()


def test_the_mapping_is_checked_once_whatever_runs_the_connection_next(
    fake_org: tuple[Path, AppConfig], checks: list[str]
) -> None:
    path, config = fake_org

    assert scheduled_run(config).report["status"] == "succeeded"
    assert scheduled_run(config).report["status"] == "succeeded"
    # A new process (`crm-risk sync` from cron) trusts the pass the store remembers.
    assert cli_sync(path) == 0
    assert checks == [str(MAPPING)]

    assert cli_sync(path, "--full") == 0  # --full asks for a fresh check
    assert len(checks) == 2


def test_a_run_that_meets_a_mapping_error_makes_the_next_run_of_any_process_check_again(
    fake_org: tuple[Path, AppConfig], checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, config = fake_org
    assert scheduled_run(config).report["status"] == "succeeded"
    real = session.run_sync
    calls = {"n": 0}

    def crm_changed_under_the_check(**arguments: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MappingErrors([MappingError("the CRM no longer has the field", key=KEY)])
        return real(**arguments)

    monkeypatch.setattr(session, "run_sync", crm_changed_under_the_check)
    failed = scheduled_run(config)
    assert failed.report["status"] == "failed"
    assert len(checks) == 1  # that run trusted the remembered pass

    assert cli_sync(path) == 0
    assert len(checks) == 2  # the pass was forgotten: checked again before the run


def test_a_remembered_pass_is_trusted_for_a_day(
    fake_org: tuple[Path, AppConfig], checks: list[str]
) -> None:
    path, config = fake_org
    assert cli_sync(path) == 0
    store = open_store(config.store.url)
    try:
        key = "mapping_check:fake"
        remembered = json.loads(store.get_value(key) or "{}")
        store.set_value(key, json.dumps({**remembered, "at": time.time() - 24 * 3600 - 60}))
    finally:
        store.close()

    assert cli_sync(path) == 0
    assert len(checks) == 2


def test_a_pass_remembered_for_one_org_is_not_trusted_once_the_connection_points_at_another(
    fake_org: tuple[Path, AppConfig], checks: list[str]
) -> None:
    path, _ = fake_org
    toml = path.read_text()
    sandbox_org = 'kind = "fake"\nbase_url = "https://sandbox.example.test"\n'
    path.write_text(toml.replace('kind = "fake"\n', sandbox_org))
    assert cli_sync(path) == 0
    assert cli_sync(path) == 0
    assert len(checks) == 1  # the same org: the remembered pass is trusted

    # The admin points the connection at production and restarts: checked again at once.
    path.write_text(toml.replace('kind = "fake"\n', sandbox_org.replace("sandbox", "prod")))
    assert cli_sync(path) == 0
    assert len(checks) == 2

    store = open_store(load_config(path).store.url)
    try:
        remembered = store.get_value("mapping_check:fake") or ""
    finally:
        store.close()
    # The record identifies the org by a digest that leaves the secrets out.
    assert "fake-secret" not in remembered and "fake-refresh" not in remembered
    assert json.loads(remembered)["crm"] != drift.crm_digest(None)


def test_a_session_closes_the_adapter_and_only_the_store_it_opened(
    fake_org: tuple[Path, AppConfig],
) -> None:
    _, config = fake_org
    store = open_store(config.store.url)
    try:
        with open_session(config, config.connection("fake"), store=store) as opened:
            assert opened.store is store
            opened.check_mapping()
            adapter = opened.adapter
            assert isinstance(adapter, FakeAdapter) and not adapter.closed
        assert adapter.closed
        # The caller's store is still open after the session closed.
        assert store.get_value("mapping_check:fake")
    finally:
        store.close()


def test_a_session_that_opened_its_own_store_closes_it_with_the_adapter(
    fake_org: tuple[Path, AppConfig],
) -> None:
    _, config = fake_org
    with open_session(config, config.connection("fake")) as opened:
        opened.check_mapping()
        adapter, store = opened.adapter, opened.store
        assert isinstance(adapter, FakeAdapter)
        assert store.get_value("mapping_check:fake")
    assert adapter.closed
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.get_value("mapping_check:fake")
