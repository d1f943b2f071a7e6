"""redact() removes real-looking secrets from any text we log, raise or store."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Each adapter registers its CRM's token shapes (session ids, token formats, auth scheme) when
# it is imported; these cases check them through the adapters as the service loads them.
import adapters.salesforce
import adapters.zoho  # noqa: F401
from connector.redaction import (
    redact,
    redact_mapping,
    redact_url,
    register_secret,
    register_secret_key,
    register_secret_pattern,
)

SF_SESSION = "00D5g000004XyZa!AQ4AQFmT9hQ_QkD5kRz1x8Yk2VvN.cS3p0oHq7lJd9wE0fGhIjKlMnOpQrStUvWx"
ZOHO_TOKEN = "1000.8c5e2f1a9b7d4e3f2a1b0c9d8e7f6a5b.0f1e2d3c4b5a69788796a5b4c3d2e1f0"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIzTVZHOVBFIiwic3ViIjoiYWRtaW4ifQ.c2lnbmF0dXJlLXBhcnQtaGVyZQ"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {SF_SESSION}", SF_SESSION),
        (f"Authorization: Zoho-oauthtoken {ZOHO_TOKEN}", ZOHO_TOKEN),
        (f"failed with session {SF_SESSION} at step 3", SF_SESSION),
        (f'{{"access_token": "{ZOHO_TOKEN}", "api_domain": "x"}}', ZOHO_TOKEN),
        (
            "grant_type=refresh_token&refresh_token=abc123secretvalue&client_id=x",
            "abc123secretvalue",
        ),
        (f"assertion={JWT}", JWT),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
            "MIIEvQIBADANBg",
        ),
        ('client_secret="s3cr3t-v4lue"', "s3cr3t-v4lue"),
    ],
    ids=[
        "bearer",
        "zoho-header",
        "sf-session-free-text",
        "json-token",
        "form-body",
        "jwt",
        "pem",
        "client-secret",
    ],
)
def test_redact_removes_secret(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "***" in cleaned


def test_registered_secret_is_removed_anywhere() -> None:
    register_secret("plain-looking-password-42")
    assert "plain-looking-password-42" not in redact(
        "login failed for admin / plain-looking-password-42"
    )


def test_redact_url_drops_credentials_and_secret_params() -> None:
    url = (
        "https://user:pw@example.test/services/oauth2/token?client_id=abc&client_secret=xyz&code=1"
    )
    cleaned = redact_url(url)
    assert "pw" not in cleaned.split("@")[-1] and "user:" not in cleaned
    assert "xyz" not in cleaned
    assert "client_id=abc" in cleaned


def test_redact_mapping_masks_secret_keys_recursively() -> None:
    cleaned = redact_mapping(
        {"Authorization": "Bearer x", "nested": {"refresh_token": "r"}, "code": "INVALID_TOKEN"}
    )
    assert cleaned["Authorization"] == "***"
    assert cleaned["nested"]["refresh_token"] == "***"
    assert cleaned["code"] == "INVALID_TOKEN"


def test_ordinary_text_is_untouched() -> None:
    text = "3 invoices 61-90 days past due, 48,200 EUR (account 0015g00000ABCDE)"
    assert redact(text) == text


def test_the_core_knows_no_crm_token_shape_until_the_adapter_is_imported() -> None:
    probe = (
        "import sys; from connector.redaction import redact; t = sys.argv[1]; "
        "before = redact(t); import adapters.salesforce; print(before == t, redact(t) == t)"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe, f"session {SF_SESSION}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert answer.stdout.split() == ["True", "False"]


def test_registered_keys_and_patterns_are_redacted_everywhere() -> None:
    register_secret_key("X-Test-Session")
    register_secret_pattern(r"\bTST-[0-9a-f]{12}\b")
    assert redact_mapping({"x-test-session": "abc"}) == {"x-test-session": "***"}
    assert "TST-0123456789ab" not in redact("token TST-0123456789ab here")
    assert "key=v" in redact_url("https://h/p?x-test-session=s&key=v")
    assert "x-test-session=s" not in redact_url("https://h/p?x-test-session=s&key=v")
