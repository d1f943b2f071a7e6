"""The Zoho sandbox over real HTTPS with plain requests calls written from Zoho's v8 documentation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from sandboxes import RunningSandbox, start_zoho

THROTTLE = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "status": "failure",
}
INVALID_TOKEN = {
    "code": "INVALID_TOKEN",
    "details": {},
    "message": "invalid oauth token",
    "status": "error",
}


class Zoho:
    """A minimal v8 client: one session trusting the sandbox CA, one access token."""

    def __init__(self, sandbox: RunningSandbox, session: requests.Session) -> None:
        self.sandbox = sandbox
        self.session = session
        self.api = sandbox.base_url + "/crm/v8"
        self.token = ""

    def mint(self, **overrides: str) -> requests.Response:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.sandbox.client_id,
            "client_secret": self.sandbox.client_secret,
            "refresh_token": self.sandbox.refresh_token or "",
            **overrides,
        }
        return self.session.post(self.sandbox.token_url, data=form, timeout=10)

    def login(self) -> Zoho:
        answer = self.mint()
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["access_token"]
        return self

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        sent = {"Authorization": f"Zoho-oauthtoken {token or self.token}", **(headers or {})}
        return self.session.request(
            method, f"{self.api}/{path}", headers=sent, timeout=10, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def coql(self, query: str) -> requests.Response:
        return self.call("POST", "coql", json={"select_query": query})


def _session(sandbox: RunningSandbox) -> requests.Session:
    session = requests.Session()
    session.verify = sandbox.ca_bundle or True
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override verify
    return session


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    options = getattr(request, "param", {})
    with start_zoho(accounts=30, seed=11, **options) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


@pytest.fixture
def zoho(sandbox: RunningSandbox) -> Iterator[Zoho]:
    with _session(sandbox) as session:
        yield Zoho(sandbox, session).login()


@pytest.fixture(scope="module")
def big() -> Iterator[RunningSandbox]:
    # More than 2,000 invoices, so paging must switch to page_token.
    with start_zoho(accounts=240, seed=4, invoices_per_account=10) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


@pytest.fixture
def big_zoho(big: RunningSandbox) -> Iterator[Zoho]:
    with _session(big) as session:
        yield Zoho(big, session).login()


def _error_code(response: requests.Response) -> str:
    return str(response.json()["code"])


# ---------------------------------------------------------------- OAuth


def test_refresh_grant_answers_token_with_api_domain_and_no_new_refresh_token(
    sandbox: RunningSandbox,
) -> None:
    with _session(sandbox) as session:
        answer = Zoho(sandbox, session).mint()
        body = answer.json()
        assert answer.status_code == 200
        assert body["access_token"].startswith("1000.")
        assert body["api_domain"] == sandbox.base_url
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        assert "refresh_token" not in body
        # Zoho also takes the parameters in the query string.
        query = session.post(
            sandbox.token_url,
            params={
                "grant_type": "refresh_token",
                "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret,
                "refresh_token": sandbox.refresh_token,
            },
            timeout=10,
        )
        assert "access_token" in query.json()


def test_token_errors_come_as_zoho_sends_them(sandbox: RunningSandbox) -> None:
    with _session(sandbox) as session:
        client = Zoho(sandbox, session)
        bad_client = client.mint(client_secret="wrong")
        assert (bad_client.status_code, bad_client.json()) == (200, {"error": "invalid_client"})
        bad_refresh = client.mint(refresh_token="1000.nope.nope")
        assert (bad_refresh.status_code, bad_refresh.json()) == (200, {"error": "invalid_code"})
        assert client.mint(grant_type="password").json() == {"error": "unsupported_grant_type"}


def test_grant_code_is_single_use_and_yields_a_refresh_token(sandbox: RunningSandbox) -> None:
    code = sandbox.emulator.issue_grant_code()
    with _session(sandbox) as session:
        client = Zoho(sandbox, session)
        first = client.mint(grant_type="authorization_code", code=code).json()
        assert first["refresh_token"] != sandbox.refresh_token
        assert client.mint(grant_type="authorization_code", code=code).json() == {
            "error": "invalid_code"
        }
        again = client.mint(refresh_token=first["refresh_token"]).json()
        assert "access_token" in again
        assert client.get("org", token=again["access_token"]).status_code == 200
        credentials = client.mint(grant_type="client_credentials", scope="ZohoCRM.modules.ALL")
        assert client.get("org", token=credentials.json()["access_token"]).status_code == 200


@pytest.mark.parametrize("sandbox", [{"token_mints_per_window": 3}], indirect=True)
def test_too_many_refreshes_are_throttled_with_zohos_400(sandbox: RunningSandbox) -> None:
    with _session(sandbox) as session:
        client = Zoho(sandbox, session)
        assert all(client.mint().status_code == 200 for _ in range(3))
        throttled = client.mint()
        assert throttled.status_code == 400
        assert throttled.json() == THROTTLE
        # The grant-code path has its own refresh token, so its own window.
        code = sandbox.emulator.issue_grant_code()
        assert "access_token" in client.mint(grant_type="authorization_code", code=code).json()


@pytest.mark.parametrize("sandbox", [{"max_live_tokens": 2}], indirect=True)
def test_an_eleventh_token_evicts_the_oldest(sandbox: RunningSandbox) -> None:
    with _session(sandbox) as session:
        client = Zoho(sandbox, session)
        tokens = [client.mint().json()["access_token"] for _ in range(3)]
        assert client.get("org", token=tokens[0]).json() == INVALID_TOKEN
        assert all(client.get("org", token=t).status_code == 200 for t in tokens[1:])


def test_authorization_header_is_checked(zoho: Zoho) -> None:
    url = f"{zoho.api}/Accounts?fields=Account_Name"
    missing = zoho.session.get(url, timeout=10)
    assert missing.status_code == 401 and _error_code(missing) == "AUTHENTICATION_FAILURE"
    bearer = zoho.session.get(url, headers={"Authorization": f"Bearer {zoho.token}"}, timeout=10)
    assert bearer.status_code == 401 and _error_code(bearer) == "AUTHENTICATION_FAILURE"
    unknown = zoho.get("Accounts", token="1000.abc.def", params={"fields": "Account_Name"})
    assert (unknown.status_code, unknown.json()) == (401, INVALID_TOKEN)


def test_tokens_expire_by_fault_knob_and_on_demand(zoho: Zoho, sandbox: RunningSandbox) -> None:
    sandbox.server.faults.expire_tokens_after_s = 0.2
    assert zoho.get("org").status_code == 200
    time.sleep(0.3)
    expired = zoho.get("org")
    assert (expired.status_code, expired.json()) == (401, INVALID_TOKEN)
    sandbox.server.faults.expire_tokens_after_s = None
    zoho.login()
    assert zoho.get("org").status_code == 200
    sandbox.emulator.expire_tokens()
    assert zoho.get("org").status_code == 401


def test_revoked_refresh_token_mints_nothing(zoho: Zoho, sandbox: RunningSandbox) -> None:
    revoked = zoho.session.post(
        sandbox.token_url + "/revoke", data={"token": sandbox.refresh_token}, timeout=10
    )
    assert revoked.json() == {"status": "success"}
    assert zoho.mint().json() == {"error": "invalid_code"}
    assert zoho.get("org").status_code == 401  # its access tokens died with it


# ---------------------------------------------------------------- list reads


def test_list_needs_fields_and_checks_them(zoho: Zoho) -> None:
    missing = zoho.get("Accounts")
    assert missing.status_code == 400
    assert missing.json() == {
        "code": "REQUIRED_PARAM_MISSING",
        "details": {"param": "fields"},
        "message": "One of the expected parameter is missing",
        "status": "error",
    }
    many = zoho.get("Accounts", params={"fields": ",".join(["Account_Name"] * 51)})
    assert many.status_code == 400 and _error_code(many) == "LIMIT_EXCEEDED"
    unknown = zoho.get("Accounts", params={"fields": "Account_Name,Nope"})
    assert unknown.json()["details"] == {"api_name": "Nope"}
    assert zoho.get("Accounts", params={"fields": "id", "per_page": 201}).status_code == 400
    bad_module = zoho.get("Acounts", params={"fields": "id"})
    assert bad_module.status_code == 400 and _error_code(bad_module) == "INVALID_MODULE"


def test_list_returns_requested_fields_and_zohos_info(zoho: Zoho, sandbox: RunningSandbox) -> None:
    answer = zoho.get("Accounts", params={"fields": "Account_Name,Owner,Modified_Time"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json;charset=UTF-8"
    body = answer.json()
    first = body["data"][0]
    assert set(first) == {"id", "Account_Name", "Owner", "Modified_Time"}
    assert set(first["Owner"]) == {"id", "name", "email"}
    assert first["id"].isdigit() and len(first["id"]) == 19
    datetime.fromisoformat(first["Modified_Time"])  # ISO with offset
    assert first["Modified_Time"].endswith("+00:00")
    ids = [row["id"] for row in body["data"]]
    assert ids == sorted(ids, key=int, reverse=True)  # default: id, descending
    assert body["info"] == {
        "per_page": 200,
        "count": 30,
        "page": 1,
        "sort_by": "id",
        "sort_order": "desc",
        "more_records": False,
        "next_page_token": None,
        "previous_page_token": None,
        "page_token_expiry": None,
    }
    invoice = zoho.get("Invoices", params={"fields": "Account_Name,Balance", "per_page": 1})
    assert set(invoice.json()["data"][0]["Account_Name"]) == {"id", "name"}
    assert invoice.json()["info"]["more_records"] is True


def test_paging_switches_to_page_token_past_2000_records(
    big_zoho: Zoho, big: RunningSandbox
) -> None:
    expected = {row["id"] for row in big.emulator.records("Invoices")}
    assert len(expected) > 2000
    params = {"fields": "Modified_Time", "sort_by": "Modified_Time", "sort_order": "asc"}
    rows: list[dict[str, Any]] = []
    page, token = 1, None
    while True:
        paging = {"page_token": token} if token else {"page": page}
        body = big_zoho.get("Invoices", params={**params, **paging}).json()
        rows.extend(body["data"])
        info = body["info"]
        if not info["more_records"]:
            break
        assert info["next_page_token"] and info["page_token_expiry"]
        if page * 200 >= 2000:
            token = info["next_page_token"]
        page += 1
    assert page > 10
    assert [row["id"] for row in rows] == list(dict.fromkeys(row["id"] for row in rows))
    assert {row["id"] for row in rows} == expected
    keys = [(datetime.fromisoformat(row["Modified_Time"]), int(row["id"])) for row in rows]
    assert keys == sorted(keys)
    # Bulk imports share timestamps, so clients must break ties themselves.
    assert len({row["Modified_Time"] for row in rows}) < len(rows) / 10
    refused = big_zoho.get("Invoices", params={**params, "page": 11})
    assert refused.status_code == 400
    assert refused.json() == {
        "code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        "details": {"limit": 2000},
        "message": "You can only get the first 2000 records without using page_token param",
        "status": "error",
    }
    # previous_page_token of a page reached by token leads back one page.
    last = big_zoho.get("Invoices", params={**params, "page_token": token}).json()
    back = big_zoho.get(
        "Invoices", params={**params, "page_token": last["info"]["previous_page_token"]}
    ).json()
    assert back["info"]["page"] == last["info"]["page"] - 1
    assert [r["id"] for r in back["data"]] == [
        r["id"] for r in rows[(back["info"]["page"] - 1) * 200 : back["info"]["page"] * 200]
    ]
    first = big_zoho.get("Invoices", params={**params, "page": 1}).json()["info"]
    assert first["previous_page_token"] is None
    bad = big_zoho.get("Invoices", params={**params, "page_token": "not-a-token"})
    assert bad.status_code == 400


def test_if_modified_since_compares_instants_strictly_after(
    zoho: Zoho, sandbox: RunningSandbox
) -> None:
    rows = sandbox.emulator.records("Accounts")
    newest = max(datetime.fromisoformat(row["Modified_Time"]) for row in rows)
    at_newest = newest.isoformat()
    nothing = zoho.get(
        "Accounts", params={"fields": "id"}, headers={"If-Modified-Since": at_newest}
    )
    assert nothing.status_code == 304
    assert nothing.content == b"" and "Content-Type" not in nothing.headers
    target = rows[5]["id"]
    sandbox.emulator.set_field("Accounts", target, "Account_Name", "Renamed GmbH")
    # The same instant written in another offset selects the same records.
    in_india = newest.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    changed = zoho.get(
        "Accounts",
        params={"fields": "Account_Name"},
        headers={"If-Modified-Since": in_india},
    )
    assert changed.status_code == 200
    assert [(r["id"], r["Account_Name"]) for r in changed.json()["data"]] == [
        (target, "Renamed GmbH")
    ]
    just_before = (newest - timedelta(seconds=1)).isoformat()
    wider = zoho.get(
        "Accounts", params={"fields": "id"}, headers={"If-Modified-Since": just_before}
    )
    assert len(wider.json()["data"]) > 1


def test_empty_module_answers_204_and_deletions_are_listed(
    zoho: Zoho, sandbox: RunningSandbox
) -> None:
    task_ids = [t["id"] for t in sandbox.emulator.tasks()]
    assert task_ids
    deleted = zoho.call("DELETE", "Tasks", params={"ids": ",".join(task_ids)})
    assert deleted.status_code == 200
    assert {e["message"] for e in deleted.json()["data"]} == {"record deleted"}
    empty = zoho.get("Tasks", params={"fields": "Subject"})
    assert empty.status_code == 204
    assert empty.content == b"" and "Content-Type" not in empty.headers
    listed = zoho.get("Tasks/deleted", params={"type": "recycle"}).json()["data"]
    assert {e["id"] for e in listed} == set(task_ids)
    assert set(listed[0]) >= {"id", "display_name", "type", "deleted_by", "deleted_time"}
    assert zoho.get("Tasks/deleted", params={"type": "permanent"}).status_code == 204
    account = sandbox.emulator.records("Accounts")[0]["id"]
    sandbox.emulator.delete_record("Accounts", account, permanent=True)
    gone = zoho.get("Accounts/deleted", params={"type": "all"}).json()["data"]
    assert [(e["id"], e["type"]) for e in gone] == [(account, "permanent")]


def test_get_one_record(zoho: Zoho, sandbox: RunningSandbox) -> None:
    task = sandbox.emulator.tasks()[0]
    body = zoho.get(f"Tasks/{task['id']}").json()
    record = body["data"][0]
    assert record["id"] == task["id"]
    assert record["$se_module"] == "Accounts" and set(record["What_Id"]) == {"id", "name"}


# ---------------------------------------------------------------- writes


def test_mixed_batch_answers_207_with_one_element_per_record(
    zoho: Zoho, sandbox: RunningSandbox
) -> None:
    ids = [row["id"] for row in sandbox.emulator.records("Accounts")[:6]]
    sandbox.emulator.lock_record(ids[2])
    before = {row["id"]: row for row in sandbox.emulator.records("Accounts")}
    data = [
        {"id": ids[0], "Risk_Rating": "B", "Risk_Score": 61.54, "Credit_Limit": 25000.005},
        {"id": ids[1], "Risk_Rating": "Z"},
        {"id": ids[2], "Risk_Rating": "C"},
        {"id": "5725767999999999999", "Risk_Rating": "C"},
        {"id": ids[4], "Modified_Time": "2026-01-01T00:00:00+00:00"},
        {"id": ids[5], "Risk_Reasons": "x" * 2001},
    ]
    answer = zoho.call("PUT", "Accounts", json={"data": data, "trigger": []})
    assert answer.status_code == 207
    elements = answer.json()["data"]
    assert [e["code"] for e in elements] == [
        "SUCCESS",
        "INVALID_DATA",
        "RECORD_LOCKED",
        "INVALID_DATA",
        "NOT_ALLOWED",
        "INVALID_DATA",
    ]
    ok = elements[0]
    assert ok["message"] == "record updated" and ok["status"] == "success"
    assert set(ok["details"]) == {
        "Modified_Time",
        "Modified_By",
        "Created_Time",
        "id",
        "Created_By",
    }
    assert elements[1]["details"] == {
        "expected_data_type": "picklist",
        "api_name": "Risk_Rating",
        "json_path": "$.data[1].Risk_Rating",
    }
    assert elements[3]["details"]["api_name"] == "id"
    assert elements[5]["details"]["maximum_length"] == 2000
    after = {row["id"]: row for row in sandbox.emulator.records("Accounts")}
    assert after[ids[0]]["Risk_Score"] == 61.5  # one decimal place, as the field says
    assert after[ids[0]]["Credit_Limit"] == 25000.01  # rounding_option "normal": half up
    assert after[ids[0]]["Modified_Time"] == ok["details"]["Modified_Time"]
    assert datetime.fromisoformat(after[ids[0]]["Modified_Time"]) > datetime.fromisoformat(
        before[ids[0]]["Modified_Time"]
    )
    assert all(after[i] == before[i] for i in ids[1:])
    # The lock was for one write only.
    again = zoho.call("PUT", f"Accounts/{ids[2]}", json={"data": [{"Risk_Rating": "C"}]})
    assert again.status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "details"),
    [
        ("Annual_Revenue", 1e30, {"expected_data_type": "currency", "maximum_length": 16}),
        ("Risk_Score", "NaN", {"expected_data_type": "double"}),
        ("Employees", "inf", {"expected_data_type": "integer"}),
        ("Credit_Limit", "1e400", {"expected_data_type": "currency"}),
    ],
    ids=["too_many_digits", "not_a_number", "infinite_integer", "infinite_currency"],
)
def test_a_number_no_field_can_hold_is_refused_as_invalid_data(
    zoho: Zoho, sandbox: RunningSandbox, field: str, value: Any, details: dict[str, Any]
) -> None:
    account = sandbox.emulator.records("Accounts")[0]
    answer = zoho.call("PUT", "Accounts", json={"data": [{"id": account["id"], field: value}]})
    assert answer.status_code == 400
    assert answer.json()["data"] == [
        {
            "code": "INVALID_DATA",
            "details": {**details, "api_name": field, "json_path": f"$.data[0].{field}"},
            "message": "invalid data",
            "status": "error",
        }
    ]
    assert sandbox.emulator.records("Accounts")[0] == account


def test_all_failed_is_400_and_batches_stop_at_100(zoho: Zoho, sandbox: RunningSandbox) -> None:
    account = sandbox.emulator.records("Accounts")[0]["id"]
    failed = zoho.call("PUT", "Accounts", json={"data": [{"id": account, "Employees": "many"}]})
    assert failed.status_code == 400
    assert failed.json()["data"][0]["details"]["expected_data_type"] == "integer"
    too_many = zoho.call("PUT", "Accounts", json={"data": [{"id": account, "Risk_Score": 1}] * 101})
    assert too_many.status_code == 400
    assert too_many.json() == {
        "code": "LIMIT_EXCEEDED",
        "details": {"limit": 100},
        "message": "limit exceeded",
        "status": "error",
    }


def test_trigger_decides_which_automation_runs(zoho: Zoho, sandbox: RunningSandbox) -> None:
    account = sandbox.emulator.records("Accounts")[0]["id"]
    record = {"id": account, "Risk_Level": "High"}
    zoho.call("PUT", "Accounts", json={"data": [record]})
    zoho.call("PUT", "Accounts", json={"data": [record], "trigger": []})
    zoho.call("PUT", "Accounts", json={"data": [record], "trigger": ["workflow"]})
    log = sandbox.emulator.writes_log
    # Omitted trigger: workflows, approvals and blueprints all run (Zoho's API docs).
    assert [(e["trigger"], e["fired"]) for e in log] == [
        (None, ["workflow", "approval", "blueprint"]),
        ([], []),
        (["workflow"], ["workflow"]),
    ]
    assert sandbox.emulator.workflow_runs["workflow"] == 2


def test_tasks_are_validated_and_closing_stamps_closed_time(
    zoho: Zoho, sandbox: RunningSandbox
) -> None:
    account = sandbox.emulator.records("Accounts")[0]
    inactive = next(u for u in sandbox.emulator.users if u["status"] != "active")
    good = {
        "Subject": "Credit risk: call the customer",
        "Status": "Not Started",
        "Priority": "High",
        "Due_Date": "2026-12-05",
        "What_Id": {"id": account["id"]},
        "$se_module": "Accounts",
        "Owner": {"id": account["Owner"]["id"]},
    }
    data = [
        good,
        {**good, "Subject": None},
        {**good, "What_Id": {"id": "5725767999999999999"}},
        {**good, "Owner": {"id": inactive["id"]}},
        {**good, "Priority": "Urgent"},
        {**good, "Due_Date": "05/12/2026"},
    ]
    answer = zoho.call("POST", "Tasks", json={"data": data, "trigger": []})
    assert answer.status_code == 207
    elements = answer.json()["data"]
    assert [e["code"] for e in elements] == [
        "SUCCESS",
        "MANDATORY_NOT_FOUND",
        "INVALID_DATA",
        "INVALID_DATA",
        "INVALID_DATA",
        "INVALID_DATA",
    ]
    assert elements[0]["message"] == "record added"
    assert elements[1]["details"] == {"api_name": "Subject", "json_path": "$.data[1].Subject"}
    assert [e["details"]["api_name"] for e in elements[2:]] == [
        "What_Id",
        "Owner",
        "Priority",
        "Due_Date",
    ]
    task_id = elements[0]["details"]["id"]
    stored = next(t for t in sandbox.emulator.tasks() if t["id"] == task_id)
    assert stored["What_Id"] == {"id": account["id"], "name": account["Account_Name"]}
    assert stored["$se_module"] == "Accounts" and stored["Closed_Time"] is None
    only_one = zoho.call("POST", "Tasks", json={"data": [good]})
    assert only_one.status_code == 201
    closed = zoho.call("PUT", "Tasks", json={"data": [{"id": task_id, "Status": "Completed"}]})
    assert closed.status_code == 200
    stored = next(t for t in sandbox.emulator.tasks() if t["id"] == task_id)
    assert stored["Closed_Time"] == closed.json()["data"][0]["details"]["Modified_Time"]


def test_upsert_and_duplicate_names(zoho: Zoho, sandbox: RunningSandbox) -> None:
    accounts = sandbox.emulator.records("Accounts")
    existing = accounts[0]["Account_Name"]
    answer = zoho.call(
        "POST",
        "Accounts/upsert",
        json={
            "data": [
                {"Account_Name": existing.upper(), "Risk_Rating": "D"},
                {"Account_Name": "Brand New Customer Ltd", "Risk_Rating": "A"},
            ],
            "duplicate_check_fields": ["Account_Name"],
            "trigger": [],
        },
    )
    assert answer.status_code == 200
    first, second = answer.json()["data"]
    assert (first["action"], first["duplicate_field"]) == ("update", "Account_Name")
    assert first["details"]["id"] == accounts[0]["id"]
    assert (second["action"], second["duplicate_field"]) == ("insert", None)
    assert len(sandbox.emulator.records("Accounts")) == len(accounts) + 1
    clash = zoho.call(
        "PUT", "Accounts", json={"data": [{"id": accounts[1]["id"], "Account_Name": existing}]}
    )
    element = clash.json()["data"][0]
    assert element["code"] == "DUPLICATE_DATA"
    assert element["details"]["duplicate_record"]["id"] == accounts[0]["id"]


def test_record_level_faults(zoho: Zoho, sandbox: RunningSandbox) -> None:
    account = sandbox.emulator.records("Accounts")[0]["id"]
    sandbox.server.faults.lock_error_rate = 1.0
    locked = zoho.call("PUT", "Accounts", json={"data": [{"id": account, "Risk_Score": 5}]})
    assert locked.json()["data"][0] == {
        "code": "RECORD_LOCKED",
        "details": {"id": account},
        "message": "the record is locked",
        "status": "error",
    }
    sandbox.server.faults.lock_error_rate = 0
    sandbox.server.faults.record_error_rate = 1.0
    rejected = zoho.call("PUT", "Accounts", json={"data": [{"id": account, "Risk_Score": 5}]})
    assert rejected.json()["data"][0]["details"]["api_name"] == "Risk_Score"
    sandbox.server.faults.record_error_rate = 0
    sandbox.server.faults.burst_429 = 1
    throttled = zoho.get("org")
    assert throttled.status_code == 429 and "Retry-After" not in throttled.headers
    assert _error_code(throttled) == "TOO_MANY_REQUESTS"
    sandbox.server.faults.rate_500 = 1.0
    broken = zoho.get("org")
    assert (broken.status_code, _error_code(broken)) == (500, "INTERNAL_ERROR")


# ---------------------------------------------------------------- COQL


def test_coql_selects_filters_orders_and_pages(zoho: Zoho, sandbox: RunningSandbox) -> None:
    invoices = sandbox.emulator.records("Invoices")
    account = invoices[0]["Account_Name"]["id"]
    mine = sorted(
        (i for i in invoices if i["Account_Name"]["id"] == account),
        key=lambda i: i["Due_Date"],
        reverse=True,
    )
    query = (
        "select Invoice_Number, Account_Name, Account_Name.Account_Name, Due_Date, Paid_Date "
        f"from Invoices where (Account_Name = '{account}' and Due_Date >= '2000-01-01') "
        "order by Due_Date desc limit 3"
    )
    body = zoho.coql(query).json()
    assert [row["Invoice_Number"] for row in body["data"]] == [
        i["Invoice_Number"] for i in mine[:3]
    ]
    row = body["data"][0]
    assert row["Account_Name"] == {"id": account}  # a plain lookup column: its id only
    assert row["Account_Name.Account_Name"] == mine[0]["Account_Name"]["name"]
    assert body["info"] == {"count": 3, "more_records": len(mine) > 3}
    rest = zoho.coql(query.replace("limit 3", "limit 3 offset 3")).json()["data"]
    assert [r["id"] for r in rest] == [i["id"] for i in mine[3:6]]
    unpaid = zoho.coql(
        "select id from Invoices where (Paid_Date is null and Status not in ('Void','Paid')) "
        "limit 2000"
    ).json()["data"]
    assert {r["id"] for r in unpaid} == {
        i["id"] for i in invoices if i["Paid_Date"] is None and i["Status"] not in ("Void", "Paid")
    }
    newest = max(i["Modified_Time"] for i in invoices)
    # The same instant in +05:30: COQL compares datetimes as instants.
    shifted = datetime.fromisoformat(newest).astimezone(timezone(timedelta(hours=5, minutes=30)))
    recent = zoho.coql(
        f"select id from Invoices where Modified_Time >= '{shifted.isoformat()}' limit 2000"
    ).json()["data"]
    assert {r["id"] for r in recent} == {i["id"] for i in invoices if i["Modified_Time"] == newest}
    assert zoho.coql("select id from Invoices where Invoice_Number = 'nope'").status_code == 204


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("select id form Accounts", "SYNTAX_ERROR"),
        ("select id from Accounts where (A = 1 and B = 2 and C = 3)", "SYNTAX_ERROR"),
        ("select Nope from Accounts where id is not null", "INVALID_QUERY"),
        ("select id from Accounts where Risk_Reasons = 'x'", "INVALID_QUERY"),
        ("select id from Accounts limit 2001", "LIMIT_EXCEEDED"),
        ("select id from Accounts limit 2000 offset 98001", "LIMIT_EXCEEDED"),
        ("select id from Accounts where id in (" + ",".join(["'1'"] * 51) + ")", "LIMIT_EXCEEDED"),
    ],
    ids=["typo", "unbracketed", "column", "multiline", "limit", "reach", "in_values"],
)
def test_coql_refuses_what_zoho_refuses(zoho: Zoho, query: str, code: str) -> None:
    answer = zoho.coql(query)
    assert answer.status_code == 400
    assert _error_code(answer) == code
    if code == "SYNTAX_ERROR" and "form" in query:
        assert answer.json()["details"] == {"line": 1, "column": 11, "near": "form"}


def test_coql_costs_credits_by_limit(zoho: Zoho, sandbox: RunningSandbox) -> None:
    costs = []
    for limit in (200, 201, 1000, 1001, 2000):
        before = sandbox.emulator.credits_used
        zoho.coql(f"select id from Invoices where id is not null limit {limit}")
        costs.append(sandbox.emulator.credits_used - before)
    assert costs == [1, 2, 2, 3, 3]


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize("sandbox", [{"api_credits_per_day": 10}], indirect=True)
def test_credits_header_after_half_and_429_when_spent(zoho: Zoho) -> None:
    answers = [zoho.get("org") for _ in range(11)]
    assert [a.status_code for a in answers] == [200] * 10 + [429]
    remaining = [a.headers.get("X-API-CREDITS-REMAINING") for a in answers[:10]]
    assert remaining == [None] * 4 + ["5", "4", "3", "2", "1", "0"]
    refused = answers[-1]
    assert "Retry-After" not in refused.headers
    assert refused.json()["code"] == "TOO_MANY_REQUESTS"
    assert zoho.coql("select id from Accounts limit 10").status_code == 429


@pytest.mark.parametrize(
    "sandbox", [{"max_concurrency": 2, "processing_delay_s": 0.3}], indirect=True
)
def test_concurrency_over_the_cap_gets_429(zoho: Zoho) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        status = zoho.get("org").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 429, 429, 429]


# ---------------------------------------------------------------- metadata


def test_field_metadata_describes_the_risk_fields(zoho: Zoho) -> None:
    fields = {
        f["api_name"]: f for f in zoho.get("settings/fields?module=Accounts").json()["fields"]
    }
    rating = fields["Risk_Rating"]
    assert rating["data_type"] == "picklist" and rating["custom_field"] is True
    assert [v["actual_value"] for v in rating["pick_list_values"]] == [
        "-None-",
        "A",
        "B",
        "C",
        "D",
        "E",
    ]
    assert set(rating["pick_list_values"][1]) == {
        "display_value",
        "actual_value",
        "id",
        "sequence_number",
        "type",
    }
    assert (fields["Risk_Reasons"]["data_type"], fields["Risk_Reasons"]["length"]) == (
        "textarea",
        2000,
    )
    assert fields["Credit_Limit"]["json_type"] == "double"
    assert fields["Credit_Limit"]["currency"] == {"precision": 2, "rounding_option": "normal"}
    assert fields["Modified_Time"]["read_only"] is True
    assert fields["Account_Name"]["custom_field"] is False
    assert fields["Owner"]["data_type"] == "ownerlookup"
    invoices = {
        f["api_name"]: f for f in zoho.get("settings/fields?module=Invoices").json()["fields"]
    }
    assert invoices["Account_Name"]["lookup"]["module"]["api_name"] == "Accounts"
    assert invoices["Grand_Total"]["formula"]["return_type"] == "currency"
    missing = zoho.get("settings/fields")
    assert (missing.status_code, missing.json()["details"]) == (400, {"param": "module"})
    assert _error_code(zoho.get("settings/fields?module=Nope")) == "INVALID_MODULE"
    modules = {m["api_name"] for m in zoho.get("settings/modules").json()["modules"]}
    assert modules >= {"Accounts", "Invoices", "Tasks"}


def test_users_by_type(zoho: Zoho, sandbox: RunningSandbox) -> None:
    everyone = zoho.get("users", params={"type": "AllUsers"}).json()["users"]
    active = zoho.get("users", params={"type": "ActiveUsers"}).json()["users"]
    assert len(active) == len(everyone) - 1
    assert all(u["status"] == "active" for u in active)
    me = zoho.get("users", params={"type": "CurrentUser"}).json()["users"]
    assert [u["email"] for u in me] == ["integration@example.com"]
    org = zoho.get("org").json()["org"][0]
    assert org["iso_code"] == "EUR"


# ---------------------------------------------------------------- time zone and state


@pytest.mark.parametrize("sandbox", [{"org_offset": "+05:30"}], indirect=True)
def test_datetimes_use_the_org_offset(zoho: Zoho, sandbox: RunningSandbox) -> None:
    row = zoho.get("Accounts", params={"fields": "Created_Time,Modified_Time"}).json()["data"][0]
    assert row["Modified_Time"].endswith("+05:30") and row["Created_Time"].endswith("+05:30")
    utc = datetime.fromisoformat(row["Modified_Time"]).astimezone(UTC)
    nothing = zoho.get(
        "Accounts",
        params={"fields": "id", "ids": row["id"]},
        headers={"If-Modified-Since": utc.isoformat()},
    )
    assert nothing.status_code == 304


def test_state_round_trips_through_a_file(
    zoho: Zoho, sandbox: RunningSandbox, tmp_path: Any
) -> None:
    account = sandbox.emulator.records("Accounts")[0]["id"]
    zoho.call("PUT", "Accounts", json={"data": [{"id": account, "Risk_Rating": "E"}]})
    path = str(tmp_path / "zoho.json")
    sandbox.emulator.save_state(path)
    with start_zoho(accounts=3, seed=1) as other:
        other.emulator.load_state(path)
        assert other.emulator.records("Accounts") == sandbox.emulator.records("Accounts")
        assert other.emulator.refresh_token == sandbox.refresh_token
        with _session(other) as session:
            # The loaded org keeps the saved org's credentials.
            client = Zoho(other, session)
            minted = client.mint(
                client_id=sandbox.client_id,
                client_secret=sandbox.client_secret,
                refresh_token=sandbox.refresh_token or "",
            )
            assert client.get("org", token=minted.json()["access_token"]).status_code == 200
