"""Shared pieces for the Salesforce adapter tests: URLs, fixtures, settings, a record factory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

from adapters.salesforce.settings import SalesforceSettings

FIXTURES = Path(__file__).parents[2] / "fixtures" / "http" / "salesforce"
LOGIN = "https://login.sf.test"
TOKEN_URL = f"{LOGIN}/services/oauth2/token"
INSTANCE = "https://acme.my.sf.test"
BASE = f"{INSTANCE}/services/data/v62.0"
TOKEN = "test-access-token-1"
SECRET = "test-client-secret-value"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def settings(**overrides: Any) -> SalesforceSettings:
    values: dict[str, Any] = {
        "name": "acme_sf",
        "kind": "salesforce",
        "login_url": LOGIN,
        "auth": "client_credentials",
        "client_id": "test-client",
        "client_secret": SECRET,
        "max_retries": 3,
    }
    values.update(overrides)
    return SalesforceSettings(**values)


def add_token(rsps: responses.RequestsMock, token: str = TOKEN, **extra: Any) -> Any:
    body = fixture("oauth2_token__ok") | {"access_token": token} | extra
    return rsps.add(responses.POST, TOKEN_URL, json=body)


def soql_of(request: Any) -> str:
    return parse_qs(urlsplit(request.url).query)["q"][0]


def sf_id(prefix: str, number: int) -> str:
    return f"{prefix}{number:012d}AAA"


def stamp(second: int, millis: int = 0) -> str:
    return f"2026-11-20T10:{second // 60:02d}:{second % 60:02d}.{millis:03d}+0000"


def record(obj: str, number: int, modstamp: str, **fields: Any) -> dict[str, Any]:
    rid = sf_id("001" if obj == "Account" else "a0X", number)
    return {
        "attributes": {"type": obj, "url": f"/services/data/v62.0/sobjects/{obj}/{rid}"},
        "Id": rid,
        "SystemModstamp": modstamp,
        **fields,
    }
