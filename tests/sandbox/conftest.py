"""Fixtures: a Salesforce sandbox over HTTPS and clients that trust its test CA."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce

from sandboxes import RunningSandbox, start_salesforce

API_VERSION = "62.0"


def client_session(ca_bundle: str | None) -> requests.Session:
    session = requests.Session()
    session.verify = ca_bundle or True
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    return session


def fetch_token(sandbox: RunningSandbox, session: requests.Session) -> dict[str, Any]:
    response = session.post(
        sandbox.token_url,
        data={"grant_type": "client_credentials"},
        auth=(sandbox.client_id, sandbox.client_secret),
        timeout=10,
    )
    response.raise_for_status()
    return dict(response.json())


@pytest.fixture
def sf_sandbox() -> Iterator[RunningSandbox]:
    with start_salesforce(accounts=30, seed=11) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


@pytest.fixture
def session(sf_sandbox: RunningSandbox) -> Iterator[requests.Session]:
    with client_session(sf_sandbox.ca_bundle) as s:
        yield s


@pytest.fixture
def sf(sf_sandbox: RunningSandbox, session: requests.Session) -> Salesforce:
    token = fetch_token(sf_sandbox, session)
    return Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=session,
        version=API_VERSION,
    )
