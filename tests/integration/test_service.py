"""`crm-risk run` as a real process against a sandbox CRM: runs on schedule, then stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRM = "zoho"
COMPLETED = {"succeeded", "succeeded_with_rejections", "failed", "cancelled"}


# -- helpers (also used by test_lease.py) ------------------------------------------------------------


def require_stack(kind: str = CRM) -> None:
    """Fail at once, naming what is missing, when the adapter or its sandbox is not installed."""
    from connector.registry import available_adapters, available_sandboxes

    assert kind in available_adapters(), f"{kind} adapter not registered (pip install -e .)"
    assert kind in available_sandboxes(), f"{kind} sandbox not registered (pip install -e .)"


def start_sandbox(kind: str = CRM, accounts: int = 20) -> Any:
    from connector.registry import sandbox_starter

    return sandbox_starter(kind)(accounts=accounts, seed=5)


class Cli:
    """Runs `python -m connector` against one config file, with the sandbox's secrets in the env."""

    def __init__(self, tmp_path: Path, sandbox: Any, *, lease_seconds: int = 5) -> None:
        self.tmp_path = tmp_path
        self.state = tmp_path / "state.db"
        self.config = tmp_path / "crm-risk.toml"
        self.config.write_text(
            f'[store]\nurl = "{self.state}"\nlease_seconds = {lease_seconds}\n\n'
            + sandbox.config_snippet()
        )
        self.connection = self._connection_name()
        self.env = {
            **os.environ,
            **sandbox.env_vars(),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        self._logs = 0

    def _connection_name(self) -> str:
        import tomllib

        sections = tomllib.loads(self.config.read_text())["connections"]
        return str(next(iter(sections)))

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "connector", "--log-format", "json", *args]

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args, "--config", str(self.config)),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start a long-running command; its output goes to a file (a full pipe would block it)."""
        self._logs += 1
        log = self.tmp_path / f"process-{self._logs}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.argv(*args, "--config", str(self.config)),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return process, log

    def status(self) -> dict[str, Any]:
        result = self.run("status", "--json", "--limit", "200")
        assert result.returncode == 0, result.stderr
        payload: dict[str, Any] = json.loads(result.stdout)
        return payload

    def store(self) -> Any:
        from connector.store import open_store

        return open_store(str(self.state))

    def lease(self) -> dict[str, Any] | None:
        if not self.state.exists():
            return None
        store = self.store()
        try:
            lease: dict[str, Any] | None = store.lease(self.connection)
            return lease
        finally:
            store.close()


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


def _same(ours: Any, theirs: Any) -> bool:
    if ours == theirs:
        return True
    try:
        return Decimal(str(ours)) == Decimal(str(theirs))
    except (InvalidOperation, ValueError):
        return str(ours) == str(theirs)


def assert_store_matches_crm(cli: Cli, sandbox: Any) -> None:
    """Nothing is recorded as written that the CRM does not hold, and no task exists twice."""
    from connector import mapping as mapping_module
    from connector.protocol import find_task_marker

    store = cli.store()
    try:
        mapping = mapping_module.load_mapping(_mapping_name(cli), base_dir=cli.config.parent)
        crm_object = mapping.crm_object("account")
        records = {str(r.get("id") or r.get("Id")): r for r in sandbox.emulator.records(crm_object)}
        checked = 0
        for account_id in records:
            written = store.last_written(cli.connection, account_id)
            if not written:
                continue
            for field, value in mapping.to_crm_values("account", written).items():
                assert _same(value, records[account_id].get(field)), (account_id, field)
                checked += 1
        assert checked > 0, "the runs wrote nothing: the test proves nothing"
        markers = Counter(
            find_task_marker(str(t.get("Description") or "")) for t in sandbox.emulator.tasks()
        )
        markers.pop(None, None)
        assert all(count == 1 for count in markers.values()), markers
        task_ids = {str(t.get("id") or t.get("Id")) for t in sandbox.emulator.tasks()}
        for entry in store.open_tasks(cli.connection):
            if entry.rule == "limit_approval" and entry.crm_task_id is None:
                continue  # listed in the credit manager's approval digest, not a task of its own
            assert entry.crm_task_id in task_ids
    finally:
        store.close()


def _mapping_name(cli: Cli) -> str:
    import tomllib

    sections = tomllib.loads(cli.config.read_text())["connections"]
    return str(sections[cli.connection]["mapping"])


# -- the service ----------------------------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[Any]:
    require_stack()
    running = start_sandbox()
    with running:
        yield running


def test_run_service_runs_on_schedule_and_stops_cleanly_on_sigterm(
    tmp_path: Path, sandbox: Any
) -> None:
    cli = Cli(tmp_path, sandbox)
    process, log = cli.start("run", "--interval-seconds", "1")
    try:

        def completed_runs() -> list[dict[str, Any]]:
            return [run for run in cli.status()["runs"] if run["status"] in COMPLETED]

        assert wait_for(lambda: len(completed_runs()) >= 3, timeout=30, step=0.3), log.read_text()
        assert all(run["trigger"] == "schedule" for run in completed_runs())
        assert {run["status"] for run in completed_runs()} <= {
            "succeeded",
            "succeeded_with_rejections",
        }, log.read_text()

        # Slow the CRM down so a run lasts seconds, wait until one holds the lease, then stop.
        sandbox.server.faults.latency_ms = 700
        assert wait_for(lambda: cli.lease() is not None, timeout=10, step=0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(25) == 0, log.read_text()
    finally:
        stop(process)
    sandbox.server.faults.latency_ms = 0

    status = cli.status()
    assert status["connections"][cli.connection]["lease"] is None
    runs = status["runs"]
    assert not [run for run in runs if run["status"] == "running"]
    last = next(run for run in runs if run["status"] != "skipped")
    assert last["status"] in {"succeeded", "succeeded_with_rejections", "cancelled"}
    assert_store_matches_crm(cli, sandbox)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("connection") == cli.connection for line in lines)
