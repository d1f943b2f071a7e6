"""Settings from the environment: CRMRISK_SECTION__KEY variables, and the ones that cannot mean what they say."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.sources import EnvSettingsSource

from connector.config.paths import ENV_PREFIX, SECRETS_FILE_ENV, env_problem, env_var
from connector.errors import ConfigProblem

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


def env_values() -> dict[str, Any]:
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


def env_settings() -> dict[tuple[str, ...], str]:
    """Every CRMRISK_SECTION__KEY variable set, by the setting path it names."""
    found: dict[tuple[str, ...], str] = {}
    for name in os.environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == SECRETS_FILE_ENV or "__" not in upper:
            continue
        parts = tuple(part.lower() for part in upper[len(ENV_PREFIX) :].split("__"))
        found[parts] = name
    return found


def env_problems(
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
                env_problem(
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
                env_problem(
                    name,
                    f"not read: there is no [{path[0]}] section",
                    hint or f"sections: {', '.join(SECTIONS)}",
                )
            )
        elif path[0] == "connections" and len(path) == 2:
            problems.append(
                env_problem(
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
                env_problem(
                    name,
                    f"not read: there is no connection {connection!r} in the config file",
                    f"{meant}(configured: {', '.join(sorted(file_connections))})",
                )
            )
    return problems, phantoms
