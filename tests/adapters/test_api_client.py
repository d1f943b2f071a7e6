"""ApiClient: every adapter's one send -> re-authenticate once on an expired session -> resend loop."""

from __future__ import annotations

import pytest
import requests
import responses

from adapters._http import ApiClient, RetryingClient, RetryPolicy
from connector.errors import AuthError, CrmError, FatalCrmError

URL = "https://crm.test/api/records"


def classify(response: requests.Response) -> CrmError | None:
    if response.status_code == 401:
        return AuthError("session expired", code="EXPIRED", status=401)
    if response.status_code >= 400:
        return FatalCrmError("refused", code="BAD", status=response.status_code)
    return None


class Hook:
    def __init__(self) -> None:
        self.session = 1
        self.renewed: list[object] = []

    def credentials(self) -> tuple[object, dict[str, str]]:
        return self.session, {"Authorization": f"Token s{self.session}"}

    def expired(self, error: CrmError) -> bool:
        return error.code == "EXPIRED"

    def renew(self, stale: object) -> None:
        self.renewed.append(stale)
        self.session += 1

    def refused_again(self, error: CrmError) -> CrmError:
        return AuthError("refused again after a new login", code="AGAIN", status=error.status)


def client(hook: Hook) -> ApiClient:
    http = RetryingClient(requests.Session(), classify, policy=RetryPolicy(max_retries=0))
    return ApiClient(http, hook)


@responses.activate
def test_an_expired_session_is_renewed_once_and_the_call_sent_again() -> None:
    responses.add(responses.POST, URL, status=401)
    responses.add(responses.POST, URL, json={"ok": True})
    hook = Hook()
    answer = client(hook).send("POST", URL, json={"a": 1}, headers={"X-Extra": "1"})
    assert answer.json() == {"ok": True}
    assert hook.renewed == [1]
    sent = [call.request.headers for call in responses.calls]
    assert [h["Authorization"] for h in sent] == ["Token s1", "Token s2"]
    assert all(h["X-Extra"] == "1" for h in sent)


@responses.activate
def test_a_renewed_session_refused_again_raises_the_hooks_error() -> None:
    responses.add(responses.GET, URL, status=401)
    responses.add(responses.GET, URL, status=401)
    hook = Hook()
    with pytest.raises(AuthError) as caught:
        client(hook).send("GET", URL)
    assert caught.value.code == "AGAIN"
    assert hook.renewed == [1]
    assert len(responses.calls) == 2


@responses.activate
def test_other_errors_are_not_retried_with_a_new_session() -> None:
    responses.add(responses.GET, URL, status=400)
    hook = Hook()
    with pytest.raises(FatalCrmError) as caught:
        client(hook).send("GET", URL)
    assert caught.value.code == "BAD"
    assert hook.renewed == []
    assert len(responses.calls) == 1


@responses.activate
def test_the_url_is_asked_again_after_a_new_session() -> None:
    other = "https://other.crm.test/api/records"
    responses.add(responses.GET, URL, status=401)
    responses.add(responses.GET, other, json={})
    hook = Hook()
    hosts = iter([URL, other])
    client(hook).send("GET", lambda: next(hosts))
    assert [call.request.url for call in responses.calls] == [URL, other]
