"""Review point 4 (issue 22) on both sandboxes: an account name holding a lone surrogate, sent by a
user through the CRM's REST API ("\\ud800" in JSON), quarantines that account only; the run
goes on, nothing is written onto it, and fixing the name releases it."""

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
def test_point4_a_lone_surrogate_in_a_name_holds_that_account_only(
    crm: str, tmp_path: Path
) -> None:
    with start_sandbox(crm) as sandbox:
        sync = SandboxSync(sandbox, write_config(sandbox, tmp_path))
        user = crm_user(sandbox)
        with sync.store() as store:
            sync.run(store)
            account = user.accounts()[0]
            before = _risk(user, account["id"])
            user.update("account", account["id"], {"name": "Broken \ud800 name"})
            assert user.get("account", account["id"])["name"] == "Broken \ud800 name"

            report = sync.run(store, full=True)

            [held] = report.quarantined
            assert (held["record_id"], held["rule"]) == (account["id"], "INVALID_TEXT")
            assert "\\ud800 at character 8" in held["reason"]
            assert report.scored > 0, "every other account is scored"
            assert _risk(user, account["id"]) == before, "nothing written onto the held account"
            assert classify_exit(report) == 1
            assert classify_exit(sync.run(store)) == 0, "a known hold"

            user.update("account", account["id"], {"name": "Mended name"})
            released = sync.run(store)
            assert released.held == [] and store.quarantined(sync.connection.name) == []
