"""Two `crm-risk sync` processes on one state file: one runs, the other exits 75; a killed holder's lease is taken over."""

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


def test_point9_the_lease_of_a_killed_holder_on_this_host_is_taken_over_at_once(
    tmp_path: Path, sandbox: Any
) -> None:
    # Issue 22, point 9. v1 refused every run (exit 75, "already running") until the dead
    # process's lease expired, and `status` called it running.
    cli = Cli(tmp_path, sandbox, lease_seconds=300)
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
    assert lease is not None, "SIGKILL leaves the lease behind"
    assert f":{holder.pid}:" in lease["holder"]
    expires = datetime.fromisoformat(lease["expires_at"])

    shown = cli.run("status")
    assert "stale lease" in shown.stdout and f"process {holder.pid}" in shown.stdout, shown.stdout
    assert "running (held by" not in shown.stdout

    resumed = cli.run("sync", "--json")
    assert resumed.returncode in (0, 1), resumed.stderr
    assert datetime.now(UTC) < expires, "taken over long before the lease would have expired"
    assert cli.lease() is None
    store = cli.store()
    try:
        latest = store.recent_runs(cli.connection, limit=1)[0]
        takeovers = [
            row for row in store.audit(cli.connection) if row["action"] == "lease_takeover"
        ]
    finally:
        store.close()
    assert latest["status"] in ("succeeded", "succeeded_with_rejections")
    [line] = takeovers
    assert line["old_value"] == lease["holder"]
    assert f"process {holder.pid} on this host is gone" in line["cause"]


def test_an_expired_lease_of_another_host_still_waits_for_its_expiry(
    tmp_path: Path, sandbox: Any
) -> None:
    # A holder on another host cannot be judged from here: only its expiry frees the lease.
    cli = Cli(tmp_path, sandbox, lease_seconds=LEASE_SECONDS)
    assert cli.run("sync", "--json").returncode in (0, 1)
    store = cli.store()
    try:
        store.acquire_lease(cli.connection, "other-host:4242:-:cafe", LEASE_SECONDS)
    finally:
        store.close()
    refused = cli.run("sync")
    assert refused.returncode == 75 and "already running" in refused.stderr
    time.sleep(LEASE_SECONDS + 0.3)
    assert cli.run("sync", "--json").returncode in (0, 1)
