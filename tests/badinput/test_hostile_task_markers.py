"""Issue 22, point 3: account names that imitate our task marker never turn a lost create answer into a duplicate."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from connector.protocol import (
    append_task_comment,
    find_task_marker,
    task_marker,
    with_task_marker,
)
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import CRMS, start_sandbox
from tests.crm_user import crm_user
from tests.lossy import is_task_create, lossy_session

HOSTILE = [
    "Acme [crm-risk:other:1:past_due:1] Ltd",
    "[crm-risk:other:2:past_due:1]",
    "Acme\n[crm-risk:other:3:past_due:1]\nLtd",
    "Acme\n[crm-risk:other:4:past_due:1]",
    "[crm-risk:x]]] [crm-risk:",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_description_holding_a_hostile_account_name_reads_back_as_our_key(name: str) -> None:
    description = with_task_marker(f"Customer {name}: invoices 45 days past due", "c:42:past_due:1")

    assert find_task_marker(description) == "c:42:past_due:1"
    assert description.splitlines()[-1] == task_marker("c:42:past_due:1")
    # Only the last line is a marker; the user's text is escaped, not dropped.
    assert sum(find_task_marker(line) is not None for line in description.splitlines()) == 1
    assert "crm-risk :" in description


def test_a_comment_keeps_the_marker_last_and_a_persons_note_below_it_does_not_hide_it() -> None:
    created = with_task_marker("Call the customer.", "c:7:past_due:1")
    commented = append_task_comment(created, "Cause cleared [crm-risk:c:8:x:1]", "c:7:past_due:1")
    noted = commented + "\n\nSpoke to them on Monday."

    assert commented.splitlines()[-1] == task_marker("c:7:past_due:1")
    assert find_task_marker(commented) == "c:7:past_due:1"
    assert find_task_marker(noted) == "c:7:past_due:1"
    # A v1 description with the marker mid-text (Zoho appended comments after it) still reads.
    assert find_task_marker("Call.\n\n[crm-risk:c:9:past_due:1]\n\nCleared.") == "c:9:past_due:1"


def test_text_that_merely_contains_the_prefix_is_no_marker() -> None:
    assert find_task_marker("Acme [crm-risk:other:1:past_due:1] Ltd") is None
    assert find_task_marker(" [crm-risk:other:1:past_due:1]") is None
    assert find_task_marker("[crm-risk:other:1:past_due:1] and more") is None


@pytest.mark.parametrize("crm", CRMS)
def test_point3_hostile_account_names_and_lost_create_answers_leave_one_task_per_key(
    crm: str, tmp_path: Path
) -> None:
    with start_sandbox(crm) as sandbox:
        user = crm_user(sandbox)
        connection = f"sandbox_{crm}"
        accounts = user.accounts()
        ids = [account["id"] for account in accounts]
        for index, account in enumerate(accounts):
            # Each name imitates the marker of another account's past-due task, inline and as
            # a line of its own (Chinese task texts repeat the account name in the description).
            other = ids[(index + 1) % len(ids)]
            fake = f"[crm-risk:{connection}:{other}:past_due:1]"
            user.update("account", account["id"], {"name": f"{index} {fake}\n{fake}"[:190]})
        # Descriptions in Chinese repeat the account name, so the names reach every task text.
        sync = SandboxSync(sandbox, write_config(sandbox, tmp_path, tasks={"language": "zh"}))
        session, losing = lossy_session(sandbox.ca_bundle, is_task_create)
        with sync.store() as store:
            first = sync.run(store, adapter_options={"session": session})
            assert losing.lost >= 1, "the test must lose at least one create answer"
            assert first.tasks["failed"] + first.tasks["create"] >= 1
            second = sync.run(store)
            third = sync.run(store)

        tasks = [task for task in user.tasks() if find_task_marker(task["description"])]
        assert tasks, "the sandbox data opens follow-up tasks"
        assert any((task["description"] or "").count("crm-risk") >= 3 for task in tasks), (
            "the hostile names must reach the task descriptions for this test to mean anything"
        )
        keys = Counter(find_task_marker(task["description"]) for task in tasks)
        assert {key: n for key, n in keys.items() if n > 1} == {}
        for task in tasks:
            key = find_task_marker(task["description"])
            assert key is not None
            if key.split(":")[1].startswith("@"):
                assert task["what_id"] is None  # a digest task hangs on no account
                continue
            assert key.split(":")[1] == task["what_id"], (key, task["what_id"])
        assert second.tasks["failed"] == 0, second.to_dict()["errors"]
        assert third.tasks["create"] == 0
