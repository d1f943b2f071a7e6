"""A config, secrets or mapping file the process cannot read exits 78 naming the file and the fix.

The Compose example bind-mounts the secrets file with the host file's owner and mode (Compose
ignores uid/gid/mode for file secrets), so a root-owned `chmod 600` copy is unreadable by the
image's user, uid 10001: that used to crash (exit 2) and restart forever. Here the file belongs
to another user with mode 600 and the command runs without root's power to read any file
(CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped), as the container's user; run by a user other
than root, the file is made mode 000.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER_UID = 10001  # the Dockerfile's USER


@pytest.fixture
def deploy_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parents are private to the user running the tests.
    folder = Path(tempfile.mkdtemp(prefix="crm-risk-deploy-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _unreadable(path: Path) -> None:
    """Another user's owner-only file (as root), or mode 000 (as anyone else)."""
    if os.geteuid() == 0:
        os.chown(path, WORKER_UID + 1, WORKER_UID + 1)
        path.chmod(0o600)
    else:
        path.chmod(0o000)


def _drop_read_anything() -> None:
    """In the child before exec: root keeps its uid but loses the capabilities to read any file."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


def _as_worker(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_drop_read_anything if os.geteuid() == 0 else None,
    )


def _crm_risk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(cwd),
        "PYTHONPATH": str(ROOT),
        "CRMRISK_CONNECTIONS__ACME_ZOHO__REFRESH_TOKEN": "env-refresh-token",
    }
    return _as_worker([sys.executable, "-m", "connector.cli.main", *args], cwd, env)


@pytest.fixture(autouse=True)
def _can_make_a_file_unreadable(deploy_dir: Path) -> None:
    probe = deploy_dir / "probe"
    probe.write_text("x")
    _unreadable(probe)
    try:
        reader = _as_worker([sys.executable, "-c", f"open({str(probe)!r}).read()"], deploy_dir, {})
    except OSError as exc:
        pytest.skip(f"cannot drop the capability to read any file here: {exc}")
    if reader.returncode == 0:
        pytest.skip("this system lets the test process read any file (no way to test unreadable)")


def _config(folder: Path, mapping: str = "zoho.inventory") -> Path:
    config = folder / "crm-risk.toml"
    config.write_text(
        f'[store]\nurl = "{folder / "state.db"}"\n\n'
        '[connections.acme_zoho]\nkind = "zoho"\n'
        f'mapping = "{mapping}"\ndata_centre = "eu"\nauth = "refresh_token"\n'
        'client_id = "1000.EXAMPLE"\n'
    )
    config.chmod(0o644)
    return config


def _secrets(folder: Path) -> Path:
    secrets = folder / "crm-risk.secrets.toml"
    secrets.write_text('[connections.acme_zoho]\nclient_secret = "example-client-secret"\n')
    return secrets


@pytest.mark.parametrize("command", ["sync", "run"])
def test_an_unreadable_secrets_file_exits_78_naming_the_file_and_the_fix(
    deploy_dir: Path, command: str
) -> None:
    config = _config(deploy_dir)
    secrets = _secrets(deploy_dir)
    _unreadable(secrets)

    result = _crm_risk(command, "--config", str(config), cwd=deploy_dir)

    assert result.returncode == 78, result.stderr
    assert str(secrets) in result.stderr
    assert "secrets file cannot be read (Permission denied)" in result.stderr
    assert f"chown {os.getuid()} {secrets} && chmod 600 {secrets}" in result.stderr
    assert "environment variables" in result.stderr
    assert "crash" not in result.stderr and "example-client-secret" not in result.stderr


def test_an_unreadable_config_file_exits_78_naming_it(deploy_dir: Path) -> None:
    config = _config(deploy_dir)
    _unreadable(config)

    result = _crm_risk("sync", "--config", str(config), cwd=deploy_dir)

    assert result.returncode == 78, result.stderr
    assert f"{config}: config file cannot be read (Permission denied)" in result.stderr
    assert "chown" in result.stderr and "crash" not in result.stderr


def test_an_unreadable_mapping_file_exits_78_naming_it(deploy_dir: Path) -> None:
    mapping = deploy_dir / "mapping.toml"
    mapping.write_text('extends = "zoho.inventory"\n')
    _unreadable(mapping)
    config = _config(deploy_dir, mapping=str(mapping))
    _secrets(deploy_dir).chmod(0o644)

    result = _crm_risk("sync", "--config", str(config), cwd=deploy_dir)

    assert result.returncode == 78, result.stderr
    assert str(mapping) in result.stderr
    assert "mapping file cannot be read (Permission denied)" in result.stderr
    assert "chown" in result.stderr and "crash" not in result.stderr
