"""The Fxiaoke sandbox driven by the vendor's documented requests and responses, not by our adapter.

Each request body below is the manual's own example (URLs in the comments), with only the
placeholders filled in; each assertion checks a shape or rule the page states. Nothing here
imports `adapters`, so the sandbox and the adapter cannot share a misunderstanding.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandboxes import RunningSandbox, start_fxiaoke

ENVELOPE = {"traceId", "errorCode", "errorMessage", "errorDescription"}


@pytest.fixture
def fx() -> Iterator[RunningSandbox]:
    with start_fxiaoke(accounts=30, seed=11, tls=False) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


def post(
    sandbox: RunningSandbox, path: str, body: Any, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    # Every request carries a fresh thirdTraceId in the query string (developer.fxiaoke.com
    # openapi_v2 .../start/auth/public.html); every answer is HTTP 200 (errorCode decides).
    response = requests.post(
        f"{sandbox.base_url}{path}?thirdTraceId={uuid.uuid4()}",
        json=body,
        headers=headers or {},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    payload = response.json()
    assert set(payload) >= ENVELOPE, payload
    return dict(payload)


def bearer(sandbox: RunningSandbox) -> dict[str, str]:
    # Request example of .../start/auth/app-info.html: appId, appSecret, permanentCode, grantType.
    token = post(
        sandbox,
        "/oauth2.0/token",
        {
            "appId": sandbox.client_id,
            "appSecret": sandbox.client_secret,
            "permanentCode": sandbox.refresh_token,
            "grantType": "app_secret",
        },
    )
    assert token["errorCode"] == 0
    return {
        "authorization": f"Bearer {token['accessToken']}",
        "x-fs-ea": token["ea"],
        "x-fs-userid": sandbox.emulator.username,
    }


def legacy(sandbox: RunningSandbox) -> dict[str, str]:
    # .../start/example/old.html: POST /cgi/corpAccessToken/get/V2 {appId, appSecret, permanentCode}.
    token = post(
        sandbox,
        "/cgi/corpAccessToken/get/V2",
        {
            "appId": sandbox.client_id,
            "appSecret": sandbox.client_secret,
            "permanentCode": sandbox.refresh_token,
        },
    )
    assert token["errorCode"] == 0
    return {
        "corpAccessToken": token["corpAccessToken"],
        "corpId": token["corpId"],
        "currentOpenUserId": sandbox.emulator.open_user_id,
    }


def test_current_token_call_answers_the_documented_fields(fx: RunningSandbox) -> None:
    token = post(
        fx,
        "/oauth2.0/token",
        {
            "appId": fx.client_id,
            "appSecret": fx.client_secret,
            "permanentCode": fx.refresh_token,
            "grantType": "app_secret",
        },
    )
    # Response parameters of app-info.html.
    assert {"openUserId", "accessToken", "expiresIn", "appId", "ea"} <= set(token)
    assert token["errorCode"] == 0 and token["appId"] == fx.client_id
    assert 0 < token["expiresIn"] <= 7200
    assert token["openUserId"].startswith("FSCID_")


def test_legacy_token_is_reused_before_6600_s_renewed_after_and_dead_at_7200(
    fx: RunningSandbox,
) -> None:
    body = {"appId": fx.client_id, "appSecret": fx.client_secret, "permanentCode": fx.refresh_token}
    first = post(fx, "/cgi/corpAccessToken/get/V2", body)
    assert {"corpAccessToken", "corpId", "expiresIn"} <= set(first)
    assert first["corpId"].startswith("FSCID_")
    fx.emulator.advance(6000)
    same = post(fx, "/cgi/corpAccessToken/get/V2", body)
    assert same["corpAccessToken"] == first["corpAccessToken"]
    assert same["expiresIn"] <= 1200  # what is left of the 7,200 s
    fx.emulator.advance(700)  # 6,700 s after issue: inside the renewal window
    renewed = post(fx, "/cgi/corpAccessToken/get/V2", body)
    assert renewed["corpAccessToken"] != first["corpAccessToken"]
    query = {
        "data": {
            "dataObjectApiName": "AccountObj",
            "search_query_info": {"limit": 1, "offset": 0, "filters": []},
        }
    }
    old_auth = {
        "corpAccessToken": first["corpAccessToken"],
        "corpId": first["corpId"],
        "currentOpenUserId": fx.emulator.open_user_id,
    }
    assert post(fx, "/cgi/crm/v2/data/query", {**old_auth, **query})["errorCode"] == 0
    fx.emulator.advance(600)  # 7,300 s: the first token is gone, the renewed one still works
    assert post(fx, "/cgi/crm/v2/data/query", {**old_auth, **query})["errorCode"] == 20016
    new_auth = {**old_auth, "corpAccessToken": renewed["corpAccessToken"]}
    assert post(fx, "/cgi/crm/v2/data/query", {**new_auth, **query})["errorCode"] == 0


def test_deep_paging_example_pages_by_id_after_the_last_one(fx: RunningSandbox) -> None:
    headers = bearer(fx)
    # First request of developer.fxiaoke.com/openapi_v2/en/FAQ/deep-paging.html.
    first = post(
        fx,
        "/cgi/crm/v2/data/query",
        {
            "data": {
                "dataObjectApiName": "AccountObj",
                "find_explicit_total_num": False,
                "search_query_info": {
                    "limit": 5,
                    "offset": 0,
                    "filters": [],
                    "orders": [{"fieldName": "_id", "isAsc": True}],
                    "fieldProjection": ["_id"],
                },
            }
        },
        headers,
    )
    assert first["errorCode"] == 0 and first["errorMessage"] == "OK"
    assert first["errorDescription"] == "success"
    page = first["data"]
    assert (page["offset"], page["limit"], page["total"]) == (0, 5, 0)  # total 0 when not asked
    ids = [row["_id"] for row in page["dataList"]]
    assert len(ids) == 5 and ids == sorted(ids)
    # The page's solution: offset 0, _id order, GT the last id of the previous page.
    second = post(
        fx,
        "/cgi/crm/v2/data/query",
        {
            "data": {
                "dataObjectApiName": "AccountObj",
                "search_query_info": {
                    "limit": 5,
                    "offset": 0,
                    "filters": [{"operator": "GT", "field_name": "_id", "field_values": [ids[-1]]}],
                    "orders": [{"fieldName": "_id", "isAsc": True}],
                },
            }
        },
        headers,
    )
    next_ids = [row["_id"] for row in second["data"]["dataList"]]
    assert next_ids[0] > ids[-1] and next_ids == sorted(next_ids)
    assert second["data"]["total"] == 30 - 5  # find_explicit_total_num defaults to true
    everything = sorted(row["_id"] for row in fx.emulator.records("AccountObj"))
    assert ids + next_ids == everything[:10]


def test_offset_past_10000_answers_the_documented_error_body(fx: RunningSandbox) -> None:
    answer = post(
        fx,
        "/cgi/crm/v2/data/query",
        {
            "data": {
                "dataObjectApiName": "AccountObj",
                "search_query_info": {"limit": 100, "offset": 10100, "filters": []},
            }
        },
        bearer(fx),
    )
    # The API Response quoted on deep-paging.html.
    assert answer["errorCode"] == 10013
    assert answer["errorMessage"] == "offset out of range 10000"
    assert answer["errorDescription"] == "offset cannot exceed 10000"
    at_cap = post(
        fx,
        "/cgi/crm/v2/data/query",
        {
            "data": {
                "dataObjectApiName": "AccountObj",
                "search_query_info": {"limit": 100, "offset": 10000, "filters": []},
            }
        },
        bearer(fx),
    )
    assert at_cap["errorCode"] == 0 and at_cap["data"]["dataList"] == []


@pytest.mark.parametrize(
    ("limit", "offset"),
    [(101, 0), (0, 0), (20, 30)],
    ids=["limit_over_100", "limit_zero", "offset_not_a_multiple_of_limit"],
)
def test_query_info_paging_rules_of_the_account_query_page(
    fx: RunningSandbox, limit: int, offset: int
) -> None:
    # fxiaoke.com/mob/guide/openapi/.../AccountObj/query-acc/: limit max 100, offset a multiple of limit.
    answer = post(
        fx,
        "/cgi/crm/v2/data/query",
        {
            "data": {
                "dataObjectApiName": "AccountObj",
                "search_query_info": {"limit": limit, "offset": offset, "filters": []},
            }
        },
        bearer(fx),
    )
    assert answer["errorCode"] != 0
    assert "data" not in answer


def test_apifox_payment_query_example_in_the_legacy_body_style(fx: RunningSandbox) -> None:
    # fxiaoke.apifox.cn/api-12901184 (query PaymentObj), limit/offset as the mirror's 2.0/0.0 floats.
    answer = post(
        fx,
        "/cgi/crm/v2/data/query",
        {
            **legacy(fx),
            "data": {
                "search_query_info": {"offset": 0.0, "limit": 2.0, "filters": []},
                "dataObjectApiName": "PaymentObj",
            },
        },
    )
    assert answer["errorCode"] == 0
    rows = answer["data"]["dataList"]
    assert len(rows) == 2
    for row in rows:
        # The example's shapes: money as a 2-decimal string, dates as epoch ms, FSUID owners.
        assert isinstance(row["payment_amount"], str) and row["payment_amount"].count(".") == 1
        assert len(row["payment_amount"].split(".")[1]) == 2
        assert isinstance(row["payment_time"], int) and row["payment_time"] > 10**12
        assert row["owner"][0].startswith("FSUID_")
        assert isinstance(row["account_id__r"], str)
        assert row["life_status"] == "normal" and row["lock_status"] == "0"


def test_header_style_returns_plain_employee_ids(fx: RunningSandbox) -> None:
    answer = post(
        fx,
        "/cgi/crm/v2/data/query",
        {
            "data": {
                "dataObjectApiName": "AccountObj",
                "search_query_info": {"limit": 3, "offset": 0, "filters": []},
            }
        },
        bearer(fx),
    )
    # convertUserId defaults to false with the header convention: ids like "1000".
    assert all(row["owner"][0].isdigit() for row in answer["data"]["dataList"])


def test_get_example_returns_one_record(fx: RunningSandbox) -> None:
    record_id = fx.emulator.records("PaymentObj")[0]["_id"]
    # fxiaoke.apifox.cn/api-12901355: data {dataObjectApiName, objectDataId}.
    answer = post(
        fx,
        "/cgi/crm/v2/data/get",
        {**legacy(fx), "data": {"dataObjectApiName": "PaymentObj", "objectDataId": record_id}},
    )
    assert answer["errorCode"] == 0
    assert answer["data"]["_id"] == record_id and "payment_amount" in answer["data"]


def test_filters_on_last_modified_time_in_epoch_ms(fx: RunningSandbox) -> None:
    stamps = sorted(row["last_modified_time"] for row in fx.emulator.records("AccountObj"))
    cursor = stamps[20]
    # The query page's request shape, filtering and ordering as the reference §6 example does.
    answer = post(
        fx,
        "/cgi/crm/v2/data/query",
        {
            "data": {
                "dataObjectApiName": "AccountObj",
                "find_explicit_total_num": False,
                "search_query_info": {
                    "limit": 100,
                    "offset": 0,
                    "filters": [
                        {
                            "field_name": "last_modified_time",
                            "operator": "GTE",
                            "field_values": [cursor],
                        }
                    ],
                    "orders": [
                        {"fieldName": "last_modified_time", "isAsc": True},
                        {"fieldName": "_id", "isAsc": "true"},
                    ],
                    "fieldProjection": ["_id", "name", "owner", "last_modified_time"],
                },
            }
        },
        bearer(fx),
    )
    rows = answer["data"]["dataList"]
    assert [r["last_modified_time"] for r in rows] == [s for s in stamps if s >= cursor]
    assert set(rows[0]) >= {"_id", "name", "owner", "last_modified_time"}
    assert "field_Rk02b__c" not in rows[0]  # projection honoured
    keys = [(r["last_modified_time"], r["_id"]) for r in rows]
    assert keys == sorted(keys)


def test_update_with_flags_at_the_top_level_as_the_manual_shows(fx: RunningSandbox) -> None:
    account = fx.emulator.records("AccountObj")[0]
    auth = legacy(fx)
    # fxiaoke.com/mob/guide/openapi/.../offline/update/: flags at the top level, data.object_data.
    answer = post(
        fx,
        "/cgi/crm/v2/data/update",
        {
            **auth,
            "triggerWorkFlow": False,
            "triggerApprovalFlow": False,
            "data": {
                "object_data": {
                    "_id": account["_id"],
                    "dataObjectApiName": "AccountObj",
                    "field_Rk02b__c": 61,
                },
                "optionInfo": {
                    "skipFuncValidate": True,
                    "useValidationRule": True,
                    "isDuplicateSearch": False,
                },
            },
        },
    )
    assert answer["errorCode"] == 0
    stored = next(r for r in fx.emulator.records("AccountObj") if r["_id"] == account["_id"])
    assert stored["field_Rk02b__c"] == "61.0"  # decimal_places 1, as a string
    assert stored["last_modified_time"] > account["last_modified_time"]
    assert int(stored["version"]) == int(account["version"]) + 1
    assert fx.emulator.flag_log[-1]["top"] == {
        "triggerWorkFlow": False,
        "triggerApprovalFlow": False,
    }


def test_update_without_flags_triggers_the_approval_flow_and_locks_the_account(
    fx: RunningSandbox,
) -> None:
    account = fx.emulator.records("AccountObj")[1]
    auth = legacy(fx)
    body = {
        **auth,
        "data": {
            "object_data": {
                "_id": account["_id"],
                "dataObjectApiName": "AccountObj",
                "field_Rk02b__c": 40,
            }
        },
    }
    assert post(fx, "/cgi/crm/v2/data/update", body)["errorCode"] == 0  # both flags default to true
    stored = next(r for r in fx.emulator.records("AccountObj") if r["_id"] == account["_id"])
    assert stored["field_Rk02b__c"] is None  # held for approval
    assert stored["lock_status"] == "1"
    again = post(fx, "/cgi/crm/v2/data/update", {**body, "triggerApprovalFlow": False})
    assert again["errorCode"] != 0  # a locked record refuses edits


def test_update_refuses_unknown_fields_and_option_values_that_do_not_exist(
    fx: RunningSandbox,
) -> None:
    account = fx.emulator.records("AccountObj")[2]
    auth = legacy(fx)
    for field, value in (("field_Nope1__c", "x"), ("field_Rk01a__c", "A"), ("create_time", 1)):
        answer = post(
            fx,
            "/cgi/crm/v2/data/update",
            {
                **auth,
                "triggerApprovalFlow": False,
                "data": {
                    "object_data": {
                        "_id": account["_id"],
                        "dataObjectApiName": "AccountObj",
                        field: value,
                    }
                },
            },
        )
        assert answer["errorCode"] != 0, field
    described = post(
        fx,
        "/cgi/crm/v2/object/describe",
        {"data": {"apiName": "AccountObj", "includeDetail": False}},
        bearer(fx),
    )
    option = described["data"]["describe"]["fields"]["field_Rk01a__c"]["options"][0]["value"]
    ok = post(
        fx,
        "/cgi/crm/v2/data/update",
        {
            **auth,
            "triggerApprovalFlow": False,
            "data": {
                "object_data": {
                    "_id": account["_id"],
                    "dataObjectApiName": "AccountObj",
                    "field_Rk01a__c": option,
                }
            },
        },
    )
    assert ok["errorCode"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("field_CrL4c__c", 1e30),  # rounding to 2 places overflows the decimal context
        ("field_CrL4c__c", "1e999999"),
        ("field_Emp2a__c", "NaN"),
        ("field_Emp2a__c", "-Infinity"),
    ],
    ids=["too_many_digits", "huge_exponent", "not_a_number", "infinite"],
)
def test_a_number_no_field_can_hold_is_refused_as_a_format_error(
    fx: RunningSandbox, field: str, value: Any
) -> None:
    # A value no field can hold is the field-format error (15002), not 50009 "service timeout",
    # which the adapter would retry.
    account = fx.emulator.records("AccountObj")[0]
    answer = post(
        fx,
        "/cgi/crm/v2/data/update",
        {
            **legacy(fx),
            "triggerApprovalFlow": False,
            "data": {
                "object_data": {
                    "_id": account["_id"],
                    "dataObjectApiName": "AccountObj",
                    field: value,
                }
            },
        },
    )
    assert answer["errorCode"] == 15002, answer
    assert "格式错误" in answer["errorMessage"]
    assert fx.emulator.records("AccountObj")[0] == account


def test_create_sales_record_returns_data_id_and_never_deduplicates(fx: RunningSandbox) -> None:
    account = fx.emulator.records("AccountObj")[0]
    # developer.fxiaoke.com/openapi_v2/en/object/SalesAndOrders/ActiveRecordObj/add.html, with the
    # fields a sales record needs (reference §10) in place of the example's "hello" values.
    body = {
        **legacy(fx),
        "triggerApprovalFlow": False,
        "triggerWorkFlow": False,
        "hasSpecifyTime": False,
        "hasSpecifyCreatedBy": False,
        "includeDetailIds": False,
        "data": {
            "object_data": {
                "dataObjectApiName": "ActiveRecordObj",
                "object_describe_api_name": "ActiveRecordObj",
                "active_record_content": "跟进逾期回款",
                "related_object_data": [
                    {
                        "describe_api_name": "AccountObj",
                        "id": account["_id"],
                        "name": account["name"],
                    }
                ],
            },
            "optionInfo": {
                "skipFuncValidate": True,
                "isDuplicateSearch": False,
                "useValidationRule": True,
            },
        },
    }
    first = post(fx, "/cgi/crm/v2/data/create", body)
    second = post(fx, "/cgi/crm/v2/data/create", body)
    assert first["errorCode"] == 0 and second["errorCode"] == 0
    assert (
        first["dataId"] != second["dataId"]
    )  # no idempotency key: the same body makes two records
    assert len(fx.emulator.tasks()) == 2
    missing = post(
        fx,
        "/cgi/crm/v2/data/create",
        {**body, "data": {"object_data": {"dataObjectApiName": "ActiveRecordObj"}}},
    )
    assert missing["errorCode"] != 0 and "dataId" not in missing


def test_describe_takes_api_name_inside_data_and_at_the_top_level(fx: RunningSandbox) -> None:
    # fxiaoke.com/mob/guide/openapi/.../object-describe/describe/: data {apiName, includeDetail}.
    current = post(
        fx,
        "/cgi/crm/v2/object/describe",
        {"data": {"apiName": "PaymentPlanObj", "includeDetail": True}},
        bearer(fx),
    )
    describe = current["data"]["describe"]
    assert describe["api_name"] == "PaymentPlanObj"
    field = describe["fields"]["plan_payment_status"]
    assert {"api_name", "label", "type", "is_required", "define_type"} <= set(field)
    assert {o["value"] for o in field["options"]} == {"incomplete", "completed", "overdue"}
    # Legacy clients (crm-cli, k8scat) send apiName at the top level.
    old = post(
        fx,
        "/cgi/crm/v2/object/describe",
        {**legacy(fx), "apiName": "AccountObj", "includeDetail": False},
    )
    assert old["data"]["describe"]["fields"]["field_Rk01a__c"]["define_type"] == "custom"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"appSecret": "wrong"}, 20006),
        ({"permanentCode": "wrong"}, 20015),
    ],
    ids=["wrong_app_secret", "wrong_permanent_code"],
)
def test_bad_credentials_answer_their_codes_with_http_200(
    fx: RunningSandbox, change: dict[str, str], code: int
) -> None:
    body = {
        "appId": fx.client_id,
        "appSecret": fx.client_secret,
        "permanentCode": fx.refresh_token,
        "grantType": "app_secret",
        **change,
    }
    answer = post(fx, "/oauth2.0/token", body)
    assert answer["errorCode"] == code and "accessToken" not in answer


def test_missing_and_expired_tokens_and_unknown_paths(fx: RunningSandbox) -> None:
    query = {
        "data": {
            "dataObjectApiName": "AccountObj",
            "search_query_info": {"limit": 1, "offset": 0, "filters": []},
        }
    }
    # The global return-code table (openapi_v2/start/guide/codes.html): 10013 corpAccessToken
    # missing, 10014 corpId missing, 10010 openUserId missing, 20012 openUserId not found.
    assert post(fx, "/cgi/crm/v2/data/query", query)["errorCode"] == 10013
    auth = legacy(fx)
    without_corp = {k: v for k, v in auth.items() if k != "corpId"}
    assert post(fx, "/cgi/crm/v2/data/query", {**without_corp, **query})["errorCode"] == 10014
    without_user = {k: v for k, v in auth.items() if k != "currentOpenUserId"}
    assert post(fx, "/cgi/crm/v2/data/query", {**without_user, **query})["errorCode"] == 10010
    stranger = {**auth, "currentOpenUserId": "FSUID_" + "0" * 32}
    assert post(fx, "/cgi/crm/v2/data/query", {**stranger, **query})["errorCode"] == 20012
    headers = bearer(fx)
    fx.emulator.expire_tokens()
    assert post(fx, "/cgi/crm/v2/data/query", query, headers)["errorCode"] == 20016
    assert post(fx, "/cgi/crm/v2/data/nothing", query, bearer(fx))["errorCode"] == 10006


def test_token_endpoint_takes_ten_calls_a_minute_and_no_concurrent_calls(
    fx: RunningSandbox,
) -> None:
    body = {"appId": fx.client_id, "appSecret": fx.client_secret, "permanentCode": fx.refresh_token}
    codes = [post(fx, "/cgi/corpAccessToken/get/V2", body)["errorCode"] for _ in range(11)]
    assert codes[:10] == [0] * 10 and codes[10] != 0
    fx.emulator.advance(61)
    barrier = threading.Barrier(4)
    results: list[int] = []

    def call() -> None:
        barrier.wait()
        results.append(post(fx, "/cgi/corpAccessToken/get/V2", body)["errorCode"])

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(0) >= 1 and any(code != 0 for code in results)


def test_metered_calls_answer_the_quota_codes() -> None:
    query = {
        "data": {
            "dataObjectApiName": "AccountObj",
            "search_query_info": {"limit": 1, "offset": 0, "filters": []},
        }
    }
    with start_fxiaoke(accounts=5, tls=False, api_pack=False) as no_pack:
        assert post(no_pack, "/cgi/crm/v2/data/query", query, bearer(no_pack))["errorCode"] == 30003
    with start_fxiaoke(accounts=5, tls=False, daily_api_limit=3) as small:
        headers = bearer(small)
        codes = [
            post(small, "/cgi/crm/v2/data/query", query, headers)["errorCode"] for _ in range(4)
        ]
        assert codes == [0, 0, 0, 30002]
    with start_fxiaoke(accounts=5, tls=False, interface_limit=100) as busy:
        headers = bearer(busy)
        codes = [
            post(busy, "/cgi/crm/v2/data/query", query, headers)["errorCode"] for _ in range(101)
        ]
        assert codes[:100] == [0] * 100 and codes[100] == 14001  # 100 calls per 20 s per interface
        busy.emulator.advance(20)
        assert post(busy, "/cgi/crm/v2/data/query", query, headers)["errorCode"] == 0


def test_injected_faults_keep_http_200_and_say_retry_in_the_code(fx: RunningSandbox) -> None:
    headers = bearer(fx)
    query = {
        "data": {
            "dataObjectApiName": "AccountObj",
            "search_query_info": {"limit": 1, "offset": 0, "filters": []},
        }
    }
    fx.server.faults.burst_429 = 1
    fx.server.faults.burst_503 = 1
    assert post(fx, "/cgi/crm/v2/data/query", query, headers)["errorCode"] == 30004
    assert post(fx, "/cgi/crm/v2/data/query", query, headers)["errorCode"] == -1
    assert post(fx, "/cgi/crm/v2/data/query", query, headers)["errorCode"] == 0


def test_invalidated_records_leave_the_list_unless_asked_for(fx: RunningSandbox) -> None:
    account = fx.emulator.records("AccountObj")[3]
    fx.emulator.invalidate("AccountObj", account["_id"])
    headers = bearer(fx)
    listed = post(
        fx,
        "/cgi/crm/v2/data/query",
        {
            "data": {
                "dataObjectApiName": "AccountObj",
                "search_query_info": {"limit": 100, "offset": 0, "filters": []},
            }
        },
        headers,
    )
    assert account["_id"] not in {r["_id"] for r in listed["data"]["dataList"]}
    asked = post(
        fx,
        "/cgi/crm/v2/data/query",
        {
            "data": {
                "dataObjectApiName": "AccountObj",
                "search_query_info": {
                    "limit": 100,
                    "offset": 0,
                    "filters": [
                        {"field_name": "life_status", "operator": "EQ", "field_values": ["invalid"]}
                    ],
                },
            }
        },
        headers,
    )
    assert [r["_id"] for r in asked["data"]["dataList"]] == [account["_id"]]


def test_trace_ids_answer_each_third_trace_id(fx: RunningSandbox) -> None:
    headers = bearer(fx)
    post(fx, "/cgi/crm/v2/object/list", {"data": {}}, headers)
    sent, answered = fx.emulator.trace_ids[-1]
    assert sent is not None and uuid.UUID(sent)
    assert answered.startswith("E-O.")


def test_crm_risk_sandbox_serve_fxiaoke_prints_a_working_json_line() -> None:
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "connector.cli.main", "sandbox", "serve", "--crm", "fxiaoke"]
    with subprocess.Popen(
        [*command, "--json", "--accounts", "5"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["crm"] == "fxiaoke" and info["token_url"].endswith("/oauth2.0/token")
        assert 'kind = "fxiaoke"' in info["config_snippet"]
        with requests.Session() as session:
            session.verify = info["ca_bundle"]
            session.trust_env = False
            token = session.post(
                f"{info['token_url']}?thirdTraceId={uuid.uuid4()}",
                json={
                    "appId": info["client_id"],
                    "appSecret": info["client_secret"],
                    "permanentCode": info["refresh_token"],
                    "grantType": "app_secret",
                },
                timeout=10,
            ).json()
        assert token["errorCode"] == 0 and token["accessToken"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
