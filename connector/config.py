"""Configuration: one TOML file, environment variables and a secrets file, validated all at once."""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.sources import EnvSettingsSource

from connector.errors import ConfigError, ConfigProblem
from connector.models import StrictModel
from connector.planning.governance import GovernancePolicy
from connector.planning.task_rules import TaskPolicy
from connector.protocol import CrmSettings
from connector.scoring.policy import ScoringPolicy

_M = TypeVar("_M", bound=StrictModel)

ENV_PREFIX = "CRMRISK_"
SECRETS_FILE_ENV = "CRMRISK_SECRETS_FILE"
DEFAULT_STATE_PATH = "./crm-risk-state.db"
SECRET_FIELDS = ("client_secret", "refresh_token", "password", "security_token", "private_key")

# Which secrets each auth flow needs; checked separately so they are reported with the other errors.
REQUIRED_SECRETS: dict[str, tuple[str, ...]] = {
    "refresh_token": ("client_secret", "refresh_token"),
    "client_credentials": ("client_secret",),
    "jwt": (),
    "password": ("password",),
}


class ScheduleConfig(StrictModel):
    """When the service runs a connection: a fixed interval or a cron expression, in an explicit zone."""

    interval_seconds: int | None = Field(default=3600, ge=1)
    cron: str | None = None
    timezone: str = "UTC"
    misfire_grace_seconds: int = Field(default=300, ge=1)
    jitter_seconds: int = Field(default=0, ge=0)


class ConnectionConfig(CrmSettings):
    """One CRM connection: how to reach it, which mapping, when to run and its policy overrides."""

    name: str = ""
    kind: str
    mapping: str
    enabled: bool = True
    schedule: ScheduleConfig = ScheduleConfig()
    # Look-back subtracted from the watermark so rows committed late behind the cursor are read.
    overlap_seconds: int = Field(default=300, ge=0)
    # Partial overrides of the global [policy], [tasks] and [governance] sections.
    policy: dict[str, Any] = Field(default_factory=dict)
    tasks: dict[str, Any] = Field(default_factory=dict)
    governance: dict[str, Any] = Field(default_factory=dict)

    def crm_settings(self) -> CrmSettings:
        """The part of this connection an adapter sees."""
        data = {name: getattr(self, name) for name in CrmSettings.model_fields}
        return CrmSettings(**data)


class StoreConfig(StrictModel):
    """Where the state lives: a SQLite file path (default) or a postgresql:// URL."""

    url: str = DEFAULT_STATE_PATH
    lease_seconds: int = Field(default=300, ge=5)
    audit_retention_days: int | None = None


class ServiceConfig(StrictModel):
    """How `crm-risk run` works; on a PostgreSQL store every process is a worker sharing the connections."""

    # Runs one worker process carries at once (PostgreSQL store); a SQLite store runs each
    # connection in its own thread in one process.
    max_concurrent_runs: int = Field(default=4, ge=1, le=256)
    # How often a worker looks for due connections (and, at least every third of the lease,
    # renews its leases and its heartbeat).
    claim_interval_seconds: float = Field(default=2.0, gt=0, le=60)


class LoggingConfig(StrictModel):
    """Log format and level; `auto` prints text on a terminal and JSON lines otherwise."""

    format: Literal["auto", "json", "text"] = "auto"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MetricsConfig(StrictModel):
    """Prometheus metrics: an HTTP endpoint in `run` mode, a textfile or Pushgateway for one-shot `sync`."""

    port: int | None = None
    host: str = "127.0.0.1"
    textfile: str | None = None
    pushgateway: str | None = None


class AppConfig(StrictModel):
    """The whole configuration after merging the file, the secrets file and the environment."""

    store: StoreConfig = StoreConfig()
    service: ServiceConfig = ServiceConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    policy: ScoringPolicy = ScoringPolicy()
    tasks: TaskPolicy = TaskPolicy()
    governance: GovernancePolicy = GovernancePolicy()
    connections: dict[str, ConnectionConfig] = Field(default_factory=dict)
    source: str = ""
    # The folder relative paths were resolved against (the config file's folder).
    base_dir: str = ""

    @field_validator("connections")
    @classmethod
    def _name_connections(cls, value: dict[str, ConnectionConfig]) -> dict[str, ConnectionConfig]:
        return {name: conn.model_copy(update={"name": name}) for name, conn in value.items()}

    def connection(self, name: str | None) -> ConnectionConfig:
        """Return the named connection, or the only one when name is None."""
        if name is None:
            enabled = [conn for conn in self.connections.values() if conn.enabled]
            if len(enabled) == 1:
                return enabled[0]
            names = ", ".join(sorted(self.connections)) or "none configured"
            raise ConfigError(
                [ConfigProblem("connections", f"choose one with --connection ({names})")],
                self.source,
            )
        if name not in self.connections:
            close = difflib.get_close_matches(name, list(self.connections), n=3)
            hint = (
                f"did you mean {', '.join(close)}?" if close else "add a [connections.NAME] section"
            )
            raise ConfigError(
                [ConfigProblem(f"connections.{name}", "no such connection", hint)], self.source
            )
        return self.connections[name]

    def policy_for(self, connection: ConnectionConfig) -> ScoringPolicy:
        """The global policy with this connection's overrides applied."""
        return _overridden(self.policy, connection.policy)

    def tasks_for(self, connection: ConnectionConfig) -> TaskPolicy:
        """The global task rules with this connection's overrides applied."""
        return _overridden(self.tasks, connection.tasks)

    def governance_for(self, connection: ConnectionConfig) -> GovernancePolicy:
        """The global governance settings with this connection's overrides applied."""
        return _overridden(self.governance, connection.governance)


def _overridden(base: _M, overrides: Mapping[str, Any]) -> _M:
    if not overrides:
        return base
    merged = _deep_merge(base.model_dump(mode="python"), overrides)
    return type(base).model_validate(merged)


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = value
    return result


class _EnvShape(BaseSettings):
    """The sections pydantic-settings may fill from CRMRISK_SECTION__KEY variables (nested with __)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False, extra="ignore"
    )
    store: dict[str, Any] = {}
    service: dict[str, Any] = {}
    logging: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    policy: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    governance: dict[str, Any] = {}
    connections: dict[str, dict[str, Any]] = {}


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            [ConfigProblem(str(path), f"{what} not found", "pass --config PATH or create the file")]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem(str(path), f"not valid TOML: {exc}")]) from None


def _env_values() -> dict[str, Any]:
    """Nested values from the environment, read by pydantic-settings' env source."""
    return _parse_json_leaves(EnvSettingsSource(_EnvShape)())


def _parse_json_leaves(values: Mapping[str, Any]) -> dict[str, Any]:
    """Env values are strings; JSON lists and tables are accepted for list and table settings."""
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            parsed[key] = _parse_json_leaves(value)
        elif isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            try:
                parsed[key] = json.loads(value)
            except ValueError:
                parsed[key] = value
        else:
            parsed[key] = value
    return parsed


def _walk_secret_keys(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key in SECRET_FIELDS and value not in (None, ""):
            yield path
        if isinstance(value, Mapping):
            yield from _walk_secret_keys(value, path)


def _secret_hint(connection: str, key: str) -> str:
    var = f"{ENV_PREFIX}CONNECTIONS__{connection.upper()}__{key.upper()}"
    return f"set {var} or add it to the secrets file"


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc]
    if len(parts) >= 2 and parts[0] == "connections":
        rest = ".".join(parts[2:])
        return f"[connections.{parts[1]}] {rest}".rstrip()
    if len(parts) >= 2:
        return f"[{parts[0]}] {'.'.join(parts[1:])}"
    return ".".join(parts)


def _problems_from_validation(exc: ValidationError, raw: Mapping[str, Any]) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(error["loc"])
        key_path = _location(loc)
        hint = ""
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            parent = _model_for(loc[:-1])
            if parent is not None:
                close = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields), n=2)
                hint = f"did you mean {', '.join(close)}?" if close else "remove it"
        else:
            message = error["msg"]
            if len(loc) >= 3 and loc[0] == "connections" and loc[-1] in SECRET_FIELDS:
                hint = _secret_hint(str(loc[1]), str(loc[-1]))
            elif loc and loc[0] == "connections" and len(loc) >= 3:
                hint = (
                    f"set it in the config file or {ENV_PREFIX}{'__'.join(map(str, loc)).upper()}"
                )
        problems.append(ConfigProblem(key_path, message, hint))
    return problems


def _model_for(loc: tuple[int | str, ...]) -> type[StrictModel] | None:
    """The model class at a location, to suggest field names for a typo."""
    model: type[StrictModel] = AppConfig
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if model is AppConfig and part == "connections":
            if not parts:
                return None
            parts.pop(0)
            model = ConnectionConfig
            continue
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None) if field else None
        if isinstance(annotation, type) and issubclass(annotation, StrictModel):
            model = annotation
        else:
            return None
    return model


def _missing_secret_problems(raw: Mapping[str, Any]) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    connections = raw.get("connections")
    if not isinstance(connections, Mapping):
        return problems
    for name, conn in connections.items():
        if not isinstance(conn, Mapping):
            continue
        auth = str(conn.get("auth", "refresh_token"))
        required = list(REQUIRED_SECRETS.get(auth, ()))
        if auth == "jwt" and not conn.get("private_key") and not conn.get("private_key_file"):
            required.append("private_key")
        for key in required:
            if not conn.get(key):
                problems.append(
                    ConfigProblem(
                        f"[connections.{name}] {key}",
                        f"missing (auth = {auth!r} needs it)",
                        _secret_hint(str(name), key),
                    )
                )
    return problems


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
    problems = [
        ConfigProblem(
            f"{config_file}: {key}",
            "secrets are not read from the config file",
            "move it to the secrets file or an environment variable",
        )
        for key in _walk_secret_keys(raw)
    ]
    secrets_file = secrets_path or os.environ.get(SECRETS_FILE_ENV)
    if secrets_file is None and config_file is not None:
        candidate = default_secrets_path(config_file)
        secrets_file = candidate if candidate.exists() else None
    if secrets_file:
        raw = _deep_merge(raw, _read_toml(Path(secrets_file), "secrets file"))
    raw = _deep_merge(raw, _env_values())
    raw["source"] = str(config_file or "environment")
    if require_secrets:
        problems.extend(_missing_secret_problems(raw))
    try:
        config = AppConfig.model_validate(raw)
    except ValidationError as exc:
        problems = _problems_from_validation(exc, raw) + problems
        raise ConfigError(problems, str(config_file or "")) from None
    if problems:
        raise ConfigError(problems, str(config_file or ""))
    base_dir = config_file.resolve().parent if config_file else Path.cwd()
    config = resolve_paths(config, base_dir)
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
                "ca_bundle": _absolute(conn.ca_bundle, base_dir),
                "private_key_file": _absolute(conn.private_key_file, base_dir),
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
            "connections": connections,
            "base_dir": str(base_dir),
        }
    )


def _register_secrets(config: AppConfig) -> None:
    from connector.redaction import register_secret

    for conn in config.connections.values():
        for key in SECRET_FIELDS:
            value = getattr(conn, key)
            if isinstance(value, SecretStr):
                register_secret(value.get_secret_value())


__all__ = [
    "AppConfig",
    "ConnectionConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ScheduleConfig",
    "StoreConfig",
    "load_config",
    "resolve_paths",
]
