"""Issue 22, points 8 and 13: a damaged, read-only or full state file is explained, never a crash.

Real SQLite files and real `crm-risk` processes against a sandbox CRM: a corrupt header, a
truncated file, a file this user may not write, and a full disk each end with the documented
exit code (78, or 75 for a full disk), the path and what to do. `crm-risk store check` and
`crm-risk store backup` make the recovery possible; a state file readable by others is tightened
to 0600 when it is opened.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.cli.main import main
from connector.store import sqlite as sqlite_store
from tests.integration.test_service import Cli, require_stack, start_sandbox

COMMANDS = [("sync", "--json"), ("status",), ("quarantine",), ("audit",)]


@pytest.fixture
def sandbox() -> Iterator[Any]:
    require_stack()
    running = start_sandbox()
    with running:
        yield running


@pytest.fixture
def cli(tmp_path: Path, sandbox: Any) -> Cli:
    cli = Cli(tmp_path, sandbox)
    first = cli.run("sync", "--json")
    assert first.returncode in (0, 1), first.stderr
    return cli


def _assert_explained(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "crash" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_point8_a_corrupt_header_is_explained_with_path_and_recovery(
    cli: Cli, command: tuple[str, ...]
) -> None:
    with cli.state.open("r+b") as handle:
        handle.write(b"this is not an SQLite header, it was overwritten" * 2)

    result = cli.run(*command)

    _assert_explained(
        result, 78, str(cli.state), "damaged", "file is not a database", "backup", "rebuilds"
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_point8_a_truncated_file_is_explained(cli: Cli, command: tuple[str, ...]) -> None:
    size = cli.state.stat().st_size
    with cli.state.open("r+b") as handle:
        handle.truncate(size // 3)

    result = cli.run(*command)

    _assert_explained(result, 78, str(cli.state), "damaged")


def test_point8_a_file_this_user_cannot_write_is_explained(cli: Cli) -> None:
    os.chmod(cli.state, 0o444)
    argv = cli.argv("sync", "--config", str(cli.config))
    if os.geteuid() == 0:
        # Root ignores file modes; without CAP_DAC_OVERRIDE it obeys them like any user.
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a file unwritable")
        argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *argv]
    try:
        result = subprocess.run(
            argv, env=cli.env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        os.chmod(cli.state, 0o600)

    _assert_explained(result, 78, str(cli.state), "cannot write the state file", "access")


def test_point8_a_full_disk_ends_with_75_and_loses_nothing(
    tmp_path: Path,
    sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli = Cli(tmp_path, sandbox)
    for name, value in sandbox.env_vars().items():
        monkeypatch.setenv(name, value)
    assert main(["sync", "--config", str(cli.config), "--json"]) in (0, 1)
    before = sqlite3.connect(cli.state).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    # SQLite's own "database or disk is full": the file may not grow by a single page.
    opened = sqlite_store.SqliteStore.__init__

    def full_disk(self: Any, path: str, **kwargs: Any) -> None:
        opened(self, path, **kwargs)
        pages = self._sqlite.db.execute("PRAGMA page_count").fetchone()[0]
        self._sqlite.db.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(sqlite_store.SqliteStore, "__init__", full_disk)
    capsys.readouterr()

    code = main(["sync", "--config", str(cli.config), "--json", "--full"])

    err = capsys.readouterr().err
    assert code == 75, err
    assert str(cli.state) in err and "no space left" in err and "Traceback" not in err
    monkeypatch.undo()
    check = sqlite3.connect(cli.state)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= before


def test_point8_store_check_tells_a_sound_file_from_a_damaged_one(cli: Cli, tmp_path: Path) -> None:
    sound = cli.run("store", "check", "--json")
    assert sound.returncode == 0, sound.stderr
    assert json.loads(sound.stdout)["ok"] is True

    damaged = tmp_path / "damaged.db"
    shutil.copy(cli.state, damaged)
    with damaged.open("r+b") as handle:
        handle.truncate(damaged.stat().st_size // 3)
    result = cli.run("store", "check", str(damaged))
    assert result.returncode == 78
    assert str(damaged) in result.stderr and "damaged" in result.stderr


def test_store_check_before_any_run_says_there_is_no_state_store_yet_as_backup_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "crm-risk.toml"
    state = tmp_path / "not-yet" / "state.db"
    config.write_text(f'[store]\nurl = "{state}"\n')

    backup = main(["store", "backup", "-c", str(config), str(tmp_path / "backup.db")])
    said_by_backup = capsys.readouterr().err
    check = main(["store", "check", "-c", str(config)])
    said_by_check = capsys.readouterr().err

    assert backup == check == 78
    assert "no state store at" in said_by_check and str(state) in said_by_check
    assert "cannot write" not in said_by_check
    assert said_by_check == said_by_backup
    assert not state.parent.exists()  # neither command created anything

    missing = tmp_path / "backup-that-is-not-there.db"
    assert main(["store", "check", str(missing)]) == 78
    said = capsys.readouterr().err
    assert str(missing) in said and "no such file" in said and "cannot write" not in said


def test_point8_store_backup_is_a_sound_owner_only_copy_that_restores(
    cli: Cli, tmp_path: Path
) -> None:
    target = tmp_path / "backups" / "state-backup.db"
    target.parent.mkdir()

    made = cli.run("store", "backup", str(target))

    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert cli.run("store", "check", str(target)).returncode == 0
    original = sqlite3.connect(cli.state)
    copy = sqlite3.connect(target)
    for table in ("runs", "accounts", "task_ledger", "audit"):
        query = f"SELECT COUNT(*) FROM {table}"
        assert copy.execute(query).fetchone() == original.execute(query).fetchone(), table
    assert cli.run("store", "backup", str(target)).returncode == 78, "no silent overwrite"

    # The disaster, then the recovery the error message describes: restore the backup.
    with cli.state.open("r+b") as handle:
        handle.write(b"garbage" * 30)
    assert cli.run("status").returncode == 78
    shutil.copy(target, cli.state)
    assert cli.run("status").returncode == 0
    assert cli.run("sync", "--json").returncode in (0, 1)


def test_point13_an_existing_state_file_readable_by_others_is_tightened_to_0600(
    cli: Cli,
) -> None:
    os.chmod(cli.state, 0o644)

    result = cli.run("status")

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(cli.state.stat().st_mode) == 0o600
    assert "tightened the permissions" in result.stderr and str(cli.state) in result.stderr
