"""Chaos fixtures: the seed list and the fault-free reference state per CRM."""

from __future__ import annotations

import os
from typing import Any

import pytest

from connector.registry import sandbox_starter

CRMS = ["salesforce", "zoho", "fxiaoke"]
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
