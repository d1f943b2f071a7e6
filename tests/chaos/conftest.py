"""Chaos fixtures: the CRMs (from the registry), the seed list and how a sandbox is started."""

from __future__ import annotations

import os
from typing import Any

import pytest

from connector.registry import sandbox_starter
from tests.conformance.conftest import ADAPTERS

# Every adapter that has a sandbox CRM, as the registry finds them (the conformance suite's list):
# a new adapter with a sandbox, a preset and a person's client (tests/crm_user.py) runs this suite
# unchanged. test_faults.py checks that every built-in adapter is among them.
CRMS = ADAPTERS
CHAOS_CRMS = CRMS


SEEDS = int(os.environ.get("CHAOS_SEEDS", "20"))
DATA_SEED = 7
ACCOUNTS = 24


@pytest.fixture(autouse=True)
def _no_ca_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """This suite is about faults; tests/security checks that REQUESTS_CA_BUNDLE cannot override ca_bundle."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def start_sandbox(crm: str, **options: Any) -> Any:
    """A fresh sandbox with the suite's data."""
    return sandbox_starter(crm)(accounts=ACCOUNTS, seed=DATA_SEED, **options)
