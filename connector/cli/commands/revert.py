"""`revert`: undo one run where the CRM still holds what it wrote."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.text import Text

from connector.cli import common
from connector.cli.common import Commands
from connector.cli.plain import PlainTable
from connector.errors import EXIT_OK


def add_revert(commands: Commands) -> None:
    """`revert`: undo one run."""
    revert = commands.add_parser(
        "revert",
        help="undo one run: restore the field values it replaced, close or delete its tasks",
    )
    common.add_config(revert, connection=False)
    revert.add_argument("run_id", help="the run to undo (see `crm-risk status` or `audit`)")
    revert.add_argument(
        "--dry-run", action="store_true", help="read the CRM and show what would be undone"
    )
    revert.add_argument(
        "--tasks",
        choices=["complete", "delete"],
        help="what to do with the tasks the run created (default: [tasks] revert_action)",
    )
    revert.add_argument("--json", action="store_true", help="print JSON")
    revert.set_defaults(handler=cmd_revert)


def cmd_revert(args: argparse.Namespace, console: Console) -> int:
    """Undo one run where the CRM still holds what it wrote."""
    from connector.engine.revert import plan_revert, revert_run
    from connector.engine.sync import holder_id
    from connector.registry import create_adapter

    config = common.load(args)
    store = common.state_store(config, create=False)
    try:
        connection = common.pick_connection(config, plan_revert(store, args.run_id)[0])
        mapping = common.mapping_for(connection, config)
        task_action = args.tasks or config.tasks_for(connection).revert_action
        adapter = create_adapter(connection.crm_settings(), state=store)
        holder = holder_id()
        if not args.dry_run:
            store.acquire_lease(connection.name, holder, config.store.lease_seconds)
        try:
            report = revert_run(
                run_id=args.run_id,
                adapter=adapter,
                store=store,
                mapping=mapping,
                dry_run=args.dry_run,
                task_action=task_action,
            )
            if not args.dry_run:
                store.start_run(report.run_id, connection.name, "revert")
                status = "succeeded_with_rejections" if report.failed else "succeeded"
                store.finish_run(report.run_id, status, report.to_dict())
        finally:
            adapter.close()
            if not args.dry_run:
                store.release_lease(connection.name, holder)
    finally:
        store.close()
    if args.json:
        common.print_json(console, report.to_dict())
    else:
        _render_revert(console, report)
    return 1 if report.failed else EXIT_OK


def _render_revert(console: Console, report: Any) -> None:
    verb = "would restore" if report.dry_run else "restored"
    table = PlainTable(title=f"Revert of run {report.reverted_run} ({report.connection})")
    for column in ("account", "field", "written by the run", "restore to", "now in the CRM", ""):
        table.add_column(column, overflow="fold")
    for item in report.restored:
        table.add_row(
            item.account_id,
            item.field,
            common.short(item.written),
            common.short(item.replaced),
            common.short(item.current),
            verb,
        )
    for item in report.kept:
        table.add_row(
            item.account_id,
            item.field,
            common.short(item.written),
            common.short(item.replaced),
            common.short(item.current),
            "kept: changed since",
        )
    console.print(table)
    task_verb = {"complete": "completed", "delete": "deleted"}[report.task_action]
    console.print(
        f"{len(report.restored)} field values {verb}, {len(report.kept)} kept (changed in the "
        f"CRM since), {len(report.tasks)} tasks "
        + (f"to be {task_verb}" if report.dry_run else task_verb)
        + (f"; {len(report.failed)} refused by the CRM" if report.failed else ""),
        soft_wrap=True,
    )
    for failure in report.failed:
        console.print(Text.assemble(("refused", "red"), f" {failure}"), soft_wrap=True)
