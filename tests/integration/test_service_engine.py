"""The real scheduler and ConnectionRunner driving run_sync on a real SQLite file against the in-memory fake CRM."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from connector import registry
from connector.config import AppConfig
from connector.models import RecordChange, WriteResult
from connector.service.scheduler import Service
from connector.store import open_store
from tests.fakes import FakeAdapter, FakeCrm
from tests.integration.test_engine import seed

MAPPING = Path(__file__).resolve().parents[1] / "fixtures" / "mappings" / "fake.toml"


def make_config(tmp_path: Path) -> AppConfig:
    return AppConfig.model_validate(
        {
            "store": {"url": str(tmp_path / "state.db"), "lease_seconds": 5},
            "connections": {
                "fake": {
                    "kind": "fake",
                    "mapping": str(MAPPING),
                    "client_secret": "fake-secret",
                    "refresh_token": "fake-refresh",
                }
            },
            "source": str(tmp_path / "crm-risk.toml"),
        }
    )


class SlowWrites(FakeAdapter):
    """Pauses inside the first account write until the test has asked the service to stop."""

    def __init__(self, crm: FakeCrm) -> None:
        super().__init__(crm, batch=3)
        self.in_write = threading.Event()
        self.proceed = threading.Event()

    def write(self, crm_object: str, changes: Sequence[RecordChange]) -> list[WriteResult]:
        self.in_write.set()
        self.proceed.wait(5)
        return super().write(crm_object, changes)


def use_adapter(monkeypatch: pytest.MonkeyPatch, adapter: FakeAdapter) -> None:
    monkeypatch.setattr(registry, "create_adapter", lambda settings, state=None, **_: adapter)


def runs(config: AppConfig) -> list[dict[str, Any]]:
    store = open_store(config.store.url)
    try:
        return store.recent_runs("fake", limit=50)
    finally:
        store.close()


def assert_written_values_are_in_the_crm(config: AppConfig, crm: FakeCrm) -> int:
    """Everything the store records as written is what the CRM holds (canonical -> CRM names)."""
    names = {"risk_score": "RiskScore", "risk_band": "RiskBand"}
    store = open_store(config.store.url)
    checked = 0
    try:
        for account_id, record in crm.records["Account"].items():
            for canonical, value in store.last_written("fake", account_id).items():
                if canonical in names:
                    assert str(record.get(names[canonical])) == str(value), account_id
                    checked += 1
        assert store.lease("fake") is None
    finally:
        store.close()
    return checked


def test_three_scheduled_runs_write_once_then_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path)
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    use_adapter(monkeypatch, adapter)
    service = Service(config, interval_seconds=0.2, max_runs=3)
    assert service.run_forever() == 0

    history = [run for run in runs(config) if run["status"] != "skipped"]
    assert [run["status"] for run in history] == ["succeeded"] * 3, history
    assert all(run["trigger"] == "schedule" for run in history)
    first = history[-1]["report"]
    assert first["writes"]["account"]["written"] == 7
    # The runs converge: the last one finds nothing to write.
    assert history[0]["report"]["writes"].get("account", {}).get("written", 0) == 0
    assert assert_written_values_are_in_the_crm(config, crm) >= 7
    sample = service.metrics.registry.get_sample_value
    assert sample("crm_risk_sync_runs_total", {"connection": "fake", "status": "succeeded"}) == 3
    assert sample("crm_risk_records_read_total", {"connection": "fake", "object": "account"}) >= 7


def test_stop_mid_run_cancels_after_the_batch_and_keeps_store_and_crm_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path)
    crm = FakeCrm()
    seed(crm)
    adapter = SlowWrites(crm)
    use_adapter(monkeypatch, adapter)
    service = Service(config)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(service.run_forever()))
    thread.start()
    try:
        assert adapter.in_write.wait(10)
        service.request_stop()
        adapter.proceed.set()
        thread.join(10)
    finally:
        adapter.proceed.set()
        service.request_stop()
        thread.join(10)
    assert codes == [0]
    (run,) = runs(config)
    assert run["status"] == "cancelled"
    written = run["report"]["writes"]["account"]["written"]
    # The batch in flight finished (3 accounts); the rest waits for the next run.
    assert 0 < written < 7
    assert assert_written_values_are_in_the_crm(config, crm) >= written
