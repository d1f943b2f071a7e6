"""Tokens cached in the state store, keyed by the credentials they came from and sealed with them.

A cached token belongs to one set of credentials: the key under which it is kept is a hash of
the client id, secret and refresh token (or private key) it was minted with, so changing any of
them (a revoked refresh token replaced, a rotated secret) never reuses the old token. The value
is encrypted (Fernet: AES-128-CBC with an HMAC-SHA256 tag) with a key derived from the same
secrets, so a reader of the state store who does not hold the secrets (an operator running
`status`, a backup of the file) sees neither the token nor anything to replay.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from connector.protocol import KeyValueStore

log = logging.getLogger("crm_risk.tokens")

_SALT = b"crm-risk-connector token cache v1"


def _derive(material: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose).derive(material)


def credentials_id(credentials: Sequence[str | None]) -> str:
    """A stable, non-reversible name for a set of credentials (safe to show in the store)."""
    material = "\x1f".join(value or "" for value in credentials).encode()
    return _derive(material, b"cache key").hex()[:32]


class SealedTokenCache:
    """One cached token (a small JSON object) per set of credentials, encrypted at rest.

    Args:
        state: the shared key/value store (None keeps nothing between processes).
        namespace: which connection and token kind, e.g. `zoho:acme:access_token`.
        credentials: everything the token was minted from (ids and secrets); order matters.
    """

    def __init__(
        self, state: KeyValueStore | None, namespace: str, credentials: Sequence[str | None]
    ) -> None:
        material = "\x1f".join(value or "" for value in credentials).encode()
        self.state = state
        self.key = f"{namespace}:{credentials_id(credentials)}"
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(material, b"cache seal")))

    def load(self) -> dict[str, Any] | None:
        """The cached payload, or None (nothing cached, sealed with other credentials, or damaged)."""
        if self.state is None:
            return None
        sealed = self.state.get_value(self.key)
        if not sealed:
            return None
        try:
            payload = json.loads(self._fernet.decrypt(sealed.encode()))
        except (InvalidToken, ValueError):
            log.warning("cached token unreadable (damaged or sealed with other credentials)")
            return None
        return payload if isinstance(payload, dict) else None

    def save(self, payload: dict[str, Any]) -> None:
        """Seal and store the payload under this credential set's key."""
        if self.state is None:
            return
        self.state.set_value(self.key, self._fernet.encrypt(json.dumps(payload).encode()).decode())

    def clear(self) -> None:
        """Forget the cached payload (a token the CRM refused must not be picked up again)."""
        if self.state is not None and self.state.get_value(self.key):
            self.state.set_value(self.key, "")


def fingerprint(token: str) -> str:
    """A short hash of a token, to remember refused tokens without keeping them."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]
