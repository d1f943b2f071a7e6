"""Configuration: one TOML file, environment variables and a secrets file, validated all at once."""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.sources import EnvSettingsSource

from connector.errors import ConfigError, ConfigProblem, UsageError, unreadable
from connector.models import StrictModel
from connector.planning.governance import GovernancePolicy
from connector.planning.task_rules import TaskPolicy
from connector.protocol import ConnectionSettings, path_fields, secret_paths, secret_values
from connector.redaction import register_secret
from connector.registry import settings_model
from connector.scoring.policy import ScoringPolicy
from connector.scoring.stress import Scenario

_M = TypeVar("_M", bound=StrictModel)

ENV_PREFIX = "CRMRISK_"
SECRETS_FILE_ENV = "CRMRISK_SECRETS_FILE"
DEFAULT_STATE_PATH = "./crm-risk-state.db"
# Top-level sections; an environment variable naming another is reported as a typo.
SECTIONS = (
    "store",
    "service",
    "logging",
    "metrics",
    "policy",
    "tasks",
    "governance",
    "connections",
)
_FALSE = ("false", "0", "no", "off")


class ScheduleConfig(StrictModel):
    """When the service runs a connection: a fixed interval or a cron expression, in an explicit zone."""

    interval_seconds: int | None = Field(default=3600, ge=1)
    cron: str | None = None
    timezone: str = "UTC"
    misfire_grace_seconds: int = Field(default=300, ge=1)
    jitter_seconds: int = Field(default=0, ge=0)


class ConnectionConfig(StrictModel):
    """One CRM connection: which adapter and mapping, when to run, its policy overrides.

    How to reach the CRM is the adapter's business: every key of the section the core does not
    read is validated by the adapter's own settings model and kept in `settings`.
    """

    name: str = ""
    kind: str
    mapping: str
    enabled: bool = True
    schedule: ScheduleConfig = ScheduleConfig()
    # Look-back subtracted from the watermark so rows committed late behind the cursor are read.
    overlap_seconds: int = Field(default=300, ge=0)
    # The rollout stage: "shadow" scores and reports but writes nothing to the CRM, "fields"
    # writes the risk fields but opens no task, "tasks" does everything (README "Rollout").
    rollout: Literal["shadow", "fields", "tasks"] = "tasks"
    # Partial overrides of the global [policy], [tasks] and [governance] sections.
    policy: dict[str, Any] = Field(default_factory=dict)
    tasks: dict[str, Any] = Field(default_factory=dict)
    governance: dict[str, Any] = Field(default_factory=dict)
    settings: ConnectionSettings

    @model_validator(mode="before")
    @classmethod
    def _split_adapter_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "settings" in data:
            return data
        core = {key: value for key, value in data.items() if key in _core_keys()}
        core["settings"] = _adapter_part(data)
        return core

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        try:
            settings_model(kind)
        except ConfigError as exc:
            raise ValueError(
                "; ".join(str(p).removeprefix("kind: ") for p in exc.problems)
            ) from None
        return kind

    @field_validator("settings", mode="before")
    @classmethod
    def _adapter_settings(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, ConnectionSettings) or not isinstance(value, Mapping):
            return value
        kind = info.data.get("kind")
        if kind is None:
            # The kind itself is wrong (reported on its own): nothing to check these keys against.
            return ConnectionSettings(kind=str(value.get("kind", "")))
        return settings_model(kind).model_validate(value)

    def crm_settings(self) -> ConnectionSettings:
        """The part of this connection an adapter sees: an instance of its own settings model."""
        return self.settings


def _core_keys() -> set[str]:
    # The keys of a connection section the core reads; every other key belongs to the adapter's
    # settings model (found by `kind`), which rejects what it does not know.
    return set(ConnectionConfig.model_fields) - {"settings"}


def _adapter_part(connection: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in connection.items()
        if key not in _core_keys() or key in ("name", "kind")
    }


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


class ReportConfig(StrictModel):
    """The credit manager's portfolio report: where `run` serves it, caps, lines and scenarios."""

    # Serve the latest report at /report on the metrics endpoint ([metrics] port) in `run` mode.
    serve: bool = False
    # Also write it to this file after each run of `run` (relative to the config file).
    html: str | None = None
    # Concentration caps drawn on the charts: the single-customer cap is the limit rule's
    # `[policy.limits] concentration_cap_share`; these two are the book's spread targets.
    industry_cap_share: float | None = Field(default=0.25, gt=0, le=1)
    country_cap_share: float | None = Field(default=0.40, gt=0, le=1)
    # HHI lines of the 2023 US Merger Guidelines (moderately / highly concentrated): widely
    # recognised reference points, not a credit-policy standard.
    hhi_moderate: float = Field(default=1000, ge=0, le=10000)
    hhi_high: float = Field(default=1800, ge=0, le=10000)
    # Accounts scored with a confidence below this count as low-confidence in "model health".
    low_confidence_below: float = Field(default=0.5, ge=0, le=1)
    # Rows listed per list (movers, held approvals); every one is counted in the figures.
    max_listed: int = Field(default=25, ge=1, le=1000)
    # Model health replays the payment history of at most this many accounts, a sample fixed by
    # a hash of the account id (the same accounts every run), so the replay costs the same
    # whatever the book's size; about 10,000 invoices put the AUC within a few hundredths.
    health_max_accounts: int = Field(default=1000, ge=100)
    # Stress scenarios by id, e.g. [report.scenarios.construction] industry = "Construction",
    # bands_down = 1.
    scenarios: dict[str, Scenario] = Field(default_factory=dict)


class AppConfig(StrictModel):
    """The whole configuration after merging the file, the secrets file and the environment."""

    store: StoreConfig = StoreConfig()
    service: ServiceConfig = ServiceConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    policy: ScoringPolicy = ScoringPolicy()
    tasks: TaskPolicy = TaskPolicy()
    governance: GovernancePolicy = GovernancePolicy()
    report: ReportConfig = ReportConfig()
    connections: dict[str, ConnectionConfig] = Field(default_factory=dict)
    source: str = ""
    # The folder relative paths were resolved against (the config file's folder).
    base_dir: str = ""
    # Where each value set came from ("connections.acme.ca_bundle" -> "crm-risk.toml
    # [connections.acme] ca_bundle" or "environment variable CRMRISK_..."): for error messages.
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    def origin(self, path: str) -> str:
        """Where the value at a dotted path came from, for messages; "" when it is a default.

        Args:
            path: e.g. "store.url" or "connections.acme.client_secret".

        Returns:
            "<file> [section] key", "secrets file <file> [section] key",
            "environment variable NAME", or "".
        """
        return self._origins.get(path.lower(), "")

    def describe_setting(self, path: str) -> str:
        """A setting and where its value came from: `[connections.acme] ca_bundle (from X)`."""
        label = setting_label(path)
        origin = self.origin(path)
        if origin.startswith("environment variable"):
            return f"{label} (from {origin})"
        if origin:
            return f"{label} (in {origin.removesuffix(' ' + label)})"
        return f"{label} (not set)"

    @field_validator("connections")
    @classmethod
    def _name_connections(cls, value: dict[str, ConnectionConfig]) -> dict[str, ConnectionConfig]:
        return {
            name: conn.model_copy(
                update={"name": name, "settings": conn.settings.model_copy(update={"name": name})}
            )
            for name, conn in value.items()
        }

    def connection(self, name: str | None) -> ConnectionConfig:
        """Return the named connection, or the only enabled one when name is None.

        Raises:
            UsageError: no such connection, or several and none chosen (exit 64); the message
                lists the connections that exist.
        """
        if name is None:
            enabled = [conn for conn in self.connections.values() if conn.enabled]
            if len(enabled) == 1:
                return enabled[0]
            if not self.connections:
                raise ConfigError(
                    [
                        ConfigProblem(
                            "connections",
                            "no connection configured",
                            "add a [connections.NAME] section (see config.example.toml)",
                        )
                    ],
                    self.source,
                )
            raise UsageError(
                f"{self.source or 'the configuration'} has {len(enabled)} enabled connections: "
                f"choose one with --connection ({self.connection_names()})"
            )
        self.check_connection_name(name)
        return self.connections[name]

    def connection_names(self) -> str:
        """The configured connection names, disabled ones marked, for messages."""
        names = [
            name if conn.enabled else f"{name} (disabled)"
            for name, conn in sorted(self.connections.items())
        ]
        return ", ".join(names) or "none"

    def check_connection_name(self, name: str) -> None:
        """Raise UsageError naming the connections that exist when `name` is not one of them."""
        if name in self.connections:
            return
        close = difflib.get_close_matches(name, list(self.connections), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(
            f"--connection {name}: no such connection in {self.source or 'the configuration'}; "
            f"{hint}(configured: {self.connection_names()})"
        )

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
    report: dict[str, Any] = {}
    connections: dict[str, dict[str, Any]] = {}


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


def _model_of(connection: Any) -> type[ConnectionSettings] | None:
    """The settings model of a raw connection section, or None when its kind is not installed."""
    if not isinstance(connection, Mapping):
        return None
    try:
        return settings_model(str(connection.get("kind", "")))
    except ConfigError:
        return None  # reported as a problem of `kind` by validation


def _value_at(data: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def _secrets_in_file(raw: Mapping[str, Any]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Secret settings written in the config file, found by their type in the adapter's model."""
    connections = raw.get("connections")
    if not isinstance(connections, Mapping):
        return
    for name, connection in connections.items():
        model = _model_of(connection)
        for path in secret_paths(model) if model is not None else []:
            value = _value_at(connection, path)
            if value not in (None, ""):
                yield ("connections", str(name), *path), value


def env_var(path: Sequence[str]) -> str:
    """The environment variable that sets a dotted setting: CRMRISK_SECTION__KEY."""
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def setting_label(path: str | Sequence[str]) -> str:
    """A setting as admins write it: `[connections.acme] ca_bundle`, `[store] url`."""
    parts = tuple(path.split(".")) if isinstance(path, str) else tuple(map(str, path))
    return _location(parts)


def _secret_hint(connection: str, key: str) -> str:
    var = env_var(("connections", connection, key))
    return f"set {var} or add it to the secrets file"


def _leaves(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            yield path
            yield from _leaves(value, path)
        else:
            yield path


def _file_origins(data: Mapping[str, Any], where: str) -> dict[str, str]:
    return {".".join(path).lower(): f"{where} {_location(path)}" for path in _leaves(data)}


def _env_settings() -> dict[tuple[str, ...], str]:
    """Every CRMRISK_SECTION__KEY variable set, by the setting path it names."""
    found: dict[tuple[str, ...], str] = {}
    for name in os.environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == SECRETS_FILE_ENV or "__" not in upper:
            continue
        parts = tuple(part.lower() for part in upper[len(ENV_PREFIX) :].split("__"))
        found[parts] = name
    return found


def _env_problems(
    env: Mapping[tuple[str, ...], str], file_connections: Sequence[str]
) -> tuple[list[ConfigProblem], set[str]]:
    """Environment variables that cannot mean what they say, and the phantom connections they make.

    A section that does not exist (`CRMRISK_STOR__URL`), a single underscore between section
    and key (`CRMRISK_STORE_URL`), or a connection part no config section has
    (`CRMRISK_CONNECTIONS__ACEM__CLIENT_SECRET`, which would otherwise appear as a new connection
    missing its kind, mapping and secrets) are reported as variables, with the variable meant.
    """
    problems: list[ConfigProblem] = []
    phantoms: set[str] = set()
    for name in os.environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or "__" in upper or upper == SECRETS_FILE_ENV:
            continue
        head = upper[len(ENV_PREFIX) :].lower()
        section = next((s for s in SECTIONS if head.startswith(s + "_")), None)
        if section is not None:
            meant = env_var((section, *head[len(section) + 1 :].split("__")))
            problems.append(
                _env_problem(
                    name,
                    "not read: section and key are separated by two underscores",
                    f"did you mean {meant}?",
                )
            )
    connections_in_env = {path[1] for path in env if path[0] == "connections" and len(path) >= 3}
    for path, name in sorted(env.items()):
        if path[0] not in SECTIONS:
            close = difflib.get_close_matches(path[0], SECTIONS, n=1)
            hint = f"did you mean {env_var((close[0], *path[1:]))}?" if close else ""
            problems.append(
                _env_problem(
                    name,
                    f"not read: there is no [{path[0]}] section",
                    hint or f"sections: {', '.join(SECTIONS)}",
                )
            )
        elif path[0] == "connections" and len(path) == 2:
            problems.append(
                _env_problem(
                    name,
                    "not read: names a connection but no setting",
                    f"use {env_var(('connections', path[1], 'KEY'))}",
                )
            )
    for connection in sorted(connections_in_env - set(file_connections)):
        if (("connections", connection, "kind") in env) or not file_connections:
            continue  # a connection defined by the environment itself
        phantoms.add(connection)
        close = difflib.get_close_matches(connection, list(file_connections), n=1)
        for path, name in sorted(env.items()):
            if path[:2] != ("connections", connection):
                continue
            meant = (
                f"did you mean {env_var(('connections', close[0], *path[2:]))}? " if close else ""
            )
            problems.append(
                _env_problem(
                    name,
                    f"not read: there is no connection {connection!r} in the config file",
                    f"{meant}(configured: {', '.join(sorted(file_connections))})",
                )
            )
    return problems, phantoms


def _env_problem(name: str, message: str, hint: str) -> ConfigProblem:
    return ConfigProblem(name, message, hint, origin="environment variable")


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc]
    if len(parts) >= 2 and parts[0] == "connections":
        rest = ".".join(parts[2:])
        return f"[connections.{parts[1]}] {rest}".rstrip()
    if len(parts) >= 2:
        return f"[{parts[0]}] {'.'.join(parts[1:])}"
    return ".".join(parts)


def _problems_from_validation(
    exc: ValidationError, raw: Mapping[str, Any], env: Mapping[tuple[str, ...], str]
) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(error["loc"])
        if len(loc) >= 3 and loc[0] == "connections" and loc[2] == "settings":
            loc = loc[:2] + loc[3:]  # the adapter's keys sit in the section itself
        key_path = _location(loc)
        hint = ""
        from_env = env.get(tuple(str(part).lower() for part in loc))
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            parent = _keys_at(loc[:-1], raw)
            close = (
                difflib.get_close_matches(str(loc[-1]), parent, n=2) if parent is not None else []
            )
            if from_env is not None:
                # Reported as the variable it is, not as a key of a file that does not have it.
                hint = (
                    f"did you mean {' or '.join(env_var((*map(str, loc[:-1]), c)) for c in close)}?"
                    if close
                    else "unset it"
                )
                problems.append(_env_problem(from_env, f"unknown setting {key_path}", hint))
                continue
            if parent is not None:
                hint = f"did you mean {', '.join(close)}?" if close else "remove it"
        elif from_env is not None:
            problems.append(_env_problem(from_env, f"{key_path}: {error['msg']}", ""))
            continue
        else:
            message = error["msg"]
            if len(loc) >= 3 and loc[0] == "connections" and _is_secret(raw, loc):
                hint = _secret_hint(str(loc[1]), ".".join(map(str, loc[2:])))
            elif loc and loc[0] == "connections" and len(loc) >= 3:
                hint = (
                    f"set it in the config file or {ENV_PREFIX}{'__'.join(map(str, loc)).upper()}"
                )
        problems.append(ConfigProblem(key_path, message, hint))
    return problems


def _connection_at(raw: Mapping[str, Any], loc: tuple[int | str, ...]) -> Any:
    connections = raw.get("connections")
    if len(loc) < 2 or loc[0] != "connections" or not isinstance(connections, Mapping):
        return None
    return connections.get(str(loc[1]))


def _is_secret(raw: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
    model = _model_of(_connection_at(raw, loc))
    return model is not None and tuple(map(str, loc[2:])) in secret_paths(model)


def _keys_at(loc: tuple[int | str, ...], raw: Mapping[str, Any]) -> list[str] | None:
    """The keys allowed at a location, to suggest the one meant by a typo."""
    model: type[BaseModel] = AppConfig
    parts = list(loc)
    if parts[:1] == ["connections"]:
        if len(parts) < 2:
            return None
        adapter = _model_of(_connection_at(raw, loc))
        if len(parts) == 2:
            core = [key for key in ConnectionConfig.model_fields if key != "settings"]
            return core + (list(adapter.model_fields) if adapter is not None else [])
        model, parts = (adapter or ConnectionConfig), parts[2:]
        if parts[0] in ConnectionConfig.model_fields:
            model = ConnectionConfig
    for part in parts:
        field = model.model_fields.get(str(part))
        nested = [m for m in _models_in(getattr(field, "annotation", None))]
        if not nested:
            return None
        model = nested[0]
    return list(model.model_fields)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _missing_secret_problems(raw: Mapping[str, Any]) -> list[ConfigProblem]:
    """Secrets each enabled connection's adapter needs but no source set (reported with the rest)."""
    problems: list[ConfigProblem] = []
    connections = raw.get("connections")
    if not isinstance(connections, Mapping):
        return problems
    for name, conn in connections.items():
        model = _model_of(conn)
        if model is None or str(conn.get("enabled", True)).lower() in _FALSE:
            continue  # a disabled connection is never reached: its secrets may be absent
        try:
            settings = model.model_validate(_adapter_part(conn))
        except ValidationError:
            # Its other problems are reported by the validation of the whole file; the missing
            # secrets are reported beside them, as read from the unvalidated values.
            settings = model.model_construct(**_adapter_part(conn))
        for key, why in settings.missing_credentials():
            problems.append(
                ConfigProblem(
                    f"[connections.{name}] {key}",
                    f"missing ({why})",
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
    origins = _file_origins(raw, str(config_file)) if config_file else {}
    file_connections = list(raw.get("connections") or {})
    problems = []
    for key, value in _secrets_in_file(raw):
        # Refused, and never shown: the value is redacted from whatever prints it anyway.
        register_secret(str(value))
        problems.append(
            ConfigProblem(
                _location(key),
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
        raw = _deep_merge(raw, secrets)
        origins.update(_file_origins(secrets, f"secrets file {secrets_file}"))
    env = _env_settings()
    env_problems, phantoms = _env_problems(env, file_connections)
    problems = env_problems + problems
    raw = _deep_merge(raw, _env_values())
    origins.update({".".join(p): f"environment variable {name}" for p, name in env.items()})
    if phantoms and isinstance(raw.get("connections"), dict):
        # Reported above as the variables they are; not also as connections missing everything.
        raw["connections"] = {
            name: conn for name, conn in raw["connections"].items() if name not in phantoms
        }
    raw["source"] = str(config_file or "environment")
    if require_secrets:
        problems.extend(_missing_secret_problems(raw))
    try:
        config = AppConfig.model_validate(raw)
    except ValidationError as exc:
        problems = _problems_from_validation(exc, raw, env) + problems
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


__all__ = [
    "AppConfig",
    "ConnectionConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ReportConfig",
    "ScheduleConfig",
    "StoreConfig",
    "load_config",
    "resolve_paths",
]
