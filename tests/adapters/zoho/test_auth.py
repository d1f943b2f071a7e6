"""Token handling: DC hosts, one shared cached token, one re-auth on 401, throttle waits, redaction."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import responses
from responses import matchers

from adapters.zoho import ZohoAdapter
from adapters.zoho.auth import resolve_endpoints
from connector.errors import AuthError, ConfigError, RetriableCrmError

from ._support import API, TOKEN_URL, load, make_settings

PAGE = {"data": [], "info": {"more_records": False}}


def accounts_ok(mock: responses.RequestsMock, token: str) -> None:
    mock.get(
        f"{API}/Accounts",
        status=204,
        match=[matchers.header_matcher({"Authorization": f"Zoho-oauthtoken {token}"})],
    )


def token_body(token: str) -> dict[str, object]:
    return {**load("token__ok"), "access_token": token}


@pytest.mark.parametrize(
    ("dc", "token_url", "api"),
    [
        ("us", "https://accounts.zoho.com/oauth/v2/token", "https://www.zohoapis.com"),
        ("eu", "https://accounts.zoho.eu/oauth/v2/token", "https://www.zohoapis.eu"),
        (
            "au-sandbox",
            "https://accounts.zoho.com.au/oauth/v2/token",
            "https://sandbox.zohoapis.com.au",
        ),
        ("ca", "https://accounts.zohocloud.ca/oauth/v2/token", "https://www.zohoapis.ca"),
        (
            "jp-developer",
            "https://accounts.zoho.jp/oauth/v2/token",
            "https://developer.zohoapis.jp",
        ),
    ],
)
def test_data_centre_hosts(dc: str, token_url: str, api: str) -> None:
    endpoints = resolve_endpoints(make_settings(base_url=None, token_url=None, data_centre=dc))
    assert (endpoints.token_url, endpoints.api_base) == (token_url, api)


def test_explicit_urls_win_and_bad_dc_is_a_config_error() -> None:
    endpoints = resolve_endpoints(make_settings(data_centre="eu"))
    assert endpoints.api_base == "https://zoho.test"
    with pytest.raises(ConfigError, match="data_centre"):
        resolve_endpoints(make_settings(base_url=None, token_url=None, data_centre="mars"))
    with pytest.raises(ConfigError, match="data_centre"):
        resolve_endpoints(make_settings(base_url=None, token_url=None))


def test_refreshes_once_on_invalid_token(
    mock: responses.RequestsMock, adapter: ZohoAdapter
) -> None:
    mock.post(TOKEN_URL, json=token_body("test-access-first"))
    mock.get(f"{API}/Accounts", status=401, json=load("api__invalid_token"))
    mock.post(TOKEN_URL, json=token_body("test-access-second"))
    accounts_ok(mock, "test-access-second")
    assert list(adapter.read_changed("Accounts", ["Account_Name"], None)) == []
    assert adapter.client.auth.refreshes == 2


def test_second_invalid_token_is_an_auth_error(
    mock: responses.RequestsMock, adapter: ZohoAdapter
) -> None:
    mock.post(TOKEN_URL, json=token_body("test-access-first"))
    mock.get(f"{API}/Accounts", status=401, json=load("api__invalid_token"))
    mock.post(TOKEN_URL, json=token_body("test-access-second"))
    mock.get(f"{API}/Accounts", status=401, json=load("api__invalid_token"))
    with pytest.raises(AuthError) as caught:
        list(adapter.read_changed("Accounts", ["Account_Name"], None))
    assert caught.value.code == "INVALID_TOKEN"
    assert caught.value.exit_code == 77
    assert len(mock.calls) == 4


def test_token_is_shared_through_the_store_sealed_and_keyed_by_its_credentials(
    mock: responses.RequestsMock, make_adapter, kv
) -> None:
    mock.post(TOKEN_URL, json=token_body("test-access-shared"))
    accounts_ok(mock, "test-access-shared")
    accounts_ok(mock, "test-access-shared")
    first = make_adapter()
    list(first.read_changed("Accounts", [], None))
    [(key, sealed)] = kv.values.items()
    # Nothing a status reader could replay: the token is encrypted, the key names no secret.
    assert key.startswith("zoho:acme:access_token:")
    assert "test-access-shared" not in sealed
    for secret in ("test-client-secret-value", "test-refresh-token-value"):
        assert secret not in key and secret not in sealed
    second = make_adapter()  # another process: no second refresh
    list(second.read_changed("Accounts", [], None))
    assert second.client.auth.refreshes == 0
    assert sum(1 for call in mock.calls if call.request.url == TOKEN_URL) == 1


def test_a_cached_token_is_not_used_with_other_credentials(
    mock: responses.RequestsMock, make_adapter
) -> None:
    mock.post(TOKEN_URL, json=token_body("test-access-old-credentials"))
    accounts_ok(mock, "test-access-old-credentials")
    list(make_adapter().read_changed("Accounts", [], None))
    mock.post(TOKEN_URL, json=load("token__invalid_code"))
    replaced = make_adapter(refresh_token="test-refresh-token-replaced")
    with pytest.raises(AuthError) as caught:
        list(replaced.read_changed("Accounts", [], None))
    assert caught.value.exit_code == 77


def test_verify_exchanges_the_credentials_even_with_a_valid_cached_token(
    mock: responses.RequestsMock, make_adapter
) -> None:
    mock.post(TOKEN_URL, json=token_body("test-access-cached"))
    accounts_ok(mock, "test-access-cached")
    list(make_adapter().read_changed("Accounts", [], None))
    mock.post(TOKEN_URL, json=load("token__invalid_client"))
    with pytest.raises(AuthError) as caught:
        make_adapter().verify_credentials()
    assert caught.value.exit_code == 77


def test_threads_share_one_refresh(mock: responses.RequestsMock, adapter: ZohoAdapter) -> None:
    mock.post(TOKEN_URL, json=token_body("test-access-threads"))
    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: adapter.client.auth.token(), range(16)))
    assert tokens == {"test-access-threads"}
    assert adapter.client.auth.refreshes == 1


def test_token_throttle_backs_off_instead_of_hammering(
    mock: responses.RequestsMock, adapter: ZohoAdapter, sleeps: list[float]
) -> None:
    mock.post(TOKEN_URL, status=400, json=load("token__throttled"))
    mock.post(TOKEN_URL, status=400, json=load("token__throttled"))
    mock.post(TOKEN_URL, json=token_body("test-access-late"))
    assert adapter.client.auth.token() == "test-access-late"
    assert sleeps == [10.0, 20.0]


def test_token_throttle_reuses_a_token_another_process_minted(
    mock: responses.RequestsMock, kv
) -> None:
    mock.post(TOKEN_URL, status=400, json=load("token__throttled"))
    other = ZohoAdapter(make_settings(), state=kv)

    def other_process_refreshes(seconds: float) -> None:
        other.client.auth.cache.save({"access_token": "test-access-other", "expires_at": 4e9})

    adapter = ZohoAdapter(make_settings(), state=kv, sleep=other_process_refreshes)
    try:
        assert adapter.client.auth.token() == "test-access-other"
    finally:
        adapter.close()
        other.close()


def test_token_throttle_gives_up_as_retry_later_within_its_wait_budget(
    mock: responses.RequestsMock, make_adapter, sleeps: list[float]
) -> None:
    adapter = make_adapter(options={"token_wait_seconds": 100})
    for _ in range(4):
        mock.post(TOKEN_URL, status=400, json=load("token__throttled"))
    with pytest.raises(RetriableCrmError) as caught:
        adapter.client.auth.token()
    assert caught.value.exit_code == 75
    assert sleeps == [10.0, 20.0, 40.0]


def test_a_refused_cached_token_is_never_adopted_again_while_the_endpoint_is_throttled(
    mock: responses.RequestsMock, make_adapter, kv, sleeps: list[float]
) -> None:
    # Issue 22, point 10: the cached token was refused; minting is throttled for a while.
    mock.post(TOKEN_URL, json=token_body("test-access-revoked"))
    accounts_ok(mock, "test-access-revoked")
    list(make_adapter().read_changed("Accounts", [], None))
    adapter = make_adapter(options={"token_wait_seconds": 100})
    mock.get(f"{API}/Accounts", status=401, json=load("api__invalid_token"))
    for _ in range(4):
        mock.post(TOKEN_URL, status=400, json=load("token__throttled"))
    with pytest.raises(RetriableCrmError) as caught:
        list(adapter.read_changed("Accounts", ["Account_Name"], None))
    assert caught.value.exit_code == 75
    assert sleeps == [10.0, 20.0, 40.0]
    refused_after = [call for call in mock.calls if call.request.url.startswith(f"{API}/")]
    assert len(refused_after) == 2  # the first run's read and the refused one: no re-adoption
    assert adapter.client.auth.cache.load() is None


@pytest.mark.parametrize("fixture", ["token__invalid_code", "token__invalid_client"])
def test_bad_refresh_token_is_never_retried(
    mock: responses.RequestsMock, adapter: ZohoAdapter, sleeps: list[float], fixture: str
) -> None:
    mock.post(TOKEN_URL, json=load(fixture))
    with pytest.raises(AuthError):
        list(adapter.read_changed("Accounts", ["Account_Name"], None))
    assert len(mock.calls) == 1
    assert sleeps == []


def test_warns_when_token_is_for_another_data_centre(
    mock: responses.RequestsMock, adapter: ZohoAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    mock.post(
        TOKEN_URL,
        json={**token_body("test-access-au"), "api_domain": "https://www.zohoapis.com.au"},
    )
    with caplog.at_level(logging.WARNING, logger="crm_risk.zoho"):
        adapter.client.auth.token()
    assert "www.zohoapis.com.au" in caplog.text
    assert "zoho.test" in caplog.text


def test_no_secret_in_errors_or_logs(
    mock: responses.RequestsMock, adapter: ZohoAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    secret_token = "test-access-secret-value-1234"
    mock.post(TOKEN_URL, json=token_body(secret_token))
    mock.get(
        f"{API}/Accounts", status=500, json={"code": "INTERNAL_ERROR", "message": secret_token}
    )
    mock.get(f"{API}/Accounts", status=401, json=load("api__invalid_token"))
    mock.post(TOKEN_URL, json={"error": "invalid_code", "error_description": secret_token})
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as caught:
        list(adapter.read_changed("Accounts", ["Account_Name"], None))
    texts = [str(caught.value), repr(caught.value), caplog.text]
    for secret in (secret_token, "test-client-secret-value", "test-refresh-token-value"):
        assert all(secret not in text for text in texts)


def test_accounts_server_hiccups_are_retried(
    mock: responses.RequestsMock, adapter: ZohoAdapter, sleeps: list[float]
) -> None:
    mock.post(TOKEN_URL, status=503)
    mock.post(TOKEN_URL, body=requests.ConnectionError("reset"))
    mock.post(TOKEN_URL, json=token_body("test-access-after-hiccup"))
    assert adapter.client.auth.token() == "test-access-after-hiccup"
    assert len(sleeps) == 2 and all(0 < s <= 4.0 for s in sleeps)
