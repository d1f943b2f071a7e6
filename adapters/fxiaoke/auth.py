"""Fxiaoke access tokens: one process-wide, single-flight cache per app, renewed in the documented window.

The manual (developer.fxiaoke.com .../start/auth/app-info.html, .../start/example/old.html):
a token lives 7,200 s; asking again within 6,600 s of issue returns the same token; callers
should cache it for at least 6,600 s and renew between 6,650 and 7,200 s; the token endpoint takes
at most 10 calls a minute and no concurrent calls [P]. So every connection of a process that uses
the same app shares one cache entry, and only one thread at a time may call the endpoint. The
token is also kept sealed in the state store, so a second process starts with it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters._http import RetryingClient, gave_up
from adapters._tokens import SealedTokenCache, fingerprint
from connector.errors import AuthError, CrmError, CrmSetupError, RetriableCrmError
from connector.protocol import KeyValueStore
from connector.redaction import register_secret

from .errors import body_of
from .settings import FxiaokeConnection

log = logging.getLogger("crm_risk.fxiaoke")

TOKEN_LIFETIME = 7200.0
# Renew from this age on (the window is 6,650-7,200 s; the server mints a new one after 6,600 s).
RENEW_AFTER = 6650.0
# The endpoint's limit: 10 calls a minute; a refused call waits this long before the next.
TOKEN_RETRY_WAIT = 6.0
TOKEN_ATTEMPTS = 4
# The token endpoint's own refusals of too many or concurrent calls (waited out, not backed off).
RATE_CODES = frozenset({"14001", "30004"})


@dataclass
class Token:
    """A usable token and the identity that goes with it."""

    value: str
    issued_at: float  # on the cache's clock
    ea: str = ""  # enterprise account (header style)
    corp_id: str = ""  # corpId (legacy style)

    def renewable(self, now: float) -> bool:
        """In (or past) the renewal window."""
        return now - self.issued_at >= RENEW_AFTER


class _Entry:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # held while calling the token endpoint: single flight
        self.token: Token | None = None


_ENTRIES: dict[str, _Entry] = {}
_ENTRIES_LOCK = threading.Lock()


def _entry(key: str) -> _Entry:
    with _ENTRIES_LOCK:
        return _ENTRIES.setdefault(key, _Entry())


def forget_all() -> None:
    """Drop every process-wide token (tests start from nothing)."""
    with _ENTRIES_LOCK:
        _ENTRIES.clear()


class TokenProvider:
    """Tokens for one connection, from the process-wide cache shared by every connection of the app."""

    def __init__(
        self,
        settings: FxiaokeConnection,
        http: RetryingClient,
        *,
        state: KeyValueStore | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 4,
    ) -> None:
        self.settings = settings
        self.http = http
        self.clock = clock
        self.sleep = sleep
        self.max_retries = max_retries
        secrets = (
            settings.app_secret.get_secret_value(),
            settings.permanent_code.get_secret_value(),
        )
        for secret in secrets:
            register_secret(secret)
        credentials = (settings.token_url, settings.auth, settings.app_id, *secrets)
        self._sealed = SealedTokenCache(state, f"fxiaoke:{settings.name}:token", credentials)
        self._entry = _entry(self._sealed.key)
        self.token_calls = 0

    def token(self) -> Token:
        """A token outside its renewal window, fetching one only when needed (single flight)."""
        entry = self._entry
        current = entry.token
        if current is not None and not current.renewable(self.clock()):
            return current
        with entry.lock:
            current = entry.token
            if current is not None and not current.renewable(self.clock()):
                return current  # another thread renewed it while we waited
            stored = self._load_sealed()
            if stored is not None and not stored.renewable(self.clock()):
                entry.token = stored
                return stored
            entry.token = self._fetch()
            return entry.token

    def refused(self, token: Token) -> None:
        """The API refused this token (20016): drop it, unless another thread already replaced it."""
        entry = self._entry
        with entry.lock:
            if entry.token is not None and fingerprint(entry.token.value) == fingerprint(
                token.value
            ):
                entry.token = None
                self._sealed.clear()

    def verify(self) -> None:
        """Exchange the credentials now, ignoring every cache (what `check` does)."""
        with self._entry.lock:
            self._entry.token = self._fetch()

    def _load_sealed(self) -> Token | None:
        payload = self._sealed.load()
        if not payload or not payload.get("value"):
            return None
        token = Token(
            value=str(payload["value"]),
            issued_at=float(payload.get("issued_at", 0)),
            ea=str(payload.get("ea", "")),
            corp_id=str(payload.get("corp_id", "")),
        )
        register_secret(token.value)
        return token

    def _fetch(self) -> Token:
        body: dict[str, Any] = {
            "appId": self.settings.app_id,
            "appSecret": self.settings.app_secret.get_secret_value(),
            "permanentCode": self.settings.permanent_code.get_secret_value(),
        }
        if self.settings.auth == "app_secret":
            body["grantType"] = "app_secret"
        attempt = transient = 0
        started = time.monotonic()
        while True:
            attempt += 1
            third = str(uuid.uuid4())
            self.token_calls += 1
            try:
                response = self.http.request(
                    "POST", self.settings.token_url, params={"thirdTraceId": third}, json=body
                )
            except RetriableCrmError as exc:
                if exc.code not in RATE_CODES:
                    # No answer, or a gateway's 5xx: back off as every other call does, and
                    # say how often and how long it was tried, naming token_url.
                    transient += 1
                    if transient > self.max_retries:
                        elapsed = time.monotonic() - started
                        raise gave_up(exc, transient, elapsed, "token_url") from None
                    self.sleep(min(TOKEN_RETRY_WAIT, 2.0**transient))
                    continue
                # 14001: over 10 calls a minute, or a concurrent call from another process.
                if attempt >= TOKEN_ATTEMPTS:
                    raise
                log.info("Fxiaoke token endpoint busy (%s); waiting", exc.code)
                self.sleep(exc.retry_after or TOKEN_RETRY_WAIT)
                continue
            except AuthError:
                raise
            except CrmSetupError as exc:
                if exc.setting != "base_url":  # a TLS trust problem names ca_bundle
                    raise
                raise CrmSetupError(
                    f"token_url ({self.settings.token_url}) answered without an Fxiaoke Open API "
                    "envelope (no errorCode), not as a token endpoint: check token_url",
                    setting="token_url",
                    code=exc.code,
                    status=exc.status,
                ) from None
            except CrmError as exc:
                # An Open API envelope, but an error no token endpoint gives (a path that wants
                # a token, an unknown path): token_url points at some other Open API call.
                raise CrmSetupError(
                    f"token_url ({self.settings.token_url}) answered {exc.message}, not as a "
                    "token endpoint: check token_url (…/oauth2.0/token, or "
                    '…/cgi/corpAccessToken/get/V2 for auth = "legacy")',
                    setting="token_url",
                    code=exc.code,
                    status=exc.status,
                ) from None
            payload = body_of(response) or {}
            return self._token_from(payload, third)

    def _token_from(self, payload: dict[str, Any], third: str) -> Token:
        value = payload.get("accessToken") or payload.get("corpAccessToken")
        if not value:
            raise AuthError("Fxiaoke's token answer carries no token", code="NO_TOKEN")
        register_secret(str(value))
        expires_in = payload.get("expiresIn")
        now = self.clock()
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else TOKEN_LIFETIME
        # A token handed out again mid-life (within 6,600 s of issue) says how long it has left.
        issued_at = now - max(0.0, TOKEN_LIFETIME - lifetime)
        token = Token(
            value=str(value),
            issued_at=issued_at,
            ea=str(payload.get("ea") or ""),
            corp_id=str(payload.get("corpId") or ""),
        )
        log.info(
            "Fxiaoke token obtained (thirdTraceId %s, traceId %s, expires in %s s)",
            third,
            payload.get("traceId", ""),
            expires_in,
        )
        self._sealed.save(
            {
                "value": token.value,
                "issued_at": token.issued_at,
                "ea": token.ea,
                "corp_id": token.corp_id,
            }
        )
        return token
