"""Issue 18: the run's API budget stops as many calls in with eight in flight as with one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.errors import QuotaExhaustedError
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import start_sandbox


def _spent_until_stopped(crm: str, folder: Path, concurrency: int) -> int:
    """API calls (Salesforce) or credits (Zoho) the CRM counted when the run's budget stopped it."""
    folder.mkdir()
    options: dict[str, Any] = {"max_concurrency": concurrency, "write_batch": 2}
    sandbox_options: dict[str, Any] = {"processing_delay_s": 0.01}
    settings: dict[str, Any] = {}
    if crm == "salesforce":
        # 40 calls a day, half of what is left at the first answer for this run.
        sandbox_options["daily_api_limit"] = 40
        settings["api_budget_share"] = 0.5
    else:
        options["credit_budget"] = 15
    with start_sandbox(crm, **sandbox_options) as sandbox:
        sync = SandboxSync(
            sandbox, write_config(sandbox, folder, options=options, settings=settings)
        )
        with sync.store() as store, pytest.raises(QuotaExhaustedError):
            sync.run(store)
        emulator = sandbox.emulator
        return int(emulator.api_used if crm == "salesforce" else emulator.credits_used)


@pytest.mark.parametrize("crm", ["salesforce", "zoho"])
def test_the_run_budget_stops_as_many_calls_in_as_a_sequential_run_with_eight_in_flight(
    crm: str, tmp_path: Path
) -> None:
    sequential = _spent_until_stopped(crm, tmp_path / "one", 1)
    concurrent = _spent_until_stopped(crm, tmp_path / "eight", 8)
    assert concurrent <= sequential
    if crm == "zoho":
        assert sequential <= 15
        assert concurrent <= 15
    else:
        # Stopped once remaining < half of the 39 left at the first answer: at most 20 used.
        assert concurrent <= 1 + 20
