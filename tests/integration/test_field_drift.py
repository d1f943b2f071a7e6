"""Issue 22, point 6 on both sandboxes: the CRM changes after `check` passed.

A field deleted or made read-only stops the run with exit 78 naming the field, the mapping key
and `crm-risk check`, and forgets the cached check; a picklist value removed refuses that one
field for the accounts that need it, the rest of their update is written, and the refused value
is not sent again until the mapping or the CRM field changes.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.cli.main import main
from connector.engine.sync import classify_exit
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import CRMS, start_sandbox
from tests.crm_user import crm_user
from tests.lossy import lossy_session

RATING = {
    "salesforce": ("Account", "Risk_Rating__c"),
    "zoho": ("Accounts", "Risk_Rating"),
    "fxiaoke": ("AccountObj", "field_Rk01a__c"),
}
REASONS = {
    "salesforce": ("Account", "Risk_Reasons__c"),
    "zoho": ("Accounts", "Risk_Reasons"),
    "fxiaoke": ("AccountObj", "field_Rr04d__c"),
}
SCORE = {
    "salesforce": ("Account", "Risk_Score__c"),
    "zoho": ("Accounts", "Risk_Score"),
    "fxiaoke": ("AccountObj", "field_Rk02b__c"),
}


def _recorder(sandbox: Any) -> tuple[Any, Any]:
    return lossy_session(sandbox.ca_bundle, lambda request: False)


# Fxiaoke's describe is not known to show a field permission (只读) [A], so nothing in the
# CRM's metadata explains a write refused for it: the record is retried next run (exit 1),
# not stopped with 78. Deleted fields and removed options are explained and run as elsewhere.
READ_ONLY_GAP = pytest.mark.xfail(
    strict=True, reason="issue 16: Fxiaoke's describe does not show a read-only field"
)
DRIFTS = [
    pytest.param(crm, change, marks=READ_ONLY_GAP)
    if (crm, change) == ("fxiaoke", "read_only")
    else (crm, change)
    for crm in CRMS
    for change in ("deleted", "read_only")
]


def _rating_values(sandbox: Any, band: str) -> set[str]:
    """How the rating `band` travels: as itself, or (Fxiaoke) as its option value, old or new."""
    if sandbox.crm != "fxiaoke":
        return {band}
    from sandboxes.fxiaoke.schema import RATING_OPTIONS

    obj, field = RATING["fxiaoke"]
    current = sandbox.emulator.objects[obj].fields[field].options
    return {band} | {value for label, value in (*RATING_OPTIONS, *current) if label == band}


def _rating_writes(sent: list[tuple[str, str, str]], sandbox: Any, band: str) -> int:
    field = RATING[sandbox.crm][1]
    values = _rating_values(sandbox, band)
    return sum(
        1
        for method, url, body in sent
        if (method in ("PATCH", "PUT") or url.split("?")[0].endswith("/data/update"))
        and any(f'"{field}": "{value}"' in body.replace('":"', '": "') for value in values)
    )


@pytest.mark.parametrize("crm", CRMS)
def test_point6_a_picklist_value_removed_after_check_refuses_only_that_field(
    crm: str, tmp_path: Path
) -> None:
    with start_sandbox(crm) as sandbox:
        obj, field = RATING[crm]
        # The admin removes "D" from the rating picklist after `check` passed.
        sandbox.emulator.edit_field(obj, field, picklist=("A", "B", "C", "E"))
        sync = SandboxSync(sandbox, write_config(sandbox, tmp_path))
        user = crm_user(sandbox)
        with sync.store() as store:
            first = sync.run(store)

            refused = store.field_blocks(sync.connection.name)
            band_d = {row["account_id"] for row in refused}
            assert band_d and {row["field"] for row in refused} == {"risk_band"}
            assert {row["value"] for row in refused} == {"D"}
            assert first.writes["account"]["fields_refused"] == len(band_d)
            assert classify_exit(first) == 1
            # The rest of each band-D account's update is written: score, reasons, limits.
            for account_id in band_d:
                record = user.get("account", account_id)
                assert record["risk_band"] is None, "the refused value is not there"
                assert record["risk_score"] is not None
                assert record["risk_reasons"]
                assert record["recommended_limit"] is not None
            # The CRM's message and the field are kept whole.
            messages = " ".join(e["message"] for e in first.to_dict()["errors"])
            assert "risk_band" in messages and field in messages
            assert store.failed_writes(sync.connection.name) == []

            # A full rescore plans every band-D account again: the refused value stays unsent.
            session, spy = _recorder(sandbox)
            second = sync.run(store, full=True, adapter_options={"session": session})
            assert _rating_writes(spy.sent, sandbox, "D") == 0, "the refused value is not resent"
            assert second.writes["account"]["fields_held_back"] == len(band_d)
            assert second.writes["account"]["fields_refused"] == 0
            assert classify_exit(second) == 0

            # The admin puts "D" back: the CRM field changed, so the next ordinary run (no
            # --full, no account edited) sends the value to every account that needs it.
            sandbox.emulator.edit_field(obj, field, picklist=("A", "B", "C", "D", "E"))
            session, spy = _recorder(sandbox)
            third = sync.run(store, adapter_options={"session": session})
            assert _rating_writes(spy.sent, sandbox, "D") >= 1
            assert third.writes["account"]["fields_refused"] == 0
            assert third.writes["account"]["fields_held_back"] == 0
            assert {user.get("account", a)["risk_band"] for a in band_d} == {"D"}
            assert store.field_blocks(sync.connection.name) == []
            assert classify_exit(third) == 0


def _cli_sync(sandbox: Any, config: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    for name, value in sandbox.env_vars().items():
        monkeypatch.setenv(name, value)
    as_of = getattr(sandbox.emulator, "as_of", None)
    extra = ["--as-of", as_of.isoformat()] if as_of else []
    return main(["sync", "--config", str(config), *extra])


def _make_an_invoice_overdue(sandbox: Any) -> None:
    """A person edits an invoice so its account's score changes (the next run writes it)."""
    user = crm_user(sandbox)
    as_of = getattr(sandbox.emulator, "as_of", None) or date.today()
    issued = as_of - timedelta(days=150)
    values = {
        "issue_date": issued.isoformat(),
        "due_date": (as_of - timedelta(days=120)).isoformat(),
        "paid_date": None,
        "status": user.name("open_status"),
    }
    if user.crm == "fxiaoke":
        # Fxiaoke sets a plan's create_time (its issue date) itself: take a plan made by then.
        del values["issue_date"]
        invoice = next(i for i in user.invoices() if i["issue_date"][:10] <= issued.isoformat())
    else:
        invoice = user.invoices()[0]
    user.update("invoice", invoice["id"], {**values, "balance": invoice["amount"]})


@pytest.mark.parametrize(("crm", "change"), DRIFTS)
def test_point6_a_field_deleted_or_made_read_only_after_check_stops_with_78(
    crm: str,
    change: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with start_sandbox(crm) as sandbox:
        config = write_config(sandbox, tmp_path)
        assert _cli_sync(sandbox, config, monkeypatch) in (0, 1)
        capsys.readouterr()
        if change == "deleted":
            obj, field = REASONS[crm]
            key = "risk_reasons"
            sandbox.emulator.edit_field(obj, field, delete=True)
        else:
            obj, field = SCORE[crm]
            key = "risk_score"
            access = {"updateable": False} if crm == "salesforce" else {"read_only": True}
            sandbox.emulator.edit_field(obj, field, **access)
            _make_an_invoice_overdue(sandbox)

        # The passing check is cached from the first run: this run meets the change in the
        # CRM's answer to a read (deleted field) or a write (read-only field).
        code = _cli_sync(sandbox, config, monkeypatch)

        err = capsys.readouterr().err
        assert code == 78, err
        assert field in err and f"objects.account.fields.{key}" in err
        assert "run `crm-risk check`" in err
        assert "crash" not in err
        # The cached check is forgotten: the next sync checks again and refuses to start.
        again = _cli_sync(sandbox, config, monkeypatch)
        err = capsys.readouterr().err
        assert again == 78 and field in err
