"""Issue 18: write and task batches sent concurrently leave the CRM, the audit log and the run report as a sequential run does."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from connector.engine import pull as pull_module
from connector.engine import writer as writer_module
from connector.engine.prefetch import Prefetch
from connector.protocol import find_task_marker
from tests.chaos import _crm_state
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import CHAOS_CRMS, start_sandbox

# Small batches, so the chaos suite's 24 accounts make several batches to send at once.
BATCH = 5
# Ids, clocks and durations differ between any two runs by design.
VOLATILE_AUDIT = {"id", "run_id", "at"}
VOLATILE_REPORT = {"run_id", "started_at", "ended_at", "finished_at", "duration_seconds", "seconds"}


class InFlight:
    """Counts write batches in the CRM call at once; each call waits a little so overlap can show."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.lock = threading.Lock()

    def wrap(self, send: Any) -> Any:
        def counted(writer: Any, prepared: Any) -> Any:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                time.sleep(0.05)
                return send(writer, prepared)
            finally:
                with self.lock:
                    self.now -= 1

        return counted


class ReadAhead(Prefetch):
    """Counts the record streams being read ahead at once (accounts and invoices together)."""

    live = 0
    most = 0
    lock = threading.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with ReadAhead.lock:
            ReadAhead.live += 1
            ReadAhead.most = max(ReadAhead.most, ReadAhead.live)
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        super().close()
        with ReadAhead.lock:
            ReadAhead.live -= 1


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        if "watermarks" in value:
            # The CRM stamps our writes with its clock: the marks are compared by presence.
            value = {**value, "watermarks": _present(value["watermarks"])}
        return {k: _scrub(v) for k, v in value.items() if k not in VOLATILE_REPORT}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _present(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items()}
    return value is not None


def _audit_line(row: dict[str, Any], task_keys: dict[str, str | None]) -> dict[str, Any]:
    line = {k: v for k, v in row.items() if k not in VOLATILE_AUDIT}
    if line["field"] == "risk_reviewed_at":  # the clock at the write: compared by presence
        line["old_value"] = line["old_value"] is not None
        line["new_value"] = line["new_value"] is not None
    new = line.get("new_value")
    if line["object"] == "task" and isinstance(new, dict) and new.get("task_id"):
        # The CRM numbers tasks in the order creates arrive, which concurrent batches change:
        # the audit's task id is compared through the task it names (its dedupe marker).
        line["new_value"] = {**new, "task_id": task_keys.get(str(new["task_id"]), "not in CRM")}
    return line


def _task_keys(sync: SandboxSync) -> dict[str, str | None]:
    """CRM task id -> the dedupe key its description carries."""
    return {
        str(task.get("Id") or task.get("id")): find_task_marker(task.get("Description"))
        for task in sync.sandbox.emulator.tasks()
    }


def _two_syncs(crm: str, folder: Path, concurrency: int) -> dict[str, Any]:
    folder.mkdir()
    with start_sandbox(crm) as sandbox:
        options = {"max_concurrency": concurrency, "write_batch": BATCH}
        sync = SandboxSync(sandbox, write_config(sandbox, folder, options=options))
        with sync.store() as store:
            reports = [sync.run(store).to_dict() for _ in range(2)]
            keys = _task_keys(sync)
            audit = [_audit_line(row, keys) for row in store.audit(limit=100_000)]
        return {
            "accounts": _crm_state.accounts(sync),
            "tasks": _crm_state.tasks(sync)[0],
            "audit": audit,
            "reports": [_scrub(report) for report in reports],
        }


@pytest.mark.parametrize("crm", CHAOS_CRMS)
def test_concurrency_4_ends_in_the_state_audit_and_report_of_a_sequential_run(
    crm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flight, task_flight = InFlight(), InFlight()
    monkeypatch.setattr(
        writer_module.Writer, "_send_write", flight.wrap(writer_module.Writer._send_write)
    )
    for send in ("_send_creates", "_send_updates"):
        monkeypatch.setattr(
            writer_module.Writer, send, task_flight.wrap(getattr(writer_module.Writer, send))
        )
    monkeypatch.setattr(pull_module, "Prefetch", ReadAhead)
    monkeypatch.setattr(ReadAhead, "most", 0)
    sequential = _two_syncs(crm, tmp_path / "one", 1)
    assert flight.most == 1
    assert task_flight.most == 1
    assert ReadAhead.most == 0, "a sequential run read ahead"
    concurrent = _two_syncs(crm, tmp_path / "four", 4)
    assert flight.most > 1, "no two write batches were ever in flight together"
    assert flight.most <= 4
    assert task_flight.most > 1, "no two task batches were ever in flight together"
    assert task_flight.most <= 4
    assert ReadAhead.most == 2, "accounts and invoices were not read ahead together"

    assert sequential["accounts"] and any(
        value is not None for values in sequential["accounts"].values() for value in values.values()
    )
    assert concurrent["accounts"] == sequential["accounts"]
    assert concurrent["tasks"] == sequential["tasks"]
    assert len(sequential["audit"]) >= 2 * BATCH
    assert concurrent["audit"] == sequential["audit"]
    assert concurrent["reports"] == sequential["reports"]
