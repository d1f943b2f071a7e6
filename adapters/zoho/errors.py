"""Zoho error bodies and statuses -> connector errors, as one table (API, token and per-record)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from connector.errors import (
    AuthError,
    ConcurrencyLimitError,
    CrmError,
    CrmSetupError,
    FatalCrmError,
    PermissionRefused,
    RetriableCrmError,
)
from connector.models import WriteReason
from connector.redaction import redact, redact_url, register_secret_pattern

# Zoho's auth scheme, and its access and refresh tokens (1000.<hex>.<hex>); registered when the
# adapter is imported, before any token exists.
register_secret_pattern(r"(?i)\b(Zoho-oauthtoken)\s+[A-Za-z0-9._~+/=!\-]{8,}")
register_secret_pattern(r"\b1000\.[0-9a-f]{16,}\.[0-9a-f]{16,}\b")

# Whole-request error codes (reference §2, §3, §5.1, §6; enum `API_Exception` in crm-oas record.json).
# The class says what the engine does next; the text says why, without the response body.
ERROR_TABLE: dict[str, tuple[type[CrmError], str]] = {
    "INVALID_TOKEN": (AuthError, "access token refused (expired, evicted or from another DC)"),
    "AUTHENTICATION_FAILURE": (AuthError, "no usable Authorization header"),
    "OAUTH_SCOPE_MISMATCH": (PermissionRefused, "the token lacks the OAuth scope for this call"),
    "NO_PERMISSION": (PermissionRefused, "the Zoho profile of the API user forbids this action"),
    "TOO_MANY_REQUESTS": (ConcurrencyLimitError, "API credits or concurrency limit exceeded"),
    "INTERNAL_ERROR": (RetriableCrmError, "Zoho internal error"),
    "INVALID_MODULE": (FatalCrmError, "unknown module"),
    "DISCRETE_PAGINATION_LIMIT_EXCEEDED": (
        FatalCrmError,
        "page beyond 2,000 records without page_token",
    ),
    "REQUIRED_PARAM_MISSING": (FatalCrmError, "a required parameter is missing"),
    "LIMIT_EXCEEDED": (FatalCrmError, "a request limit was exceeded"),
    "INVALID_DATA": (FatalCrmError, "invalid data in the request"),
    "INVALID_REQUEST": (FatalCrmError, "invalid request"),
    # Our paths are fixed: a URL Zoho does not know means base_url (or the DC) is wrong.
    "INVALID_URL_PATTERN": (CrmSetupError, "Zoho does not know this URL"),
    "SYNTAX_ERROR": (FatalCrmError, "COQL syntax error"),
    "INVALID_QUERY": (FatalCrmError, "COQL query invalid"),
    "INVALID_ALIAS": (FatalCrmError, "COQL alias invalid"),
    "DUPLICATE_ALIAS": (FatalCrmError, "COQL alias duplicated"),
    "DUPLICATE_DATA": (FatalCrmError, "duplicate data"),
    "MANDATORY_NOT_FOUND": (FatalCrmError, "a mandatory field is missing"),
    "NOT_ALLOWED": (FatalCrmError, "operation not allowed"),
    "CANNOT_PERFORM_ACTION": (FatalCrmError, "Zoho cannot perform this action"),
}

# Per-record codes in a batch answer that are worth retrying in a later run (the record was
# locked, e.g. by an approval, or Zoho hiccuped on that element).
RETRIABLE_RECORD_CODES = frozenset({"RECORD_LOCKED", "INTERNAL_ERROR", "TOO_MANY_REQUESTS"})

# Per-record codes that refuse a value or a field (the answer's api_name says which).
VALIDATION_RECORD_CODES = frozenset(
    {"INVALID_DATA", "MANDATORY_NOT_FOUND", "DUPLICATE_DATA", "LIMIT_EXCEEDED"}
)


def write_reason(code: str, fields: tuple[str, ...]) -> WriteReason:
    """The core's reason for a refused record: Zoho names the refused field in `api_name`."""
    if any(name.lower() == "owner" for name in fields):
        return "owner_unavailable"  # an inactive user, or one the module is not shared with
    if code == "RECORD_LOCKED":
        return "locked"
    if code in VALIDATION_RECORD_CODES:
        return "validation"
    return ""


# Statuses whose body carries per-record results in `data[]` that the adapter reads one by one;
# 400 is included because a batch in which every record failed comes back as 400 with `data[]` [A].
_BATCH_STATUSES = frozenset({200, 201, 202, 207, 400})

TOKEN_THROTTLED = "TOKEN_THROTTLED"  # noqa: S105 (an error code, not a secret)


def _json(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _error_from(code: str, status: int, zoho_message: str, details: Any) -> CrmError:
    known = ERROR_TABLE.get(code)
    if status == 429 or status >= 500:
        # TOO_MANY_REQUESTS (the org's concurrency limit, or its daily credits): the engine
        # narrows its window; anything else is transient.
        cls: type[CrmError] = (
            known[0] if code == "TOO_MANY_REQUESTS" and known else RetriableCrmError
        )
        text = known[1] if known else "Zoho is unavailable"
    elif known is not None:
        cls, text = known
    elif status in (401, 403):
        cls, text = AuthError, "Zoho refused the credentials"
    else:
        cls, text = FatalCrmError, "Zoho rejected the request"
    if zoho_message:
        text = f"{text}: {zoho_message}"
    if isinstance(details, dict) and details.get("api_name"):
        text = f"{text} (field {details['api_name']})"
    if cls is CrmSetupError:
        return CrmSetupError(redact(text), setting="", code=code, status=status)
    # Zoho sends no Retry-After; the retry policy's exponential backoff with jitter applies.
    return cls(redact(text), code=code, status=status)


def _not_zoho(response: requests.Response, what: str) -> CrmSetupError:
    """An answer that is not from Zoho at all: the URL setting points at another service."""
    kind = response.headers.get("Content-Type", "no content type").split(";")[0]
    return CrmSetupError(
        f"{response.request.method if response.request else 'the call to'} "
        f"{redact_url(response.url)} answered HTTP {response.status_code} ({kind}), not as {what}: "
        "the URL points at another service or path",
        setting="",
        code="WRONG_SERVICE",
        status=response.status_code,
    )


def classify(response: requests.Response) -> CrmError | None:
    """Map one REST API response to a connector error, or None when the caller should read it.

    Args:
        response: an answer from the API domain (not the accounts server).

    Returns:
        None for 2xx/304 and for batch answers with per-record `data[]`; otherwise the error whose
        class says what to do next (AuthError, RetriableCrmError, FatalCrmError).
    """
    status = response.status_code
    if status < 300 or status == 304:
        return None
    body = _json(response)
    if (
        status in _BATCH_STATUSES
        and isinstance(body, dict)
        and isinstance(body.get("data"), list)
        and body["data"]
    ):
        return None
    code, message, details = "", "", None
    if isinstance(body, dict):
        code = str(body.get("code") or "")
        message = str(body.get("message") or "")
        details = body.get("details")
    if status in (404, 405) and not code:
        # Zoho's API answers every error with a JSON `code`; a bare 404 is someone else's.
        return _not_zoho(response, "Zoho CRM's API")
    return _error_from(code or f"HTTP_{status}", status, message, details)


def classify_token(response: requests.Response) -> CrmError | None:
    """Map an accounts-server token answer to a connector error, or None when it holds a token.

    Zoho's status codes here are not pinned down, so success is decided by the body carrying
    `access_token`, as the SDK does (reference §2).

    Returns:
        None on success; RetriableCrmError(code="TOKEN_THROTTLED") for the "too many requests
        continuously" throttle (the caller waits before asking again); AuthError for invalid_code,
        invalid_client and anything else that is not transient.
    """
    body = _json(response)
    if isinstance(body, dict) and body.get("access_token"):
        return None
    status = response.status_code
    error = str(body.get("error") or "") if isinstance(body, dict) else ""
    description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
    if "too many requests" in description.lower():
        return RetriableCrmError(
            "Zoho token endpoint throttled: too many token requests; waiting before retrying",
            code=TOKEN_THROTTLED,
            status=status,
        )
    if status == 429 or status >= 500:
        return RetriableCrmError(
            "Zoho accounts server unavailable", code=error or f"HTTP_{status}", status=status
        )
    if not error:
        # Zoho's accounts server answers every refusal with an OAuth `error`: anything else
        # (a 404 page, another CRM's answer) means the token URL is not Zoho's.
        return _not_zoho(response, "a Zoho accounts server")
    setting = ""
    if error == "invalid_code":
        text = "refresh token refused (invalid_code): revoked, expired or from another DC"
        setting = "refresh_token"
    elif error == "invalid_client":
        text = "client id or secret refused (invalid_client)"
        setting = "client_secret"
    else:
        text = f"token refresh refused ({error})"
    return AuthError(redact(text), code=error, status=status, setting=setting)


@dataclass(frozen=True)
class RecordOutcome:
    """One element of a batch answer, read against the connector's rules."""

    ok: bool
    code: str
    message: str
    fields: tuple[str, ...]
    retriable: bool
    record_id: str | None


def record_outcome(element: Any) -> RecordOutcome:
    """Read one `data[]` element of a write answer; only code SUCCESS counts as written."""
    if not isinstance(element, dict):
        return RecordOutcome(False, "MALFORMED", "unreadable result element", (), False, None)
    code = str(element.get("code") or "")
    details = element.get("details") if isinstance(element.get("details"), dict) else {}
    assert isinstance(details, dict)
    record_id = str(details["id"]) if details.get("id") is not None else None
    if code == "SUCCESS":
        return RecordOutcome(True, code, "", (), False, record_id)
    api_name = details.get("api_name")
    fields = (str(api_name),) if api_name else ()
    message = redact(str(element.get("message") or code or "rejected"))
    return RecordOutcome(
        False, code or "UNKNOWN", message, fields, code in RETRIABLE_RECORD_CODES, record_id
    )
