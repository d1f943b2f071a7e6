"""Answers truncated, reset mid-body or drip-fed on every sandbox CRM, end to end (issue 22, 4-5).

After the faults stop, one run leaves the CRM as a fault-free run would. And a `crm-risk sync`
stuck on a drip-fed answer stops within seconds of SIGTERM.

`CHAOS_SEEDS=200 .venv/bin/pytest tests/chaos` runs 200 seeds per CRM by hand (CI: 20).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest

from connector.errors import ConnectorError
from connector.store import open_store
from tests.chaos._proxy import FaultProxy, NetFaults, ProxiedSandbox
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import CRMS, SEEDS, start_sandbox
from tests.chaos.test_faults import ROOT, converge_and_compare, reference

# Short limits, so a drip-fed answer costs a fraction of a second: no single read waits 0.4 s
# (a byte comes every 0.05 s), but the whole call meets its 1 s deadline.
NETWORK_SETTINGS = {"timeout_seconds": 0.4, "deadline_seconds": 1.0}


def net_plan(rng: random.Random, seed: int) -> NetFaults:
    return NetFaults(
        seed=seed,
        rate_truncate=rng.choice([0, 0.03, 0.08]),
        rate_reset=rng.choice([0, 0.03, 0.08]),
        rate_drip=rng.choice([0, 0.02, 0.05]),
        drip_seconds=0.05,
    )


@pytest.mark.parametrize("crm", CRMS)
@pytest.mark.parametrize("seed", range(SEEDS))
def test_hostile_network_then_one_clean_run_converges(crm: str, seed: int, tmp_path: Path) -> None:
    expected = reference(crm, tmp_path)
    rng = random.Random(f"net:{crm}:{seed}")
    faults = net_plan(rng, seed)
    with (
        start_sandbox(crm) as sandbox,
        FaultProxy(sandbox.base_url, sandbox.ca_bundle, faults) as proxy,
    ):
        proxied = ProxiedSandbox(sandbox, proxy)
        settings = {**NETWORK_SETTINGS, "max_retries": rng.choice([1, 3, 6])}
        sync = SandboxSync(proxied, write_config(proxied, tmp_path, settings=settings))
        with sync.store() as store:
            for _ in range(rng.randint(1, 2)):
                # A run that gives up (exit 75) is part of the point; the next one repairs it.
                with contextlib.suppress(ConnectorError):
                    sync.run(store)
            faults.rate_truncate = faults.rate_reset = faults.rate_drip = 0
            converge_and_compare(sync, store, expected)


@pytest.mark.parametrize("crm", CRMS)
def test_point4_every_kind_of_broken_answer_is_met_and_survived(crm: str, tmp_path: Path) -> None:
    """One run with every answer at risk: all three faults happen, and the run ends cleanly."""
    with (
        start_sandbox(crm) as sandbox,
        FaultProxy(
            sandbox.base_url,
            sandbox.ca_bundle,
            NetFaults(
                seed=3, rate_truncate=0.15, rate_reset=0.15, rate_drip=0.08, drip_seconds=0.05
            ),
        ) as proxy,
    ):
        proxied = ProxiedSandbox(sandbox, proxy)
        settings = {**NETWORK_SETTINGS, "max_retries": 10}
        sync = SandboxSync(proxied, write_config(proxied, tmp_path, settings=settings))
        with sync.store() as store:
            report = sync.run(store)
        assert report.status.startswith("succeeded"), report.to_dict()
        assert set(proxy.faults.counts) == {"truncate", "reset", "drip"}, proxy.faults.counts


@pytest.mark.parametrize("crm", CRMS)
def test_point5_sigterm_stops_a_sync_waiting_on_a_drip_fed_answer_within_seconds(
    crm: str, tmp_path: Path
) -> None:
    faults = NetFaults(drip_seconds=0.5)
    with (
        start_sandbox(crm) as sandbox,
        FaultProxy(sandbox.base_url, sandbox.ca_bundle, faults) as proxy,
    ):
        proxied = ProxiedSandbox(sandbox, proxy)
        # Deadlines far away: only the signal can end the wait.
        config = write_config(
            proxied, tmp_path, settings={"timeout_seconds": 30, "deadline_seconds": 600}
        )
        with mock.patch.dict(os.environ, sandbox.env_vars()):
            sync = SandboxSync(proxied, config)
        env = {**os.environ, **sandbox.env_vars(), "PYTHONPATH": str(ROOT)}
        # A slow CRM, so the run is still going when the answers start to drip.
        sandbox.server.faults.latency_ms = 150
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "sync", "--config", str(config), "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert _wait(lambda: _lease(sync) is not None, 30), "the run never started"
            faults.rate_drip = 1.0  # from now on every answer comes one byte per 0.5 s
            assert _wait(lambda: bool(faults.counts.get("drip")), 20)
            time.sleep(1.0)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            stopped_after = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with proc.stderr or open(os.devnull, "rb") as pipe:
            stderr = pipe.read().decode()
        assert stopped_after < 5, f"took {stopped_after:.1f}s to stop after SIGTERM\n{stderr}"
        assert code == 75, stderr
        # Stopped cleanly: the lease is given back and the history says why.
        assert _lease(sync) is None
        store = open_store(sync.config.store.url)
        try:
            [run] = store.recent_runs(sync.connection.name)
            assert run["status"] == "cancelled", run
        finally:
            store.close()


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _lease(sync: SandboxSync) -> object:
    path = Path(sync.config.store.url)
    if not path.exists():
        return None
    store = open_store(str(path))
    try:
        return store.lease(sync.connection.name)
    finally:
        store.close()
