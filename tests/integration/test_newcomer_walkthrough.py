"""Issue 21 "Done when": a newcomer's walk through the README's quickstart, against both sandboxes.

From a fresh folder, as the README says: copy config.example.toml, keep one connection section
(the sandbox's, as `crm-risk sandbox serve` prints it), secrets in the environment, then every
quickstart command and the commands that read what a sync did, as separate processes on a
100-column terminal. Every line fits 100 columns, lists of accounts name them by name, and each
deliberate mistake of points 1-5 ends with its documented exit code and names the setting.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.errors import EXIT_CONFIG, EXIT_NOPERM, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE
from connector.registry import sandbox_starter
from tests.crm_user import crm_user

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = 100
AS_OF = "2026-11-01"


@dataclass
class Newcomer:
    """A fresh folder with the README's config, and the sandbox CRM it points at."""

    crm: str
    sandbox: Any
    folder: Path
    env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.folder / "crm-risk.toml"

    @property
    def connection(self) -> str:
        return str(self.sandbox.connection_name)

    def in_terminal(self, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run a command on a 100-column pseudo-terminal, as a person sees it (both streams)."""
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", *argv],
            cwd=self.folder,
            env={k: v for k, v in (env or self.env).items() if k != "COLUMNS"},
            stdin=follower,
            stdout=follower,
            stderr=follower,
            close_fds=True,
        )
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        code = process.wait(timeout=180)
        text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
        return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)

    def run(self, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "connector", *argv],
            cwd=self.folder,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr


@pytest.fixture(params=["salesforce", "zoho"])
def newcomer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Newcomer]:
    with sandbox_starter(request.param)(accounts=30, seed=7) as sandbox:
        folder = tmp_path / "fresh"
        folder.mkdir()
        # `cp config.example.toml crm-risk.toml`, keep one [connections.NAME] section, edit it.
        example = (ROOT / "config.example.toml").read_text()
        shared = example[: example.index("\n[connections.")]
        (folder / "crm-risk.toml").write_text(shared + "\n\n" + sandbox.config_snippet())
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("CRMRISK_")
            and name not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
        }
        env.update(sandbox.env_vars())  # `export CRMRISK_CONNECTIONS__...=...`
        env.update({"COLUMNS": str(COLUMNS), "PYTHONPATH": str(ROOT), "NO_COLOR": "1"})
        yield Newcomer(request.param, sandbox, folder, env)


def too_wide(text: str) -> list[str]:
    return [line for line in text.splitlines() if len(line) > COLUMNS]


def test_the_quickstart_reads_well_at_100_columns_and_names_accounts(newcomer: Newcomer) -> None:
    accounts = crm_user(newcomer.sandbox).accounts()
    names = [account["name"] for account in accounts]
    ids = [account["id"] for account in accounts]
    outputs: dict[str, str] = {}
    for argv in (
        ("check",),
        ("fields", "plan"),
        ("sync", "--dry-run", "--as-of", AS_OF),
        ("sync", "--as-of", AS_OF),
        ("status",),
        ("audit",),
        ("portfolio",),
        ("explain", names[0]),
        ("quarantine",),
    ):
        code, out, err = newcomer.run(*argv)
        assert code in (EXIT_OK, 1), (argv, out, err)
        assert not too_wide(out), (argv, too_wide(out))
        assert "Traceback" not in err, (argv, err)
        outputs[" ".join(argv[:2])] = out
    # Where a command lists accounts, it names them (cut to a column, but by name).
    for command in ("sync --dry-run", "audit", "portfolio"):
        shown = [name for name in names if name[:12] in outputs[command]]
        assert len(shown) >= 5, (command, outputs[command])
        assert not [i for i in ids if i in outputs[command]], command
    assert names[0] in outputs["explain " + names[0]]


def _open_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _edit(newcomer: Newcomer, pattern: str, replacement: str) -> None:
    text = newcomer.config.read_text()
    changed = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    assert changed != text, pattern
    newcomer.config.write_text(changed)


def test_each_deliberate_mistake_ends_with_its_code_and_names_the_setting(
    newcomer: Newcomer,
) -> None:
    section = f"[connections.{newcomer.connection}]"
    pristine = newcomer.config.read_text()
    prefix = f"CRMRISK_CONNECTIONS__{newcomer.connection.upper()}__"
    secret = next(name for name in newcomer.env if name.startswith(prefix) and "SECRET" in name)

    def mistake(
        argv: tuple[str, ...],
        code: int,
        phrases: tuple[str, ...],
        *,
        edit: tuple[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        newcomer.config.write_text(pristine)
        if edit:
            _edit(newcomer, *edit)
        got, seen = newcomer.in_terminal(*argv, env=env)
        said = " ".join(seen.split())
        assert got == code, (argv, edit, got, seen)
        for phrase in phrases:
            assert phrase in said, (argv, edit, phrase, seen)
        assert "Traceback" not in seen and "crash" not in said, seen
        # Wrapped to the terminal, except a path or URL longer than a line on its own.
        wide = [line for line in too_wide(seen) if len(line.split()) > 1]
        assert not wide, wide

    # 1: setup mistakes name the setting (78).
    mistake(
        ("check",),
        EXIT_CONFIG,
        ("ca_bundle", f"{section} ca_bundle (in crm-risk.toml)", "does not exist"),
        edit=(r'^ca_bundle = ".*"$', 'ca_bundle = "certs/company-ca.pem"'),
    )
    mistake(
        ("sync",),
        EXIT_CONFIG,
        ("[store] url (in crm-risk.toml)", "does not exist"),
        edit=(r'^url = "\./crm-risk-state\.db"$', 'url = "no-such-folder/state.db"'),
    )
    # 2: a CRM that is down is 75 with the URL; a URL answering as another service is 78.
    port = _open_port()
    url_key = "token_url"
    mistake(
        ("check",),
        EXIT_TEMPFAIL,
        (f"127.0.0.1:{port}", url_key),
        edit=(
            rf"^{url_key} = \"https://127\.0\.0\.1:\d+",
            f'{url_key} = "https://127.0.0.1:{port}',
        ),
    )
    # 3: a refused secret names the variable it came from (77); a typo names the variable (78).
    mistake(("check",), EXIT_NOPERM, (secret,), env={**newcomer.env, secret: "wrong"})
    typo_env = {name: value for name, value in newcomer.env.items() if name != secret}
    typo_env[secret[:-1]] = newcomer.env[secret]
    mistake(("check",), EXIT_CONFIG, (secret[:-1], secret), env=typo_env)
    # 4: a disabled connection needs no secrets.
    no_secrets = {
        name: value for name, value in newcomer.env.items() if not name.startswith(prefix)
    }
    mistake(
        ("check",),
        EXIT_OK,
        ("disabled (enabled = false)",),
        edit=(rf"^{re.escape(section)}$", f"{section}\nenabled = false"),
        env=no_secrets,
    )
    # 5: an unknown --connection is a usage error listing the configured ones, in every command.
    for argv in (("status",), ("audit",), ("sync",), ("explain", "x")):
        mistake((*argv, "--connection", "nope"), EXIT_USAGE, ("nope", newcomer.connection))
    shutil.rmtree(newcomer.folder / "certs", ignore_errors=True)
