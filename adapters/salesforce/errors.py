"""Salesforce statuses and error bodies mapped to connector errors, as one table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests

from adapters._http import parse_retry_after
from connector.errors import (
    AuthError,
    ConcurrencyLimitError,
    CrmError,
    CrmSetupError,
    FatalCrmError,
    PermissionRefused,
    QuotaExhaustedError,
    RetriableCrmError,
)
from connector.models import WriteReason, WriteResult
from connector.redaction import (
    redact,
    redact_url,
    register_secret_key,
    register_secret_pattern,
)

# Salesforce session ids (00D org prefix, '!' and a long tail) and the session header some
# clients send; registered when the adapter is imported, before any session exists.
register_secret_pattern(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{20,}")
register_secret_key("x-sfdc-session")

# Record-level codes that clear up by themselves: retried in smaller batches, then reported
# as rejected with retriable=True so the next run tries again (reference §6, row locks).
RETRIABLE_RECORD_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})

# Record-level codes that name the offending fields (validation rules, FLS, lengths, types).
VALIDATION_CODES = frozenset(
    {
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "INVALID_FIELD",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "STRING_TOO_LONG",
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "NUMBER_OUTSIDE_VALID_RANGE",
        "REQUIRED_FIELD_MISSING",
        "FIELD_INTEGRITY_EXCEPTION",
    }
)

# How Salesforce says a record's owner cannot have it: an inactive user, or an id that is no
# user the record may point to.
OWNER_CODES = frozenset({"INACTIVE_OWNER_OR_USER", "INVALID_CROSS_REFERENCE_KEY"})


def write_reason(result: WriteResult) -> WriteReason:
    """The core's reason for a refused record, read from Salesforce's statusCode and fields."""
    if result.status == "ok":
        return ""
    if result.error_code in OWNER_CODES or any(f.lower() == "ownerid" for f in result.fields):
        return "owner_unavailable"
    if result.error_code in RETRIABLE_RECORD_CODES:
        return "locked"
    if result.error_code in VALIDATION_CODES:
        return "validation"
    return ""


def with_reasons(results: list[WriteResult]) -> list[WriteResult]:
    """The results with each refusal's canonical reason set (the core reads only that)."""
    return [
        result.model_copy(update={"reason": reason}) if (reason := write_reason(result)) else result
        for result in results
    ]


# Salesforce puts the cause last (a SOQL error repeats the whole query first), so messages are
# kept whole; the cap only guards against a runaway body.
MAX_MESSAGE = 10_000


class SessionExpiredError(AuthError):
    """401 INVALID_SESSION_ID: the adapter re-authenticates once, then gives up with AuthError."""


class QueryLocatorExpiredError(FatalCrmError):
    """INVALID_QUERY_LOCATOR: a query cursor died; the reader restarts from its keyset position."""


class SalesforceRequestError(FatalCrmError):
    """A request Salesforce refused for good; carries the field names the error body listed."""

    def __init__(
        self, message: str, *, code: str = "", status: int | None = None, fields: Sequence[str] = ()
    ) -> None:
        self.fields = tuple(fields)
        super().__init__(message, code=code, status=status)


# The one table: (HTTP status, errorCode) -> what the engine does next. A key with code None
# is the status-wide default. Anything not listed follows singer-sdk's rule: 429 and 5xx are
# retried, other 4xx are fatal.
ERROR_TABLE: dict[tuple[int, str | None], type[CrmError]] = {
    (401, "INVALID_SESSION_ID"): SessionExpiredError,
    # A 401 without a JSON list (a proxy, an HTML page) is still treated as an expired session,
    # so the one re-auth happens instead of a confusing parse error (reference §1.3).
    (401, None): SessionExpiredError,
    # Daily allocation spent ("TotalRequests Limit exceeded."): stop cleanly, resume next run.
    (403, "REQUEST_LIMIT_EXCEEDED"): QuotaExhaustedError,
    # Too many concurrent long-running requests ("ConcurrentPerOrgLongTxn Limit exceeded.",
    # "ConcurrentRequests (Concurrent API Requests) Limit exceeded."): transient; the engine
    # sends fewer calls at once (connector/engine/window.py).
    (403, "REQUEST_LIMIT_EXCEEDED/concurrent"): ConcurrencyLimitError,
    # Authenticated but not allowed (API disabled for the profile, missing object access).
    (403, None): PermissionRefused,
    (400, "INVALID_QUERY_LOCATOR"): QueryLocatorExpiredError,
    (400, "QUERY_TIMEOUT"): RetriableCrmError,
    (400, "UNABLE_TO_LOCK_ROW"): RetriableCrmError,
    (400, "SERVER_UNAVAILABLE"): RetriableCrmError,
    (408, None): RetriableCrmError,
    (429, None): RetriableCrmError,
}

# OAuth token endpoint errors ({"error": ..., "error_description": ...}); none is retried.
OAUTH_AUTH_ERRORS = frozenset(
    {
        "invalid_grant",
        "invalid_client_id",
        "invalid_client",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_request",
        "inactive_user",
        "inactive_org",
    }
)


@dataclass(frozen=True)
class ErrorBody:
    """The first error of a Salesforce error body, whatever its shape."""

    code: str
    message: str
    fields: tuple[str, ...] = ()


def parse_error_body(response: requests.Response) -> ErrorBody:
    """Read the error code, message and fields from a REST, Bulk or OAuth error body."""
    try:
        payload: Any = response.json()
    except ValueError:
        return ErrorBody(code="", message=response.reason or f"HTTP {response.status_code}")
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        first = payload[0]
        return ErrorBody(
            code=str(first.get("errorCode") or first.get("statusCode") or ""),
            message=str(first.get("message") or ""),
            fields=tuple(str(name) for name in first.get("fields") or ()),
        )
    if isinstance(payload, dict):
        if "error" in payload:
            return ErrorBody(
                code=str(payload["error"]), message=str(payload.get("error_description") or "")
            )
        return ErrorBody(
            code=str(payload.get("errorCode") or payload.get("exceptionCode") or ""),
            message=str(payload.get("message") or payload.get("exceptionMessage") or ""),
        )
    return ErrorBody(code="", message=response.reason or f"HTTP {response.status_code}")


def _message(text: str) -> str:
    # Messages come from the server and may echo request data: redact, and keep them short.
    text = " ".join(text.split())
    return "Salesforce: " + redact(text[:MAX_MESSAGE])


def _table_key(status: int, body: ErrorBody) -> tuple[int, str | None]:
    code: str | None = body.code or None
    if code == "REQUEST_LIMIT_EXCEEDED" and "TotalRequests" not in body.message:
        # ConcurrentPerOrgLongTxn and friends share the code but are not the daily quota.
        if "concurrent" in body.message.lower():
            code = "REQUEST_LIMIT_EXCEEDED/concurrent"
    return (status, code)


def classify(response: requests.Response) -> CrmError | None:
    """Map a REST or Bulk API response to a connector error, or None when it succeeded.

    Args:
        response: any response from the instance (query, sobjects, composite, jobs).

    Returns:
        None for 2xx/304, else the error the table names for status and errorCode.
    """
    status = response.status_code
    if status < 300 or status == 304:
        return None
    body = parse_error_body(response)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    key = _table_key(status, body)
    error_class = ERROR_TABLE.get(key) or ERROR_TABLE.get((status, None))
    message = _message(body.message or response.reason or "request failed")
    if error_class is None:
        if status == 429 or status >= 500:
            error_class = RetriableCrmError
        else:
            return SalesforceRequestError(
                message, code=body.code, status=status, fields=body.fields
            )
    if issubclass(error_class, RetriableCrmError):
        return error_class(message, code=body.code, status=status, retry_after=retry_after)
    if issubclass(error_class, SalesforceRequestError):
        return error_class(message, code=body.code, status=status, fields=body.fields)
    return error_class(message, code=body.code, status=status)


def classify_token(response: requests.Response) -> CrmError | None:
    """Map an OAuth token endpoint response: invalid_grant and friends are AuthError at once."""
    status = response.status_code
    if status < 300:
        return None
    body = parse_error_body(response)
    message = _message(f"token request refused: {body.code} {body.message}".strip())
    if status in (404, 405) or (status < 500 and status != 429 and not _is_json(response)):
        # Salesforce's OAuth endpoint answers every refusal with JSON `error`: a 404 or an
        # HTML page means the login (or token) URL is not a Salesforce login server.
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        return CrmSetupError(
            f"POST {redact_url(response.url)} answered HTTP {status} ({kind}), not as a "
            "Salesforce OAuth token endpoint: the URL points at another service or path",
            setting="",
            code="WRONG_SERVICE",
            status=status,
        )
    if status == 429 or status >= 500:
        return RetriableCrmError(
            message,
            code=body.code,
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if body.code in OAUTH_AUTH_ERRORS or status in (400, 401, 403):
        return AuthError(
            message, code=body.code or "AUTH", status=status, setting=_refused_secret(body)
        )
    return FatalCrmError(message, code=body.code, status=status)


def _is_json(response: requests.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def _refused_secret(body: ErrorBody) -> str:
    """The setting an OAuth refusal points at, when its code says (else "")."""
    if body.code in ("invalid_client_id", "invalid_client"):
        return "client_secret" if "secret" in body.message.lower() else "client_id"
    if body.code == "invalid_grant":
        text = body.message.lower()
        if "password" in text or "username" in text:
            return "password"
        if "refresh" in text or "expired" in text:
            return "refresh_token"
    return ""


def parse_bulk_error(text: str) -> ErrorBody:
    """Split a Bulk API 2.0 `sf__Error` value ("CODE:message:field1,field2" or "...:--")."""
    code, _, rest = text.partition(":")
    message, _, fields = rest.rpartition(":")
    if not message:
        message, fields = rest, ""
    names = () if fields.strip() in ("", "--") else tuple(f.strip() for f in fields.split(","))
    return ErrorBody(code=code.strip(), message=message.strip(), fields=names)


def unreadable_answer(method: str, url: str, response: requests.Response) -> RetriableCrmError:
    """A successful status with a body that is not JSON (proxy page, truncated transfer)."""
    kind = response.headers.get("Content-Type", "no content type").split(";")[0]
    return RetriableCrmError(
        f"Salesforce: unreadable answer to {method} {redact_url(url)} "
        f"(HTTP {response.status_code}, {kind})",
        code="UNREADABLE_ANSWER",
        status=response.status_code,
    )


def unexpected_answer(what: str) -> RetriableCrmError:
    """A JSON answer of the wrong shape; retried next run rather than read as empty."""
    return RetriableCrmError(f"Salesforce: unexpected answer: {what}", code="UNEXPECTED_ANSWER")
