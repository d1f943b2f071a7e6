"""Fxiaoke adapter pieces without HTTP: the errorCode table, settings, value conversion, key paging."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from adapters.fxiaoke.errors import error_for
from adapters.fxiaoke.paging import changed_pages
from adapters.fxiaoke.settings import CLOUDS, FxiaokeSettings, resolve
from adapters.fxiaoke.values import (
    field_description,
    field_info,
    read_value,
    refused_fields,
    write_value,
)
from connector.config import load_config
from connector.errors import (
    AuthError,
    ConfigError,
    FatalCrmError,
    QuotaExhaustedError,
    RetriableCrmError,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (-1, RetriableCrmError),
        (14001, RetriableCrmError),
        (30004, RetriableCrmError),
        (50009, RetriableCrmError),
        (20016, AuthError),
        (20006, AuthError),
        (15003, AuthError),
        (30002, QuotaExhaustedError),
        (30003, QuotaExhaustedError),
        (10013, FatalCrmError),
        (15002, FatalCrmError),
        (987654, FatalCrmError),
    ],
    ids=[
        "system_busy_retried",
        "call_limit_retried",
        "per_second_limit_retried",
        "timeout_retried",
        "expired_token_is_auth",
        "wrong_secret_is_auth",
        "no_permission_is_auth",
        "daily_quota_stops_the_run",
        "no_api_pack_stops_the_run",
        "offset_cap_is_fatal",
        "invalid_parameter_is_fatal",
        "unknown_code_is_fatal",
    ],
)
def test_error_codes_map_to_what_the_engine_does_next(code: int, cls: type[Exception]) -> None:
    error = error_for(code, "消息", "E-O.x.1-abc")
    assert type(error) is cls
    assert error.code == str(code)
    assert "E-O.x.1-abc" in str(error)  # the traceId support asks for


def test_refused_credentials_name_the_setting_and_rate_codes_say_how_long_to_wait() -> None:
    assert getattr(error_for(20006, "", ""), "setting", "") == "client_secret"
    assert getattr(error_for(20015, "", ""), "setting", "") == "refresh_token"
    assert getattr(error_for(14001, "", ""), "retry_after", None) == 20.0
    assert "Open API pack" in str(error_for(30003, "", ""))


def _settings(**overrides: Any) -> FxiaokeSettings:
    values: dict[str, Any] = {
        "name": "acme_fx",
        "kind": "fxiaoke",
        "auth": "app_secret",
        "client_id": "FSAID_1",
        "client_secret": SecretStr("s" * 10),
        "refresh_token": SecretStr("p" * 10),
        "username": "1000",
        **overrides,
    }
    return FxiaokeSettings.model_validate(values)


def test_cloud_names_pick_the_host_and_token_path_follows_the_style() -> None:
    current = resolve(_settings(data_centre="frankfurt"))
    assert current.base_url == CLOUDS["frankfurt"] == "https://open-hws.fxiaoke.com"
    assert current.token_url == "https://open-hws.fxiaoke.com/oauth2.0/token"
    legacy = resolve(_settings(auth="legacy"))
    assert legacy.base_url == "https://open.fxiaoke.com"
    assert legacy.token_url.endswith("/cgi/corpAccessToken/get/V2")


def test_every_settings_problem_is_reported_at_once_with_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("CRMRISK_"):
            monkeypatch.delenv(key)
    config = tmp_path / "crm-risk.toml"
    config.write_text(
        f'''
[store]
url = "{tmp_path / "s.db"}"
[connections.acme_fx]
kind = "fxiaoke"
mapping = "fxiaoke.payment-plan"
data_centre = "mars"
auth = "password"
client_id = "FSAID_1"
username = "1000"
options = {{ page_size = 500, time_zone = "Nowhere/City", task_staus_field = "x" }}
'''
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config, require_secrets=False)
    text = str(raised.value)
    for key in ("data_centre", "auth", "options.page_size", "options.time_zone"):
        assert f"[connections.acme_fx] {key}" in text, key
    assert "unknown Fxiaoke cloud 'mars'" in text
    assert "options.task_staus_field: unknown key; did you mean task_status_field" in text


def test_a_missing_credential_names_its_setting_and_never_shows_the_others() -> None:
    with pytest.raises(ConfigError) as raised:
        resolve(_settings(refresh_token=None, username=None))
    text = str(raised.value)
    for key in ("refresh_token", "username"):
        assert f"connections.acme_fx.{key}" in text, key
    assert "CRMRISK_CONNECTIONS__ACME_FX__REFRESH_TOKEN" in text
    assert "s" * 10 not in text


RATING = {
    "api_name": "field_Rk01a__c",
    "type": "select_one",
    "define_type": "custom",
    "options": [{"label": "A", "value": "x7Ka"}, {"label": "B", "value": "q2Zb"}],
}


def test_custom_select_fields_are_read_and_written_by_label() -> None:
    info = field_info(RATING)
    assert field_description(RATING).picklist_values == ("A", "B")
    assert read_value(info, "q2Zb", SHANGHAI) == "B"
    assert write_value(info, "A", SHANGHAI) == "x7Ka"


def test_dates_are_tenant_midnights_and_money_goes_out_as_text() -> None:
    date_field = field_info({"api_name": "d", "type": "date", "define_type": "package"})
    midnight = write_value(date_field, date(2026, 11, 1), SHANGHAI)
    assert midnight == int(datetime(2026, 10, 31, 16, tzinfo=UTC).timestamp() * 1000)
    assert read_value(date_field, midnight, SHANGHAI) == "2026-11-01"
    money = field_info({"api_name": "m", "type": "currency", "define_type": "custom"})
    assert write_value(money, Decimal("42.50"), SHANGHAI) == "42.50"
    assert write_value(money, Decimal(100), SHANGHAI) == "100"
    with pytest.raises(ValueError, match="finite"):
        write_value(money, Decimal("NaN"), SHANGHAI)


def test_system_fields_are_read_only_and_ids_are_ids() -> None:
    assert not field_description(
        {"api_name": "last_modified_time", "type": "date_time", "define_type": "system"}
    ).updateable
    assert (
        field_description({"api_name": "_id", "type": "text", "define_type": "system"}).family
        == "id"
    )
    assert field_description(
        {"api_name": "field_X1__c", "type": "number", "define_type": "custom"}
    ).updateable


class FakeQuery:
    """Answers keyset queries over rows the way the sandbox orders and filters them."""

    def __init__(self, rows: list[dict[str, Any]], page: int) -> None:
        self.rows = rows
        self.page = page
        self.calls: list[list[dict[str, Any]]] = []

    def __call__(
        self, filters: list[dict[str, Any]], orders: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        self.calls.append(filters)

        def ok(row: dict[str, Any]) -> bool:
            for f in filters:
                value, wanted = row[f["field_name"]], f["field_values"][0]
                op = f["operator"]
                if not {"GT": value > wanted, "GTE": value >= wanted, "EQ": value == wanted}[op]:
                    return False
            return True

        names = [o["fieldName"] for o in orders]
        matched = sorted((r for r in self.rows if ok(r)), key=lambda r: tuple(r[n] for n in names))
        return matched[: self.page]


def test_key_paging_yields_each_row_once_in_time_then_id_order_across_a_giant_tie() -> None:
    rows = [{"_id": f"{i:04x}", "last_modified_time": 1000 + (i // 7)} for i in range(300)]
    # 250 rows share one timestamp: more than two whole pages.
    rows += [{"_id": f"f{i:03x}", "last_modified_time": 5000} for i in range(250)]
    query = FakeQuery(rows, page=100)
    seen = [row for page in changed_pages(query, [], 100) for row in page]
    keys = [(r["last_modified_time"], r["_id"]) for r in seen]
    assert keys == sorted(keys) and len(keys) == len(set(keys)) == 550
    assert all(
        f.get("operator") != "EQ" or f["field_name"] != "last_modified_time" for f in query.calls[0]
    )
    assert any(f["operator"] == "EQ" for call in query.calls for f in call)  # the tie walk ran


def test_a_refused_update_names_the_fields_describe_no_longer_takes_and_only_those() -> None:
    rating = {
        "api_name": "field_Rk01a__c",
        "type": "select_one",
        "define_type": "custom",
        "options": [{"label": "A", "value": "7e8T541Va"}, {"label": "C", "value": "9cWm3Hs1C"}],
    }
    infos = {
        "field_Rk01a__c": field_info(rating),
        "field_Rk02b__c": field_info(
            {"api_name": "field_Rk02b__c", "type": "number", "define_type": "custom"}
        ),
        "field_Off__c": field_info(
            {"api_name": "field_Off__c", "type": "text", "is_active": False}
        ),
        "create_time": field_info(
            {"api_name": "create_time", "type": "date_time", "define_type": "system"}
        ),
    }
    # A value that is no option, a field gone, one switched off, one the system owns.
    sent = {
        "field_Rk01a__c": "D",
        "field_Rr04d__c": "text",
        "field_Off__c": "x",
        "create_time": 1,
        "field_Rk02b__c": "42",
    }
    assert refused_fields(sent, infos) == (
        "field_Rk01a__c",
        "field_Rr04d__c",
        "field_Off__c",
        "create_time",
    )
    # Nothing in describe explains a refusal of valid values (a lock, a validation rule).
    assert refused_fields({"field_Rk01a__c": "9cWm3Hs1C", "field_Rk02b__c": "1"}, infos) == ()
    assert refused_fields({"field_Rk01a__c": None}, infos) == ()
