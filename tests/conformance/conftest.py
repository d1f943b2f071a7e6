"""Fixtures for the shared adapter contract: each adapter against its sandbox CRM over real HTTPS."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.mapping import load_mapping
from connector.protocol import ConnectionSettings, CrmAdapter
from connector.registry import (
    available_adapters,
    available_sandboxes,
    create_adapter,
    sandbox_starter,
    settings_model,
)
from tests.support import MemoryKv

ROOT = Path(__file__).resolve().parents[2]


def builtin_adapters() -> list[str]:
    """The adapters this repository ships, as its own pyproject.toml registers them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return sorted(project["entry-points"]["crm_risk_connector.adapters"])


# Every adapter that has a sandbox CRM: a new one with a sandbox and a preset gets the suite.
ADAPTERS = sorted(set(available_adapters()) & set(available_sandboxes()))


@dataclass(frozen=True)
class Crm:
    """One adapter under test and the names its sandbox's own preset maps (no per-CRM tables)."""

    kind: str
    account: str
    invoice: str
    id_field: str
    name_field: str
    score_field: str


def crm_of(sandbox: Any, kind: str) -> Crm:
    mapping = load_mapping(sandbox.mapping)
    fields = mapping.fields("account")
    return Crm(
        kind=kind,
        account=mapping.crm_object("account"),
        invoice=mapping.crm_object("invoice"),
        id_field=fields["crm_id"].crm,
        name_field=fields["name"].crm,
        score_field=fields["risk_score"].crm,
    )


def settings_for(sandbox: Any, **overrides: Any) -> ConnectionSettings:
    """Adapter settings from the sandbox's own config snippet and secret env vars, as a user would set them."""
    snippet = tomllib.loads(sandbox.config_snippet())
    name, section = next(iter(snippet["connections"].items()))
    prefix = f"CRMRISK_CONNECTIONS__{name.upper()}__"
    for key, value in sandbox.env_vars().items():
        if key.startswith(prefix):
            section[key[len(prefix) :].lower()] = value
    for key in (
        "mapping",
        "schedule",
        "overlap_seconds",
        "enabled",
        "policy",
        "tasks",
        "governance",
    ):
        section.pop(key, None)
    section.update(overrides)
    return settings_model(section["kind"]).model_validate({**section, "name": name})


@pytest.fixture(scope="module", params=ADAPTERS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sandbox(kind: str) -> Iterator[Any]:
    with sandbox_starter(kind)(accounts=30, seed=11) as running:
        yield running


@pytest.fixture
def crm(kind: str, sandbox: Any) -> Crm:
    return crm_of(sandbox, kind)


@pytest.fixture
def kv() -> MemoryKv:
    return MemoryKv()


class SleepRecorder:
    """Stands in for time.sleep: records each back-off wait and can run a hook on it."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.hook: Callable[[float], None] | None = None

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.hook is not None:
            self.hook(seconds)


@pytest.fixture
def sleeper() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def adapter(crm: str, sandbox: Any, kv: MemoryKv, sleeper: SleepRecorder) -> Iterator[CrmAdapter]:
    # No real waiting in tests: adapters take an injectable sleep for back-off.
    built = create_adapter(settings_for(sandbox, max_retries=3), state=kv, sleep=sleeper)
    yield built
    built.close()
