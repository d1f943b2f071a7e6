"""The Fxiaoke sandbox's admin hooks, seen through the Open API as a person's client sees them: an option removed, a field made read-only or deleted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandboxes import RunningSandbox, start_fxiaoke
from tests.crm_user import FxiaokeUser

RATING = "field_Rk01a__c"
REASONS = "field_Rr04d__c"


@pytest.fixture
def fx() -> Iterator[RunningSandbox]:
    with start_fxiaoke(accounts=5, seed=3, tls=False) as running:
        yield running


def _refusal(user: FxiaokeUser, account_id: str, data: dict[str, object]) -> str:
    with pytest.raises(AssertionError) as refused:
        user._update("AccountObj", account_id, data)
    return str(refused.value)


def test_an_option_removed_leaves_describe_and_its_value_is_refused_then_comes_back(
    fx: RunningSandbox,
) -> None:
    user = FxiaokeUser(fx)
    account = user.accounts()[0]["id"]
    old = {o["label"]: o["value"] for o in user.fields("AccountObj")[RATING]["options"]}

    fx.emulator.edit_field("AccountObj", RATING, picklist=("A", "B", "C", "E"))

    fresh = FxiaokeUser(fx)
    options = {o["label"]: o["value"] for o in fresh.fields("AccountObj")[RATING]["options"]}
    assert options == {label: old[label] for label in "ABCE"}, "kept options keep their values"
    assert "is not an option" in _refusal(fresh, account, {RATING: old["D"]})
    fresh.update("account", account, {"risk_band": "C"})
    assert fresh.get("account", account)["risk_band"] == "C"

    fx.emulator.edit_field("AccountObj", RATING, picklist=("A", "B", "C", "D", "E"))
    again = FxiaokeUser(fx)
    again.update("account", account, {"risk_band": "D"})
    assert again.get("account", account)["risk_band"] == "D"


def test_a_read_only_field_refuses_writes_naming_it(fx: RunningSandbox) -> None:
    user = FxiaokeUser(fx)
    account = user.accounts()[0]["id"]

    fx.emulator.edit_field("AccountObj", REASONS, read_only=True)

    assert REASONS in _refusal(user, account, {REASONS: "text"})
    user.update("account", account, {"risk_score": 42})  # other fields are still writable
    fx.emulator.edit_field("AccountObj", REASONS, read_only=False)
    user.update("account", account, {"risk_reasons": "text"})
    assert user.get("account", account)["risk_reasons"] == "text"


def test_a_deleted_field_leaves_describe_and_every_record(fx: RunningSandbox) -> None:
    user = FxiaokeUser(fx)
    account = user.accounts()[0]["id"]
    user.update("account", account, {"risk_reasons": "text"})

    fx.emulator.edit_field("AccountObj", REASONS, delete=True)

    fresh = FxiaokeUser(fx)
    assert REASONS not in fresh.fields("AccountObj")
    assert REASONS not in fresh._get("AccountObj", account)
    assert REASONS in _refusal(fresh, account, {REASONS: "text"})
    with pytest.raises(KeyError):
        fx.emulator.edit_field("AccountObj", "field_Nope0__c", read_only=True)
