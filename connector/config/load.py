"""Loading: the config file, the secrets file and the environment merged, validated, paths made absolute."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from connector.config.env import env_problems, env_settings, env_values
from connector.config.models import AppConfig, deep_merge
from connector.config.paths import SECRETS_FILE_ENV, env_var, location
from connector.config.problems import (
    missing_secret_problems,
    problems_from_validation,
    secrets_in_file,
)
from connector.errors import ConfigError, ConfigProblem, unreadable
from connector.protocol import path_fields, secret_values
from connector.redaction import register_secret


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            [ConfigProblem(str(path), f"{what} not found", "pass --config PATH or create the file")]
        ) from None
    except OSError as exc:
        alternative = (
            "set the values as CRMRISK_... environment variables" if "secrets" in what else ""
        )
        raise ConfigError(
            [ConfigProblem(str(path), f"{what} {unreadable(path, exc, alternative=alternative)}")]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem(str(path), f"not valid TOML: {exc}")]) from None


def _leaves(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            yield path
            yield from _leaves(value, path)
        else:
            yield path


def _file_origins(data: Mapping[str, Any], where: str) -> dict[str, str]:
    return {".".join(path).lower(): f"{where} {location(path)}" for path in _leaves(data)}


def default_secrets_path(config_path: Path) -> Path:
    """`crm-risk.secrets.toml` beside the config file: used when it exists."""
    return config_path.with_name("crm-risk.secrets.toml")


def load_config(
    path: str | Path | None,
    *,
    secrets_path: str | Path | None = None,
    require_secrets: bool = True,
) -> AppConfig:
    """Load and validate the configuration, reporting every problem at once.

    Precedence, highest first: environment variables, the secrets file, the config file.

    Args:
        path: the TOML config file; None means environment variables only.
        secrets_path: a TOML file with secrets (same layout as the config). Defaults to
            $CRMRISK_SECRETS_FILE, then crm-risk.secrets.toml beside the config file.
        require_secrets: False for commands that never reach the CRM (status, explain, audit).

    Returns:
        The validated, immutable configuration.

    Raises:
        ConfigError: with one ConfigProblem per problem (exit code 78). Values are never echoed.
    """
    config_file = Path(path) if path else None
    raw: dict[str, Any] = _read_toml(config_file, "config file") if config_file else {}
    origins = _file_origins(raw, str(config_file)) if config_file else {}
    file_connections = list(raw.get("connections") or {})
    problems = []
    for key, value in secrets_in_file(raw):
        # Refused, and never shown: the value is redacted from whatever prints it anyway.
        register_secret(str(value))
        problems.append(
            ConfigProblem(
                location(key),
                "secrets are not read from the config file",
                "move it to the secrets file (crm-risk.secrets.toml beside the config) or set "
                + env_var(key),
            )
        )
    secrets_file = secrets_path or os.environ.get(SECRETS_FILE_ENV)
    if secrets_file is None and config_file is not None:
        candidate = default_secrets_path(config_file)
        secrets_file = candidate if candidate.exists() else None
    if secrets_file:
        secrets = _read_toml(Path(secrets_file), "secrets file")
        raw = deep_merge(raw, secrets)
        origins.update(_file_origins(secrets, f"secrets file {secrets_file}"))
    env = env_settings()
    found_in_env, phantoms = env_problems(env, file_connections)
    problems = found_in_env + problems
    raw = deep_merge(raw, env_values())
    origins.update({".".join(p): f"environment variable {name}" for p, name in env.items()})
    if phantoms and isinstance(raw.get("connections"), dict):
        # Reported above as the variables they are; not also as connections missing everything.
        raw["connections"] = {
            name: conn for name, conn in raw["connections"].items() if name not in phantoms
        }
    raw["source"] = str(config_file or "environment")
    if require_secrets:
        problems.extend(missing_secret_problems(raw))
    try:
        config = AppConfig.model_validate(raw)
    except ValidationError as exc:
        problems = problems_from_validation(exc, raw, env) + problems
        raise ConfigError(problems, str(config_file or "")) from None
    if problems:
        raise ConfigError(problems, str(config_file or ""))
    base_dir = config_file.resolve().parent if config_file else Path.cwd()
    config = resolve_paths(config, base_dir)
    config._origins.update(origins)
    _register_secrets(config)
    return config


def _is_sqlite_path(url: str) -> bool:
    return not url.startswith(("postgresql://", "postgres://")) and url != ":memory:"


def _absolute(value: str | None, base_dir: Path) -> str | None:
    if not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base_dir / path))


def _looks_like_path(ref: str) -> bool:
    # Preset names (`zoho.inventory`) stay names; anything path-shaped is a file.
    return ref.endswith(".toml") or "/" in ref or "\\" in ref


def resolve_paths(config: AppConfig, base_dir: Path) -> AppConfig:
    """Relative paths (store, mappings, keys, CA bundles, outputs) resolved against `base_dir`.

    A relative path in a config file means "next to this file", whatever the working directory
    of the command: a store that followed the working directory would be a new, empty store
    for every folder the service is started from (and every open task would be created again).

    Args:
        config: the validated configuration.
        base_dir: the config file's folder (the working directory without a config file).

    Returns:
        The configuration with every path setting absolute.
    """
    url = config.store.url
    if _is_sqlite_path(url):
        prefix = "sqlite:///" if url.startswith("sqlite:///") else ""
        path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
        url = prefix + str(_absolute(path, base_dir))
    connections = {
        name: conn.model_copy(
            update={
                "mapping": _absolute(conn.mapping, base_dir)
                if _looks_like_path(conn.mapping)
                else conn.mapping,
                "settings": conn.settings.model_copy(
                    update={
                        key: _absolute(getattr(conn.settings, key), base_dir)
                        for key in path_fields(type(conn.settings))
                    }
                ),
            }
        )
        for name, conn in config.connections.items()
    }
    return config.model_copy(
        update={
            "store": config.store.model_copy(update={"url": url}),
            "metrics": config.metrics.model_copy(
                update={"textfile": _absolute(config.metrics.textfile, base_dir)}
            ),
            "report": config.report.model_copy(
                update={"html": _absolute(config.report.html, base_dir)}
            ),
            "connections": connections,
            "base_dir": str(base_dir),
        }
    )


def _register_secrets(config: AppConfig) -> None:
    for conn in config.connections.values():
        for value in secret_values(conn.settings):
            register_secret(value)
