"""Fakes and builders shared by every test tier: key-value store, adapter settings, stores, scheduler config and runner."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from connector import registry
from connector.config import AppConfig
from connector.protocol import ConnectionSettings
from connector.registry import settings_model
from connector.service.runner import RunResult
from connector.store import PostgresStore, SqliteStore, SqlStore

STORES: dict[str, type[SqlStore]] = {"sqlite": SqliteStore, "postgres": PostgresStore}
"""The stores the connector ships, by the name a parametrised test shows: `test_x[postgres]`."""


class MemoryKv:
    """A KeyValueStore in memory, shared between adapter instances like the state store."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get_value(self, key: str) -> str | None:
        return self.values.get(key)

    def set_value(self, key: str, value: str) -> None:
        self.values[key] = value


def adapter_settings(kind: str, **values: Any) -> ConnectionSettings:
    """The settings of one connection, validated by the model the registry finds for `kind`."""
    return settings_model(kind).model_validate({"name": "test", **values, "kind": kind})


def register_adapter(monkeypatch: pytest.MonkeyPatch, kind: str, target: str) -> None:
    """Make `kind` an installed adapter for one test, as an entry point naming `module:Factory`."""
    installed = registry._entry_points

    def with_test_adapter(group: str) -> dict[str, EntryPoint]:
        found = installed(group)
        if group == registry.ADAPTER_GROUP:
            found[kind] = EntryPoint(kind, target, group)
        return found

    monkeypatch.setattr(registry, "_entry_points", with_test_adapter)


def scheduled_config(
    tmp_path: Path, connections: dict[str, dict[str, Any]] | None = None
) -> AppConfig:
    """A config of `zoho` connections on a SQLite file in `tmp_path`, each with its own `[schedule]`."""
    connections = connections or {"acme": {"schedule": {"interval_seconds": 3600}}}
    return AppConfig.model_validate(
        {
            "store": {"url": str(tmp_path / "state.db"), "lease_seconds": 5},
            "connections": {
                name: {"kind": "zoho", "mapping": "zoho.default.toml", **settings}
                for name, settings in connections.items()
            },
            "source": str(tmp_path / "crm-risk.toml"),
        }
    )


class FakeRunner:
    """Stands in for run_sync: counts calls, can block until released or cancelled."""

    def __init__(self, *, block: bool = False, raises: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.block = block
        self.raises = raises
        self.started = threading.Event()
        self.release = threading.Event()
        self.saw_cancel = False

    def __call__(self, connection: Any, cancel: threading.Event) -> RunResult:
        self.calls.append(connection.name)
        self.started.set()
        if self.raises is not None:
            raise self.raises
        if self.block:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not self.release.is_set():
                if cancel.wait(0.01):
                    self.saw_cancel = True
                    return RunResult({"connection": connection.name, "status": "cancelled"})
        now = datetime.now(UTC).isoformat()
        report = {
            "run_id": f"fake-{len(self.calls)}",
            "connection": connection.name,
            "crm": connection.kind,
            "status": "succeeded",
            "started_at": now,
            "ended_at": now,
        }
        return RunResult(report, 0)
