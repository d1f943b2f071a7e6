"""The configuration's shape: strict, frozen section models, with each adapter's settings inside its connection."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from connector.config.paths import setting_label
from connector.errors import ConfigError, ConfigProblem, UsageError
from connector.models import StrictModel
from connector.planning.governance import GovernancePolicy
from connector.planning.task_rules import TaskPolicy
from connector.protocol import ConnectionSettings
from connector.registry import settings_model
from connector.scoring.policy import ScoringPolicy
from connector.scoring.stress import Scenario

_M = TypeVar("_M", bound=StrictModel)

DEFAULT_STATE_PATH = "./crm-risk-state.db"


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
        core["settings"] = adapter_part(data)
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


def adapter_part(connection: Mapping[str, Any]) -> dict[str, Any]:
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
    merged = deep_merge(base.model_dump(mode="python"), overrides)
    return type(base).model_validate(merged)


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result
