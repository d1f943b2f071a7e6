"""Every Zoho error body in the reference maps to the connector error that says what to do next."""

from __future__ import annotations

import json

import pytest
import requests

from adapters.zoho.errors import classify, classify_token, record_outcome
from connector.errors import (
    AuthError,
    ConcurrencyLimitError,
    FatalCrmError,
    PermissionRefused,
    RetriableCrmError,
)

from ._support import load


def response(status: int, body: object | None) -> requests.Response:
    built = requests.Response()
    built.status_code = status
    built._content = b"" if body is None else json.dumps(body).encode()
    return built


@pytest.mark.parametrize(
    ("fixture", "status", "expected"),
    [
        ("api__invalid_token", 401, AuthError),
        ("api__authentication_failure", 401, AuthError),
        # Refused permissions are a kind of AuthError the run may carry on past for optional reads.
        ("api__oauth_scope_mismatch", 401, PermissionRefused),
        ("api__no_permission", 403, PermissionRefused),
        ("api__too_many_requests", 429, ConcurrencyLimitError),
        ("api__internal_error", 500, RetriableCrmError),
        ("api__invalid_module", 400, FatalCrmError),
        ("api__discrete_pagination_limit", 400, FatalCrmError),
        ("api__required_param_missing", 400, FatalCrmError),
        ("api__limit_exceeded", 400, FatalCrmError),
        ("api__invalid_data", 400, FatalCrmError),
        ("coql__syntax_error", 400, FatalCrmError),
        ("coql__invalid_query", 400, FatalCrmError),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_api_error_bodies(fixture: str, status: int, expected: type) -> None:
    body = load(fixture)
    error = classify(response(status, body))
    assert type(error) is expected
    assert error.code == body["code"]
    assert error.status == status
    if isinstance(error, RetriableCrmError):
        assert error.retry_after is None  # Zoho sends no Retry-After; backoff decides


def test_invalid_data_names_the_field() -> None:
    error = classify(response(400, load("api__invalid_data")))
    assert "Nope" in str(error)


@pytest.mark.parametrize("status", [200, 201, 204, 304])
def test_success_and_not_modified_are_not_errors(status: int) -> None:
    assert classify(response(status, None)) is None


@pytest.mark.parametrize("status", [207, 400])
def test_batch_answers_are_read_per_record(status: int) -> None:
    assert classify(response(status, load("accounts_put__mixed"))) is None


def test_unknown_codes_fall_back_on_status() -> None:
    assert type(classify(response(418, {"code": "ODD"}))) is FatalCrmError
    assert type(classify(response(503, None))) is RetriableCrmError
    assert type(classify(response(401, None))) is AuthError


def test_token_answers() -> None:
    assert classify_token(response(200, load("token__ok"))) is None
    throttled = classify_token(response(400, load("token__throttled")))
    assert isinstance(throttled, RetriableCrmError) and throttled.code == "TOKEN_THROTTLED"
    for name in ("token__invalid_code", "token__invalid_client"):
        # Zoho answers these with 200; the body decides, never the status.
        error = classify_token(response(200, load(name)))
        assert type(error) is AuthError
        assert error.code == load(name)["error"]
    assert type(classify_token(response(502, None))) is RetriableCrmError


def test_record_outcomes() -> None:
    ok, invalid, locked, missing = (record_outcome(e) for e in load("accounts_put__mixed")["data"])
    assert ok.ok and ok.record_id == "6493490000001291001"
    assert (invalid.ok, invalid.code, invalid.fields, invalid.retriable) == (
        False,
        "INVALID_DATA",
        ("Risk_Score",),
        False,
    )
    assert locked.code == "RECORD_LOCKED" and locked.retriable
    assert missing.code == "MANDATORY_NOT_FOUND" and missing.fields == ("Account_Name",)
    assert not record_outcome("garbage").ok


@pytest.mark.parametrize(
    ("code", "fields", "reason"),
    [
        ("INVALID_DATA", ("Owner",), "owner_unavailable"),
        ("RECORD_LOCKED", (), "locked"),
        ("MANDATORY_NOT_FOUND", ("Subject",), "validation"),
        ("INTERNAL_ERROR", (), ""),
    ],
    ids=["owner_refused", "locked", "mandatory_missing", "other"],
)
def test_a_refusal_carries_the_cores_reason(
    code: str, fields: tuple[str, ...], reason: str
) -> None:
    from adapters.zoho.errors import write_reason

    assert write_reason(code, fields) == reason
