"""TLS verification on by default, the state file owner-only, and writes limited to mapped fields."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from connector.errors import CrmError
from connector.mapping import load_mapping
from connector.registry import (
    available_adapters,
    create_adapter,
    sandbox_starter,
    settings_model,
)
from connector.store import open_store
from tests.chaos._sandbox_sync import SandboxSync, write_config
from tests.conformance.conftest import ADAPTERS, crm_of, settings_for
from tests.security.conftest import MAPPING, Cli


@pytest.fixture(params=ADAPTERS)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Any]:
    with sandbox_starter(request.param)(accounts=8, seed=5) as running:
        yield running


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests of other concerns run without REQUESTS_CA_BUNDLE; its own test is below."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "verify_tls", [pytest.param(True, id="ca_bundle"), pytest.param(False, id="verify_off")]
)
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_configured_tls_settings_win_over_ca_bundle_env_vars(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch, verify_tls: bool
) -> None:
    # Common on CI runners and corporate machines: the system bundle, which lacks the sandbox's CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    overrides: dict[str, Any] = {} if verify_tls else {"ca_bundle": None, "verify_tls": False}
    adapter = create_adapter(settings_for(sandbox, **overrides), sleep=lambda s: None)
    try:
        assert adapter.describe(crm_of(sandbox, sandbox.crm).account).fields
    finally:
        adapter.close()


def _api_calls(sandbox: Any) -> int:
    return sum(sandbox.server.calls.values())


def test_a_ca_the_client_was_not_given_fails_instead_of_silently_passing(sandbox: Any) -> None:
    adapter = create_adapter(
        settings_for(sandbox, ca_bundle=None, max_retries=1), sleep=lambda s: None
    )
    try:
        with pytest.raises(CrmError) as caught:
            adapter.describe(crm_of(sandbox, sandbox.crm).account)
    finally:
        adapter.close()
    # Issue 21 point 2: not "try again later" but a setup error pointing at ca_bundle.
    assert caught.value.code == "TLS_VERIFY" and caught.value.setting == "ca_bundle"
    assert caught.value.exit_code == 78
    assert _api_calls(sandbox) == 0, "no request got past the TLS handshake"


def test_a_different_ca_bundle_is_not_trusted_either(sandbox: Any, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    adapter = create_adapter(
        settings_for(sandbox, ca_bundle=str(other), max_retries=0), sleep=lambda s: None
    )
    try:
        with pytest.raises(CrmError):
            adapter.describe(crm_of(sandbox, sandbox.crm).account)
    finally:
        adapter.close()
    assert _api_calls(sandbox) == 0


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.usefixtures("no_ca_env")
def test_verify_tls_false_works_only_with_a_loud_warning(sandbox: Any) -> None:
    collect = _Collect()
    logger = logging.getLogger("crm_risk")
    logger.addHandler(collect)
    try:
        adapter = create_adapter(
            settings_for(sandbox, ca_bundle=None, verify_tls=False), sleep=lambda s: None
        )
        try:
            description = adapter.describe(crm_of(sandbox, sandbox.crm).account)
        finally:
            adapter.close()
    finally:
        logger.removeHandler(collect)
    assert description.fields
    assert any("verification is DISABLED" in line for line in collect.lines), collect.lines


@pytest.mark.parametrize("kind", available_adapters())
def test_verify_tls_is_on_unless_the_config_says_otherwise(kind: str) -> None:
    assert settings_model(kind).model_fields["verify_tls"].default is True


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_state_file_is_created_owner_only(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        store = open_store(str(tmp_path / "fresh.db"))
        store.set_value("probe", "1")
        store.close()
    finally:
        os.umask(previous)
    for path in tmp_path.glob("fresh.db*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_state_files_stay_owner_only_after_a_cli_sync(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.cli.main import main

    previous = os.umask(0o002)
    try:
        main(["--log-format", "json", "sync", "--config", str(cli.config), "--json"])
    finally:
        os.umask(previous)
    capsys.readouterr()
    files = list(cli.config.parent.glob("state.db*"))
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_fake_crm_sees_only_mapped_fields_in_every_write(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.cli.main import main

    main(["--log-format", "json", "sync", "--config", str(cli.config), "--json"])
    capsys.readouterr()
    mapping = load_mapping(str(MAPPING))
    allowed = {mapping.field("account", name).crm for name in mapping.write_fields()}
    sent = {
        name
        for adapter in cli.adapters
        for request in adapter.write_requests
        for change in request
        for name in change.fields
    }
    assert sent, "the sync wrote something"
    assert sent <= allowed, sorted(sent - allowed)


def _record_account_bodies(sandbox: Any) -> list[dict[str, Any]]:
    """Wrap the emulator so every account write body is kept (Zoho's writes log has no field names)."""
    seen: list[dict[str, Any]] = []
    emulator = sandbox.server.emulator
    handle = emulator.handle
    account = crm_of(sandbox, sandbox.crm).account

    def recording(request: Any) -> Any:
        path = request.path.rstrip("/")
        if request.method in ("PUT", "PATCH", "POST") and path.endswith(
            ("/Accounts", "composite/sobjects")
        ):
            body = request.json() or {}
            seen.extend(body.get("data") or body.get("records") or [])
        elif request.method == "POST" and path.endswith("/data/update"):
            # Fxiaoke's update: one record a call under data.object_data, naming its object.
            record = ((request.json() or {}).get("data") or {}).get("object_data") or {}
            if record.get("dataObjectApiName") == account:
                seen.append(record)
        return handle(request)

    emulator.handle = recording
    return seen


@pytest.mark.usefixtures("no_ca_env")
def test_sandbox_sees_only_mapped_fields_on_accounts(sandbox: Any, tmp_path: Path) -> None:
    bodies = _record_account_bodies(sandbox)
    sync = SandboxSync(sandbox, write_config(sandbox, tmp_path))
    with sync.store() as store:
        report = sync.run(store)
    assert report.writes["account"]["written"] > 0, report.to_dict()
    # The record's id and, on Fxiaoke, the object name every update carries.
    allowed = set(sync.owned_fields()) | {"Id", "id", "_id", "attributes", "dataObjectApiName"}
    account_bodies = [b for b in bodies if "What_Id" not in b and "WhatId" not in b]
    assert account_bodies, "the sync wrote accounts"
    sent = {name for body in account_bodies for name in body}
    assert sent <= allowed, sorted(sent - allowed)
