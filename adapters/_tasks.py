"""The create-once task flow every adapter shares: look up, create without blind retries, settle lost answers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar

from connector.models import TaskAction, TaskState, WriteResult

_T = TypeVar("_T")


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """Consecutive slices of at most `size` items (a CRM's batch or IN-list limit)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def task_rejected(task: TaskAction, code: str, message: str) -> WriteResult:
    """A task action the CRM refused (or that cannot be sent), for the task's own dedupe key."""
    return WriteResult(
        crm_id=task.crm_task_id,
        status="rejected",
        error_code=code,
        message=message,
        key=task.dedupe_key,
    )


class TaskCreateSteps(Protocol):
    """The two CRM-specific steps of creating tasks at most once per dedupe key."""

    def find_created(self, tasks: Sequence[TaskAction]) -> dict[str, TaskState]:
        """Tasks of ours already in the CRM for these actions, by dedupe key.

        The actions carry the account each task belongs to, so a lookup can be narrowed to
        those accounts without reading anything into the key.
        """
        ...

    def send_creates(self, batch: Sequence[TaskAction]) -> list[WriteResult]:
        """One create call for the batch, never retried blindly (it may have run).

        Returns:
            One result per action, in order: "ok" with the new id, "rejected", or "unknown"
            where the answer was lost (the flow then looks the task up).
        """
        ...


def create_once(
    tasks: Sequence[TaskAction], steps: TaskCreateSteps, *, batch_size: int
) -> list[WriteResult]:
    """Create the tasks that do not exist yet; never a second task for one dedupe key.

    Keys the engine has never sent (first_attempt) cannot exist yet and are not looked up.
    Others are looked up first and reported as found (existed=True). After a lost answer the
    lookup runs again: a task found then counts as created, otherwise the result stays
    "unknown" and the engine retries it in a later run.

    Args:
        tasks: the create actions (a key may repeat; it is created once).
        steps: the adapter's find and create calls.
        batch_size: the most creates one call may carry.

    Returns:
        One result per action, in order, each carrying its dedupe key.
    """
    unique = list({task.dedupe_key: task for task in tasks}.values())
    unsure = [task for task in unique if not task.first_attempt]
    found = steps.find_created(unsure) if unsure else {}
    outcome = {
        key: WriteResult(crm_id=state.crm_task_id, status="ok", key=key, existed=True)
        for key, state in found.items()
    }
    pending = [task for task in unique if task.dedupe_key not in outcome]
    for batch in chunks(pending, batch_size):
        results = steps.send_creates(batch)
        lost = [
            task for task, result in zip(batch, results, strict=True) if result.status == "unknown"
        ]
        landed = steps.find_created(lost) if lost else {}
        for task, result in zip(batch, results, strict=True):
            state = landed.get(task.dedupe_key) if result.status == "unknown" else None
            outcome[task.dedupe_key] = (
                WriteResult(crm_id=state.crm_task_id, status="ok", key=task.dedupe_key)
                if state is not None
                else result.model_copy(update={"key": task.dedupe_key})
            )
    return [outcome[task.dedupe_key].model_copy() for task in tasks]
