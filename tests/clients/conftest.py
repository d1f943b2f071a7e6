"""The cross-language client suite: Node clients from the npm registry, unchanged, against the sandboxes.

`make test` installs them (`npm ci` in this folder, when package-lock.json changed) and runs this
suite when `node` is on the PATH. Without node every test here skips, saying so; with node but
without the installed clients the tests skip locally and fail in CI (CI=true), where a missing
install would otherwise hide that nothing ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"
INSTALLED = MODULES / ".installed"


def _missing_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not on the PATH: the cross-language client suite (tests/clients) is skipped"
    if not INSTALLED.exists():
        return "Node clients not installed: run `make test` (npm ci in tests/clients)"
    return None


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """The folder with the installed Node clients; skips (or fails in CI) when unavailable."""
    reason = _missing_reason()
    if reason is not None:
        if os.environ.get("CI") and shutil.which("node") is not None:
            pytest.fail(reason)
        pytest.skip(reason)
    return HERE


def node_env(ca_bundle: str | None, home: Path, **values: str) -> dict[str, str]:
    """A clean environment for a Node client: the test CA the way a user passes it, a private HOME."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "NODE_NO_WARNINGS": "1",
        "LANG": "C.UTF-8",
    }
    if ca_bundle:
        env["NODE_EXTRA_CA_CERTS"] = ca_bundle
    env.update(values)
    return env


def run_node(script: str, env: dict[str, str], timeout: float = 240) -> dict[str, Any]:
    """Run one of the driver scripts here and return the JSON object it prints."""
    done = subprocess.run(
        ["node", str(HERE / script)],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}: {done.stderr[-3000:]}"
    try:
        return dict(json.loads(done.stdout))
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{script} printed no JSON: {done.stdout[-2000:]}") from exc


def ok(results: dict[str, Any], step: str) -> Any:
    """The value of a step that must have succeeded (the failure text otherwise)."""
    outcome = results[step]
    assert outcome["ok"], f"{step}: {outcome.get('error')}"
    return outcome["value"]
