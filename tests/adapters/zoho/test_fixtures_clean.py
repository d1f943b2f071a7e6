"""The hand-trimmed Zoho fixtures hold no token-shaped strings and no cookies."""

from __future__ import annotations

import re

from ._support import FIXTURES

TOKEN_SHAPES = [
    re.compile(r"1000\.[0-9a-f]{16,}"),  # Zoho access and refresh tokens
    re.compile(r"Zoho-oauthtoken\s+\S+"),
    re.compile(r"(?i)set-cookie"),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
]


def test_fixtures_exist_and_are_clean() -> None:
    files = sorted(FIXTURES.glob("*.json"))
    assert len(files) >= 15
    for path in files:
        text = path.read_text()
        for pattern in TOKEN_SHAPES:
            assert not pattern.search(text), f"{path.name} matches {pattern.pattern}"
