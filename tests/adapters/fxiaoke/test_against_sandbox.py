"""The Fxiaoke adapter over real HTTP against the loopback sandbox: tokens, trace ids, quotas, creates, labels."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from adapters.fxiaoke import FxiaokeAdapter
from adapters.fxiaoke.auth import forget_all
from adapters.fxiaoke.settings import FxiaokeSettings
from connector.errors import AuthError, QuotaExhaustedError
from connector.models import RecordChange, TaskAction, TaskPriority
from sandboxes import RunningSandbox, start_fxiaoke


class MemoryKv:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get_value(self, key: str) -> str | None:
        return self.values.get(key)

    def set_value(self, key: str, value: str) -> None:
        self.values[key] = value


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    forget_all()  # the cache is process-wide by design; each test starts from none
    yield
    forget_all()


@pytest.fixture
def fx() -> Iterator[RunningSandbox]:
    with start_fxiaoke(accounts=30, seed=11, tls=False) as running:
        yield running
        assert not running.server.errors, running.server.errors[0]


def settings(sandbox: RunningSandbox, **overrides: Any) -> FxiaokeSettings:
    values: dict[str, Any] = {
        "name": "fx_test",
        "kind": "fxiaoke",
        "base_url": sandbox.base_url,
        "auth": "app_secret",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.refresh_token,
        "username": sandbox.emulator.username,
        "max_retries": 3,
        **overrides,
    }
    return FxiaokeSettings.model_validate(values)


class Clock:
    """The adapter's clock and the sandbox's, moved together."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.sandbox = sandbox
        self.skew = 0.0

    def __call__(self) -> float:
        return float(self.sandbox.emulator.now())

    def advance(self, seconds: float) -> None:
        self.sandbox.emulator.advance(seconds)


def adapter_for(sandbox: RunningSandbox, **kwargs: Any) -> FxiaokeAdapter:
    overrides = kwargs.pop("settings", {})
    kwargs.setdefault("sleep", lambda seconds: None)
    return FxiaokeAdapter(settings(sandbox, **overrides), state=MemoryKv(), **kwargs)


def test_one_token_for_every_thread_and_connection_of_the_app(fx: RunningSandbox) -> None:
    first, second = adapter_for(fx), adapter_for(fx)
    errors: list[BaseException] = []

    def read(adapter: FxiaokeAdapter) -> None:
        try:
            list(adapter.read_changed("AccountObj", ["name"], None))
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(a,)) for a in [first, second] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert fx.emulator.token_calls == 1  # single flight: no concurrent token calls, no 14001
    assert fx.emulator.token_refusals == 0


def test_token_is_kept_6600_s_and_renewed_in_the_window(fx: RunningSandbox) -> None:
    clock = Clock(fx)
    adapter = adapter_for(fx, clock=clock)
    list(adapter.read_changed("AccountObj", ["name"], None))
    clock.advance(6600)
    list(adapter.read_changed("AccountObj", ["name"], None))
    assert fx.emulator.token_calls == 1  # still cached at 6,600 s
    clock.advance(100)  # 6,700 s: inside the 6,650-7,200 s renewal window
    list(adapter.read_changed("AccountObj", ["name"], None))
    assert fx.emulator.token_calls == 2
    clock.advance(600)  # the first token is dead now; the renewed one carries on
    assert list(adapter.read_changed("AccountObj", ["name"], None))
    assert fx.emulator.token_calls == 2


def test_an_expired_token_is_renewed_once_and_the_call_sent_again(fx: RunningSandbox) -> None:
    adapter = adapter_for(fx)
    list(adapter.read_changed("AccountObj", ["name"], None))
    fx.emulator.expire_tokens()
    assert len(list(adapter.read_changed("AccountObj", ["name"], None))) == 30
    assert fx.emulator.token_calls == 2


def test_legacy_style_carries_the_credentials_in_the_body(fx: RunningSandbox) -> None:
    adapter = adapter_for(fx, settings={"auth": "legacy", "username": fx.emulator.open_user_id})
    records = list(adapter.read_changed("AccountObj", ["name", "owner.id"], None))
    assert len(records) == 30
    # Legacy answers carry FSUID_ employee ids (convertUserId defaults to true).
    assert all(str(r.fields["owner.id"]).startswith("FSUID_") for r in records)
    result = adapter.write(
        "AccountObj",
        [RecordChange(crm_id=records[0].crm_id, fields={"field_Rk02b__c": Decimal(12)})],
    )
    assert result[0].status == "ok"


def test_legacy_style_renews_an_expired_token_and_resends_the_body_with_the_new_one(
    fx: RunningSandbox,
) -> None:
    adapter = adapter_for(fx, settings={"auth": "legacy", "username": fx.emulator.open_user_id})
    list(adapter.read_changed("AccountObj", ["name"], None))
    fx.emulator.expire_tokens()
    sent_before = len(fx.emulator.trace_ids)
    assert len(list(adapter.read_changed("AccountObj", ["name"], None))) == 30
    assert fx.emulator.token_calls == 2
    # The refused call and its resend each carry their own thirdTraceId.
    resent = [third for third, _ in fx.emulator.trace_ids[sent_before:]]
    assert len(set(resent)) == len(resent) >= 2


def test_every_call_carries_a_fresh_third_trace_id_paired_with_the_server_trace_id(
    fx: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = adapter_for(fx)
    with caplog.at_level("DEBUG", logger="crm_risk.fxiaoke"):
        list(adapter.read_changed("PaymentPlanObj", ["name"], None))
    sent = [third for third, _ in fx.emulator.trace_ids]
    assert all(sent) and len(set(sent)) == len(sent) >= 4
    logged = {(third, trace) for third, trace in adapter.client.trace_log}
    assert logged <= set(fx.emulator.trace_ids)
    third, trace = adapter.client.trace_log[-1]
    assert any(third in r.getMessage() and trace in r.getMessage() for r in caplog.records)
    assert not any(fx.client_secret in r.getMessage() for r in caplog.records)


def test_no_open_api_pack_and_a_spent_daily_quota_stop_the_run() -> None:
    with (
        start_fxiaoke(accounts=5, tls=False, api_pack=False) as no_pack,
        pytest.raises(QuotaExhaustedError, match="Open API pack"),
    ):
        list(adapter_for(no_pack).read_changed("AccountObj", ["name"], None))
    forget_all()
    with start_fxiaoke(accounts=5, tls=False, daily_api_limit=1) as spent:
        adapter = adapter_for(spent)
        with pytest.raises(QuotaExhaustedError, match="30002"):
            list(adapter.read_changed("PaymentPlanObj", ["name"], None))


def test_a_wrong_permanent_code_names_the_setting(fx: RunningSandbox) -> None:
    adapter = adapter_for(fx, settings={"refresh_token": "not-the-permanent-code"})
    with pytest.raises(AuthError) as raised:
        list(adapter.read_changed("AccountObj", ["name"], None))
    assert raised.value.setting == "refresh_token"
    assert "not-the-permanent-code" not in str(raised.value)


def test_the_call_limit_waits_out_the_20_s_window(fx: RunningSandbox) -> None:
    fx.emulator.interface_limit = 2  # two queries per 20 s per interface
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        fx.emulator.advance(seconds)

    adapter = adapter_for(fx, sleep=sleep, settings={"options": {"page_size": 5}})
    records = list(adapter.read_changed("AccountObj", ["name"], None))
    assert len(records) == 30
    assert waits and all(wait == 20.0 for wait in waits)


def task(account_id: str, key: str, *, first: bool = True) -> TaskAction:
    return TaskAction(
        action="create",
        account_id=account_id,
        rule="past_due",
        dedupe_key=key,
        subject="逾期 95 天",
        description="请联系客户。",
        priority=TaskPriority.HIGH,
        first_attempt=first,
    )


def test_a_create_that_timed_out_is_looked_up_never_sent_again(fx: RunningSandbox) -> None:
    account = fx.emulator.records("AccountObj")[0]["_id"]

    def sleep(seconds: float) -> None:
        fx.server.faults.rate_500 = 0.0  # the look-up's retry gets through

    adapter = adapter_for(fx, sleep=sleep)
    adapter.describe("ActiveRecordObj")  # token and the status field's options first
    fx.server.faults.rate_500 = 1.0  # every call answers 50009 (service timeout)
    fx.server.reset_calls()
    [result] = adapter.create_tasks([task(account, "fx:1:past_due:1")])
    creates = fx.server.calls[("POST", "/cgi/crm/v2/data/create")]
    assert creates == 1  # not resent: a timeout does not say whether it ran
    assert result.status == "unknown" and result.retriable
    assert fx.emulator.tasks() == []
    [again] = adapter.create_tasks([task(account, "fx:1:past_due:1", first=False)])
    assert again.status == "ok"
    assert len(fx.emulator.tasks()) == 1


def test_a_rate_limited_create_is_sent_again(fx: RunningSandbox) -> None:
    account = fx.emulator.records("AccountObj")[0]["_id"]
    adapter = adapter_for(fx)
    adapter.describe("ActiveRecordObj")  # the status field's options, before the burst
    fx.server.faults.burst_429 = 1  # 30004: refused before it ran
    [result] = adapter.create_tasks([task(account, "fx:2:past_due:1")])
    assert result.status == "ok"
    assert len(fx.emulator.tasks()) == 1


def test_follow_ups_carry_owner_marker_priority_and_open_status(fx: RunningSandbox) -> None:
    account = fx.emulator.records("AccountObj")[3]
    adapter = adapter_for(fx)
    action = task(account["_id"], "fx:3:past_due:1").model_copy(
        update={"owner_id": account["owner"][0]}
    )
    [made] = adapter.create_tasks([action])
    [stored] = fx.emulator.tasks()
    assert stored["_id"] == made.crm_id
    assert stored["owner"] == account["owner"]
    assert stored["related_object_data"][0] == {
        "describe_api_name": "AccountObj",
        "id": account["_id"],
    }
    assert stored["active_record_content"].endswith("[crm-risk:fx:3:past_due:1]")
    assert "逾期 95 天" in stored["active_record_content"]
    assert stored["field_Fs08h__c"] == "open"
    assert fx.emulator.flag_log[-1]["top"] == {
        "triggerApprovalFlow": False,
        "triggerWorkFlow": False,
    }
    state = adapter.find_tasks({"fx:3:past_due:1": None})["fx:3:past_due:1"]
    assert state.priority == TaskPriority.HIGH and not state.is_closed
    assert state.owner_id == account["owner"][0]


def test_ratings_are_written_by_label_and_stored_as_the_tenant_option_code(
    fx: RunningSandbox,
) -> None:
    adapter = adapter_for(fx)
    description = adapter.describe("AccountObj")
    assert description.fields["field_Rk01a__c"].picklist_values == ("A", "B", "C", "D", "E")
    account = fx.emulator.records("AccountObj")[5]["_id"]
    [result] = adapter.write(
        "AccountObj", [RecordChange(crm_id=account, fields={"field_Rk01a__c": "C"})]
    )
    assert result.status == "ok"
    stored = next(r for r in fx.emulator.records("AccountObj") if r["_id"] == account)
    assert stored["field_Rk01a__c"] == "9cWm3Hs1C"
    assert stored["lock_status"] == "0"  # no approval flow started
    [read] = adapter.read_by_ids("AccountObj", ["field_Rk01a__c"], [account])
    assert read.fields["field_Rk01a__c"] == "C"


def test_a_number_no_field_can_hold_is_refused_for_that_record_and_never_resent(
    fx: RunningSandbox,
) -> None:
    adapter = adapter_for(fx)
    accounts = [r["_id"] for r in fx.emulator.records("AccountObj")[:2]]
    results = adapter.write(
        "AccountObj",
        [
            RecordChange(crm_id=accounts[0], fields={"field_CrL4c__c": Decimal("1e30")}),
            RecordChange(crm_id=accounts[1], fields={"field_CrL4c__c": Decimal("5000.50")}),
        ],
    )
    # The field-format error (15002) refuses that record only; 50009 would have been resent.
    assert [(r.status, r.error_code) for r in results] == [("rejected", "15002"), ("ok", "")]
    assert [entry["action"] for entry in fx.emulator.flag_log] == ["update", "update"]


def test_payment_plans_get_open_amount_and_paid_date_from_their_payment_lines(
    fx: RunningSandbox,
) -> None:
    adapter = adapter_for(fx)
    plans = {
        r.crm_id: r
        for r in adapter.read_changed(
            "PaymentPlanObj",
            ["plan_payment_amount", "connector__open_amount", "connector__paid_date"],
            None,
        )
    }
    lines = {line["payment_plan_id"]: line for line in fx.emulator.records("OrderPaymentObj")}
    completed = [
        p for p in fx.emulator.records("PaymentPlanObj") if p["plan_payment_status"] == "completed"
    ]
    assert completed
    for plan in completed:
        read = plans[plan["_id"]]
        assert read.fields["connector__open_amount"] == "0.00"
        paid = datetime.fromtimestamp(lines[plan["_id"]]["payment_time"] / 1000, UTC) + timedelta(
            hours=8
        )
        assert read.fields["connector__paid_date"] == paid.date().isoformat()
    overdue = [
        p for p in fx.emulator.records("PaymentPlanObj") if p["plan_payment_status"] == "overdue"
    ]
    for plan in overdue:
        read = plans[plan["_id"]]
        expected = Decimal(plan["plan_payment_amount"]) - Decimal(plan["actual_payment_amount"])
        assert Decimal(read.fields["connector__open_amount"]) == expected > 0
        assert read.fields["connector__paid_date"] is None


def test_invalidated_records_come_back_as_deletions_since_the_watermark(fx: RunningSandbox) -> None:
    adapter = adapter_for(fx)
    everything = list(adapter.read_changed("AccountObj", ["name"], None))
    newest = max(r.modified_at for r in everything)
    gone = everything[0].crm_id
    fx.emulator.invalidate("AccountObj", gone)
    changed = list(adapter.read_changed("AccountObj", ["name"], newest))
    assert [(r.crm_id, r.deleted) for r in changed if r.crm_id == gone] == [(gone, True)]


def test_fields_plan_lists_missing_fields_in_chinese_and_english(
    fx: RunningSandbox,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connector.cli.main import main

    mapping = tmp_path / "acme.toml"
    mapping.write_text(
        'extends = "fxiaoke.payment-plan"\nname = "acme"\n'
        "[objects.account.fields]\n"
        'risk_score = { crm = "field_Zz99z__c" }\n'
        'risk_band = { crm = "field_Yy88y__c" }\n'
        'credit_limit_basis = { crm = "field_Xx77x__c" }\n'
    )
    config = tmp_path / "crm-risk.toml"
    config.write_text(fx.config_snippet().replace('"fxiaoke.payment-plan"', f'"{mapping}"'))
    for key, value in fx.env_vars().items():
        monkeypatch.setenv(key, value)
    assert main(["fields", "plan", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "风险评分 / Risk score: 数字 (number)" in out
    assert "风险评级 / Risk rating: 单选 (select_one); 选项 options: A, B, C, D, E" in out
    assert "objects.account.fields.risk_score" in out
    assert "信用额度基准 / Credit limit basis: 金额 (currency)" in out
    assert "跟进状态" not in out  # the follow-up status field exists in the sandbox tenant
    # The preset itself: nothing to create.
    config.write_text(fx.config_snippet())
    assert main(["fields", "plan", "--config", str(config)]) == 0
    assert "every mapped custom field exists" in capsys.readouterr().out
    # No Open API call creates fields: --apply says so instead of pretending.
    config.write_text(fx.config_snippet().replace('"fxiaoke.payment-plan"', f'"{mapping}"'))
    assert main(["fields", "plan", "--config", str(config), "--apply", "--yes"]) != 0
    assert "cannot create fields" in capsys.readouterr().err
