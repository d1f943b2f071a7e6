"""Issue 22, point 12: `[logging]` in the config file is honoured, and library warnings (urllib3's
InsecureRequestWarning with verify_tls = false) come out through our logger, in our format."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_service import Cli, require_stack, start_sandbox


@pytest.fixture
def sandbox() -> Iterator[Any]:
    require_stack()
    running = start_sandbox()
    with running:
        yield running


def _run(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    """`crm-risk` without the suite's usual --log-format flag: the config file decides."""
    return subprocess.run(
        [sys.executable, "-m", "connector", *args, "--config", str(cli.config)],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _cli(tmp_path: Path, sandbox: Any, logging_section: str, *, verify_tls: bool = True) -> Cli:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cli = Cli(tmp_path, sandbox)
    text = cli.config.read_text()
    if not verify_tls:
        text = text.replace(f'ca_bundle = "{sandbox.ca_bundle}"\n', "verify_tls = false\n")
    cli.config.write_text(f"[logging]\n{logging_section}\n{text}")
    return cli


def test_point12_json_logging_from_the_config_file_carries_library_warnings_as_json(
    tmp_path: Path, sandbox: Any
) -> None:
    cli = _cli(tmp_path, sandbox, 'format = "json"\nlevel = "WARNING"', verify_tls=False)

    result = _run(cli, "sync", "--json")

    assert result.returncode in (0, 1), result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "verification off must be logged"
    records = [json.loads(line) for line in lines]  # every line is JSON: nothing printed raw
    assert {record["level"] for record in records} <= {"warning", "error"}, "level = WARNING"
    warnings = [r for r in records if "InsecureRequestWarning" in r["msg"]]
    assert warnings and warnings[0]["logger"] == "py.warnings"
    assert len(warnings) == 1, "said once per process, not once per request"


def test_point12_text_logging_and_level_from_the_config_file(tmp_path: Path, sandbox: Any) -> None:
    # The sandbox has inactive task owners, so a run logs warnings ("task owner refused").
    shown = _run(_cli(tmp_path / "warning", sandbox, 'format = "text"\nlevel = "WARNING"'), "sync")
    quiet = _run(_cli(tmp_path / "error", sandbox, 'format = "text"\nlevel = "ERROR"'), "sync")

    assert shown.returncode in (0, 1) and quiet.returncode in (0, 1), shown.stderr
    lines = [line for line in shown.stderr.splitlines() if line.strip()]
    assert any(" WARNING " in line for line in lines), shown.stderr
    assert not any(line.startswith("{") for line in lines), "text, as the config says"
    assert " WARNING " not in quiet.stderr, "level = ERROR, as the config says"


def test_point12_command_line_flags_override_the_config_file(tmp_path: Path, sandbox: Any) -> None:
    cli = _cli(tmp_path, sandbox, 'format = "text"\nlevel = "DEBUG"')

    result = _run(cli, "--log-format", "json", "--log-level", "ERROR", "sync", "--json")

    assert result.returncode in (0, 1), result.stderr
    for line in result.stderr.splitlines():
        if line.strip():
            assert json.loads(line)["level"] == "error"
