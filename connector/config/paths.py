"""How a setting is named: its key path as admins write it, and the environment variable that sets it."""

from __future__ import annotations

from collections.abc import Sequence

from connector.errors import ConfigProblem

ENV_PREFIX = "CRMRISK_"
SECRETS_FILE_ENV = "CRMRISK_SECRETS_FILE"


def env_var(path: Sequence[str]) -> str:
    """The environment variable that sets a dotted setting: CRMRISK_SECTION__KEY."""
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def setting_label(path: str | Sequence[str]) -> str:
    """A setting as admins write it: `[connections.acme] ca_bundle`, `[store] url`."""
    parts = tuple(path.split(".")) if isinstance(path, str) else tuple(map(str, path))
    return location(parts)


def secret_hint(connection: str, key: str) -> str:
    var = env_var(("connections", connection, key))
    return f"set {var} or add it to the secrets file"


def location(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc]
    if len(parts) >= 2 and parts[0] == "connections":
        rest = ".".join(parts[2:])
        return f"[connections.{parts[1]}] {rest}".rstrip()
    if len(parts) >= 2:
        return f"[{parts[0]}] {'.'.join(parts[1:])}"
    return ".".join(parts)


def env_problem(name: str, message: str, hint: str) -> ConfigProblem:
    return ConfigProblem(name, message, hint, origin="environment variable")
