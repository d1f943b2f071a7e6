"""Fixtures for the shared adapter contract: each adapter against its sandbox CRM over real HTTPS."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connector.protocol import ConnectionSettings, CrmAdapter
from connector.registry import (
    available_adapters,
    available_sandboxes,
    create_adapter,
    sandbox_starter,
    settings_model,
)
from tests.support import MemoryKv

ADAPTERS = ["salesforce", "zoho", "fxiaoke"]
ACCOUNT_OBJECT = {"salesforce": "Account", "zoho": "Accounts", "fxiaoke": "AccountObj"}
INVOICE_OBJECT = {"salesforce": "blng__Invoice__c", "zoho": "Invoices", "fxiaoke": "PaymentPlanObj"}
SCORE_FIELD = {"salesforce": "Risk_Score__c", "zoho": "Risk_Score", "fxiaoke": "field_Rk02b__c"}
BAND_FIELD = {"salesforce": "Risk_Rating__c", "zoho": "Risk_Rating", "fxiaoke": "field_Rk01a__c"}
NAME_FIELD = {"salesforce": "Name", "zoho": "Account_Name", "fxiaoke": "name"}
# Where each sandbox keeps a record's id and a task's text (the marker line).
ID_KEY = {"salesforce": "Id", "zoho": "id", "fxiaoke": "_id"}
TASK_TEXT_FIELD = {
    "salesforce": "Description",
    "zoho": "Description",
    "fxiaoke": "active_record_content",
}


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


def _require(kind: str) -> None:
    if kind not in available_adapters() or kind not in available_sandboxes():
        pytest.skip(f"{kind} adapter or sandbox not installed")


@pytest.fixture(scope="module", params=ADAPTERS)
def crm(request: pytest.FixtureRequest) -> str:
    _require(request.param)
    return str(request.param)


@pytest.fixture
def sandbox(crm: str) -> Iterator[Any]:
    try:
        starter = sandbox_starter(crm)
        running = starter(accounts=30, seed=11)
    except NotImplementedError:
        pytest.skip(f"{crm} sandbox not implemented yet")
    with running:
        yield running


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
