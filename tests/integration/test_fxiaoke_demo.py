"""`crm-risk demo --crm fxiaoke`: ratings, Chinese reasons and follow-ups, then a second sync that writes nothing."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from adapters.fxiaoke.auth import forget_all
from connector.cli.main import main


def test_the_fxiaoke_demo_scores_in_chinese_and_its_second_sync_writes_nothing_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forget_all()
    assert main(["demo", "--crm", "fxiaoke", "--accounts", "30", "--keep", str(tmp_path)]) == 0
    out = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "First sync: read 30 accounts and" in out and "scored 30, wrote 30 accounts" in out
    assert "exposure in CNY" in out
    assert re.search(r"[逾期评级额度敞口]", out)  # Chinese reasons and task texts
    assert "Second sync: wrote 0 accounts and 0 tasks (created 0)" in out
    home = tmp_path / "fxiaoke"
    config = (home / "crm-risk.toml").read_text()
    assert 'language = "zh"' in config and 'mapping = "fxiaoke.payment-plan"' in config
    with sqlite3.connect(home / "crm-risk-state.db") as db:
        first, second = (
            json.loads(row[0]) for row in db.execute("select report from runs order by started_at")
        )
    assert first["status"] == second["status"] == "succeeded"
    assert first["errors"] == second["errors"] == []
    # Every follow-up opens in the first sync (the demo lifts the task caps), with the credit
    # manager's digest of limit changes held for approval.
    assert first["tasks"]["create"] > 20 and first["tasks"]["digest"] >= 1
    assert first["tasks"].get("deferred", 0) == 0
    # The second sync writes no field and carries out no task action.
    assert second["writes"].get("account", {}).get("written", 0) == 0
    assert not {k: v for k, v in second["tasks"].items() if f"planned_{k}" in second["tasks"] and v}
