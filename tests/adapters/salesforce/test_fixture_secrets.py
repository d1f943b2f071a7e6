"""HTTP fixtures must not carry anything token-like or cookies (singer-sdk's .http_cache leaked both)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

HTTP_FIXTURES = Path(__file__).parents[2] / "fixtures" / "http"

SUSPICIOUS = {
    "salesforce session id": re.compile(r"00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{20,}"),
    "bearer header": re.compile(r"(?i)\b(?:Bearer|OAuth)\s+[A-Za-z0-9._~+/=!\-]{20,}"),
    "json web token": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "salesforce refresh token": re.compile(r"\b5Aep[A-Za-z0-9._]{40,}"),
    "zoho token": re.compile(r"\b1000\.[0-9a-f]{16,}\.[0-9a-f]{16,}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "cookie": re.compile(r"(?i)\bset-cookie\b|\bsid=[A-Za-z0-9]{16,}"),
    "long opaque secret": re.compile(
        r"(?i)\"(?:access_token|refresh_token|client_secret|password)\"\s*:\s*\"[^\"]{40,}\""
    ),
}

FILES = sorted(path for path in HTTP_FIXTURES.rglob("*") if path.is_file())


def test_there_are_fixtures_to_scan() -> None:
    assert any(path.parent.name == "salesforce" for path in FILES)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(HTTP_FIXTURES)) for p in FILES])
def test_fixture_has_no_secret(path: Path) -> None:
    text = path.read_text(errors="replace")
    leaks = [name for name, pattern in SUSPICIOUS.items() if pattern.search(text)]
    assert leaks == [], f"{path.name} looks like it holds: {', '.join(leaks)}"


@pytest.mark.parametrize(
    "sample",
    [
        '"access_token": "00DXX0000000001!AQ0AQFakeButRealShapedTokenValue123"',
        "Set-Cookie: BrowserId=abc; Path=/",
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123",
    ],
)
def test_the_scan_catches_what_it_looks_for(sample: str) -> None:
    assert any(pattern.search(sample) for pattern in SUSPICIOUS.values())
