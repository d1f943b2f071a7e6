"""Fakes and builders shared by every test tier: one in-memory key-value store, adapter settings by kind."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from connector import registry
from connector.protocol import ConnectionSettings
from connector.registry import settings_model


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
