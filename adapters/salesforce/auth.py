"""OAuth 2.0 login flows against a configurable login URL: the adapter obtains tokens itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from adapters._http import RetryingClient
from adapters._tokens import SealedTokenCache
from adapters.salesforce.settings import SalesforceSettings
from connector.errors import AuthError, ConfigError, ConfigProblem, unreadable
from connector.protocol import KeyValueStore
from connector.redaction import register_secret

DEFAULT_LOGIN_URL = "https://login.salesforce.com"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Salesforce accepts JWT assertions for at most 3 minutes (reference §1.2).
JWT_LIFETIME_SECONDS = 180

FLOWS = ("client_credentials", "jwt_bearer", "refresh_token", "password")
_ALIASES = {"jwt": "jwt_bearer", "client-credentials": "client_credentials", "auto": "auto"}


@dataclass(frozen=True)
class Token:
    """What a login yields: the session id and where to use it."""

    access_token: str
    instance_url: str
    user_id: str | None = None

    def __repr__(self) -> str:
        # Never show the token in a traceback or a debug print.
        return f"Token(instance_url={self.instance_url!r}, user_id={self.user_id!r})"


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


class Authenticator:
    """Runs the configured OAuth flow; persists a rotated refresh token in the KeyValueStore."""

    def __init__(
        self,
        settings: SalesforceSettings,
        client: RetryingClient,
        *,
        state: KeyValueStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.client = client
        self.state = state
        self.clock = clock
        self.login_url = (settings.login_url or DEFAULT_LOGIN_URL).rstrip("/")
        self.token_url = settings.token_url or f"{self.login_url}/services/oauth2/token"
        # A rotated refresh token belongs to the credentials it was rotated from: sealed with
        # them and keyed by their hash, so a changed secret or refresh token starts afresh.
        self._rotated = SealedTokenCache(
            state,
            f"salesforce:{settings.name}:refresh_token",
            [
                self.token_url,
                settings.client_id,
                _secret(settings.client_secret),
                _secret(settings.refresh_token),
            ],
        )
        for secret in (
            settings.client_secret,
            settings.refresh_token,
            settings.password,
            settings.security_token,
            settings.private_key,
        ):
            register_secret(_secret(secret))

    # -- flow selection -----------------------------------------------------------------------

    def _refresh_token(self) -> str | None:
        stored = self._rotated.load()
        rotated = str(stored.get("refresh_token") or "") if stored else ""
        return rotated or _secret(self.settings.refresh_token)

    def flow(self) -> str:
        """The flow to use: settings.auth, or for "auto" the first one whose inputs are set.

        "refresh_token" (the settings default) without any refresh token falls back to "auto",
        so a connection configured only with JWT or client credentials still works.
        """
        s = self.settings
        wanted = _ALIASES.get(s.auth, s.auth)
        if wanted == "refresh_token" and not self._refresh_token():
            wanted = "auto"
        if wanted == "auto":
            if s.private_key is not None or s.private_key_file:
                return "jwt_bearer"
            if self._refresh_token():
                return "refresh_token"
            if s.username and s.password is not None:
                return "password"  # last resort: the OAuth password grant
            if s.client_id and s.client_secret is not None:
                return "client_credentials"
            raise ConfigError(
                [
                    ConfigProblem(
                        f"connections.{s.name}.auth",
                        "no complete Salesforce credentials (client id and secret, JWT key, "
                        "refresh token, or username and password)",
                    )
                ]
            )
        if wanted not in FLOWS:
            raise ConfigError(
                [
                    ConfigProblem(
                        f"connections.{s.name}.auth",
                        f"unknown Salesforce auth flow {s.auth!r}; use one of {', '.join(FLOWS)}",
                    )
                ]
            )
        return wanted

    # -- the flows ----------------------------------------------------------------------------

    def authenticate(self) -> Token:
        """Obtain a fresh access token.

        Returns:
            The token, its instance URL and the integration user's id (from the identity URL).

        Raises:
            AuthError: the token endpoint refused (invalid_grant, bad client); never retried.
            ConfigError: the credentials for the chosen flow are incomplete.
        """
        flow = self.flow()
        s = self.settings
        form: dict[str, str] = {}
        basic: tuple[str, str] | None = None
        if flow == "client_credentials":
            form["grant_type"] = "client_credentials"
            basic = (self._need(s.client_id, "client_id"), self._need_secret("client_secret"))
        elif flow == "jwt_bearer":
            form = {"grant_type": JWT_GRANT, "assertion": self._assertion()}
        elif flow == "refresh_token":
            form = {
                "grant_type": "refresh_token",
                "refresh_token": self._need(self._refresh_token(), "refresh_token"),
                "client_id": self._need(s.client_id, "client_id"),
            }
            if s.client_secret is not None:
                form["client_secret"] = s.client_secret.get_secret_value()
        else:
            password = self._need_secret("password") + (_secret(s.security_token) or "")
            form = {
                "grant_type": "password",
                "client_id": self._need(s.client_id, "client_id"),
                "client_secret": self._need_secret("client_secret"),
                "username": self._need(s.username, "username"),
                "password": password,
            }
        response = self.client.request(
            "POST",
            self.token_url,
            data=form,
            auth=basic,
            headers={"Accept": "application/json"},
        )
        try:
            payload = response.json()
            access_token = str(payload["access_token"])
            instance_url = str(payload["instance_url"])
        except (ValueError, KeyError, TypeError):
            raise AuthError(
                "Salesforce: token response without access_token/instance_url", code="AUTH"
            ) from None
        register_secret(access_token)
        rotated = payload.get("refresh_token")
        if rotated:
            register_secret(str(rotated))
            self._rotated.save({"refresh_token": str(rotated)})
        identity = str(payload.get("id") or "")
        user_id = identity.rstrip("/").rsplit("/", 1)[-1] if identity else None
        return Token(access_token=access_token, instance_url=instance_url, user_id=user_id or None)

    def _assertion(self) -> str:
        s = self.settings
        key = _secret(s.private_key)
        if key is None and s.private_key_file:
            try:
                key = Path(s.private_key_file).read_text()
            except OSError as exc:
                raise ConfigError(
                    [
                        ConfigProblem(
                            f"connections.{s.name}.private_key_file",
                            f"JWT private key file {unreadable(s.private_key_file, exc)}",
                        )
                    ]
                ) from None
        key = self._need(key, "private_key")
        register_secret(key)
        claims = {
            "iss": self._need(s.client_id, "client_id"),
            "sub": self._need(s.username, "username"),
            "aud": str(s.options.jwt_audience or self.login_url),
            "exp": int(self.clock()) + JWT_LIFETIME_SECONDS,
        }
        assertion = jwt.encode(claims, key, algorithm="RS256")
        register_secret(assertion)
        return assertion

    def _need(self, value: str | None, key: str) -> str:
        if not value:
            raise ConfigError(
                [
                    ConfigProblem(
                        f"connections.{self.settings.name}.{key}",
                        f"required for the Salesforce {self.flow()} login",
                    )
                ]
            )
        return value

    def _need_secret(self, key: str) -> str:
        return self._need(_secret(getattr(self.settings, key)), key)
