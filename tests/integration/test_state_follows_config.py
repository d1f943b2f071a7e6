"""The CRM is the record of what we wrote: the store follows the config file, and a lost store duplicates nothing.

Both sandboxes, driven through the `crm-risk` command as an admin would; CRM state is read back
through the CRM's own API (tests/crm_api.py).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connector.cli.main import main
from tests.crm_user import crm_user, open_marked_tasks
from tests.integration.conftest import AS_OF, Org


def open_task_keys(org: Org) -> Counter[str]:
    return Counter(task["key"] for task in open_marked_tasks(crm_user(org.sandbox)))


def test_sync_from_another_working_directory_uses_the_same_store_and_adds_no_task(
    org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = org.sync(capsys)
    assert org.store.exists()
    assert first["tasks"].get("create", 0) > 0
    before = open_task_keys(org)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    second = org.sync(capsys)
    assert list(elsewhere.iterdir()) == []
    assert second["tasks"].get("create", 0) == 0
    assert second["writes"].get("account", {}).get("conflicts", 0) == 0
    after = open_task_keys(org)
    assert after == before
    assert max(after.values()) == 1
    capsys.readouterr()
    assert main(["status", "-c", str(org.config), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [run["run_id"] for run in runs] == [second["run_id"], first["run_id"]]
    assert list(elsewhere.iterdir()) == []


def _replace_secret(org: Org, key: str, value: str) -> None:
    secrets = org.folder / "crm-risk.secrets.toml"
    lines = [
        f"{key} = {json.dumps(value)}" if line.startswith(f"{key} =") else line
        for line in secrets.read_text().splitlines()
    ]
    secrets.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("secret", ["client_secret", "refresh_token"])
def test_check_proves_the_credentials_even_when_the_store_holds_a_valid_token(
    org: Org, capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    if secret == "refresh_token" and org.crm == "salesforce":
        # The sandbox's connection logs in with client credentials; use the refresh-token flow.
        text = org.config.read_text().replace(
            'auth = "client_credentials"', 'auth = "refresh_token"'
        )
        org.config.write_text(text)
        secrets = org.folder / "crm-risk.secrets.toml"
        token = org.sandbox.emulator.demo_refresh_token
        secrets.write_text(secrets.read_text() + f"refresh_token = {json.dumps(token)}\n")
    org.sync(capsys)
    assert main(["check", "-c", str(org.config)]) == 0
    _replace_secret(org, secret, "wrong-" + secret)
    capsys.readouterr()
    assert main(["check", "-c", str(org.config)]) == 77
    assert main(["sync", "-c", str(org.config), "--as-of", AS_OF]) == 77
    err = capsys.readouterr().err
    assert "wrong-" not in err
    # The state file holds no token or secret a reader of the store could use.
    raw = org.store.read_bytes() + b"".join(
        path.read_bytes() for path in org.store.parent.glob("*-wal")
    )
    issued = list(org.sandbox.emulator._tokens)  # every access token the sandbox handed out
    assert issued
    for value in [*org.sandbox.env_vars().values(), *issued]:
        assert value.encode() not in raw


def _key(task: dict[str, Any]) -> str | None:
    from connector.protocol import find_task_marker

    return find_task_marker(task.get("description"))


def _backup(source: Path, target: Path) -> None:
    import sqlite3

    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _drop_store(org: Org) -> None:
    for path in org.store.parent.glob(org.store.name + "*"):
        path.unlink()


def open_causes(org: Org) -> Counter[tuple[str, str]]:
    """Open marked tasks per (account, rule): more than one would be a duplicate follow-up."""
    keys = open_task_keys(org)
    return Counter((key.rsplit(":", 3)[1], key.rsplit(":", 3)[2]) for key in keys.elements())


def test_a_deleted_store_adopts_the_crms_tasks_and_fields_and_duplicates_nothing(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    first = org.sync(capsys)
    created = first["tasks"].get("create", 0)
    assert created > 0
    before = open_task_keys(org)
    _drop_store(org)
    again = org.sync(capsys)
    assert (
        again["adopted_tasks"] == created + first["tasks"].get("digest", 0) == sum(before.values())
    )
    assert again["adopted_fields"] > 0
    assert again["writes"].get("account", {}).get("conflicts", 0) == 0
    causes = open_causes(org)
    assert max(causes.values()) == 1, "an (account, rule) has two open tasks"
    # Nothing open before was created again: every new key is a cause that had no open task.
    reopened = {key for key in open_task_keys(org) if key not in before}
    assert not {tuple(key.rsplit(":", 3)[1:3]) for key in reopened} & {
        tuple(key.rsplit(":", 3)[1:3]) for key in before
    }
    # And the run after that is quiet: nothing adopted twice, nothing created or written.
    third = org.sync(capsys)
    assert (third["adopted_tasks"], third["adopted_fields"]) == (0, 0)
    assert third["tasks"].get("create", 0) == 0
    assert third["writes"].get("account", {}).get("written", 0) == 0


def test_a_lost_store_takes_the_limits_it_wrote_for_its_own_and_changes_nothing(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    """The limits a review wrote (a capped cut, a first limit) are ours, not a person's: after a
    store loss utilisation is still measured against the limit a person set, so the run that
    adopts opens no over-limit task at our own cut and writes nothing a kept store would not."""
    first = org.sync(capsys)
    # The seed has accounts whose limit the first review cut and accounts given a first limit.
    assert first["writes"]["account"]["written"] > 0
    user = crm_user(org.sandbox)
    values = user.account_values()
    before = open_task_keys(org)
    _drop_store(org)
    again = org.sync(capsys)
    assert again["adopted_fields"] > 0
    assert again["tasks"].get("create", 0) == 0, [
        key for key in open_task_keys(org) if key not in before
    ]
    assert again["writes"]["account"].get("written", 0) == 0
    assert user.account_values() == values
    assert open_task_keys(org) == before


def test_an_old_copy_of_the_store_adopts_what_later_runs_wrote(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)
    backup = org.folder / "backup.db"
    _backup(org.store, backup)
    time.sleep(1.1)  # the CRMs keep our reviewed-at stamp to the second
    later = org.sync(capsys, "--as-of", "2027-01-20")  # aging moves: new tasks, new values
    assert later["tasks"].get("create", 0) > 0
    assert later["writes"]["account"]["written"] > 0
    before = open_task_keys(org)
    _drop_store(org)
    _backup(backup, org.store)
    restored = org.sync(capsys, "--as-of", "2027-01-20")
    assert restored["adopted_tasks"] >= later["tasks"]["create"]
    assert restored["adopted_fields"] > 0
    assert restored["writes"]["account"].get("conflicts", 0) == 0
    assert max(open_task_keys(org).values()) == 1
    assert max(open_causes(org).values()) == 1, "an (account, rule) has two open tasks"
    every = Counter(_key(task) for task in crm_user(org.sandbox).tasks())
    assert set(before) <= set(every), "a task open before the restore vanished"
    assert max(count for key, count in every.items() if key) == 1, "a key exists twice"


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def _same(left: Any, right: Any) -> bool:
    if left == right:
        return True
    try:
        return float(left) == float(right)
    except (TypeError, ValueError):
        return False


def test_revert_restores_the_crm_to_its_state_before_the_run_and_leaves_a_later_edit(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)
    user = crm_user(org.sandbox)
    before = user.account_values()
    time.sleep(1.1)
    run = org.sync(capsys, "--as-of", "2027-01-20")
    assert run["writes"]["account"]["written"] > 0 and run["tasks"].get("create", 0) > 0
    code, audit = _cli_json(capsys, "audit", "-c", str(org.config), "--json", "--limit", "100000")
    updates = [row for row in audit if row["run_id"] == run["run_id"] and row["action"] == "update"]
    created = [
        row["new_value"]["task_id"]
        for row in audit
        if row["run_id"] == run["run_id"] and row["action"] == "task_create"
    ]
    # A person edits one value the run wrote; revert must leave that edit alone.
    edited = next(row for row in updates if row["field"] == "recommended_credit_limit")
    user.update("account", edited["record_id"], {"recommended_limit": 123456})
    code, dry = _cli_json(
        capsys, "revert", run["run_id"], "-c", str(org.config), "--dry-run", "--json"
    )
    assert code == 0 and dry["dry_run"]
    assert user.account_values()[edited["record_id"]]["recommended_limit"] == 123456
    code, done = _cli_json(capsys, "revert", run["run_id"], "-c", str(org.config), "--json")
    assert code == 0, done
    assert len(done["restored"]) == len(updates) - 1
    assert [(row["account_id"], row["field"]) for row in done["kept_changed_since"]] == [
        (edited["record_id"], "recommended_credit_limit")
    ]
    after = user.account_values()
    for account, values in before.items():
        for meaning, value in values.items():
            if (account, meaning) == (edited["record_id"], "recommended_limit"):
                assert _same(after[account][meaning], 123456)
            else:
                assert _same(after[account][meaning], value), (account, meaning, value)
    closed = {task["id"]: task["status"] for task in user.tasks()}
    assert created and all(closed[task_id] == "Completed" for task_id in created)
    # Audited like any write, and kept in the run history.
    code, audit = _cli_json(capsys, "audit", "-c", str(org.config), "--json", "--limit", "100000")
    reverts = [row for row in audit if row["run_id"] == done["run_id"]]
    assert {row["action"] for row in reverts} == {
        "revert",
        "revert_skipped",
        "task_revert_complete",
    }
    code, status = _cli_json(capsys, "status", "-c", str(org.config), "--json")
    assert status["runs"][0]["run_id"] == done["run_id"]
