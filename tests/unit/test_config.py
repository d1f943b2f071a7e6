"""Config: file + secrets file + environment, every problem reported at once, secrets never echoed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connector.cli.main import main
from connector.config import load_config
from connector.errors import EXIT_CONFIG, ConfigError, UsageError

VALID = """
[store]
url = "{db}"

[connections.acme_zoho]
kind = "zoho"
mapping = "zoho.inventory"
data_centre = "eu"
client_id = "1000.ABC"
schedule = {{ interval_seconds = 900 }}
"""


def write(tmp_path: Path, text: str, name: str = "crm-risk.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("CRMRISK_"):
            monkeypatch.delenv(key)


def test_valid_config_with_secrets_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME_ZOHO__CLIENT_SECRET", "env-secret-value")
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME_ZOHO__REFRESH_TOKEN", "env-refresh-value")
    config = load_config(write(tmp_path, VALID.format(db=tmp_path / "s.db")))
    conn = config.connection("acme_zoho")
    assert conn.name == "acme_zoho"
    assert conn.schedule.interval_seconds == 900
    assert (
        conn.settings.client_secret is not None
        and conn.settings.client_secret.get_secret_value() == "env-secret-value"
    )
    assert "env-secret-value" not in repr(conn)
    assert conn.crm_settings().kind == "zoho"
    assert "env-secret-value" not in repr(conn.settings)


def test_secrets_file_fills_secrets_and_env_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = write(tmp_path, VALID.format(db=tmp_path / "s.db"))
    write(
        tmp_path,
        """
        [connections.acme_zoho]
        client_secret = "from-file"
        refresh_token = "refresh-from-file"
        """,
        "crm-risk.secrets.toml",
    )
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME_ZOHO__CLIENT_SECRET", "from-env")
    conn = load_config(config_path).connection("acme_zoho")
    assert (
        conn.settings.client_secret is not None
        and conn.settings.client_secret.get_secret_value() == "from-env"
    )
    assert (
        conn.settings.refresh_token is not None
        and conn.settings.refresh_token.get_secret_value() == "refresh-from-file"
    )


def test_env_overrides_plain_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME_ZOHO__CLIENT_SECRET", "x-secret")
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME_ZOHO__REFRESH_TOKEN", "x-refresh")
    monkeypatch.setenv("CRMRISK_STORE__LEASE_SECONDS", "42")
    config = load_config(write(tmp_path, VALID.format(db=tmp_path / "s.db")))
    assert config.store.lease_seconds == 42


def test_all_problems_reported_at_once_without_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [connections.acme_zoho]
        kind = "zoho"
        mapping = "zoho.inventory"
        clinet_id = "typo"
        overlap_seconds = "ten minutes"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "[connections.acme_zoho] clinet_id: unknown key" in text
    assert "did you mean client_id" in text
    assert "[connections.acme_zoho] overlap_seconds" in text
    assert "ten minutes" not in text
    assert "[connections.acme_zoho] client_secret: missing" in text
    assert "CRMRISK_CONNECTIONS__ACME_ZOHO__CLIENT_SECRET" in text
    assert len(caught.value.problems) >= 4  # refresh_token is missing too


def test_cli_exits_78_and_prints_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """
        [store]
        url = "x.db"
        lease_secs = 10
        [connections.acme_zoho]
        kind = "zoho"
        mapping = "zoho.inventory"
        overlap_seconds = [1, 2]
        """,
    )
    assert main(["sync", "--config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "[store] lease_secs: unknown key" in err
    assert "overlap_seconds" in err
    assert "client_secret: missing" in err


def test_secret_in_config_file_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [connections.acme_zoho]
        kind = "zoho"
        mapping = "zoho.inventory"
        client_secret = "oops-committed-secret"
        refresh_token = "oops-refresh"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "secrets are not read from the config file" in text
    assert "oops-committed-secret" not in text


def test_bad_toml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "[store\nurl = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "line 1" in str(caught.value)


def test_unknown_connection_suggests_close_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME_ZOHO__CLIENT_SECRET", "x-secret")
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME_ZOHO__REFRESH_TOKEN", "x-refresh")
    config = load_config(write(tmp_path, VALID.format(db=tmp_path / "s.db")))
    # Issue 21 point 5: a wrong --connection is a usage error (64) listing what exists.
    with pytest.raises(UsageError, match=r"did you mean acme_zoho\? \(configured: acme_zoho\)"):
        config.connection("acme_zoh")


def test_policy_overrides_per_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME_ZOHO__CLIENT_SECRET", "x-secret")
    monkeypatch.setenv("CRMRISK_CONNECTIONS__ACME_ZOHO__REFRESH_TOKEN", "x-refresh")
    text = (
        VALID.format(db=tmp_path / "s.db")
        + "\n[connections.acme_zoho.governance]\nincrease_relative = 0.5\n"
    )
    config = load_config(write(tmp_path, text))
    conn = config.connection("acme_zoho")
    assert config.governance_for(conn).increase_relative == 0.5
    assert config.governance.increase_relative == 0.2


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[2]
    for key in ("SANDBOX_ZOHO", "SANDBOX_SALESFORCE"):
        monkeypatch.setenv(f"CRMRISK_CONNECTIONS__{key}__CLIENT_SECRET", "example-secret")
        monkeypatch.setenv(f"CRMRISK_CONNECTIONS__{key}__REFRESH_TOKEN", "example-refresh")
    config = load_config(root / "config.example.toml")
    assert config.connections


def _leaf_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and key not in ("levels", "band_multipliers"):
            keys |= _leaf_keys(value, path)
        else:
            keys.add(path)
    return keys


def test_example_config_lists_every_policy_setting() -> None:
    import tomllib

    from connector.scoring.policy import ScoringPolicy

    root = Path(__file__).resolve().parents[2]
    example = tomllib.loads((root / "config.example.toml").read_text())
    defaults = ScoringPolicy().model_dump(mode="json")
    documented = _leaf_keys(example["policy"]) | {"home_currency", "limits.max_limit"}
    missing = _leaf_keys(defaults) - documented
    assert not missing, f"config.example.toml lacks policy settings: {sorted(missing)}"
    assert ScoringPolicy.model_validate(example["policy"]) == ScoringPolicy()


def test_offline_commands_need_no_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID.format(db=tmp_path / "s.db"))
    with pytest.raises(ConfigError, match="client_secret: missing"):
        load_config(path)
    assert (
        load_config(path, require_secrets=False).connection("acme_zoho").settings.client_secret
        is None
    )
    assert main(["status", "--config", str(path), "--json"]) == 0
    assert '"runs": []' in capsys.readouterr().out


def test_relative_paths_follow_the_config_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "mine.toml").write_text('extends = "zoho.inventory"\n')
    path = write(
        folder,
        """
        [store]
        url = "state/crm-risk-state.db"
        [metrics]
        textfile = "metrics/crm_risk.prom"
        [connections.acme_zoho]
        kind = "zoho"
        mapping = "mine.toml"
        data_centre = "eu"
        client_id = "1000.ABC"
        ca_bundle = "certs/ca.pem"
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path, require_secrets=False)
    conn = config.connection("acme_zoho")
    assert config.store.url == str(folder / "state" / "crm-risk-state.db")
    assert config.metrics.textfile == str(folder / "metrics" / "crm_risk.prom")
    assert conn.mapping == str(folder / "mine.toml")
    assert conn.settings.ca_bundle == str(folder / "certs" / "ca.pem")
    assert config.base_dir == str(folder)


def test_presets_absolute_paths_and_postgres_urls_are_left_alone(tmp_path: Path) -> None:
    absolute = tmp_path / "abs.db"
    path = write(tmp_path, VALID.format(db=absolute))
    config = load_config(path, require_secrets=False)
    assert config.store.url == str(absolute)
    assert config.connection("acme_zoho").mapping == "zoho.inventory"
    pg = write(tmp_path, VALID.format(db="postgresql://crm@db:5432/risk"), name="pg.toml")
    assert load_config(pg, require_secrets=False).store.url == "postgresql://crm@db:5432/risk"


@pytest.mark.parametrize("command", [["audit"], ["explain", "001X"]], ids=["audit", "explain"])
def test_read_only_commands_never_create_a_store_and_say_where_they_looked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    path = write(tmp_path, VALID.format(db="missing.db"))
    monkeypatch.chdir(tmp_path.parent)
    assert main([*command, "--config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"no state store at {tmp_path / 'missing.db'}" in err
    assert str(path) in err
    assert not (tmp_path / "missing.db").exists()
    assert not (tmp_path.parent / "missing.db").exists()


def test_status_without_a_store_reports_no_runs_and_leaves_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID.format(db="missing.db"))
    assert main(["status", "--config", str(path)]) == 0
    assert f"no state store at {tmp_path / 'missing.db'} yet" in capsys.readouterr().out
    assert not (tmp_path / "missing.db").exists()
