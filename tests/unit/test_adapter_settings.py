"""Each adapter owns a strict settings model: typos rejected with their key path, secrets found by type."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from connector.cli.main import main
from connector.config import load_config
from connector.errors import EXIT_CONFIG, ConfigError
from connector.models import StrictModel
from connector.protocol import ConnectionSettings, secret_paths
from connector.redaction import redact
from connector.registry import available_adapters, create_adapter, settings_model
from tests.fakes import FakeAdapter
from tests.support import adapter_settings, register_adapter

PLANTED = "vault-signing-key-3f9a0c71e2"


class VaultOptions(StrictModel):
    """Options of a CRM whose option table holds a secret (as a Fxiaoke app secret could)."""

    page_size: int = 100
    signing_key: SecretStr | None = None


class VaultSettings(ConnectionSettings):
    client_id: str | None = None
    options: VaultOptions = VaultOptions()


class VaultAdapter(FakeAdapter):
    settings_model = VaultSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CRMRISK_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crm-risk.toml"
    path.write_text(textwrap.dedent(text).replace("{db}", str(tmp_path / "s.db")))
    return path


ZOHO = """
[store]
url = "{db}"
[connections.acme_zoho]
kind = "zoho"
mapping = "zoho.inventory"
data_centre = "eu"
client_id = "1000.ABC"
"""


def test_an_option_typo_is_rejected_with_its_key_path_and_the_key_meant(tmp_path: Path) -> None:
    path = write(tmp_path, ZOHO + "options = { bulk_read_treshold = 5000 }\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, require_secrets=False)
    assert caught.value.exit_code == EXIT_CONFIG == 78
    assert (
        "[connections.acme_zoho] options.bulk_read_treshold: unknown key; "
        "did you mean bulk_read_threshold?"
    ) in str(caught.value)


def test_an_option_typo_stops_the_cli_with_exit_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, ZOHO + "options = { bulk_read_treshold = 5000 }\n")
    assert main(["status", "--config", str(path)]) == 78
    assert "options.bulk_read_treshold: unknown key" in capsys.readouterr().err


def test_a_connection_key_typo_suggests_the_adapters_own_key(tmp_path: Path) -> None:
    path = write(tmp_path, ZOHO.replace("data_centre", "data_center"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, require_secrets=False)
    assert "[connections.acme_zoho] data_center: unknown key; did you mean data_centre?" in str(
        caught.value
    )


def test_an_option_of_the_wrong_type_names_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, ZOHO + 'options = { max_concurrency = "many" }\n')
    with pytest.raises(ConfigError, match=r"\[connections.acme_zoho\] options.max_concurrency"):
        load_config(path, require_secrets=False)


def test_a_key_another_adapter_owns_is_unknown_here(tmp_path: Path) -> None:
    # security_token is a Salesforce setting: a Zoho connection does not take it silently.
    path = write(tmp_path, ZOHO + 'username = "someone"\n')
    with pytest.raises(ConfigError, match=r"\[connections.acme_zoho\] username: unknown key"):
        load_config(path, require_secrets=False)


def test_options_reach_the_adapter_typed(tmp_path: Path) -> None:
    path = write(tmp_path, ZOHO + 'options = { bulk_read_threshold = 0, trigger = ["workflow"] }\n')
    settings: Any = load_config(path, require_secrets=False).connection("acme_zoho").settings
    assert settings.options.bulk_read_threshold == 0
    assert settings.options.trigger == ["workflow"]


def test_an_unknown_kind_is_reported_at_load_with_the_kinds_installed(tmp_path: Path) -> None:
    path = write(tmp_path, ZOHO.replace('kind = "zoho"', 'kind = "zohoo"'))
    with pytest.raises(ConfigError) as caught:
        load_config(path, require_secrets=False)
    message = str(caught.value)
    assert "[connections.acme_zoho] kind" in message
    assert "no adapter named 'zohoo'" in message and "zoho" in message


VAULT = """
[store]
url = "{db}"
[connections.v]
kind = "vault"
mapping = "zoho.inventory"
client_id = "vault-client"
"""


def test_a_secret_in_an_adapters_option_table_is_refused_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_adapter(monkeypatch, "vault", "tests.unit.test_adapter_settings:VaultAdapter")
    path = write(tmp_path, VAULT + f'options = {{ signing_key = "{PLANTED}" }}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, require_secrets=False)
    message = str(caught.value)
    assert "[connections.v] options.signing_key: secrets are not read from the config file" in (
        message
    )
    assert "CRMRISK_CONNECTIONS__V__OPTIONS__SIGNING_KEY" in message
    assert PLANTED not in message
    assert main(["status", "--config", str(path)]) == 78
    assert main(["status", "--config", str(path), "--json"]) == 78
    out = capsys.readouterr()
    assert PLANTED not in out.out + out.err
    assert "options.signing_key" in out.err
    # Refused, and also known to redact(): no later output can carry it either.
    assert PLANTED not in redact(f"signing with {PLANTED}")


def test_the_same_secret_from_the_environment_is_read_and_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_adapter(monkeypatch, "vault", "tests.unit.test_adapter_settings:VaultAdapter")
    secret = "vault-env-signing-key-81c2d"
    monkeypatch.setenv("CRMRISK_CONNECTIONS__V__OPTIONS__SIGNING_KEY", secret)
    settings: Any = load_config(write(tmp_path, VAULT)).connection("v").settings
    assert settings.options.signing_key.get_secret_value() == secret
    assert secret not in repr(settings)
    assert secret not in redact(f"header X-Sign: {secret}")


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    nested = [
        annotation
        for info in model.model_fields.values()
        for annotation in (info.annotation, *getattr(info.annotation, "__args__", ()))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ]
    return [model, *(m for sub in nested for m in _models(sub))]


@pytest.mark.parametrize("kind", available_adapters())
def test_every_adapter_settings_model_is_strict_and_types_its_secrets(kind: str) -> None:
    model = settings_model(kind)
    assert issubclass(model, ConnectionSettings)
    for part in _models(model):
        assert part.model_config.get("extra") == "forbid", part
    secrets = {path[-1] for path in secret_paths(model)}
    assert secrets, f"{kind} declares no secret"
    for part in _models(model):
        for name in part.model_fields:
            if name.endswith(("secret", "password", "token", "_key")):
                assert name in secrets, f"{kind}: {name} must be SecretStr"


@pytest.mark.parametrize("kind", available_adapters())
def test_every_adapter_names_the_secrets_it_is_missing(kind: str) -> None:
    settings = settings_model(kind)(name="x", kind=kind)
    missing = {key for key, _why in settings.missing_credentials()}
    assert missing, f"{kind} with no secrets reports none missing"
    assert missing <= {path[0] for path in secret_paths(type(settings))}


def test_every_core_connection_key_stays_with_the_core(tmp_path: Path) -> None:
    from connector.config import ConnectionConfig

    core = set(ConnectionConfig.model_fields) - {"settings", "name", "kind", "mapping"}
    values = {"enabled": "true", "overlap_seconds": "60", "rollout": '"shadow"'}
    lines = "".join(f"{key} = {values[key]}\n" for key in sorted(core & set(values)))
    config = load_config(write(tmp_path, ZOHO + lines), require_secrets=False)
    connection = config.connection("acme_zoho")
    assert connection.rollout == "shadow" and connection.overlap_seconds == 60
    assert not hasattr(connection.settings, "rollout")


# Where each built-in adapter is reached: enough for it to open without a call.
_REACH: dict[str, dict[str, Any]] = {
    "salesforce": {"login_url": "https://127.0.0.1:9"},
    "zoho": {"base_url": "https://127.0.0.1:9", "token_url": "https://127.0.0.1:9/token"},
    "fxiaoke": {
        "base_url": "https://127.0.0.1:9",
        "client_id": "FSAID_1",
        "client_secret": "s",
        "refresh_token": "p",
        "username": "1000",
    },
}
# (write batches in flight, records per batch) with no options: the README's defaults.
_WRITE_DEFAULTS = {"salesforce": (4, 200), "zoho": (3, 100), "fxiaoke": (1, 50)}
# The most records one write may carry: the CRM's (or, for Fxiaoke, our) batch limit.
_WRITE_LIMITS = {"salesforce": 200, "zoho": 100, "fxiaoke": 50}


@pytest.mark.parametrize("kind", sorted(_REACH))
def test_every_adapter_takes_write_concurrency_and_batch_size_as_typed_options(kind: str) -> None:
    # CHAOS_CONCURRENCY=4 runs every CRM with these two options: none may refuse them.
    adapter = create_adapter(
        adapter_settings(kind, **_REACH[kind], options={"max_concurrency": 4, "write_batch": 5})
    )
    try:
        assert (adapter.capabilities.max_concurrency, adapter.capabilities.max_write_batch) == (
            4,
            5,
        )
    finally:
        adapter.close()
    adapter = create_adapter(adapter_settings(kind, **_REACH[kind]))
    try:
        capabilities = adapter.capabilities
        assert (capabilities.max_concurrency, capabilities.max_write_batch) == _WRITE_DEFAULTS[kind]
    finally:
        adapter.close()


@pytest.mark.parametrize("kind", sorted(_REACH))
def test_a_write_batch_over_the_crms_limit_is_refused_at_load(kind: str) -> None:
    too_big = _WRITE_LIMITS[kind] + 1
    with pytest.raises(ValidationError, match=r"options\.write_batch"):
        adapter_settings(kind, **_REACH[kind], options={"write_batch": too_big})
    with pytest.raises(ValidationError, match=r"options\.max_concurrency"):
        adapter_settings(kind, **_REACH[kind], options={"max_concurrency": 0})
