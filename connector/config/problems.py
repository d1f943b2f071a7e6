"""Problems with key paths: validation errors, misplaced and missing secrets, the key a typo meant."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from connector.config.models import AppConfig, ConnectionConfig, adapter_part
from connector.config.paths import ENV_PREFIX, env_problem, env_var, location, secret_hint
from connector.errors import ConfigError, ConfigProblem
from connector.protocol import ConnectionSettings, secret_paths
from connector.registry import settings_model

_FALSE = ("false", "0", "no", "off")


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


def secrets_in_file(raw: Mapping[str, Any]) -> Iterator[tuple[tuple[str, ...], Any]]:
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


def problems_from_validation(
    exc: ValidationError, raw: Mapping[str, Any], env: Mapping[tuple[str, ...], str]
) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(error["loc"])
        if len(loc) >= 3 and loc[0] == "connections" and loc[2] == "settings":
            loc = loc[:2] + loc[3:]  # the adapter's keys sit in the section itself
        key_path = location(loc)
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
                problems.append(env_problem(from_env, f"unknown setting {key_path}", hint))
                continue
            if parent is not None:
                hint = f"did you mean {', '.join(close)}?" if close else "remove it"
        elif from_env is not None:
            problems.append(env_problem(from_env, f"{key_path}: {error['msg']}", ""))
            continue
        else:
            message = error["msg"]
            if len(loc) >= 3 and loc[0] == "connections" and _is_secret(raw, loc):
                hint = secret_hint(str(loc[1]), ".".join(map(str, loc[2:])))
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


def missing_secret_problems(raw: Mapping[str, Any]) -> list[ConfigProblem]:
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
            settings = model.model_validate(adapter_part(conn))
        except ValidationError:
            # Its other problems are reported by the validation of the whole file; the missing
            # secrets are reported beside them, as read from the unvalidated values.
            settings = model.model_construct(**adapter_part(conn))
        for key, why in settings.missing_credentials():
            problems.append(
                ConfigProblem(
                    f"[connections.{name}] {key}",
                    f"missing ({why})",
                    secret_hint(str(name), key),
                )
            )
    return problems
