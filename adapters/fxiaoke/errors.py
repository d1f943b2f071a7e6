"""Fxiaoke errorCode -> connector errors, as one table: the HTTP status is always 200, the body decides.

Codes from the manual's global return-code table (全局返回码, developer.fxiaoke.com
openapi_v2/start/guide/codes.html, as transcribed by API Evangelist [P]) and shared/reference
/fxiaoke.md §3; 10013 for the offset cap and the envelope [F] deep-paging.html. The manual warns
not to branch on `errorMessage` (its text changes), so only `errorCode` is read here; the message
is kept for people, after redaction.
"""

from __future__ import annotations

from typing import Any

import requests

from connector.errors import (
    AuthError,
    CrmError,
    CrmSetupError,
    FatalCrmError,
    QuotaExhaustedError,
    RetriableCrmError,
)
from connector.redaction import redact

OK = 0
# Codes that mean "refresh the token once and send again" [S crm-cli, chy1ee Constants.java].
TOKEN_CODES = frozenset({20005, 20016})
# Codes under which the server did not run the call: a create may be sent again after them.
NOT_EXECUTED = frozenset({14001, 30004, 20005, 20016})

# code -> (class, what it means, what to do). The class says what the engine does next.
ERROR_TABLE: dict[int, tuple[type[CrmError], str]] = {
    -1: (RetriableCrmError, "Fxiaoke is busy (系统繁忙); retried with backoff"),
    -2: (RetriableCrmError, "Fxiaoke system error (系统错误); retried with backoff"),
    10006: (FatalCrmError, "a parameter is missing or the API path is unknown"),
    10010: (FatalCrmError, "currentOpenUserId is missing"),
    # The global table says "corpAccessToken missing"; deep-paging.html uses it for offsets.
    10013: (FatalCrmError, "corpAccessToken missing, or offset out of range 10000"),
    10014: (FatalCrmError, "corpId is missing"),
    11001: (AuthError, "appId refused; check client_id"),
    11002: (AuthError, "appSecret refused; check client_secret"),
    11013: (AuthError, "permanentCode refused; check refresh_token (the app's permanent code)"),
    11014: (AuthError, "corpAccessToken refused"),
    14001: (RetriableCrmError, "call limit exceeded (100 calls per 20 s per interface)"),
    15002: (FatalCrmError, "invalid parameter"),
    15003: (AuthError, "the app has no permission for this call; grant it in the admin console"),
    20005: (AuthError, "access token missing"),
    20006: (AuthError, "appId or appSecret refused; check client_id and client_secret"),
    20015: (AuthError, "permanentCode refused; check refresh_token (the app's permanent code)"),
    20012: (AuthError, "the employee (openUserId) is not found; check username"),
    20014: (AuthError, "the app may not read this employee's data"),
    20016: (AuthError, "access token expired or invalid"),
    20020: (AuthError, "the app may not read this enterprise's data"),
    20021: (AuthError, "the app is disabled in this enterprise"),
    20022: (AuthError, "the enterprise has not authorised this app"),
    20023: (AuthError, "the app may not access this department"),
    30027: (AuthError, "the employee does not exist; check username (the x-fs-userid)"),
    32000: (FatalCrmError, "parameter error"),
    30002: (
        QuotaExhaustedError,
        "today's Open API quota is used up (resets at 00:00 China time); the next run resumes",
    ),
    30003: (
        QuotaExhaustedError,
        "the tenant has no Open API pack (开放平台资源包); buy one from Fxiaoke, then run again",
    ),
    30004: (RetriableCrmError, "per-second rate exceeded; retried after a pause"),
    50009: (RetriableCrmError, "Fxiaoke service timeout; retried with backoff"),
}
# The secret each credential code refuses, so the CLI can say where it came from.
_SETTING = {
    11001: "client_id",
    11002: "client_secret",
    11013: "refresh_token",
    20006: "client_secret",
    20012: "username",
    20015: "refresh_token",
    30027: "username",
}
# Seconds to wait before retrying a rate code (14001: the per-interface window is 20 s).
_RETRY_AFTER = {14001: 20.0, 30004: 1.0}


def body_of(response: requests.Response) -> dict[str, Any] | None:
    """The JSON object of an answer, or None when it is not one."""
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def error_code(payload: dict[str, Any]) -> int | None:
    """The errorCode of an envelope as an int (None when absent or not a number)."""
    raw = payload.get("errorCode")
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.lstrip("-").isdigit():
        return int(raw)
    return None


def error_for(code: int, message: str, trace_id: str, status: int = 200) -> CrmError:
    """The connector error for an errorCode (unknown codes are fatal: we cannot tell more)."""
    cls, meaning = ERROR_TABLE.get(code, (FatalCrmError, "Fxiaoke refused the call"))
    detail = f"Fxiaoke errorCode {code}: {meaning}"
    if message:
        detail += f" ({redact(message)[:200]})"
    if trace_id:
        detail += f" [traceId {trace_id}]"  # what Fxiaoke support asks for
    if cls is AuthError:
        return AuthError(detail, code=str(code), status=status, setting=_SETTING.get(code, ""))
    if issubclass(cls, RetriableCrmError):
        return cls(detail, code=str(code), status=status, retry_after=_RETRY_AFTER.get(code))
    return cls(detail, code=str(code), status=status)


def classify(response: requests.Response) -> CrmError | None:
    """One table from an answer to a connector error; None when errorCode is 0."""
    status = response.status_code
    if status == 429 or status >= 500:
        # The Open API answers 200; a gateway in front of it may not.
        return RetriableCrmError(f"Fxiaoke gateway answered HTTP {status}", status=status)
    if status >= 400:
        return FatalCrmError(f"Fxiaoke refused the call with HTTP {status}", status=status)
    payload = body_of(response)
    code = None if payload is None else error_code(payload)
    if payload is None or code is None:
        return CrmSetupError(
            "the answer is not an Fxiaoke Open API envelope (no errorCode): check base_url "
            "(the tenant's cloud host, e.g. https://open.fxiaoke.com)",
            setting="base_url",
            code="NOT_FXIAOKE",
            status=status,
        )
    if code == OK:
        return None
    return error_for(
        code, str(payload.get("errorMessage") or ""), str(payload.get("traceId") or ""), status
    )
