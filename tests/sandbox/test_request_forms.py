"""The request forms real clients send reach both sandboxes as the plain form would.

Chunked transfer coding (jsforce's token calls, SOAP login and Bulk 2.0 uploads; Zoho's COQL
from Node), multipart/form-data token grants (Zoho's Node SDK) and gzip-encoded bodies (the
Salesforce REST API documents request compression) must get the same answer as a urlencoded or
Content-Length body.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from sandboxes import RunningSandbox, start

Sender = Callable[[str, bytes, dict[str, str]], requests.Response]


def _chunks(body: bytes) -> Iterator[bytes]:
    # A generator makes requests send `Transfer-Encoding: chunked` with no Content-Length.
    for start_at in range(0, len(body), 7):
        yield body[start_at : start_at + 7]


@pytest.fixture(params=["salesforce", "zoho"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    with start(request.param, accounts=6, seed=2) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


@pytest.fixture
def http(sandbox: RunningSandbox) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.verify = sandbox.ca_bundle or True
        session.trust_env = False
        yield session


def _grant(sandbox: RunningSandbox) -> dict[str, str]:
    if sandbox.crm == "salesforce":
        return {
            "grant_type": "client_credentials",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        }
    return {
        "grant_type": "refresh_token",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": str(sandbox.refresh_token),
    }


def _token_shape(answer: requests.Response) -> tuple[int, list[str], dict[str, Any]]:
    payload = answer.json()
    stable = {
        k: v for k, v in payload.items() if k not in ("access_token", "issued_at", "signature")
    }
    return answer.status_code, sorted(payload), stable


def test_a_multipart_token_request_gets_the_answer_of_a_urlencoded_one(
    sandbox: RunningSandbox, http: requests.Session
) -> None:
    fields = _grant(sandbox)
    plain = http.post(sandbox.token_url, data=fields, timeout=10)
    multipart = http.post(
        sandbox.token_url, files={k: (None, v) for k, v in fields.items()}, timeout=10
    )
    assert multipart.request.headers["Content-Type"].startswith("multipart/form-data")
    assert plain.json().get("access_token")
    assert _token_shape(multipart) == _token_shape(plain)
    # And a wrong secret is refused the same way in both forms.
    wrong = {**fields, "client_secret": "nope"}
    refused_plain = http.post(sandbox.token_url, data=wrong, timeout=10)
    refused_multipart = http.post(
        sandbox.token_url, files={k: (None, v) for k, v in wrong.items()}, timeout=10
    )
    assert (refused_multipart.status_code, refused_multipart.json()) == (
        refused_plain.status_code,
        refused_plain.json(),
    )


def _api_call(sandbox: RunningSandbox, http: requests.Session) -> tuple[str, bytes, dict[str, str]]:
    """A read with a JSON body: sObject Collections retrieve, or a COQL query."""
    token = http.post(sandbox.token_url, data=_grant(sandbox), timeout=10).json()["access_token"]
    if sandbox.crm == "salesforce":
        ids = sorted(r["Id"] for r in sandbox.emulator.records("Account"))[:4]
        body = {"ids": ids, "fields": ["Name", "Risk_Score__c", "Owner.Name"]}
        url = f"{sandbox.base_url}/services/data/v62.0/composite/sobjects/Account"
        auth = f"Bearer {token}"
    else:
        body = {
            "select_query": "select Account_Name, Industry from Accounts where id is not null "
            "order by Account_Name asc limit 50"
        }
        url = f"{sandbox.base_url}/crm/v8/coql"
        auth = f"Zoho-oauthtoken {token}"
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    return url, json.dumps(body).encode(), headers


@pytest.mark.parametrize("form", ["chunked", "gzip", "chunked+gzip"])
def test_chunked_and_gzip_bodies_get_the_answer_of_a_plain_body(
    sandbox: RunningSandbox, http: requests.Session, form: str
) -> None:
    url, body, headers = _api_call(sandbox, http)
    plain = http.post(url, data=body, headers=headers, timeout=10)
    assert plain.status_code == 200, plain.text
    assert plain.json()  # a real answer, not an empty list
    sent_headers = dict(headers)
    payload = body
    if "gzip" in form:
        payload = gzip.compress(body)
        sent_headers["Content-Encoding"] = "gzip"
    data: bytes | Iterator[bytes] = _chunks(payload) if "chunked" in form else payload
    other = http.post(url, data=data, headers=sent_headers, timeout=10)
    if "chunked" in form:
        assert other.request.headers.get("Transfer-Encoding") == "chunked"
    assert (other.status_code, other.json()) == (plain.status_code, plain.json())
    # The connection that carried the chunked body still serves the next call.
    again = http.post(url, data=body, headers=headers, timeout=10)
    assert again.json() == plain.json()
