"""Configuration: one TOML file, environment variables and a secrets file, validated all at once.

Section models in `models`, setting names in `paths`, environment variables in `env`,
problem reports in `problems`, loading in `load`; this module is the package's public face.
"""

from __future__ import annotations

from connector.config.load import default_secrets_path, load_config, resolve_paths
from connector.config.models import (
    DEFAULT_STATE_PATH,
    AppConfig,
    ConnectionConfig,
    LoggingConfig,
    MetricsConfig,
    ReportConfig,
    ScheduleConfig,
    ServiceConfig,
    StoreConfig,
)
from connector.config.paths import ENV_PREFIX, SECRETS_FILE_ENV, env_var, setting_label

__all__ = [
    "DEFAULT_STATE_PATH",
    "ENV_PREFIX",
    "SECRETS_FILE_ENV",
    "AppConfig",
    "ConnectionConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ReportConfig",
    "ScheduleConfig",
    "ServiceConfig",
    "StoreConfig",
    "default_secrets_path",
    "env_var",
    "load_config",
    "resolve_paths",
    "setting_label",
]
