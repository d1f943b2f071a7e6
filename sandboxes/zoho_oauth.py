"""The Zoho sandbox's accounts server: token grants and refreshes, throttling, revocation, bearer checks."""

from __future__ import annotations

import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from sandboxes.server import Request, Response
from sandboxes.zoho_common import (
    THROTTLE_DESCRIPTION,
    _error,
    _Token,
)
from sandboxes.zoho_schema import (
    ORG_ID,
)

if TYPE_CHECKING:
    from sandboxes.zoho import ZohoEmulator


class AccountsServer:
    """Part of ZohoEmulator (sandboxes/zoho.py), holding no state of its own."""

    def __init__(self, emulator: ZohoEmulator) -> None:
        self.emulator = emulator

    @staticmethod
    def _form(request: Request) -> dict[str, str]:
        # Zoho accepts the token parameters in the query string or a form body, urlencoded
        # or multipart/form-data (how Zoho's own Node SDK posts its grants).
        params = {key: values[0] for key, values in request.query.items() if values}
        if request.body:
            for key, value in request.form().items():
                params.setdefault(key, value)
        return params

    def _token(self, request: Request) -> Response:
        # Zoho answers OAuth errors with HTTP 200 and {"error": ...} [A: status per §10]; only
        # the throttle is a 400. Clients should look for access_token, as the SDK does.
        if request.method != "POST":
            return Response.json(200, {"error": "invalid_request"})
        form = self._form(request)
        with self.emulator._lock:
            self.emulator.token_requests += 1
            grant = form.get("grant_type", "")
            if grant not in ("refresh_token", "authorization_code", "client_credentials"):
                return Response.json(200, {"error": "unsupported_grant_type"})
            if form.get("client_id") != self.emulator.client_id or not secrets.compare_digest(
                form.get("client_secret", ""), self.emulator.client_secret
            ):
                return Response.json(200, {"error": "invalid_client"})
            new_refresh: str | None = None
            if grant == "refresh_token":
                key = form.get("refresh_token", "")
                if key not in self.emulator._refresh_tokens:
                    return Response.json(200, {"error": "invalid_code"})
            elif grant == "authorization_code":
                code = form.get("code", "")
                expiry = self.emulator._codes.pop(code, None)
                if expiry is None or time.monotonic() > expiry:
                    return Response.json(200, {"error": "invalid_code"})
                new_refresh = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
                self.emulator._refresh_tokens.add(new_refresh)
                key = new_refresh
            else:
                soid = form.get("soid")
                if soid is not None and soid != f"ZohoCRM.{ORG_ID}":
                    return Response.json(200, {"error": "invalid_client"})
                key = "client:" + self.emulator.client_id
            if self._throttled(key):
                return Response.json(
                    400,
                    {
                        "error": "Access Denied",
                        "error_description": THROTTLE_DESCRIPTION,
                        "status": "failure",
                    },
                )
            token = self._mint(key)
        body: dict[str, Any] = {"access_token": token}
        if new_refresh:
            body["refresh_token"] = new_refresh
        body.update(
            {
                "scope": form.get("scope") or "ZohoCRM.modules.ALL ZohoCRM.settings.ALL",
                "api_domain": request.base_url,
                "token_type": "Bearer",
                "expires_in": int(self.emulator.token_ttl_s),
            }
        )
        return Response.json(200, body)

    def _throttled(self, key: str) -> bool:
        now = time.monotonic()
        window = self.emulator._mints.setdefault(key, deque())
        while window and now - window[0] > self.emulator.token_window_s:
            window.popleft()
        return len(window) >= self.emulator.token_mints_per_window

    def _mint(self, key: str) -> str:
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self.emulator._mints.setdefault(key, deque()).append(time.monotonic())
        self.emulator._tokens[token] = _Token(key, time.monotonic())
        # At most N live tokens per refresh token: the oldest is silently evicted (§2).
        mine = [t for t, info in self.emulator._tokens.items() if info.key == key]
        for old in mine[: max(0, len(mine) - self.emulator.max_live_tokens)]:
            del self.emulator._tokens[old]
        return token

    def _revoke(self, request: Request) -> Response:
        token = self._form(request).get("token", "")
        with self.emulator._lock:
            if token in self.emulator._refresh_tokens:
                self.emulator._refresh_tokens.discard(token)
                for access in [t for t, info in self.emulator._tokens.items() if info.key == token]:
                    del self.emulator._tokens[access]
            else:
                self.emulator._tokens.pop(token, None)
        return Response.json(200, {"status": "success"})

    def _authenticate(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if scheme != "Zoho-oauthtoken" or not token.strip():
            return _error(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        lifetime = request.faults.expire_tokens_after_s
        if lifetime is None:
            lifetime = self.emulator.token_ttl_s
        with self.emulator._lock:
            info = self.emulator._tokens.get(token.strip())
            if info is not None and time.monotonic() - info.issued > lifetime:
                del self.emulator._tokens[token.strip()]
                info = None
        if info is None:
            return _error(401, "INVALID_TOKEN", "invalid oauth token")
        return None
