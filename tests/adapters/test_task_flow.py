"""The create-once task flow every adapter shares (adapters/_tasks.py), against a scripted CRM."""

from __future__ import annotations

from collections.abc import Sequence

from adapters._tasks import chunks, create_once
from connector.models import TaskAction, TaskState, WriteResult


def action(key: str, account: str = "A1", *, first: bool = False) -> TaskAction:
    return TaskAction(
        action="create", account_id=account, rule="past_due", dedupe_key=key, first_attempt=first
    )


class ScriptedCrm:
    """Tasks by key; `lose` answers are lost after the create landed, `drop` ones never land."""

    def __init__(self, existing: Sequence[str] = ()) -> None:
        self.tasks = {key: f"T-{key}" for key in existing}
        self.lookups: list[dict[str, str]] = []
        self.batches: list[list[str]] = []
        self.lose: set[str] = set()
        self.drop: set[str] = set()

    def find_created(self, tasks: Sequence[TaskAction]) -> dict[str, TaskState]:
        self.lookups.append({task.dedupe_key: task.account_id for task in tasks})
        return {
            task.dedupe_key: TaskState(
                crm_task_id=self.tasks[task.dedupe_key], dedupe_key=task.dedupe_key, is_closed=False
            )
            for task in tasks
            if task.dedupe_key in self.tasks
        }

    def send_creates(self, batch: Sequence[TaskAction]) -> list[WriteResult]:
        self.batches.append([task.dedupe_key for task in batch])
        results = []
        for task in batch:
            if task.dedupe_key not in self.drop:
                self.tasks[task.dedupe_key] = f"T-{task.dedupe_key}"
            if task.dedupe_key in self.lose | self.drop:
                results.append(WriteResult(crm_id=None, status="unknown", error_code="LOST"))
            else:
                results.append(WriteResult(crm_id=f"T-{task.dedupe_key}", status="ok"))
        return results


def test_an_existing_task_is_reported_found_not_created_again() -> None:
    crm = ScriptedCrm(existing=["k1"])
    [result] = create_once([action("k1")], crm, batch_size=10)
    assert (result.status, result.crm_id, result.existed, result.key) == ("ok", "T-k1", True, "k1")
    assert crm.batches == []


def test_keys_never_sent_are_not_looked_up() -> None:
    crm = ScriptedCrm()
    results = create_once([action("k1", first=True), action("k2", first=True)], crm, batch_size=10)
    assert [r.status for r in results] == ["ok", "ok"]
    assert crm.lookups == []


def test_the_lookup_names_each_tasks_account() -> None:
    crm = ScriptedCrm()
    create_once([action("k1", "A1"), action("k2", "A2")], crm, batch_size=10)
    assert crm.lookups[0] == {"k1": "A1", "k2": "A2"}


def test_a_repeated_key_is_created_once_and_both_actions_get_its_result() -> None:
    crm = ScriptedCrm()
    results = create_once([action("k1"), action("k1")], crm, batch_size=10)
    assert crm.batches == [["k1"]]
    assert [r.crm_id for r in results] == ["T-k1", "T-k1"]


def test_a_lost_answer_is_settled_by_looking_again() -> None:
    crm = ScriptedCrm()
    crm.lose = {"k1"}
    crm.drop = {"k2"}
    results = create_once([action("k1"), action("k2"), action("k3")], crm, batch_size=10)
    assert [(r.status, r.crm_id) for r in results] == [
        ("ok", "T-k1"),
        ("unknown", None),
        ("ok", "T-k3"),
    ]
    assert not results[0].existed
    assert results[1].key == "k2"
    assert crm.lookups[-1] == {"k1": "A1", "k2": "A1"}


def test_creates_go_in_batches_of_the_crms_size() -> None:
    crm = ScriptedCrm()
    create_once([action(f"k{n}", first=True) for n in range(5)], crm, batch_size=2)
    assert [len(batch) for batch in crm.batches] == [2, 2, 1]
    assert [list(c) for c in chunks([1, 2, 3], 2)] == [[1, 2], [3]]
