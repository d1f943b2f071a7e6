"""The one status/errorCode table: every error body of the reference maps to the right class."""

from __future__ import annotations

import json

import pytest
import requests

from adapters.salesforce.errors import (
    QueryLocatorExpiredError,
    SalesforceRequestError,
    SessionExpiredError,
    classify,
    classify_token,
    parse_bulk_error,
)
from connector.errors import (
    AuthError,
    ConcurrencyLimitError,
    FatalCrmError,
    PermissionRefused,
    QuotaExhaustedError,
    RetriableCrmError,
)
from tests.adapters.salesforce._support import fixture


def response(
    status: int, body: object = None, headers: dict[str, str] | None = None
) -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made._content = json.dumps(body).encode() if body is not None else b"<html>proxy</html>"
    made.headers.update(headers or {})
    made.reason = "Reason"
    return made


CASES = [
    (401, "error__invalid_session_id", SessionExpiredError, "INVALID_SESSION_ID"),
    (403, "error__request_limit_exceeded", QuotaExhaustedError, "REQUEST_LIMIT_EXCEEDED"),
    (403, "error__concurrent_limit_exceeded", ConcurrencyLimitError, "REQUEST_LIMIT_EXCEEDED"),
    (400, "error__invalid_field_query", SalesforceRequestError, "INVALID_FIELD"),
    (400, "error__invalid_field_patch", SalesforceRequestError, "INVALID_FIELD"),
    (400, "error__field_not_writable", SalesforceRequestError, "INVALID_FIELD_FOR_INSERT_UPDATE"),
    (400, "error__validation_rule", SalesforceRequestError, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
    (400, "error__unable_to_lock_row", RetriableCrmError, "UNABLE_TO_LOCK_ROW"),
    (404, "error__entity_is_deleted", SalesforceRequestError, "ENTITY_IS_DELETED"),
    (404, "error__not_found", SalesforceRequestError, "NOT_FOUND"),
    (400, "error__malformed_query", SalesforceRequestError, "MALFORMED_QUERY"),
    (400, "error__invalid_type", SalesforceRequestError, "INVALID_TYPE"),
    (400, "error__invalid_query_locator", QueryLocatorExpiredError, "INVALID_QUERY_LOCATOR"),
]


@pytest.mark.parametrize(("status", "name", "expected", "code"), CASES, ids=[c[1] for c in CASES])
def test_each_reference_error_body(status: int, name: str, expected: type, code: str) -> None:
    error = classify(response(status, fixture(name)))
    assert type(error) is expected
    assert error.code == code
    assert error.status == status


def test_the_daily_limit_is_quota_not_a_permission_error() -> None:
    error = classify(response(403, fixture("error__request_limit_exceeded")))
    assert isinstance(error, QuotaExhaustedError)
    assert not isinstance(error, AuthError)


def test_other_403_is_a_permission_problem() -> None:
    body = [{"message": "API is disabled", "errorCode": "API_DISABLED_FOR_ORG"}]
    error = classify(response(403, body))
    assert type(error) is PermissionRefused
    assert isinstance(error, AuthError), "exit 77 like every refusal of the credentials"


def test_field_names_travel_with_the_error() -> None:
    error = classify(response(400, fixture("error__field_not_writable")))
    assert isinstance(error, SalesforceRequestError)
    assert error.fields == ("Risk_Score__c",)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_429_and_5xx_are_retried_with_retry_after(status: int) -> None:
    error = classify(
        response(status, [{"errorCode": "X", "message": "busy"}], {"Retry-After": "12"})
    )
    assert isinstance(error, RetriableCrmError)
    assert error.retry_after == 12.0


def test_a_non_json_401_still_means_re_authenticate() -> None:
    assert isinstance(classify(response(401)), SessionExpiredError)


def test_unknown_4xx_is_fatal() -> None:
    error = classify(response(405, [{"errorCode": "METHOD_NOT_ALLOWED", "message": "no"}]))
    assert isinstance(error, FatalCrmError)


def test_success_is_not_an_error() -> None:
    assert classify(response(200, {})) is None
    assert classify(response(204)) is None


@pytest.mark.parametrize("name", ["oauth2_token__invalid_grant", "oauth2_token__invalid_client_id"])
def test_oauth_refusals_are_auth_errors(name: str) -> None:
    error = classify_token(response(400, fixture(name)))
    assert type(error) is AuthError
    assert error.code == fixture(name)["error"]


def test_token_endpoint_outage_is_retriable() -> None:
    assert isinstance(classify_token(response(503, {"error": "unavailable"})), RetriableCrmError)


def test_messages_are_redacted() -> None:
    body = [{"message": "bad header Authorization: Bearer abcdefghijklmnop1234", "errorCode": "X"}]
    assert "abcdefghijklmnop1234" not in str(classify(response(400, body)))


@pytest.mark.parametrize(
    ("text", "code", "fields"),
    [
        (
            "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 200 records: 001x:--",
            "UNABLE_TO_LOCK_ROW",
            (),
        ),
        (
            "FIELD_CUSTOM_VALIDATION_EXCEPTION:Score too high:Risk_Score__c",
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            ("Risk_Score__c",),
        ),
        (
            "STRING_TOO_LONG:Name: data value too large:Name,Description",
            "STRING_TOO_LONG",
            ("Name", "Description"),
        ),
        ("INVALID_ID_FIELD:bad id", "INVALID_ID_FIELD", ()),
    ],
)
def test_bulk_error_strings(text: str, code: str, fields: tuple[str, ...]) -> None:
    parsed = parse_bulk_error(text)
    assert parsed.code == code
    assert parsed.fields == fields
    assert parsed.message


@pytest.mark.parametrize(
    ("code", "fields", "reason"),
    [
        ("INACTIVE_OWNER_OR_USER", (), "owner_unavailable"),
        ("INVALID_CROSS_REFERENCE_KEY", ("OwnerId",), "owner_unavailable"),
        ("FIELD_CUSTOM_VALIDATION_EXCEPTION", ("OwnerId",), "owner_unavailable"),
        ("UNABLE_TO_LOCK_ROW", (), "locked"),
        ("STRING_TOO_LONG", ("Risk_Reasons__c",), "validation"),
        ("SOMETHING_ELSE", (), ""),
    ],
    ids=["inactive_owner", "owner_id_refused", "owner_field_named", "locked", "too_long", "other"],
)
def test_a_refusal_carries_the_cores_reason(
    code: str, fields: tuple[str, ...], reason: str
) -> None:
    from adapters.salesforce.errors import with_reasons
    from connector.models import WriteResult

    refused = WriteResult(crm_id="a", status="rejected", error_code=code, fields=fields)
    [result] = with_reasons([refused])
    assert result.reason == reason
    assert with_reasons([WriteResult(crm_id="a", status="ok")])[0].reason == ""
