"""Salesforce sandbox wire behaviour: OAuth errors, expiry, limits, faults, paging, SOQL and validation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from sandboxes import RunningSandbox, start_salesforce
from sandboxes.sf_schema import id_suffix
from tests.sandbox.conftest import API_VERSION, client_session, fetch_token

DATA = f"/services/data/v{API_VERSION}"


def api(
    sandbox: RunningSandbox, session: requests.Session, path: str, **kw: Any
) -> requests.Response:
    token = kw.pop("token", None) or fetch_token(sandbox, session)["access_token"]
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    return session.request(
        kw.pop("method", "GET"), sandbox.base_url + DATA + path, headers=headers, timeout=10, **kw
    )


def soql(sf: Salesforce, query: str) -> list[dict[str, Any]]:
    return list(sf.query_all_iter(query))


# ---------------------------------------------------------------- OAuth


@pytest.mark.parametrize(
    ("data", "auth", "error"),
    [
        ({"grant_type": "client_credentials"}, ("sandbox-client", "nope"), "invalid_client"),
        ({"grant_type": "client_credentials"}, ("nobody", "sandbox-secret"), "invalid_client_id"),
        (
            {
                "grant_type": "password",
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
                "username": "integration@crm-risk.sandbox",
                "password": "bad",
            },
            None,
            "invalid_grant",
        ),
        (
            {
                "grant_type": "refresh_token",
                "client_id": "sandbox-client",
                "refresh_token": "stale",
            },
            None,
            "invalid_grant",
        ),
        ({"grant_type": "authorization_code"}, None, "unsupported_grant_type"),
    ],
    ids=["bad_secret", "bad_client", "bad_password", "bad_refresh", "unsupported"],
)
def test_token_errors(
    sf_sandbox: RunningSandbox,
    session: requests.Session,
    data: dict[str, str],
    auth: tuple[str, str] | None,
    error: str,
) -> None:
    answer = session.post(sf_sandbox.token_url, data=data, auth=auth, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"] == error and answer.json()["error_description"]


def test_token_grants_answer_the_documented_fields(
    sf_sandbox: RunningSandbox, session: requests.Session
) -> None:
    emulator = sf_sandbox.emulator
    grants = [
        {
            "grant_type": "password",
            "client_id": sf_sandbox.client_id,
            "client_secret": sf_sandbox.client_secret,
            "username": sf_sandbox.username,
            "password": sf_sandbox.password + emulator.security_token,
        },
        {
            "grant_type": "refresh_token",
            "client_id": sf_sandbox.client_id,
            "client_secret": sf_sandbox.client_secret,
            "refresh_token": emulator.demo_refresh_token,
        },
    ]
    for data in grants:
        body = session.post(sf_sandbox.token_url, data=data, timeout=10).json()
        assert set(body) >= {
            "access_token",
            "instance_url",
            "id",
            "token_type",
            "issued_at",
            "signature",
        }
        assert body["instance_url"] == sf_sandbox.base_url
        assert api(sf_sandbox, session, "/limits", token=body["access_token"]).status_code == 200


def test_jwt_assertion_is_checked(sf_sandbox: RunningSandbox, session: requests.Session) -> None:
    emulator = sf_sandbox.emulator
    claims = {
        "iss": sf_sandbox.client_id,
        "sub": sf_sandbox.username,
        "aud": sf_sandbox.login_url,
        "exp": str(int(time.time()) + 180),
    }

    def grant(assertion: str) -> requests.Response:
        return session.post(
            sf_sandbox.token_url,
            timeout=10,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            },
        )

    assert grant(jwt.encode(claims, emulator.jwt_private_key, algorithm="RS256")).status_code == 200
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert grant(jwt.encode(claims, stranger, algorithm="RS256")).json()["error"] == "invalid_grant"
    expired = claims | {"exp": int(time.time()) - 10}
    assert (
        grant(jwt.encode(expired, emulator.jwt_private_key, algorithm="RS256")).status_code == 400
    )
    wrong_aud = claims | {"aud": "https://evil.example"}
    assert (
        grant(jwt.encode(wrong_aud, emulator.jwt_private_key, algorithm="RS256")).status_code == 400
    )


# ---------------------------------------------------------------- sessions and limits


def test_expired_session_is_401_invalid_session_id(
    sf_sandbox: RunningSandbox, sf: Salesforce
) -> None:
    sf.query("SELECT Id FROM Account LIMIT 1")
    sf_sandbox.emulator.expire_tokens()
    with pytest.raises(SalesforceExpiredSession) as info:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert info.value.content[0] == {
        "message": "Session expired or invalid",
        "errorCode": "INVALID_SESSION_ID",
    }


def test_sessions_expire_after_the_configured_time(
    sf_sandbox: RunningSandbox, sf: Salesforce
) -> None:
    sf_sandbox.server.faults.expire_tokens_after_s = 0.2
    sf.query("SELECT Id FROM Account LIMIT 1")
    time.sleep(0.3)
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Account LIMIT 1")


def test_daily_limit_then_403_request_limit_exceeded(session: requests.Session) -> None:
    with (
        start_salesforce(accounts=3, daily_api_limit=4) as sandbox,
        client_session(sandbox.ca_bundle) as s,
    ):
        token = fetch_token(sandbox, s)
        sf = Salesforce(
            instance_url=token["instance_url"],
            session_id=token["access_token"],
            session=s,
            version=API_VERSION,
        )
        sf.query("SELECT Id FROM Account")
        assert tuple(sf.api_usage["api-usage"]) == (1, 4)
        assert sf.limits()["DailyApiRequests"] == {"Max": 4, "Remaining": 2}
        sf.query("SELECT Id FROM Account")
        sf.query("SELECT Id FROM Account")
        with pytest.raises(SalesforceRefusedRequest) as info:
            sf.query("SELECT Id FROM Account")
        assert info.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
        versions = s.get(sandbox.base_url + "/services/data/", timeout=5)
        assert versions.status_code == 200 and "Sforce-Limit-Info" not in versions.headers


def test_limit_header_on_every_api_response(
    sf_sandbox: RunningSandbox, session: requests.Session
) -> None:
    for path in ("/limits", "/sobjects", "/sobjects/Account/describe", "/sobjects/Nope/describe"):
        answer = api(sf_sandbox, session, path)
        assert answer.headers["Sforce-Limit-Info"].startswith("api-usage=")


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("burst_429", 429, "REQUEST_LIMIT_EXCEEDED"),
        ("burst_503", 503, "SERVER_UNAVAILABLE"),
    ],
)
def test_bursts_in_salesforce_shape(
    sf_sandbox: RunningSandbox, sf: Salesforce, fault: str, status: int, code: str
) -> None:
    setattr(sf_sandbox.server.faults, fault, 1)
    with pytest.raises(SalesforceGeneralError) as info:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert info.value.status == status and info.value.content[0]["errorCode"] == code
    assert sf.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1


def test_500_and_dropped_connections(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    sf_sandbox.server.faults.rate_500 = 1.0
    with pytest.raises(SalesforceGeneralError) as info:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert info.value.status == 500 and info.value.content[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    sf_sandbox.server.faults.rate_500 = 0
    sf_sandbox.server.faults.rate_drop = 1.0
    with pytest.raises(requests.ConnectionError):
        sf.query("SELECT Id FROM Account LIMIT 1")
    sf_sandbox.server.faults.rate_drop = 0


def test_lost_create_response_still_commits(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    account = sf_sandbox.emulator.records("Account")[0]["Id"]
    sf_sandbox.server.faults.drop_after_commit = 1
    with pytest.raises(requests.ConnectionError):
        sf.Task.create({"Subject": "once", "WhatId": account, "Crm_Risk_Key__c": "lost-1"})
    found = soql(sf, "SELECT Id FROM Task WHERE Crm_Risk_Key__c = 'lost-1'")
    assert len(found) == 1


def test_per_record_faults(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    ids = sorted(r["Id"] for r in sf_sandbox.emulator.records("Account"))[:2]
    records = [{"attributes": {"type": "Account"}, "id": i, "Risk_Score__c": 1} for i in ids]
    sf_sandbox.server.faults.lock_error_rate = 1.0
    results = sf.restful("composite/sobjects", method="PATCH", json={"records": records})
    assert {r["errors"][0]["statusCode"] for r in results} == {"UNABLE_TO_LOCK_ROW"}
    sf_sandbox.server.faults.lock_error_rate = 0
    sf_sandbox.server.faults.record_error_rate = 1.0
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Account.update(ids[0], {"Risk_Score__c": 2})
    assert info.value.content[0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    sf_sandbox.server.faults.record_error_rate = 0
    sf_sandbox.emulator.lock_record(ids[1], times=1)
    first = sf.restful("composite/sobjects", method="PATCH", json={"records": records})
    again = sf.restful("composite/sobjects", method="PATCH", json={"records": records})
    assert [r["success"] for r in first] == [True, False]
    assert [r["success"] for r in again] == [True, True]


# ---------------------------------------------------------------- paging


def test_paging_edges(sf_sandbox: RunningSandbox, session: requests.Session) -> None:
    token = fetch_token(sf_sandbox, session)["access_token"]
    small = {"Sforce-Query-Options": "batchSize=50"}  # below 200: Salesforce clamps to 200

    def page(q: str, headers: dict[str, str] = small) -> dict[str, Any]:
        return api(
            sf_sandbox, session, "/query/", params={"q": q}, headers=headers, token=token
        ).json()

    exact = page("SELECT Id FROM blng__Invoice__c LIMIT 200")
    assert (exact["done"], len(exact["records"]), "nextRecordsUrl" in exact) == (True, 200, False)
    more = page("SELECT Id FROM blng__Invoice__c LIMIT 201")
    assert (more["done"], len(more["records"]), more["totalSize"]) == (False, 200, 201)
    assert more["nextRecordsUrl"].startswith(f"{DATA}/query/01g") and more[
        "nextRecordsUrl"
    ].endswith("-200")
    rest = session.get(
        sf_sandbox.base_url + more["nextRecordsUrl"],
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    ).json()
    assert (rest["done"], len(rest["records"])) == (True, 1)
    empty = page("SELECT Id FROM Account WHERE Name = 'No such company'")
    assert empty == {"totalSize": 0, "done": True, "records": []}
    bad = api(sf_sandbox, session, "/query/01gNOPE-200", token=token)
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
    offset = api(
        sf_sandbox,
        session,
        "/query",
        params={"q": "SELECT Id FROM Account OFFSET 2001"},
        token=token,
    )
    assert offset.status_code == 400
    skipped = page("SELECT Id FROM Account ORDER BY Id LIMIT 5 OFFSET 3")
    everything = page("SELECT Id FROM Account ORDER BY Id")
    assert [r["Id"] for r in skipped["records"]] == [r["Id"] for r in everything["records"]][3:8]


# ---------------------------------------------------------------- SOQL


def test_soql_filters_and_ordering(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    accounts = sf_sandbox.emulator.records("Account")
    users = {u["Id"]: u for u in sf_sandbox.emulator.records("User")}
    active = soql(sf, "select id from ACCOUNT where owner.isactive = TRUE")
    assert len(active) == sum(users[a["OwnerId"]]["IsActive"] for a in accounts)
    eu = soql(
        sf,
        "SELECT Id FROM Account WHERE (BillingCountry IN ('DE', 'fr') OR AnnualRevenue = null) AND NOT BillingCountry = 'US'",
    )
    assert len(eu) == sum(
        1
        for a in accounts
        if (a["BillingCountry"] in ("DE", "FR") or a["AnnualRevenue"] is None)
        and a["BillingCountry"] != "US"
    )
    not_in = soql(sf, "SELECT Id FROM Account WHERE BillingCountry NOT IN ('DE')")
    assert len(not_in) == sum(a["BillingCountry"] != "DE" for a in accounts)
    like = soql(sf, "SELECT Name FROM Account WHERE Name LIKE '%gmbh%'")
    assert like and all("gmbh" in r["Name"].lower() for r in like)
    dated = soql(
        sf,
        "SELECT Id FROM blng__Invoice__c WHERE blng__DueDate__c < 2026-08-01 AND blng__Balance__c > 0",
    )
    expected = [
        i
        for i in sf_sandbox.emulator.records("blng__Invoice__c")
        if i["blng__DueDate__c"] < "2026-08-01" and i["blng__Balance__c"] > 0
    ]
    assert len(dated) == len(expected) > 0
    ordered = soql(
        sf, "SELECT Id, SystemModstamp FROM Account ORDER BY SystemModstamp DESC, Id ASC"
    )
    keys = [(r["SystemModstamp"], r["Id"]) for r in ordered]
    assert keys == sorted(keys, key=lambda k: (-_ms(k[0]), k[1]))
    nulls = soql(sf, "SELECT AnnualRevenue FROM Account ORDER BY AnnualRevenue DESC NULLS FIRST")
    assert nulls[0]["AnnualRevenue"] is None


def _ms(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def test_seeded_rows_share_modstamps_and_since_filters_are_closed(
    sf_sandbox: RunningSandbox, sf: Salesforce
) -> None:
    stamps = [r["SystemModstamp"] for r in sf_sandbox.emulator.records("Account")]
    assert len(set(stamps)) < len(stamps)  # ties, as after a data load
    pivot = sorted(stamps)[len(stamps) // 2]
    moment = datetime.strptime(pivot, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    as_plus_one = (moment + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+01:00")
    closed = soql(sf, f"SELECT Id FROM Account WHERE SystemModstamp >= {as_plus_one}")
    assert len(closed) == sum(s >= pivot for s in stamps)
    target = sf_sandbox.emulator.records("Account")[0]["Id"]
    sf_sandbox.emulator.set_field("Account", target, "Name", "Renamed GmbH")
    newest = max(stamps)
    zulu = datetime.strptime(newest, "%Y-%m-%dT%H:%M:%S.%f%z").strftime("%Y-%m-%dT%H:%M:%SZ")
    changed = soql(sf, f"SELECT Id, Name FROM Account WHERE SystemModstamp > {zulu}")
    assert [(r["Id"], r["Name"]) for r in changed] == [(target, "Renamed GmbH")]


def test_query_all_includes_deleted_rows(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    victim = sf_sandbox.emulator.records("Account")[0]["Id"]
    assert sf.Account.delete(victim) == 204
    live = soql(sf, "SELECT Id FROM Account")
    every = list(sf.query_all_iter("SELECT Id, IsDeleted FROM Account", include_deleted=True))
    assert victim not in {r["Id"] for r in live}
    assert {r["Id"]: r["IsDeleted"] for r in every}[victim] is True
    with pytest.raises(Exception) as info:
        sf.Account.update(victim, {"Risk_Score__c": 1})
    assert info.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "code", "text"),
    [
        (
            "SELECT Naem FROM Account",
            "INVALID_FIELD",
            "ERROR at Row:1:Column:8\nNo such column 'Naem' on entity 'Account'",
        ),
        (
            "SELECT Id, Owner.Nope FROM Account",
            "INVALID_FIELD",
            "No such column 'Nope' on entity 'User'",
        ),
        ("SELECT Id FROM Acount", "INVALID_TYPE", "sObject type 'Acount' is not supported"),
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2026-01-01 12:00:00", "MALFORMED_QUERY", ""),
        (
            "SELECT Id FROM Account WHERE CreatedDate > '2026-01-01'",
            "INVALID_FIELD",
            "must be of type dateTime",
        ),
    ],
)
def test_soql_errors(sf: Salesforce, query: str, code: str, text: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query(query)
    assert info.value.content[0]["errorCode"] == code
    assert text in info.value.content[0]["message"]


# ---------------------------------------------------------------- write validation


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"Risk__c": 1}, "INVALID_FIELD"),
        ({"SystemModstamp": "2026-01-01T00:00:00Z"}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ({"Risk_Score__c": "high"}, "INVALID_TYPE_ON_FIELD_IN_RECORD"),
        ({"Manual_Override__c": "maybe"}, "INVALID_TYPE_ON_FIELD_IN_RECORD"),
        ({"Risk_Reviewed_At__c": "yesterday"}, "INVALID_TYPE_ON_FIELD_IN_RECORD"),
        ({"Risk_Model_Version__c": "x" * 21}, "STRING_TOO_LONG"),
        ({"Risk_Level__c": "Severe"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        ({"Risk_Score__c": 12345}, "NUMBER_OUTSIDE_VALID_RANGE"),
        # More digits than a decimal context holds: refused like any number out of range.
        ({"Credit_Limit__c": 1e30}, "NUMBER_OUTSIDE_VALID_RANGE"),
        ({"OwnerId": "005000000000000AAA"}, "INVALID_CROSS_REFERENCE_KEY"),
        ({"Name": None}, "REQUIRED_FIELD_MISSING"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_patch_validation(
    sf_sandbox: RunningSandbox, sf: Salesforce, fields: dict[str, Any], code: str
) -> None:
    account = sf_sandbox.emulator.records("Account")[0]
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Account.update(account["Id"], fields)
    assert info.value.content[0]["errorCode"] == code
    assert sf_sandbox.emulator.records("Account")[0] == account  # nothing half-written


def test_values_are_normalised_like_salesforce(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    account = sf_sandbox.emulator.records("Account")[0]["Id"]
    sf.Account.update(
        account[:15], {"Risk_Score__c": "42.46", "Risk_Reviewed_At__c": "2026-11-02T09:30:00+01:00"}
    )
    stored = sf.Account.get(account)
    assert stored["Risk_Score__c"] == 42.5
    assert stored["Risk_Reviewed_At__c"] == "2026-11-02T08:30:00.000+0000"


def test_ids_have_valid_checksums(sf_sandbox: RunningSandbox) -> None:
    for obj, prefix in (
        ("Account", "001"),
        ("User", "005"),
        ("blng__Invoice__c", "a1B"),
        ("Invoice__c", "a2C"),
    ):
        for record in sf_sandbox.emulator.records(obj)[:5]:
            rid = record["Id"]
            assert rid.startswith(prefix) and rid[15:] == id_suffix(rid[:15])


def test_custom_invoice_object_mirrors_the_seed(sf_sandbox: RunningSandbox, sf: Salesforce) -> None:
    rows = soql(
        sf,
        "SELECT Status__c, Balance__c, Paid_Date__c, Account__r.Name FROM Invoice__c WHERE Status__c = 'Disputed'",
    )
    assert rows and all(r["Balance__c"] > 0 and r["Paid_Date__c"] is None for r in rows)
    assert len(soql(sf, "SELECT Id FROM Invoice__c")) == len(
        soql(sf, "SELECT Id FROM blng__Invoice__c")
    )


def test_streamed_seed_equals_the_in_memory_seed() -> None:
    from sandboxes.salesforce import SalesforceEmulator
    from sandboxes.seed import generate, stream

    listed = SalesforceEmulator(generate(accounts=40, seed=2))
    streamed = SalesforceEmulator(stream(accounts=40, seed=2))
    for obj in ("Account", "blng__Invoice__c", "Invoice__c", "User"):
        assert listed.records(obj) == streamed.records(obj)
