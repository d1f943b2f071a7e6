"""The engine's first scenarios of tests/integration/test_engine.py, on a PostgreSQL store."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connector.config import load_config
from connector.store import PostgresStore, open_store
from tests.fakes import FakeAdapter, FakeCrm
from tests.integration.test_engine import MAPPING, seed, sync


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str):
    monkeypatch.setenv("CRMRISK_CONNECTIONS__FAKE__CLIENT_SECRET", "fake-secret")
    monkeypatch.setenv("CRMRISK_CONNECTIONS__FAKE__REFRESH_TOKEN", "fake-refresh")
    config_path = tmp_path / "crm-risk.toml"
    config_path.write_text(
        textwrap.dedent(
            f"""
            [store]
            url = "{pg_url}"
            [connections.fake]
            kind = "fake"
            mapping = "{MAPPING}"
            overlap_seconds = 60
            """
        )
    )
    config = load_config(config_path)
    store = open_store(config.store.url)
    assert isinstance(store, PostgresStore)
    yield config, store
    store.close()


def test_first_run_writes_every_account_second_run_nothing(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    first = sync(config, store, adapter)
    assert first.status == "succeeded"
    assert first.writes["account"]["written"] == 7
    assert all(rec.get("RiskBand") for rec in crm.records["Account"].values())
    late = [t for t in crm.tasks.values() if t["WhatId"] == "A001"]
    assert late and any(t["Priority"] == "high" for t in late)

    writes_before = len(adapter.write_requests)
    tasks_before = dict(crm.tasks)
    second = sync(config, store, adapter)
    assert second.status == "succeeded"
    assert second.writes["account"]["written"] == 0
    assert second.tasks["create"] == 0
    assert len(adapter.write_requests) == writes_before
    assert crm.tasks == tasks_before
    assert [run["status"] for run in store.recent_runs("fake")] == ["succeeded", "succeeded"]


def test_changing_one_invoice_rewrites_only_that_account(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    sync(config, store, adapter)
    crm.put(
        "Invoice", "A003-I5", OpenAmount=1000, PaidDate=None, Status="Open", DueDate="2026-08-01"
    )
    report = sync(config, store, adapter)
    assert report.scored == 1
    written = {change.crm_id for request in adapter.write_requests[-1:] for change in request}
    assert written == {"A003"}
    assert report.writes["account"]["written"] == 1


def test_dry_run_leaves_the_database_and_the_crm_untouched(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    dry = sync(config, store, adapter, dry_run=True)
    assert dry.status == "succeeded"
    assert dry.scored == 7, "the dry run scores on its private copy"
    assert adapter.write_requests == []
    assert store.count_accounts("fake") == 0
    assert store.watermarks("fake") == {}
    assert store.lease("fake") is None
    real = sync(config, store, adapter)
    assert real.writes["account"]["written"] == 7
