"""One redact() for every log line, error message and report: secrets never leave the process."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
_known_lock = threading.Lock()

# Keys whose values are secrets wherever they appear (headers, query strings, JSON, form bodies).
# Adapters add their CRM's own (a session header) with register_secret_key().
SECRET_KEYS = {
    "access_token",
    "refresh_token",
    "client_secret",
    "password",
    "security_token",
    "private_key",
    "assertion",
    "authorization",
    "session_id",
    "sessionid",
    "sid",
    "token",
    "id_token",
    "cookie",
    "set-cookie",
}

# Token shapes; adapters add their CRM's (session ids, token formats, auth schemes) with
# register_secret_pattern() when they are imported, before any of their tokens exists.
_PATTERNS = [
    # Authorization headers and their values in free text.
    re.compile(r"(?i)\b(Bearer|OAuth)\s+[A-Za-z0-9._~+/=!\-]{8,}"),
    # key=value (forms, query strings) and "key": "value" (JSON) pairs for secret keys. A bare
    # `key: text` is left alone: our own messages say "client_secret: missing".
    re.compile(
        r"(?i)((?:\"(?:access_token|refresh_token|client_secret|password|security_token|"
        r"assertion|session_id|id_token)\"\s*:\s*\"?)|(?:\b(?:access_token|refresh_token|"
        r"client_secret|password|security_token|assertion|session_id|id_token)\s*=\s*\"?))([^\"&\s,}]+)"
    ),
    # PEM private keys.
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    # JSON web tokens.
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
]


def register_secret_key(name: str) -> None:
    """Treat `name` (a header, query or JSON key; any case) as holding a secret everywhere."""
    with _known_lock:
        SECRET_KEYS.add(name.lower())


def register_secret_pattern(pattern: str) -> None:
    """Redact every match of a token shape a CRM uses.

    Args:
        pattern: a regular expression. With no group the whole match is masked; with one group
            (an auth scheme, say) the group is kept and what follows it masked.
    """
    compiled = re.compile(pattern)
    with _known_lock:
        if all(existing.pattern != compiled.pattern for existing in _PATTERNS):
            _PATTERNS.append(compiled)


_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that redact() removes it verbatim wherever it appears."""
    if value and len(value) >= 6:
        with _known_lock:
            _known_secrets.add(value)


# A UTF-16 surrogate on its own: JSON allows "\\ud800", Python decodes it, UTF-8 cannot encode it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """Text with each lone surrogate written as its escape (\\ud800): valid UTF-8, still visible."""
    if text.isascii() or not LONE_SURROGATE.search(text):
        return text
    return LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def json_text(value: Any, **options: Any) -> str:
    """json.dumps that always gives valid UTF-8: readable non-ASCII text, and the \\uXXXX form
    only when a string holds a lone surrogate (a SQLite or PostgreSQL text column, a log stream
    or stdout refuses those, which would abort the whole run or command)."""
    text = json.dumps(value, ensure_ascii=False, **options)
    if text.isascii() or not LONE_SURROGATE.search(text):
        return text
    return json.dumps(value, ensure_ascii=True, **options)


def redact(text: str) -> str:
    """Return text with every known secret and every token-shaped string replaced by ***, and
    any lone surrogate escaped (so the text can be logged, stored and printed)."""
    if not text:
        return text
    text = escape_surrogates(text)
    with _known_lock:
        known = sorted(_known_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, REDACTED)
    with _known_lock:
        patterns = list(_PATTERNS)
    for pattern in patterns:
        if pattern.groups == 2:
            text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
        elif pattern.groups == 1:
            text = pattern.sub(lambda match: match.group(1) + " " + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def redact_url(url: str) -> str:
    """Drop credentials and secret query parameters from a URL (after dlt's sanitize_url)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = urlencode(
        [
            (key, REDACTED if key.lower() in SECRET_KEYS else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a dict (headers, JSON body) with secret keys masked, recursively."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key.lower() in SECRET_KEYS:
            clean[key] = REDACTED
        elif isinstance(value, Mapping):
            clean[key] = redact_mapping(value)
        elif isinstance(value, list):
            clean[key] = [_redact_value(item) for item in value]
        else:
            clean[key] = _redact_value(value)
    return clean


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, str):
        return redact(value)
    return value


def redact_all(values: Iterable[str]) -> list[str]:
    """Redact each string of an iterable."""
    return [redact(value) for value in values]
