"""Commands that check the setup against the CRM: `check` and `mappings show`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from connector.cli import common
from connector.cli.common import Commands
from connector.errors import EXIT_CONFIG, EXIT_OK


def add_check(commands: Commands) -> None:
    """`check`: config and mapping against the live CRM."""
    check = commands.add_parser("check", help="validate config and mapping against the live CRM")
    common.add_config(check)
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument(
        "--offline", action="store_true", help="validate config and mapping files only"
    )
    check.set_defaults(handler=cmd_check)


def add_mappings(commands: Commands) -> None:
    """`mappings show`: the effective mapping."""
    mappings = commands.add_parser("mappings", help="field mappings")
    mappings_commands = mappings.add_subparsers(dest="mappings_command", metavar="SUBCOMMAND")
    mappings_commands.required = True
    show = mappings_commands.add_parser(
        "show", help="print the effective mapping after extends and overrides"
    )
    common.add_config(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(handler=cmd_mappings_show)


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    """Validate config and mapping, then the mapping against the live CRM."""
    from connector.mapping.check import check_mapping
    from connector.protocol import CredentialVerifier
    from connector.registry import create_adapter

    config = common.load(args)
    names = [args.connection] if args.connection else sorted(config.connections)
    results: dict[str, Any] = {}
    exit_code = EXIT_OK
    for name in names:
        connection = common.pick_connection(config, name)
        mapping = common.mapping_for(connection, config)
        entry: dict[str, Any] = {
            "mapping": str(mapping.source),
            "problems": [],
            "quota_remaining": None,
            "enabled": connection.enabled,
        }
        # A disabled connection is checked offline unless named: its secrets may be absent.
        entry["checked_online"] = not args.offline and (connection.enabled or bool(args.connection))
        if entry["checked_online"]:
            store = common.existing_store(config)
            adapter = create_adapter(connection.crm_settings(), state=store)
            try:
                if isinstance(adapter, CredentialVerifier):
                    # A cached token proves nothing about the secrets it was minted from.
                    adapter.verify_credentials()
                problems = check_mapping(mapping, adapter.describe)
                usage = adapter.usage()
                entry["quota_remaining"] = usage.remaining
                entry["quota_limit"] = usage.limit
                entry["api_calls"] = usage.total_calls
            finally:
                adapter.close()
                if store is not None:
                    store.close()
            entry["problems"] = [
                {
                    "severity": getattr(problem, "severity", "error"),
                    "file": problem.mapping_file,
                    "key": problem.key,
                    "crm_object": problem.crm_object,
                    "crm_field": problem.crm_field,
                    "message": str(problem),
                    "suggestions": problem.suggestions,
                }
                for problem in problems
            ]
            if any(problem["severity"] == "error" for problem in entry["problems"]):
                exit_code = EXIT_CONFIG
        entry["problems"] += _task_owner_warnings(config, connection)
        results[name] = entry
    if args.json:
        common.print_json(console, {"ok": exit_code == EXIT_OK, "connections": results})
        return exit_code
    from connector.cli.check_view import render_check

    for line in render_check(results, checked_online=not args.offline):
        console.print(line)
    return exit_code


def _unset(path: str, config: Any) -> str:
    described = config.describe_setting(path)
    return described if described.endswith("(not set)") else f"{described} is empty"


def _task_owner_warnings(config: Any, connection: Any) -> list[dict[str, Any]]:
    """Warnings for task owners left to chance: no credit manager, no fallback owner."""
    policy = config.tasks_for(connection)
    if not policy.enabled:
        return []
    found: list[tuple[str, str]] = []
    manager_rules = [rule.id for rule in policy.rules if rule.assignee == "credit_manager"]
    if manager_rules and not policy.credit_manager_id:
        found.append(
            (
                "tasks.credit_manager_id",
                f"{_unset('tasks.credit_manager_id', config)}: the tasks meant "
                f"for the credit manager ({', '.join(manager_rules)}) go to the account owner; "
                "set it to the CRM user id of your credit manager",
            )
        )
    if not policy.fallback_owner_id:
        found.append(
            (
                "tasks.fallback_owner_id",
                f"{_unset('tasks.fallback_owner_id', config)}: tasks of an "
                "account without an active owner, or whose owner the CRM refuses, go to the "
                "CRM's default owner (the integration user); set it to a CRM user id",
            )
        )
    return [
        {
            "severity": "warning",
            "file": str(config.source),
            "key": key,
            "crm_object": None,
            "crm_field": None,
            "message": message,
            "suggestions": [],
        }
        for key, message in found
    ]


def cmd_mappings_show(args: argparse.Namespace, console: Console) -> int:
    """Print the effective mapping."""
    config = common.load(args, offline=True)
    connection = common.pick_connection(config, args.connection)
    mapping = common.mapping_for(connection, config)
    if args.json:
        common.print_json(console, mapping.effective_dict())
    else:
        sys.stdout.write(mapping.to_toml())
    return EXIT_OK
