"""Fault injection on every sandbox CRM: after the faults stop, one run leaves the CRM as a fault-free run would.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from connector.errors import ConnectorError
from connector.store import open_store
from sandboxes import Faults
from tests.chaos import _crm_state as state
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.chaos.conftest import CHAOS_CRMS, SEEDS, start_sandbox
from tests.conformance.conftest import builtin_adapters

ROOT = Path(__file__).resolve().parents[2]
KILL_SEEDS = int(os.environ.get("CHAOS_KILL_SEEDS", "2"))


class Killed(BaseException):
    """Stands in for SIGKILL inside the process: nothing after it runs in this sync."""


Snapshot = tuple[dict[str, dict[str, Any]], list[tuple[Any, ...]], str]
_references: dict[str, Snapshot] = {}


def reference(crm: str, tmp_path: Path) -> Snapshot:
    """The CRM after one fault-free run on the same data (computed once per CRM)."""
    if crm not in _references:
        with start_sandbox(crm) as sandbox:
            sync = SandboxSync(sandbox, write_config(sandbox, tmp_path, state="reference.db"))
            with sync.store() as store:
                report = sync.run(store)
            # A CRM may refuse some records even without faults (then the chaos run must too).
            assert report.status.startswith("succeeded"), report.to_dict()
            _references[crm] = (state.accounts(sync), state.tasks(sync)[0], report.status)
    return _references[crm]


def test_every_builtin_adapter_is_under_the_chaos_suite() -> None:
    builtin = builtin_adapters()
    assert builtin, "pyproject.toml registers no adapter"
    missing = set(builtin) - set(CHAOS_CRMS)
    assert not missing, f"not installed with a sandbox, so no chaos seeds run on: {sorted(missing)}"


def fault_plan(rng: random.Random, seed: int) -> Faults:
    return Faults(
        seed=seed,
        burst_429=rng.randint(0, 3),
        rate_429=rng.choice([0, 0.05, 0.15]),
        burst_503=rng.randint(0, 2),
        rate_503=rng.choice([0, 0.05, 0.1]),
        rate_500=rng.choice([0, 0.03, 0.06]),
        rate_drop=rng.choice([0, 0.03, 0.08]),
        drop_after_commit=rng.randint(0, 3),
        record_error_rate=rng.choice([0, 0.1, 0.3]),
        lock_error_rate=rng.choice([0, 0.1, 0.2]),
        expire_tokens_after_s=rng.choice([None, 0.05, 0.3]),
    )


def killer(at_batch: int | None) -> Callable[[], None] | None:
    if at_batch is None:
        return None
    count = {"n": 0}

    def after_batch() -> None:
        count["n"] += 1
        if count["n"] >= at_batch:
            raise Killed(f"killed after batch {at_batch}")

    return after_batch


def converge_and_compare(sync: SandboxSync, store: Any, expected: Snapshot) -> None:
    sync.sandbox.server.faults = Faults()
    # Tokens expiring every 50 ms can use up Zoho's 10 mints per 10 minutes; a refused token
    # is never reused, so the clean run comes after that window, as a scheduled rerun would.
    if hasattr(sync.sandbox.emulator, "pass_token_window"):
        sync.sandbox.emulator.pass_token_window()
    report = sync.run(store)
    expected_accounts, expected_tasks, expected_status = expected
    assert report.status == expected_status, report.to_dict()
    accounts, (tasks, keys) = state.accounts(sync), state.tasks(sync)
    duplicates = {key: n for key, n in keys.items() if n > 1}
    assert not duplicates, f"duplicate tasks: {duplicates}"
    differing = {
        rid: (values, expected_accounts.get(rid))
        for rid, values in accounts.items()
        if values != expected_accounts.get(rid)
    }
    assert not differing, f"accounts differ from the fault-free run: {differing}"
    assert tasks == expected_tasks
    assert state.audit_mismatches(sync, store) == []
    assert sync.sandbox.server.errors == [], "the sandbox itself crashed"


# Seeds past CI's 20 that once failed, run in CI too: 20 (Salesforce) and 62 (Zoho) made both
# faulty runs fail the approval digest's create, and the clean run, with nothing to score, never
# made it (fixed: the approval digest is brought up to date even when nothing is scored).
REGRESSION_SEEDS = (20, 62)


@pytest.mark.parametrize("crm", CHAOS_CRMS)
@pytest.mark.parametrize(
    "seed", sorted(set(range(SEEDS)) | {s for s in REGRESSION_SEEDS if s >= SEEDS})
)
def test_faults_then_one_clean_run_converges(crm: str, seed: int, tmp_path: Path) -> None:
    expected = reference(crm, tmp_path)
    rng = random.Random(f"{crm}:{seed}")
    with start_sandbox(crm, faults=fault_plan(rng, seed)) as sandbox:
        sync = SandboxSync(
            sandbox,
            write_config(sandbox, tmp_path, settings={"max_retries": rng.choice([1, 3, 6])}),
        )
        with sync.store() as store:
            for _ in range(rng.randint(1, 3)):
                # A failed or killed run is the point; the next one must repair it.
                with contextlib.suppress(ConnectorError, Killed):
                    sync.run(store, after_batch=killer(rng.choice([None, None, 1, 2])))
            converge_and_compare(sync, store, expected)


def _writes_to(sync: SandboxSync, kind: str) -> int:
    """How many writes the sandbox applied to the CRM object its preset maps `kind` to."""
    crm_object = sync.mapping.crm_object(kind)
    log = sync.sandbox.emulator.writes_log
    return sum(1 for w in log if (w.get("object") or w.get("module")) == crm_object)


# Where the SIGKILL lands: a random moment, or right after the CRM applied the first account batch
# or the first task create (before the process could record it: the worst moment).
KILL_POINTS = ["random", "after_account_write", "after_task_create"]


def _sigkill_at(
    proc: subprocess.Popen[bytes], sync: SandboxSync, point: str, rng: random.Random
) -> None:
    deadline = time.monotonic() + 20
    if point == "random":
        time.sleep(rng.uniform(0.8, 2.0))
    else:
        kind = "account" if point == "after_account_write" else "task"
        while _writes_to(sync, kind) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


# Kill points that are known to break convergence, with the reason (strict xfail). Empty: the
# write-intent log (connector/store write intents) settles a batch the CRM applied before a kill.
KNOWN_KILL_BUGS: dict[tuple[str, str], str] = {}


def _kill_params() -> list[Any]:
    params = []
    for crm in CHAOS_CRMS:
        for point in KILL_POINTS:
            for seed in range(KILL_SEEDS if point == "random" else 1):
                reason = KNOWN_KILL_BUGS.get((crm, point))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                params.append(
                    pytest.param(crm, point, seed, id=f"{crm}-{point}-{seed}", marks=marks)
                )
    return params


@pytest.mark.parametrize(("crm", "point", "seed"), _kill_params())
def test_sigkill_of_a_cli_sync_then_restart_converges(
    crm: str, point: str, seed: int, tmp_path: Path
) -> None:
    expected = reference(crm, tmp_path)
    rng = random.Random(f"kill:{crm}:{seed}")
    with start_sandbox(crm) as sandbox:
        config = write_config(sandbox, tmp_path, extra="")
        env = {**os.environ, **sandbox.env_vars(), "PYTHONPATH": str(ROOT)}
        as_of = getattr(sandbox.emulator, "as_of", None)
        with mock.patch.dict(os.environ, sandbox.env_vars()):
            sync = SandboxSync(sandbox, config)
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "sync", "--config", str(config), "--json"]
            + (["--as-of", as_of.isoformat()] if as_of else []),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _sigkill_at(proc, sync, point, rng)
        # The dead process's lease expires by time; a store whose clock is past it stands in for waiting.
        later = open_store(
            sync.config.store.url, clock=lambda: datetime.now(UTC) + timedelta(hours=1)
        )
        try:
            converge_and_compare(sync, later, expected)
        finally:
            later.close()
