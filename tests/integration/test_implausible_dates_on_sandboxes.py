"""Review point 6 (issue 22) on both sandboxes: an invoice whose due date a user set centuries
ahead through the CRM's API is quarantined like a 1900 invoice; its account is held, nothing is
written onto it, and the message names the record, the field and the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.engine.sync import classify_exit
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import CRMS, start_sandbox
from tests.crm_user import CrmUser, crm_user

RISK = ("risk_score", "risk_band", "risk_reasons", "recommended_limit", "credit_limit")


def _risk(user: CrmUser, account_id: str) -> dict[str, Any]:
    record = user.get("account", account_id)
    return {name: record.get(name) for name in RISK}


@pytest.mark.parametrize("crm", CRMS)
def test_point6_a_due_date_centuries_ahead_holds_the_account(crm: str, tmp_path: Path) -> None:
    with start_sandbox(crm) as sandbox:
        sync = SandboxSync(sandbox, write_config(sandbox, tmp_path))
        user = crm_user(sandbox)
        with sync.store() as store:
            sync.run(store)
            invoice = user.invoices()[0]
            account_id = invoice["account_id"]
            before = _risk(user, account_id)
            # 3999: within what Salesforce stores (to 4000-12-31), far beyond any due date.
            user.update("invoice", invoice["id"], {"due_date": "3999-12-31"})

            report = sync.run(store, full=True)

            [held] = report.quarantined
            assert (held["record_id"], held["rule"]) == (invoice["id"], "DUE_DATE_TOO_FAR")
            assert held["reason"].startswith(f"record {invoice['id']}: due_date (")
            assert "3999-12-31" in held["reason"] and "[validation] max_due_days" in held["reason"]
            assert [item["account_id"] for item in report.held] == [account_id]
            assert _risk(user, account_id) == before, "nothing written onto the held account"
            assert report.scored > 0 and classify_exit(report) == 1
