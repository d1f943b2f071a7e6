"""Planted secrets never appear in logs, errors, run history, the audit log or any `--json` output."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.cli.main import main
from connector.store import open_store
from tests.security.conftest import Cli, Planted


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit code and everything printed (stdout, then the logs and errors on stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    run.stdout = captured.out  # type: ignore[attr-defined]
    return code, captured.out + captured.err


def assert_clean(text: str, planted: Planted, where: str) -> None:
    for secret in planted.all():
        assert secret not in text, f"a planted secret leaked into {where}"


def stored_history(cli: Cli) -> str:
    store = open_store(str(cli.config.parent / "state.db"))
    try:
        dumped: dict[str, Any] = {
            "runs": store.recent_runs("leaky", limit=50),
            "audit": store.audit("leaky", limit=10_000),
            "failed": store.failed_writes("leaky"),
            "quarantine": store.quarantined("leaky"),
        }
    finally:
        store.close()
    return json.dumps(dumped, default=str)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_sync_with_rejections_leaks_nothing(
    cli: Cli, planted: Planted, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    config = str(cli.config)
    code, sync_out = run(
        capsys,
        "--log-format",
        log_format,
        "--log-level",
        "DEBUG",
        "sync",
        "--config",
        config,
        "--json",
    )
    assert code == 1, sync_out  # A002 was rejected: exit 1, pending retry
    # The leaky adapter did its worst: a log line with the credentials and a rejection echoing them.
    assert "reading with" in sync_out and "***" in sync_out
    report = json.loads(run.stdout)  # type: ignore[attr-defined]
    assert report["writes"]["account"]["rejected"] == 1

    outputs = {"sync": sync_out}
    for command in (
        ["status", "--json"],
        ["audit", "--json"],
        ["check", "--json"],
        ["audit"],
        ["status"],
    ):
        code, outputs[" ".join(command)] = run(
            capsys, "--log-format", log_format, command[0], "--config", config, *command[1:]
        )
        assert code in (0, 1, 78), outputs[" ".join(command)]
    history = stored_history(cli)
    assert "A002" in history and "***" in history, (
        "the rejection was recorded, its CRM message redacted"
    )
    for where, text in {**outputs, "store": history}.items():
        assert_clean(text, planted, where)


def test_failed_run_error_message_and_history_leak_nothing(
    cli: Cli, planted: Planted, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.create_adapter.fail = True  # type: ignore[attr-defined]
    config = str(cli.config)
    code, out = run(
        capsys, "--log-format", "json", "--log-level", "DEBUG", "sync", "--config", config, "--json"
    )
    assert code != 0
    assert "error:" in out and "refused" in out, "the failure is reported with a message"
    code, status = run(capsys, "status", "--config", config, "--json")
    assert code == 0
    runs = json.loads(run.stdout)  # type: ignore[attr-defined]
    assert "failed" in json.dumps(runs)
    assert_clean(out, planted, "sync stderr")
    assert_clean(status, planted, "status --json")
    assert_clean(stored_history(cli), planted, "run history")


def test_dry_run_plan_leaks_nothing(
    cli: Cli, planted: Planted, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(
        capsys, "--log-format", "text", "sync", "--config", str(cli.config), "--dry-run", "--json"
    )
    assert code in (0, 1)
    assert '"planned"' in out
    assert_clean(out, planted, "sync --dry-run --json")
