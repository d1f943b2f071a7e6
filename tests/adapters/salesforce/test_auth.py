"""OAuth flows against a configurable token URL; rotation persisted; invalid_grant never retried."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.errors import AuthError, ConfigError
from tests.adapters.salesforce._support import (
    BASE,
    SECRET,
    TOKEN_URL,
    add_token,
    fixture,
)


def form(call: responses.Call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def add_query(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{BASE}/query/", json={"totalSize": 0, "done": True, "records": []})


def test_client_credentials_uses_basic_auth_and_hands_the_token_to_the_api(rsps, adapter) -> None:
    token_call = add_token(rsps)
    add_query(rsps)
    assert list(adapter.read_changed("Account", ["Name"], None)) == []
    sent = token_call.calls[0].request
    assert form(token_call.calls[0]) == {"grant_type": "client_credentials"}
    expected = base64.b64encode(f"test-client:{SECRET}".encode()).decode()
    assert sent.headers["Authorization"] == f"Basic {expected}"
    assert rsps.calls[1].request.headers["Authorization"] == "Bearer test-access-token-1"
    assert adapter.client.user_id == "005000000000001AAA"


def test_token_url_setting_wins_over_login_url(rsps, make_adapter) -> None:
    custom = "https://auth.sf.test/oauth/token"
    rsps.add(responses.POST, custom, json=fixture("oauth2_token__ok"))
    add_query(rsps)
    list(make_adapter(token_url=custom).read_changed("Account", [], None))


@pytest.fixture(scope="module")
def rsa_pem() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_jwt_bearer_signs_the_documented_claims(rsps, make_adapter, rsa_pem, tmp_path) -> None:
    private, public = rsa_pem
    key_file = tmp_path / "key.pem"
    key_file.write_text(private)
    token_call = add_token(rsps)
    add_query(rsps)
    adapter = make_adapter(
        auth="jwt_bearer", private_key_file=str(key_file), username="int@acme.test"
    )
    list(adapter.read_changed("Account", [], None))
    sent = form(token_call.calls[0])
    assert sent["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = jwt.decode(
        sent["assertion"], public, algorithms=["RS256"], audience="https://login.sf.test"
    )
    assert claims["iss"] == "test-client"
    assert claims["sub"] == "int@acme.test"
    assert 0 < claims["exp"] - __import__("time").time() <= 180


def test_refresh_token_rotation_is_persisted_and_used_next(rsps, make_adapter, kv) -> None:
    first = add_token(rsps, refresh_token="rotated-refresh-value-2")
    add_query(rsps)
    adapter = make_adapter(auth="refresh_token", refresh_token="initial-refresh-value-1")
    list(adapter.read_changed("Account", [], None))
    assert form(first.calls[0])["refresh_token"] == "initial-refresh-value-1"
    # Kept sealed, under a key derived from the credentials: nothing readable in the store.
    [(key, sealed)] = kv.values.items()
    assert key.startswith("salesforce:acme_sf:refresh_token:")
    assert "rotated-refresh-value-2" not in sealed and "initial-refresh-value-1" not in key
    rsps.reset()
    again = add_token(rsps)
    add_query(rsps)
    second = make_adapter(auth="refresh_token", refresh_token="initial-refresh-value-1")
    list(second.read_changed("Account", [], None))
    assert form(again.calls[0])["refresh_token"] == "rotated-refresh-value-2"


def test_a_rotated_refresh_token_is_not_used_once_the_configured_one_changes(
    rsps, make_adapter, kv
) -> None:
    add_token(rsps, refresh_token="rotated-refresh-value-2")
    add_query(rsps)
    first = make_adapter(auth="refresh_token", refresh_token="initial-refresh-value-1")
    list(first.read_changed("Account", [], None))
    rsps.reset()
    again = add_token(rsps)
    add_query(rsps)
    replaced = make_adapter(auth="refresh_token", refresh_token="replaced-refresh-value-3")
    list(replaced.read_changed("Account", [], None))
    assert form(again.calls[0])["refresh_token"] == "replaced-refresh-value-3"


def test_password_grant_appends_the_security_token(rsps, make_adapter) -> None:
    token_call = add_token(rsps)
    add_query(rsps)
    adapter = make_adapter(
        auth="password",
        username="int@acme.test",
        password="pw-value-1",
        security_token="st-value-1",
    )
    list(adapter.read_changed("Account", [], None))
    sent = form(token_call.calls[0])
    assert sent["grant_type"] == "password"
    assert sent["password"] == "pw-value-1st-value-1"


def test_invalid_grant_is_an_auth_error_at_once(rsps, adapter, sleeps) -> None:
    token_call = rsps.add(
        responses.POST, TOKEN_URL, json=fixture("oauth2_token__invalid_grant"), status=400
    )
    with pytest.raises(AuthError) as caught:
        list(adapter.read_changed("Account", [], None))
    assert token_call.call_count == 1
    assert sleeps == []
    assert caught.value.code == "invalid_grant"
    assert SECRET not in str(caught.value)


def test_token_endpoint_outage_is_retried(rsps, adapter, sleeps) -> None:
    rsps.add(responses.POST, TOKEN_URL, status=503, json={"error": "server_error"})
    add_token(rsps)
    add_query(rsps)
    list(adapter.read_changed("Account", [], None))
    assert len(sleeps) == 1


def test_missing_credentials_are_a_config_error(make_adapter) -> None:
    adapter = make_adapter(auth="auto", client_secret=None)
    with pytest.raises(ConfigError, match="auth"):
        list(adapter.read_changed("Account", [], None))
