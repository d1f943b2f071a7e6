"""Issue 22, point 1 on both sandboxes: a record edited into an invalid state holds its account; checked through the CRM's API."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.engine.sync import classify_exit
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import CRMS, start_sandbox
from tests.crm_user import CrmUser, crm_user

RISK = ("risk_score", "risk_band", "risk_level", "risk_reasons", "recommended_limit")
# The picklist values the sandboxes ship with, plus the one an admin adds.
STATUS_PICKLISTS = {
    "salesforce": ("sandboxes.sf_schema", "Invoice__c", "Status__c"),
    "zoho": ("sandboxes.zoho_schema", "Invoices", "Status"),
}


# Fxiaoke's plan status (回款状态 incomplete/completed/overdue) is a package field the CRM sets
# from the amounts and dates; a tenant cannot add a status such as "Refunded" to it, so an
# unknown status has no Fxiaoke form [A]. Its other holds run in the implausible-value suites.
STATUS_CRMS = [crm for crm in CRMS if crm != "fxiaoke"]


def _risk(user: CrmUser, account_id: str) -> dict[str, Any]:
    record = user.get("account", account_id)
    return {name: record.get(name) for name in (*RISK, "credit_limit")}


def _open_tasks(user: CrmUser, account_id: str) -> list[tuple[Any, ...]]:
    return sorted(
        (t["id"], t["subject"], t["status"], t["priority"])
        for t in user.tasks()
        if t["what_id"] == account_id and t["status"] != "Completed"
    )


def _add_status_value(sandbox: Any, value: str) -> None:
    """An admin adds a value to the invoice status picklist in Setup."""
    import importlib

    module, obj, field = STATUS_PICKLISTS[sandbox.crm]
    current = importlib.import_module(module).INVOICE_STATUSES
    sandbox.emulator.edit_field(obj, field, picklist=(*current, value))


@pytest.mark.parametrize("crm", STATUS_CRMS)
def test_point1_a_record_edited_into_an_invalid_state_holds_its_account(
    crm: str, tmp_path: Path
) -> None:
    with start_sandbox(crm) as sandbox:
        sync = SandboxSync(sandbox, write_config(sandbox, tmp_path))
        as_of = sync.as_of or date.today()
        user = crm_user(sandbox)
        with sync.store() as store:
            first = sync.run(store)
            assert first.status.startswith("succeeded"), first.to_dict()["errors"]

            invoices = user.invoices()
            by_account: dict[str, list[dict[str, Any]]] = {}
            for invoice in invoices:
                by_account.setdefault(invoice["account_id"], []).append(invoice)
            # X: a calm account with a limit; Y: an account with an open past-due task.
            calm = [
                a["id"]
                for a in user.accounts()
                if a["id"] in by_account
                and _risk(user, a["id"])["risk_band"] in ("A", "B")
                and not _open_tasks(user, a["id"])
            ]
            late = sorted(
                {t["what_id"] for t in user.tasks() if "past due" in (t["subject"] or "")}
            )
            assert calm and late, "the seeded portfolio has calm and late accounts"
            x, y = calm[0], late[0]
            overdue_y = [
                i
                for i in by_account[y]
                if (i.get("balance") or 0) > 0 and date.fromisoformat(i["due_date"]) < as_of
            ]
            assert overdue_y
            x_before, y_before = _risk(user, x), _risk(user, y)
            y_tasks = _open_tasks(user, y)

            # One edit on X: manual override on, the person's own limit, an invalid revenue; and
            # one of X's invoices becomes 120 days overdue (v1 then wrote the limit down).
            user.update(
                "account",
                x,
                {"manual_override": True, "credit_limit": 50000, "annual_revenue": -1},
            )
            invoice = by_account[x][0]
            amount = invoice["amount"]
            user.update(
                "invoice",
                invoice["id"],
                {
                    "issue_date": (as_of - timedelta(days=150)).isoformat(),
                    "due_date": (as_of - timedelta(days=120)).isoformat(),
                    "balance": amount,
                    "paid_date": None,
                    "status": user.name("open_status"),
                },
            )
            # Y's overdue invoice is settled with a status the admin just added.
            _add_status_value(sandbox, "Refunded")
            for late_invoice in overdue_y:
                user.update(
                    "invoice",
                    late_invoice["id"],
                    {
                        "status": "Refunded",
                        "balance": 0,
                        "paid_date": (as_of - timedelta(days=1)).isoformat(),
                    },
                )

            second = sync.run(store)

            x_after = _risk(user, x)
            assert x_after["credit_limit"] == 50000, "the person's limit stands"
            assert {k: v for k, v in x_after.items() if k != "credit_limit"} == {
                k: v for k, v in x_before.items() if k != "credit_limit"
            }, "nothing written onto the held account"
            assert _risk(user, y) == y_before, "not rescored from the invoice's old 'open' copy"
            assert _open_tasks(user, y) == y_tasks, "its open task is left alone"
            held = {item["account_id"]: item for item in second.held}
            assert set(held) >= {x, y}
            assert any("annual_revenue" in r["reason"] for r in held[x]["records"])
            assert {r["rule"] for r in held[y]["records"]} == {"UNKNOWN_STATUS"}
            assert classify_exit(second) == 1

            # Fixed in the CRM: both accounts are released and written again.
            user.update("account", x, {"annual_revenue": 2_000_000})
            for late_invoice in overdue_y:
                user.update("invoice", late_invoice["id"], {"status": "Paid"})
            third = sync.run(store)

            assert third.held == [] and store.quarantined(sync.connection.name) == []
            x_final = _risk(user, x)
            assert x_final["credit_limit"] == 50000, "manual override: the limit is not written"
            assert x_final["risk_score"] != x_before["risk_score"], "rescored from the valid copy"
            assert not [t for t in _open_tasks(user, y) if "past due" in t[1]]


@pytest.mark.parametrize("crm", STATUS_CRMS)
def test_point1_mapping_the_new_status_releases_the_held_account_without_an_edit(
    crm: str, tmp_path: Path
) -> None:
    from connector.mapping import load_mapping

    with start_sandbox(crm) as sandbox:
        # No overlap window, so the held records are not read again by the incremental read.
        config = write_config(sandbox, tmp_path, settings={"overlap_seconds": 0})
        sync = SandboxSync(sandbox, config)
        as_of = sync.as_of or date.today()
        user = crm_user(sandbox)
        with sync.store() as store:
            sync.run(store)
            late = sorted(
                {t["what_id"] for t in user.tasks() if "past due" in (t["subject"] or "")}
            )
            y = late[0]
            overdue = [
                i
                for i in user.invoices()
                if i["account_id"] == y
                and (i.get("balance") or 0) > 0
                and date.fromisoformat(i["due_date"]) < as_of
            ]
            _add_status_value(sandbox, "Refunded")
            for invoice in overdue:
                user.update(
                    "invoice",
                    invoice["id"],
                    {
                        "status": "Refunded",
                        "balance": 0,
                        "paid_date": (as_of - timedelta(days=1)).isoformat(),
                    },
                )
            held = sync.run(store)
            assert y in {item["account_id"] for item in held.held}
            assert classify_exit(held) == 1
            # Later edits elsewhere move the watermark past the held records.
            time.sleep(1.1)
            other = next(i for i in user.invoices() if i["account_id"] != y)
            user.update("invoice", other["id"], {"issue_date": other["issue_date"]})
            sync.run(store)
            again = sync.run(store)
            assert again.objects["invoice"]["invalid"] == 0, "the held records were not read"
            assert y in {item["account_id"] for item in again.held}
            assert classify_exit(again) == 0

            # The admin maps the new status in the mapping file; nobody edits the invoices.
            status = sync.mapping.effective_dict()["objects"]["invoice"]["fields"]["status"]
            values = {**status["values"], "Refunded": "paid"}
            shown = ", ".join(f'"{k}" = "{v}"' for k, v in values.items())
            fixed = tmp_path / "my-mapping.toml"
            fixed.write_text(
                f'extends = "{sync.connection.mapping}"\n'
                f"[objects.invoice.fields]\nstatus = {{ values = {{ {shown} }} }}\n"
            )
            sync.mapping = load_mapping(str(fixed))
            released = sync.run(store)

            assert released.objects["invoice"]["reread"] == len(overdue)
            assert released.held == [] and store.quarantined(sync.connection.name) == []
            assert not [t for t in _open_tasks(user, y) if "past due" in t[1]], (
                "scored from the settled invoices: the past-due task is closed"
            )
            assert classify_exit(released) == 0
