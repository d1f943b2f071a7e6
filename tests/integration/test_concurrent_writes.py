"""Issue 18: write batches sent concurrently leave the CRM, the audit log and the run report as a sequential run does."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from connector.engine import writer as writer_module
from tests.chaos import _crm_state
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import CRMS, start_sandbox

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


def _audit_line(row: dict[str, Any]) -> dict[str, Any]:
    line = {k: v for k, v in row.items() if k not in VOLATILE_AUDIT}
    if line["field"] == "risk_reviewed_at":  # the clock at the write: compared by presence
        line["old_value"] = line["old_value"] is not None
        line["new_value"] = line["new_value"] is not None
    return line


def _two_syncs(crm: str, folder: Path, concurrency: int) -> dict[str, Any]:
    folder.mkdir()
    with start_sandbox(crm) as sandbox:
        options = {"max_concurrency": concurrency, "write_batch": BATCH}
        sync = SandboxSync(sandbox, write_config(sandbox, folder, options=options))
        with sync.store() as store:
            reports = [sync.run(store).to_dict() for _ in range(2)]
            audit = [_audit_line(row) for row in store.audit(limit=100_000)]
        return {
            "accounts": _crm_state.accounts(sync),
            "tasks": _crm_state.tasks(sync)[0],
            "audit": audit,
            "reports": [_scrub(report) for report in reports],
        }


@pytest.mark.parametrize("crm", CRMS)
def test_concurrency_4_ends_in_the_state_audit_and_report_of_a_sequential_run(
    crm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flight = InFlight()
    monkeypatch.setattr(
        writer_module.Writer, "_send_write", flight.wrap(writer_module.Writer._send_write)
    )
    sequential = _two_syncs(crm, tmp_path / "one", 1)
    assert flight.most == 1
    concurrent = _two_syncs(crm, tmp_path / "four", 4)
    assert flight.most > 1, "no two write batches were ever in flight together"
    assert flight.most <= 4

    assert sequential["accounts"] and any(
        value is not None for values in sequential["accounts"].values() for value in values.values()
    )
    assert concurrent["accounts"] == sequential["accounts"]
    assert concurrent["tasks"] == sequential["tasks"]
    assert len(sequential["audit"]) >= 2 * BATCH
    assert concurrent["audit"] == sequential["audit"]
    assert concurrent["reports"] == sequential["reports"]
