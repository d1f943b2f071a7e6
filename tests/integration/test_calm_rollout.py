"""A calm first rollout on both sandboxes: shadow, fields, tasks; caps with digests; approvals as one digest.

CRM state is read through the CRM's own API (tests/crm_user.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.cli.main import main
from connector.registry import sandbox_starter
from tests.crm_user import crm_user, open_marked_tasks
from tests.integration.conftest import Org, write_org_config

CAP = 10  # the documented default max_new_per_owner


@pytest.fixture(params=["salesforce", "zoho"])
def calm(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Org]:
    """The default seed with the documented defaults (task caps and approval digest on)."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with sandbox_starter(request.param)(accounts=60, seed=7) as sandbox:
        folder = tmp_path / "admin"
        config = write_org_config(sandbox, folder, tasks="")
        monkeypatch.chdir(folder)
        yield Org(request.param, sandbox, folder, config)


def _stage(org: Org, stage: str) -> None:
    # The connection's table is the last one in the file: its keys go at the end.
    lines = [line for line in org.config.read_text().splitlines() if not line.startswith("rollout")]
    org.config.write_text("\n".join([*lines, f'rollout = "{stage}"']) + "\n")


def _digests(tasks: list[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    return [task for task in tasks if task["key"].rsplit(":", 3)[2] == rule]


def test_shadow_then_fields_then_tasks(calm: Org, capsys: pytest.CaptureFixture[str]) -> None:
    user = crm_user(calm.sandbox)
    _stage(calm, "shadow")
    shadow = calm.sync(capsys)
    values = user.account_values()
    assert all(v["risk_band"] in (None, "-None-") for v in values.values()), "shadow writes nothing"
    assert open_marked_tasks(user) == []
    assert shadow["writes"]["account"]["planned"] == 60
    assert shadow["writes"]["account"].get("written", 0) == 0
    assert shadow["tasks"].get("planned_create", 0) > 0 and shadow["tasks"].get("create", 0) == 0
    capsys.readouterr()
    assert main(["portfolio", "-c", str(calm.config), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["accounts"]) == 60

    _stage(calm, "fields")
    fields = calm.sync(capsys)
    assert fields["writes"]["account"]["written"] == 60
    assert all(v["risk_band"] in tuple("ABCDE") for v in user.account_values().values())
    assert open_marked_tasks(user) == [], "the fields stage opens no task"

    _stage(calm, "tasks")
    tasks = calm.sync(capsys)
    assert tasks["tasks"]["create"] > 0
    assert tasks["writes"]["account"].get("written", 0) == 0, "fields were written already"
    assert open_marked_tasks(user)


def test_first_sync_caps_new_tasks_per_owner_and_sends_approvals_as_one_digest(
    calm: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    user = crm_user(calm.sandbox)
    first = calm.sync(capsys)
    held = first["writes"]["account"]["held_for_approval"]
    assert 0 < held <= 0.15 * first["scored"]
    tasks = open_marked_tasks(user)
    per_owner = Counter(
        task["owner_id"] for task in tasks if not task["key"].rsplit(":", 3)[1].startswith("@")
    )
    assert max(per_owner.values()) <= CAP
    owner_digests = _digests(tasks, "task_digest")
    assert len({task["owner_id"] for task in owner_digests}) == len(owner_digests)
    # No per-account approval task: one digest lists every held change, with its currency.
    assert not _digests(tasks, "limit_approval")
    [approvals] = _digests(tasks, "limit_digest")
    listed = [line for line in approvals["description"].splitlines() if line.startswith("- ")]
    assert len(listed) == held and all(" -> " in line for line in listed)
    assert first["tasks"]["deferred"] == sum(
        len([line for line in d["description"].splitlines() if line.startswith("- ")])
        for d in owner_digests
    )

    # A person sets one held account's limit: the next run lists one approval less.
    code = main(["audit", "-c", str(calm.config), "--json", "--limit", "100000"])
    assert code == 0
    audit = json.loads(capsys.readouterr().out)
    account = next(row["record_id"] for row in audit if row["action"] == "approval_queued")
    user.update("account", account, {"credit_limit": 12345})
    second = calm.sync(capsys)
    tasks = open_marked_tasks(user)
    [approvals_now] = _digests(tasks, "limit_digest")
    assert approvals_now["id"] != approvals["id"]
    closed = {task["id"]: task for task in user.tasks()}
    assert closed[approvals["id"]]["status"] == "Completed"
    assert (
        len([line for line in approvals_now["description"].splitlines() if line.startswith("- ")])
        == held - 1
    )
    capsys.readouterr()
    main(["audit", "-c", str(calm.config), "--json", "--account", account])
    cleared = [
        row for row in json.loads(capsys.readouterr().out) if row["action"] == "approval_cleared"
    ]
    assert cleared and "by a person to 12,345.00" in cleared[0]["cause"]
    # The waiting follow-ups open on the next run, again within the cap per owner.
    assert 0 < second["tasks"]["create"] <= CAP * len(per_owner) + CAP


def test_a_2000_account_first_sync_stays_within_the_caps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with sandbox_starter("salesforce")(accounts=2000, seed=7) as sandbox:
        org = Org("salesforce", sandbox, tmp_path, write_org_config(sandbox, tmp_path, tasks=""))
        report = org.sync(capsys)
        user = crm_user(sandbox)
        tasks = open_marked_tasks(user)
    assert report["scored"] == 2000
    held = report["writes"]["account"]["held_for_approval"]
    assert held <= 0.15 * 2000
    per_owner: Counter[str | None] = Counter()
    digests: Counter[str | None] = Counter()
    for task in tasks:
        account, rule = task["key"].rsplit(":", 3)[1:3]
        if rule == "task_digest":
            digests[task["owner_id"]] += 1
        elif not account.startswith("@"):
            per_owner[task["owner_id"]] += 1
    assert max(per_owner.values()) <= CAP
    assert max(digests.values()) == 1
    assert report["tasks"]["create"] <= 100  # the per-run cap
    [approvals] = _digests(tasks, "limit_digest")
    assert len(
        [line for line in approvals["description"].splitlines() if line.startswith("- ")]
    ) == min(held, 200)
    assert not _digests(tasks, "limit_approval")


def test_a_downgrade_waiting_for_the_cap_shows_its_new_band_and_opens_its_task_later(
    calm: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    """A capped downgrade task waits, but the store, the portfolio and the CRM agree on the band."""
    text = calm.config.read_text().replace("[tasks]\n", "[tasks]\nmax_new_per_owner = 1\n", 1)
    calm.config.write_text(text)
    user = crm_user(calm.sandbox)
    calm.sync(capsys)
    later = "2027-03-01"  # four months on: invoices fall due and bands drop
    calm.sync(capsys, "--as-of", later)
    with sqlite3.connect(calm.folder / "state" / "crm-risk-state.db") as db:
        waiting = dict(db.execute("SELECT key, value FROM kv WHERE key LIKE 'downgrade-waiting/%'"))
    assert waiting, "the per-owner cap of 1 must leave some downgrade task waiting"

    capsys.readouterr()
    assert main(["portfolio", "-c", str(calm.config), "--json"]) == 0
    portfolio = {
        row["crm_id"]: row["band"] for row in json.loads(capsys.readouterr().out)["accounts"]
    }
    crm = {account: values["risk_band"] for account, values in user.account_values().items()}
    assert portfolio == crm, "a waiting task must not freeze the band the store reports"

    # With the documented cap the waiting downgrades open over the next runs, each against the
    # band it fell from, not against the band already recorded.
    calm.config.write_text(text.replace("max_new_per_owner = 1\n", ""))
    for _ in range(8):
        calm.sync(capsys, "--as-of", later)
        with sqlite3.connect(calm.folder / "state" / "crm-risk-state.db") as db:
            if not db.execute("SELECT 1 FROM kv WHERE key LIKE 'downgrade-waiting/%'").fetchall():
                break
    else:
        pytest.fail("waiting downgrade tasks never opened")
    opened = {
        task["what_id"]: task["subject"]
        for task in open_marked_tasks(user)
        if task["key"].rsplit(":", 3)[2] == "band_downgrade"
    }
    # (a downgrade may also end without a task of its own, e.g. when a stronger rule takes over)
    fell = {key.rsplit("/", 1)[1]: band for key, band in waiting.items()}
    opened_late = {account: fell[account] for account in fell if account in opened}
    assert opened_late, "no waiting downgrade task opened once the cap allowed it"
    for account, fell_from in opened_late.items():
        assert f"from {fell_from} to {crm[account]}" in opened[account]
