"""`crm-risk demo` on every sandbox CRM: the second sync writes nothing, and says so."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from adapters.fxiaoke.auth import forget_all
from connector.cli.main import main
from connector.registry import available_sandboxes


@pytest.mark.parametrize("crm", sorted(available_sandboxes()))
def test_the_demos_second_sync_writes_no_account_and_no_task(
    crm: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forget_all()  # Fxiaoke's process-wide token cache: no token of an earlier sandbox
    assert main(["demo", "--crm", crm, "--accounts", "30", "--keep", str(tmp_path)]) == 0
    out = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "Second sync: wrote 0 accounts and 0 tasks (created 0)" in out
    assert "nothing to write" in out
    # The first sync's sentence and its task table count the same tasks (digests included).
    said = re.search(r"created (\d+) tasks", out)
    table = re.search(r"Follow-up tasks created \((\d+)\)", out)
    assert said and table and said.group(1) == table.group(1), (said, table)
    # The plain console prints no markup literally.
    assert "Portfolio report: " in out and "[bold]" not in out and "[/]" not in out
    with sqlite3.connect(tmp_path / crm / "crm-risk-state.db") as db:
        first, second = (
            json.loads(row[0]) for row in db.execute("select report from runs order by started_at")
        )
    assert first["status"] == second["status"] == "succeeded"
    # The first sync opened every follow-up: nothing waits behind a task cap for the second.
    assert first["tasks"]["create"] > 10 and first["tasks"].get("deferred", 0) == 0
    assert second["writes"].get("account", {}).get("written", 0) == 0
    # No task action carried out at all: created, completed, updated, escalated or a digest.
    done = {k: v for k, v in second["tasks"].items() if f"planned_{k}" in second["tasks"]}
    assert sum(done.values()) == 0, done
    assert not any(k.startswith("planned_") and v for k, v in second["tasks"].items())
    with sqlite3.connect(tmp_path / crm / "crm-risk-state.db") as db:
        [(audited,)] = db.execute(
            "select count(*) from audit where run_id = ? and action not in (?, ?)",
            (second["run_id"], "held", "conflict"),
        ).fetchall()
    assert audited == 0  # no update, no task action in the audit trail (held changes are no write)
