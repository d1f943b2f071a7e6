"""Two `crm-risk sync` processes on one state file: one runs, the other exits 75; a killed holder's lease expires."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_service import Cli, require_stack, start_sandbox, stop, wait_for

LEASE_SECONDS = 5


@pytest.fixture
def sandbox() -> Iterator[Any]:
    require_stack()
    running = start_sandbox()
    with running:
        yield running


def test_second_sync_exits_75_while_the_first_holds_the_lease(tmp_path: Path, sandbox: Any) -> None:
    cli = Cli(tmp_path, sandbox, lease_seconds=LEASE_SECONDS)
    sandbox.server.faults.latency_ms = 400
    first, log = cli.start("sync", "--json")
    try:
        assert wait_for(lambda: cli.lease() is not None, timeout=20, step=0.05), log.read_text()
        second = cli.run("sync", "--json")
        assert second.returncode == 75, second.stderr
        assert "already running" in second.stderr
        sandbox.server.faults.latency_ms = 0
        assert first.wait(30) in (0, 1), log.read_text()
    finally:
        stop(first)
    store = cli.store()
    try:
        runs = store.recent_runs(cli.connection)
    finally:
        store.close()
    # Exactly one run happened: the refused process recorded nothing.
    assert [run["status"] for run in runs] in (["succeeded"], ["succeeded_with_rejections"])
    assert cli.lease() is None


def test_lease_of_a_killed_holder_expires_and_the_next_run_proceeds(
    tmp_path: Path, sandbox: Any
) -> None:
    cli = Cli(tmp_path, sandbox, lease_seconds=LEASE_SECONDS)
    sandbox.server.faults.latency_ms = 400
    holder, log = cli.start("sync")
    try:
        assert wait_for(lambda: cli.lease() is not None, timeout=20, step=0.05), log.read_text()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    finally:
        stop(holder)
    sandbox.server.faults.latency_ms = 0
    lease = cli.lease()
    assert lease is not None, "SIGKILL leaves the lease behind until it expires"

    refused = cli.run("sync")
    assert refused.returncode == 75, refused.stderr

    expires = datetime.fromisoformat(lease["expires_at"])
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
    resumed = cli.run("sync", "--json")
    assert resumed.returncode in (0, 1), resumed.stderr
    assert cli.lease() is None
    store = cli.store()
    try:
        latest = store.recent_runs(cli.connection, limit=1)[0]
    finally:
        store.close()
    assert latest["status"] in ("succeeded", "succeeded_with_rejections")
