"""Shared helpers for the Zoho adapter tests: fixture loading, settings, an adapter on a sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from adapters.zoho import ZohoAdapter
from adapters.zoho.settings import ZohoSettings
from tests.support import MemoryKv

PLUS3 = timezone(timedelta(hours=3))
FIXTURES = Path(__file__).parents[2] / "fixtures" / "http" / "zoho"
BASE = "https://zoho.test"
TOKEN_URL = "https://accounts.zoho.test/oauth/v2/token"
API = f"{BASE}/crm/v8"
T0 = datetime(2025, 1, 10, 10, 0, tzinfo=UTC)


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def stamp(when: datetime) -> str:
    """Zoho's wire format, in the API user's +03:00 offset."""
    return when.astimezone(PLUS3).isoformat(timespec="seconds")


def make_settings(**overrides: Any) -> ZohoSettings:
    values: dict[str, Any] = {
        "name": "acme",
        "kind": "zoho",
        "base_url": BASE,
        "token_url": TOKEN_URL,
        "client_id": "test-client-id",
        "client_secret": "test-client-secret-value",
        "refresh_token": "test-refresh-token-value",
        "max_retries": 3,
    }
    values.update(overrides)
    return ZohoSettings(**values)


def sandbox_adapter(sandbox: Any, name: str, *, max_retries: int, **options: Any) -> ZohoAdapter:
    """An adapter on a running Zoho sandbox: its credentials and CA, tokens kept in memory, no waits."""
    settings = ZohoSettings(
        name=name,
        kind="zoho",
        base_url=sandbox.base_url,
        token_url=sandbox.token_url,
        client_id=sandbox.client_id,
        client_secret=sandbox.client_secret,
        refresh_token=sandbox.refresh_token,
        ca_bundle=sandbox.ca_bundle,
        max_retries=max_retries,
        options=options,
    )
    return ZohoAdapter(settings, state=MemoryKv(), sleep=lambda seconds: None)
