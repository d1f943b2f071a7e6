"""What the Zoho sandbox's parts share: wire limits, error bodies, token records and value helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sandboxes.server import Request, Response

API_PREFIX = "/crm/v8"
MAX_PER_PAGE = 200
MAX_FIELDS = 50
MAX_WRITE = 100
DISCRETE_LIMIT = 2000  # `page` reaches only the first 2,000 records (reference §3.1)
TOO_MANY = (
    "Number of API requests for the 24 hour period is exceeded or the concurrency limit of the "
    "user for the app is exceeded"
)
THROTTLE_DESCRIPTION = (
    "You have made too many requests continuously. Please try again after some time."
)
# Zoho's documented values of `trigger`; when the key is omitted all three run (reference §5.1;
# Zoho's Update Records doc: "If the trigger is not mentioned, the workflows ... get executed").
TRIGGERS = ("workflow", "approval", "blueprint")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAME_FIELD = {"Accounts": "Account_Name", "Invoices": "Subject", "Tasks": "Subject"}

_INVOICE_STATUS = {
    "paid": "Paid",
    "partially_paid": "Partially Paid",
    "disputed": "Disputed",
    "written_off": "Written Off",
    "void": "Void",
}


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    """Zoho's whole-request error envelope."""
    return Response.json(
        status, {"code": code, "details": details or {}, "message": message, "status": "error"}
    )


def _json_object(request: Request) -> dict[str, Any] | None:
    """The body when it is a JSON object; None when it is empty, malformed or another value."""
    try:
        body = request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _missing_param(name: str) -> Response:
    """Zoho's answer to a request without a parameter it needs."""
    return _error(
        400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param": name}
    )


def _element(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """One error element of a batch answer's `data[]`."""
    return {"code": code, "details": details, "message": message, "status": "error"}


@lru_cache(maxsize=65536)
def _instant(text: str) -> float:
    """Epoch seconds of a Zoho datetime string (compare instants, never text)."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _number(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _parse_offset(offset: str) -> timezone:
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", offset)
    if not match:
        raise ValueError(f"org offset must look like +05:30, got {offset!r}")
    sign = 1 if match.group(1) == "+" else -1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


class _RecordFailure(Exception):
    """One record of a batch rejected; becomes an error element of `data[]`."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.element = _element(code, message, details)


@dataclass
class _Token:
    key: str  # the refresh token (or client id) that minted it
    issued: float  # time.monotonic()


@dataclass
class _PageToken:
    module: str
    sort_by: str
    descending: bool
    since: float | None
    ids: tuple[str, ...]
    after: tuple[float, int] | None
    page: int
    expires: datetime
