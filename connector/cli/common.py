"""What every command shares: the config and connection it works on, the state store, JSON output."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from rich.console import Console

from connector.cli.args import Parser
from connector.cli.failure import CONTEXT
from connector.redaction import json_text

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig
    from connector.mapping import FieldMapping
    from connector.store import SqlStore

# What `add_subparsers` returns: each command module adds its parsers to it.
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"

log = logging.getLogger("crm_risk.cli")


def add_config(parser: argparse.ArgumentParser, *, connection: bool = True) -> None:
    """The --config and --secrets options, and --connection where the command works on one."""
    parser.add_argument(
        "--config", "-c", default="crm-risk.toml", help="TOML config file (default: crm-risk.toml)"
    )
    parser.add_argument(
        "--secrets",
        help="TOML secrets file (default: $CRMRISK_SECRETS_FILE or crm-risk.secrets.toml)",
    )
    if connection:
        parser.add_argument("--connection", help="connection name (default: the only enabled one)")


def load(args: argparse.Namespace, *, offline: bool = False) -> AppConfig:
    """The configuration the options name; `offline` commands need no secrets."""
    from connector.config import load_config
    from connector.logs import setup_logging

    config = load_config(
        args.config, secrets_path=getattr(args, "secrets", None), require_secrets=not offline
    )
    CONTEXT.config = config
    # [logging] from the file, unless --log-format / --log-level say otherwise.
    setup_logging(
        getattr(args, "log_format", None) or config.logging.format,
        getattr(args, "log_level", None) or config.logging.level,
    )
    log.debug(
        "configuration loaded",
        extra={"detail": f"{config.source}; relative paths against {config.base_dir}"},
    )
    return config


def pick_connection(config: AppConfig, name: str | None) -> ConnectionConfig:
    """The connection a command works on; errors from here on name it."""
    connection = config.connection(name)
    CONTEXT.connection = connection.name
    return connection


def state_store(config: AppConfig, *, create: bool = True) -> SqlStore:
    """The state store; commands that only read pass create=False and never leave a file behind."""
    from connector.errors import StoreMissingError
    from connector.store import open_store

    try:
        return open_store(config.store.url, create=create)
    except StoreMissingError as exc:
        raise StoreMissingError(exc.path, config.source) from None


def existing_store(config: AppConfig) -> SqlStore | None:
    """The state store if it exists (for cached tokens), else None: `check` creates no state."""
    from connector.errors import StoreMissingError

    try:
        return state_store(config, create=False)
    except StoreMissingError:
        return None


def mapping_for(connection: ConnectionConfig, config: AppConfig) -> FieldMapping:
    """The connection's field mapping (relative paths against the config file's folder)."""
    from connector.engine.session import load_connection_mapping

    return load_connection_mapping(config, connection)


def print_json(console: Console, payload: Any) -> None:
    """One indented JSON document on stdout, valid UTF-8 whatever the text holds."""
    sys.stdout.write(json_text(payload, default=str, indent=2) + "\n")


def normaliser(connection: ConnectionConfig) -> Callable[[str], str]:
    """How this connection's CRM spells a record id; as typed when its adapter is not installed.

    explain, audit and dry-run filters read the store only, so they must keep working (matching ids
    exactly as typed) on a machine without the adapter package; sync still names the missing adapter.
    """
    from connector.errors import ConfigError
    from connector.registry import record_id_normaliser

    try:
        return record_id_normaliser(connection.kind)
    except ConfigError:
        return lambda text: text


def short(value: Any) -> str:
    """A value in one table cell: as text, cut to 60 characters."""
    text = (
        ""
        if value is None
        else (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        )
    )
    return text if len(text) <= 60 else text[:57] + "..."
