"""Issue 21, points 1-5, 9 and 10: every mistake ends with its documented exit code and names what to fix.

Against both sandbox CRMs over HTTPS, from an admin's config folder (relative store path, secrets
in the secrets file beside the config, or in the environment where the test says so): setup
mistakes exit 78 naming the setting and where its value came from, refused credentials 77 naming
the connection and the secret's source, an unreachable CRM 75 with the URL and what was retried,
usage errors 64, a crash 70 with a crash file, Ctrl-C 130 after a clean stop, and `--json`
commands print one JSON document on failure too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from connector.cli.main import main
from connector.errors import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_NOPERM,
    EXIT_SOFTWARE,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
)
from tests.integration.conftest import Org

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr (the error's lines joined, to match phrases across them)."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def edit(org: Org, pattern: str, replacement: str) -> None:
    text = org.config.read_text()
    changed = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    assert changed != text, pattern
    org.config.write_text(changed)


def section_line(org: Org, line: str) -> None:
    """Add a line to the sandbox connection's section (it is the last section of the file)."""
    org.config.write_text(org.config.read_text().rstrip() + "\n" + line + "\n")


def secrets_to_env(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets from the environment, as the quickstart has them, instead of the file."""
    (org.folder / "crm-risk.secrets.toml").unlink()
    for name, value in org.sandbox.env_vars().items():
        monkeypatch.setenv(name, value)


# -- point 1: setup mistakes name the setting (78), never a crash ---------------------------------


def test_point1_a_missing_ca_bundle_exits_78_naming_the_setting_and_its_file(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(org, r'^ca_bundle = ".*"$', 'ca_bundle = "certs/company-ca.pem"')

    code, _, err = run(capsys, "check")

    assert code == EXIT_CONFIG, err
    assert "crash" not in err and "OSError" not in err
    assert str(org.folder / "certs" / "company-ca.pem") in err and "does not exist" in err
    assert f"setting: [connections.sandbox_{org.crm}] ca_bundle (in crm-risk.toml)" in err


def test_point1_a_ca_bundle_that_is_not_pem_exits_78(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    (org.folder / "not-a-ca.pem").write_text("hello\n")
    edit(org, r'^ca_bundle = ".*"$', 'ca_bundle = "not-a-ca.pem"')

    code, _, err = run(capsys, "sync", "--dry-run")

    assert code == EXIT_CONFIG, err
    assert "holds no PEM certificate" in err and "ca_bundle" in err


def test_point1_a_missing_state_folder_exits_78_naming_store_url(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(org.folder / "state")

    code, _, err = run(capsys, "sync")

    assert code == EXIT_CONFIG, err
    assert "FileNotFoundError" not in err and "crash" not in err
    assert f"its folder {org.folder / 'state'} does not exist" in err
    assert "setting: [store] url (in crm-risk.toml)" in err
    assert not (org.folder / "state").exists()


@pytest.mark.parametrize("command", [("sync",), ("status",), ("audit",)], ids=lambda c: c[0])
def test_point1_a_read_only_state_folder_exits_78_with_the_path(
    org: Org, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    org.sync(capsys)
    argv = [sys.executable, "-m", "connector", *command, "--config", str(org.config)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a folder read-only")
        argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *argv]
    state = org.folder / "state"
    for path in state.iterdir():
        path.chmod(0o400)
    state.chmod(0o500)
    try:
        result = subprocess.run(
            argv,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        state.chmod(0o700)
        for path in state.iterdir():
            path.chmod(0o600)

    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "OperationalError" not in result.stderr and "crash" not in result.stderr
    assert str(org.store) in result.stderr and "[store] url" in result.stderr


# -- point 2: network and TLS errors say what to fix ---------------------------------------------


def test_point2_an_untrusted_certificate_exits_78_pointing_at_ca_bundle_without_retrying(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(org, r'^ca_bundle = ".*"\n', "")
    calls_before = sum(org.sandbox.server.calls.values())

    code, _, err = run(capsys, "check")

    assert code == EXIT_CONFIG, err
    assert "is not trusted" in err and "set ca_bundle" in err
    assert f"setting: [connections.sandbox_{org.crm}] ca_bundle (not set)" in err
    assert "tried" not in err  # not "temporary": no retries
    assert sum(org.sandbox.server.calls.values()) == calls_before


def test_point2_a_crm_that_is_down_exits_75_naming_connection_url_and_retries(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    port = org.sandbox.base_url.rsplit(":", 1)[1]
    ca = org.folder / "ca.pem"
    shutil.copy(str(org.sandbox.ca_bundle), ca)
    edit(org, r'^ca_bundle = ".*"$', 'ca_bundle = "ca.pem"')
    org.sandbox.server.stop()
    section_line(org, "max_retries = 1")

    code, out, err = run(capsys, "sync", "--json")

    assert code == EXIT_TEMPFAIL, err
    assert f"connection sandbox_{org.crm}" in err
    assert f"https://127.0.0.1:{port}/" in err and "connection refused" in err
    assert "tried 2 times" in err
    assert f"setting: [connections.sandbox_{org.crm}] token_url (in crm-risk.toml)" in err
    failure = json.loads(out)["error"]
    assert failure["exit_code"] == EXIT_TEMPFAIL and failure["code"] == "CONNECTION"


def test_point2_a_url_answering_as_another_service_exits_78_naming_the_url_setting(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each CRM's token URL pointed at the other sandbox-like service: a page that is not an
    # OAuth endpoint (the CRM's API host without the token path).
    other = org.sandbox.base_url + "/not/the/token/endpoint"
    edit(org, r'^token_url = ".*"$', f'token_url = "{other}"')

    code, _, err = run(capsys, "check")

    assert code == EXIT_CONFIG, err
    # Fxiaoke answers HTTP 200 to everything; its errorCode says what went wrong.
    answered = "answered Fxiaoke errorCode" if org.crm == "fxiaoke" else "answered HTTP 404"
    assert answered in err and "not as a" in err
    assert f"setting: [connections.sandbox_{org.crm}] token_url (in crm-risk.toml)" in err


def test_point2_a_base_url_with_an_extra_path_is_blamed_on_base_url_not_the_preset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.registry import sandbox_starter
    from tests.integration.conftest import write_org_config

    with sandbox_starter("zoho")(accounts=5, seed=7) as sandbox:
        config = write_org_config(sandbox, tmp_path)
        text = config.read_text().replace(
            f'base_url = "{sandbox.base_url}"', f'base_url = "{sandbox.base_url}/crm/v2"'
        )
        config.write_text(text)
        monkeypatch.chdir(tmp_path)

        code, _, err = run(capsys, "check")

    assert code == EXIT_CONFIG, err
    assert "crm_object" not in err and "no object" not in err
    assert "setting: [connections.sandbox_zoho] base_url (in crm-risk.toml)" in err


# -- point 3: errors name the connection and where a value came from -----------------------------


def test_point3_a_refused_secret_names_the_connection_and_the_variable_it_came_from(
    org: Org, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_to_env(org, monkeypatch)
    variable = f"CRMRISK_CONNECTIONS__SANDBOX_{org.crm.upper()}__CLIENT_SECRET"
    monkeypatch.setenv(variable, "not-the-secret")

    code, _, err = run(capsys, "check")

    assert code == EXIT_NOPERM, err
    assert f"refused the credentials of connection sandbox_{org.crm}" in err
    assert f"client_secret from environment variable {variable}" in err
    assert "client_id from crm-risk.toml" in err
    assert "not-the-secret" not in err


def test_point3_a_typo_in_a_variable_is_reported_as_the_variable_with_did_you_mean(
    org: Org, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"CRMRISK_CONNECTIONS__SANDBOX_{org.crm.upper()}__CLIENT_SECRT"
    monkeypatch.setenv(name, "x")

    code, _, err = run(capsys, "check", "--offline")

    assert code == EXIT_CONFIG, err
    assert f"environment variable {name}: unknown setting" in err
    assert f"did you mean CRMRISK_CONNECTIONS__SANDBOX_{org.crm.upper()}__CLIENT_SECRET" in err
    assert "crm-risk.toml [connections" not in err  # not blamed on the config file


def test_point3_a_typo_in_the_connection_part_makes_no_phantom_connection(
    org: Org, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"CRMRISK_CONNECTIONS__SANDBOX_{org.crm.upper()}O__CLIENT_SECRET"
    monkeypatch.setenv(name, "x")

    code, _, err = run(capsys, "check", "--offline")

    assert code == EXIT_CONFIG, err
    assert err.count("environment variable") == 1, err  # one problem, not four "missing" ones
    assert f"environment variable {name}: not read: there is no connection" in err
    meant = f"CRMRISK_CONNECTIONS__SANDBOX_{org.crm.upper()}__CLIENT_SECRET"
    assert f"did you mean {meant}?" in err
    assert "Field required" not in err


def test_point3_a_section_typo_in_a_variable_is_reported(
    org: Org, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMRISK_STOR__URL", "elsewhere.db")
    monkeypatch.setenv("CRMRISK_STORE_LEASE_SECONDS", "60")

    code, _, err = run(capsys, "status")

    assert code == EXIT_CONFIG, err
    assert "CRMRISK_STOR__URL: not read: there is no [stor] section; " in err
    assert "did you mean CRMRISK_STORE__URL?" in err
    assert "did you mean CRMRISK_STORE__LEASE_SECONDS?" in err


def test_point3_a_secret_in_the_config_file_names_the_file_once_and_the_variable_to_use(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    section_line(org, 'client_secret = "pasted-by-mistake"')

    code, _, err = run(capsys, "check", "--offline")

    assert code == EXIT_CONFIG, err
    assert err.count("crm-risk.toml") == 1, err  # the file named once
    assert f"[connections.sandbox_{org.crm}] client_secret: secrets are not read" in err
    assert f"CRMRISK_CONNECTIONS__SANDBOX_{org.crm.upper()}__CLIENT_SECRET" in err
    assert "pasted-by-mistake" not in err


# -- point 4: a disabled connection needs no secrets ---------------------------------------------


def test_point4_a_disabled_connection_needs_no_secrets(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    with org.config.open("a") as handle:
        handle.write(
            '\n[connections.later]\nkind = "salesforce"\nmapping = "salesforce.custom-invoice"\n'
            'auth = "client_credentials"\nclient_id = "not-yet"\nenabled = false\n'
        )

    sync, _, sync_err = run(capsys, "sync", "--dry-run")
    check, out, check_err = run(capsys, "check")

    assert sync == 0, sync_err
    assert check == 0, check_err
    assert "later: disabled" in out and "client_secret" not in check_err


# -- point 5: every command treats an unknown --connection alike --------------------------------

COMMANDS = [
    ("sync", "--dry-run"),
    ("check",),
    ("status",),
    ("audit",),
    ("explain", "0011"),
    ("portfolio",),
    ("quarantine",),
    ("fields", "plan"),
    ("mappings", "show"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_point5_an_unknown_connection_exits_64_listing_the_configured_ones(
    org: Org, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    org.sync(capsys)
    typo = f"sandbox_{org.crm}s"

    code, out, err = run(capsys, *command, "--connection", typo)

    assert code == EXIT_USAGE, err
    assert f"--connection {typo}: no such connection" in err
    assert f"did you mean sandbox_{org.crm}? (configured: sandbox_{org.crm})" in err
    assert "Recent runs" not in out and "Audit log" not in out


# -- point 9: exit codes -----------------------------------------------------------------------


def test_point9_usage_errors_exit_64_with_the_subcommand_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "audit", "--limit", "many")
    assert code == EXIT_USAGE
    assert "usage: crm-risk audit" in err and "invalid int value: 'many'" in err
    code, _, err = run(capsys, "status", "--bogus")
    assert code == EXIT_USAGE
    assert "usage: crm-risk status" in err and "unrecognized arguments: --bogus" in err
    code, _, err = run(capsys, "no-such-command")
    assert code == EXIT_USAGE and "invalid choice" in err


def test_point9_global_options_are_accepted_after_the_subcommand(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code = main(["sync", "--dry-run", "--log-format", "json", "--log-level", "DEBUG"])
    err = capsys.readouterr().err

    assert code == 0, err
    debug = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line["level"] == "debug" for line in debug), err


def test_point9_a_crash_exits_70_and_points_at_a_crash_file(
    org: Org, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import connector.engine.session as wiring

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(wiring, "load_mapping", broken)
    monkeypatch.setenv("TMPDIR", str(org.folder))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)

    code, _, err = run(capsys, "sync")

    assert code == EXIT_SOFTWARE, err
    found = re.search(r"the traceback is in (\S+crm-risk-crash-\S+\.txt)", err)
    assert found, err
    crash = Path(found.group(1).rstrip(";"))
    assert crash.parent == org.folder and oct(crash.stat().st_mode & 0o777) == "0o600"
    assert "KeyError: 'a bug'" in crash.read_text() and "Traceback" not in err


def test_point9_ctrl_c_during_sync_stops_cleanly_and_exits_130(tmp_path: Path) -> None:
    from connector.registry import sandbox_starter
    from tests.integration.conftest import write_org_config

    log = tmp_path / "stderr.txt"
    with sandbox_starter("zoho")(accounts=40, seed=7, latency_ms=300) as sandbox:
        config = write_org_config(sandbox, tmp_path)
        argv = [sys.executable, "-m", "connector", "sync", "--config", str(config)]
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [*argv, "--log-level", "DEBUG", "--log-format", "text"],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
            )
            # Into the run: the first page of accounts was asked for (DEBUG logs every call).
            deadline = time.monotonic() + 60
            while "/crm/v8/Accounts" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
    err = log.read_text()

    assert process.returncode == EXIT_INTERRUPTED, err
    assert "interrupted (Ctrl-C): finishing the current batch" in err
    assert "signal 2" not in err and "Traceback" not in err
    assert "stopped after the current batch" in err
    from connector.store import open_store

    store = open_store(str(tmp_path / "state" / "crm-risk-state.db"), create=False)
    try:
        runs = store.recent_runs("sandbox_zoho", limit=1)
        lease = store.lease("sandbox_zoho")
    finally:
        store.close()
    assert runs[0]["status"] == "cancelled" and lease is None


def test_point9_backtest_fit_runs_without_scikit_learn(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sample = (ROOT / "tests" / "data" / "ar-late-payments.csv").read_text().splitlines()
    small = tmp_path / "sample.csv"
    small.write_text("\n".join(sample[:900]) + "\n")
    blocked = {name: None for name in ("sklearn", "scikit_learn")}
    saved = {name: sys.modules.get(name) for name in blocked}
    sys.modules.update(blocked)  # type: ignore[arg-type]
    try:
        code, out, err = run(
            capsys,
            "backtest",
            "--invoices",
            str(small),
            "--split-date",
            "2013-01-01",
            "--fit",
            "--bootstrap",
            "0",
            "--json",
        )
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    assert code in (0, 1), err
    assert json.loads(out)


# -- point 10: --json prints one document on failure ---------------------------------------------


@pytest.mark.parametrize("command", [("sync", "--json"), ("check", "--json")], ids=" ".join)
def test_point10_json_commands_print_one_document_on_failure(
    org: Org,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: tuple[str, ...],
) -> None:
    secrets_to_env(org, monkeypatch)
    monkeypatch.setenv(f"CRMRISK_CONNECTIONS__SANDBOX_{org.crm.upper()}__CLIENT_SECRET", "wrong")

    code, out, err = run(capsys, *command)

    assert code == EXIT_NOPERM, err
    document = json.loads(out)  # one document, nothing else on stdout
    assert document["ok"] is False
    error = document["error"]
    assert set(error) >= {"code", "message", "exit_code", "connection", "setting"}
    assert error["exit_code"] == EXIT_NOPERM and error["connection"] == f"sandbox_{org.crm}"
    assert "refused the credentials" in error["message"]


def test_point10_a_usage_error_of_a_json_command_is_a_json_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "status", "--json", "--limit", "x")

    assert code == EXIT_USAGE
    assert json.loads(out)["error"]["exit_code"] == EXIT_USAGE
