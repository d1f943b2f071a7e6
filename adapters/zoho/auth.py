"""Zoho OAuth: data-centre hosts, and one cached, single-flight access token per connection."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr

from adapters._http import gave_up
from adapters._tokens import SealedTokenCache, fingerprint
from adapters.zoho.settings import ZohoSettings
from connector.errors import AuthError, ConfigError, ConfigProblem, RetriableCrmError
from connector.protocol import KeyValueStore
from connector.redaction import redact, register_secret

from .errors import TOKEN_THROTTLED

log = logging.getLogger("crm_risk.zoho")

# DC -> (accounts server, API host suffix). From the v8 SDK's DC classes (reference §1.2).
DATA_CENTRES: dict[str, tuple[str, str]] = {
    "us": ("https://accounts.zoho.com", "zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "zohoapis.in"),
    "au": ("https://accounts.zoho.com.au", "zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "zohoapis.jp"),
    "cn": ("https://accounts.zoho.com.cn", "zohoapis.com.cn"),
    "ca": ("https://accounts.zohocloud.ca", "zohoapis.ca"),
    "sa": ("https://accounts.zoho.sa", "zohoapis.sa"),
}
# Each DC has production (www.), sandbox (sandbox.) and developer (developer.) API hosts;
# written in config as "eu", "eu-sandbox" or "eu-developer".
ENVIRONMENTS = {"": "www", "production": "www", "sandbox": "sandbox", "developer": "developer"}

# Refresh this long before Zoho's stated expiry, so a token never dies mid-request.
EXPIRY_MARGIN_SECONDS = 120.0


@dataclass(frozen=True)
class Endpoints:
    """Where the token comes from and where the API lives."""

    token_url: str
    api_base: str
    # The settings these came from, for errors that say what to fix.
    token_setting: str = "token_url"  # noqa: S105 (a setting name, not a secret)
    api_setting: str = "base_url"


def resolve_endpoints(settings: ZohoSettings) -> Endpoints:
    """Hosts from settings.data_centre, overridden by explicit token_url / base_url.

    Raises:
        ConfigError: an unknown data centre, or neither a data centre nor explicit URLs.
    """
    token_url = settings.token_url
    if token_url is None and settings.login_url:
        token_url = settings.login_url.rstrip("/") + "/oauth/v2/token"
    api_base = settings.base_url
    if (token_url is None or api_base is None) and settings.data_centre:
        dc, _, env = settings.data_centre.lower().partition("-")
        if dc not in DATA_CENTRES or env not in ENVIRONMENTS:
            known = ", ".join(f"{name}[-sandbox|-developer]" for name in DATA_CENTRES)
            raise ConfigError(
                [
                    ConfigProblem(
                        f"connections.{settings.name}.data_centre",
                        f"unknown Zoho data centre {settings.data_centre!r}",
                        f"use one of: {known}",
                    )
                ]
            )
        accounts, suffix = DATA_CENTRES[dc]
        token_url = token_url or f"{accounts}/oauth/v2/token"
        api_base = api_base or f"https://{ENVIRONMENTS[env]}.{suffix}"
    if token_url is None or api_base is None:
        raise ConfigError(
            [
                ConfigProblem(
                    f"connections.{settings.name}.data_centre",
                    "missing: set data_centre (us, eu, in, au, jp, cn, ca, sa) or token_url and base_url",
                )
            ]
        )
    return Endpoints(
        token_url=token_url,
        api_base=api_base.rstrip("/"),
        token_setting="token_url"
        if settings.token_url
        else ("login_url" if settings.login_url else "data_centre"),
        api_setting="base_url" if settings.base_url else "data_centre",
    )


PostToken = Callable[[str, dict[str, str]], requests.Response]


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


class TokenProvider:
    """One access token per connection, shared by threads and, through the state store, processes.

    A lock keeps at most one refresh in flight; the token is kept in the state store, sealed with
    (and keyed by a hash of) the client id, secret and refresh token it came from
    (adapters/_tokens.py), so a second process reuses it instead of minting another (Zoho allows
    10 mints per 10 minutes and 10 live tokens per refresh token), while a token minted from
    other credentials is never picked up. A token the API refused is never adopted again.
    """

    def __init__(
        self,
        settings: ZohoSettings,
        endpoints: Endpoints,
        post: PostToken,
        *,
        state: KeyValueStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        backoff: Callable[[int], float] = lambda attempt: 0.0,
    ) -> None:
        self._settings = settings
        self._backoff = backoff
        self._endpoints = endpoints
        self._post = post
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        # Fingerprints of tokens the API refused: never adopted again from the shared store.
        self._refused: set[str] = set()
        self.cache = SealedTokenCache(
            state,
            f"zoho:{settings.name}:access_token",
            [
                endpoints.token_url,
                settings.client_id,
                _secret(settings.client_secret),
                _secret(settings.refresh_token),
            ],
        )
        options = settings.options
        # Zoho blocks minting for the rest of a 10-minute window: back off (10, 20, 40, 60 s ...)
        # re-reading the shared store between waits, at most token_wait_seconds in all, then
        # give the run up as "try again later" (exit 75) rather than hammer the endpoint.
        self.throttle_wait = options.token_throttle_wait_seconds
        self.throttle_max_wait = options.token_throttle_max_wait_seconds
        self.wait_budget = options.token_wait_seconds
        self.refreshes = 0
        for secret in (settings.client_secret, settings.refresh_token):
            if secret is not None:
                register_secret(secret.get_secret_value())

    def token(self) -> str:
        """A valid access token: the cached one, the shared one from the store, or a fresh one."""
        with self._lock:
            if self._token and self._clock() < self._expires_at - EXPIRY_MARGIN_SECONDS:
                return self._token
            if self._adopt_stored():
                assert self._token is not None
                return self._token
            return self._refresh_locked()

    def refresh(self, stale: str) -> str:
        """Replace a token the API refused; if another thread or process already did, use theirs."""
        with self._lock:
            self._refused.add(fingerprint(stale))
            if self._token and self._token != stale:
                return self._token
            self._token = None
            cached = self.cache.load()
            if cached is not None and cached.get("access_token") == stale:
                self.cache.clear()
            if self._adopt_stored():
                assert self._token is not None
                return self._token
            return self._refresh_locked()

    def verify(self) -> None:
        """Prove the configured credentials with a fresh token exchange (what `check` runs).

        A cached token proves nothing about the client secret or refresh token: they may have
        been revoked or mistyped since it was minted.

        Raises:
            AuthError: the accounts server refused the credentials (exit 77).
            RetriableCrmError: the token endpoint stayed throttled or unavailable (exit 75).
        """
        with self._lock:
            self._refresh_locked()

    def _adopt_stored(self) -> bool:
        stored = self.cache.load()
        if stored is None:
            return False
        try:
            token = str(stored["access_token"])
            expires_at = float(stored["expires_at"])
        except (KeyError, TypeError, ValueError):
            return False
        if fingerprint(token) in self._refused:
            return False
        if self._clock() >= expires_at - EXPIRY_MARGIN_SECONDS:
            return False
        register_secret(token)
        self._token, self._expires_at = token, expires_at
        return True

    def _refresh_locked(self) -> str:
        settings = self._settings
        if not (settings.client_id and settings.client_secret and settings.refresh_token):
            raise AuthError("Zoho needs client_id, client_secret and refresh_token", code="CONFIG")
        form = {
            "grant_type": "refresh_token",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.get_secret_value(),
            "refresh_token": settings.refresh_token.get_secret_value(),
        }
        transient = 0
        started = time.monotonic()
        waited = 0.0
        wait = self.throttle_wait
        while True:
            try:
                response = self._post(self._endpoints.token_url, form)
                break
            except RetriableCrmError as exc:
                if exc.code != TOKEN_THROTTLED:
                    # 5xx, 429 or a dropped connection: the accounts server hiccuped; back off.
                    transient += 1
                    if transient > settings.max_retries:
                        raise gave_up(
                            exc,
                            transient,
                            time.monotonic() - started,
                            self._endpoints.token_setting,
                        ) from None
                    self._sleep(self._backoff(transient))
                    continue
                if waited + wait > self.wait_budget:
                    raise RetriableCrmError(
                        f"Zoho token endpoint still throttled after {waited:.0f} s of waiting; "
                        "the run stops and the next one tries again",
                        code=TOKEN_THROTTLED,
                        status=exc.status,
                    ) from None
                log.warning(
                    "Zoho token endpoint throttled (too many token requests); waiting %.0fs",
                    wait,
                )
                self._sleep(wait)
                waited += wait
                wait = min(wait * 2, self.throttle_max_wait)
                # Another process may have minted a token meanwhile: reuse it (never a refused one).
                if self._adopt_stored():
                    assert self._token is not None
                    return self._token
        body = response.json()
        token = str(body["access_token"])
        register_secret(token)
        expires_in = float(body.get("expires_in") or body.get("expires_in_sec") or 3600)
        self._token, self._expires_at = token, self._clock() + expires_in
        self.refreshes += 1
        self._check_domain(str(body.get("api_domain") or ""))
        self.cache.save({"access_token": token, "expires_at": self._expires_at})
        return token

    def _check_domain(self, api_domain: str) -> None:
        if not api_domain:
            return
        configured = urlsplit(self._endpoints.api_base)
        given = urlsplit(api_domain)
        if (configured.hostname, configured.port) != (given.hostname, given.port):
            # A token from one DC is refused by another DC's API host (reference §9.5).
            log.warning(
                "Zoho token was issued for API domain %s but connection %s calls %s; "
                "check data_centre / base_url",
                redact(api_domain),
                self._settings.name,
                redact(self._endpoints.api_base),
            )
