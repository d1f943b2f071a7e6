"""`fields plan`: the custom fields the CRM lacks, as steps, files, or created through its API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from connector.cli import common
from connector.cli.common import Commands
from connector.errors import EXIT_OK, ConfigError, ConfigProblem, UsageError
from connector.redaction import redact


def add_fields(commands: Commands) -> None:
    """`fields plan`: list, write or create the missing custom fields."""
    fields = commands.add_parser("fields", help="custom fields the mapping needs")
    fields_commands = fields.add_subparsers(dest="fields_command", metavar="SUBCOMMAND")
    fields_commands.required = True
    plan = fields_commands.add_parser("plan", help="list the custom fields the CRM lacks")
    common.add_config(plan)
    plan.add_argument(
        "--format",
        choices=["text", "json", "files"],
        default="text",
        help="text: setup steps; files: what the CRM's deployment tools take (where it has them)",
    )
    plan.add_argument("--output", help="folder for --format files (default: print)")
    plan.add_argument(
        "--apply",
        action="store_true",
        help="create the missing fields through the CRM's API (where the adapter can)",
    )
    plan.add_argument(
        "--yes", action="store_true", help="with --apply: do not ask for confirmation"
    )
    plan.set_defaults(handler=cmd_fields_plan)


def cmd_fields_plan(args: argparse.Namespace, console: Console) -> int:
    """List the custom fields the CRM lacks: as setup steps, JSON, or the CRM's deployable files."""
    from connector.mapping.check import plan_fields
    from connector.protocol import FieldPlanFiles, FieldPlanText
    from connector.registry import create_adapter

    config = common.load(args)
    connection = common.pick_connection(config, args.connection)
    mapping = common.mapping_for(connection, config)
    store = common.existing_store(config)
    adapter = create_adapter(connection.crm_settings(), state=store)
    try:
        missing = plan_fields(mapping, adapter.describe)
        # The adapter may word the steps in its CRM's terms and add fields it needs itself,
        # which it checks with its own describe: so it renders while still open.
        steps = (
            adapter.field_plan_text(missing)
            if args.format == "text" and isinstance(adapter, FieldPlanText)
            else None
        )
    finally:
        adapter.close()
        if store is not None:
            store.close()
    if args.apply:
        return _apply_fields(connection, missing, console, assume_yes=args.yes, config=config)
    if args.format == "json":
        common.print_json(console, [getattr(item, "__dict__", item) for item in missing])
    elif args.format == "files":
        if not isinstance(adapter, FieldPlanFiles):
            raise UsageError(
                f"the {connection.kind} adapter has no deployable field files; "
                "use --format text for setup steps"
            )
        files = adapter.field_plan_files(missing)
        if not missing:
            console.print("every mapped custom field exists: no metadata to write")
        elif args.output:
            for relative, text in files.items():
                target = Path(args.output) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            console.print(adapter.field_plan_written(files, Path(args.output)), soft_wrap=True)
        else:
            for relative, text in files.items():
                sys.stdout.write(f"<!-- {relative} -->\n{text}\n")
    else:
        if steps is not None:
            console.print(steps, markup=False)
        elif not missing:
            console.print("every mapped custom field exists")
        else:
            for item in missing:
                console.print(str(item))
    return EXIT_OK


def _no_field_api(kind: str, adapter: object) -> ConfigProblem:
    from connector.protocol import FieldPlanFiles

    how = (
        "deploy them with --format files"
        if isinstance(adapter, FieldPlanFiles)
        else ("create them in the CRM's setup (see `fields plan`)")
    )
    return ConfigProblem("--apply", f"the {kind} adapter cannot create fields through the API", how)


def _apply_fields(
    connection: Any, missing: list[Any], console: Console, *, assume_yes: bool, config: Any
) -> int:
    """Create the missing custom fields through the CRM's API, after a confirmation."""
    from connector.protocol import FieldCreator
    from connector.registry import create_adapter

    if not missing:
        console.print("every mapped custom field exists; nothing to create")
        return EXIT_OK
    store = common.existing_store(config)
    adapter = create_adapter(connection.crm_settings(), state=store)
    try:
        if not isinstance(adapter, FieldCreator):
            raise ConfigError([_no_field_api(connection.kind, adapter)])
        return _confirm_and_create(connection, adapter, missing, console, assume_yes=assume_yes)
    finally:
        adapter.close()
        if store is not None:
            store.close()


def _confirm_and_create(
    connection: Any, adapter: Any, missing: list[Any], console: Console, *, assume_yes: bool
) -> int:
    """List the fields in the CRM's words, ask, then create them object by object."""
    from connector.protocol import FieldSpec

    for item in missing:
        console.print(f"  {adapter.field_line(item)}", markup=False)
    if not assume_yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                [
                    ConfigProblem(
                        "--apply", "needs a confirmation", "run it on a terminal or add --yes"
                    )
                ]
            )
        these = "this field" if len(missing) == 1 else f"these {len(missing)} fields"
        answer = input(f"Create {these} in {connection.name} ({connection.kind})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            console.print("nothing created")
            return EXIT_OK
    failures = 0
    by_object: dict[str, list[Any]] = {}
    for item in missing:
        by_object.setdefault(item.crm_object, []).append(item)
    for crm_object, items in by_object.items():
        specs = [
            FieldSpec(
                name=item.field,
                label=item.label,
                type=item.field_type,
                length=item.length,
                precision=item.precision,
                scale=item.scale,
                picklist_values=tuple(item.picklist_values),
                description=item.description,
            )
            for item in items
        ]
        for spec, result in zip(specs, adapter.create_fields(crm_object, specs), strict=False):
            if result.status == "ok":
                console.print(
                    Text.assemble(
                        ("created", "green"), f" {crm_object}.{result.crm_id or spec.name}"
                    )
                )
            else:
                failures += 1
                console.print(
                    Text.assemble(
                        ("failed", "red"),
                        f" {crm_object}.{spec.name}: {result.error_code} {redact(result.message)}",
                    )
                )
    console.print("run `crm-risk check` to confirm the mapping now validates")
    return EXIT_OK if failures == 0 else 1
