"""`sync` runs one sync now and `run` starts the scheduler service."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import date
from typing import TYPE_CHECKING, Any

from rich.console import Console

from connector.cli import common
from connector.cli.common import Commands
from connector.cli.plain import plain_console
from connector.errors import EXIT_INTERRUPTED, RunCancelled, UsageError

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig
    from connector.engine.report import RunReport
    from connector.engine.sync import SyncOptions

log = logging.getLogger("crm_risk.cli")


def add_sync(commands: Commands) -> None:
    """`sync`: one run now, or a dry run that prints the plan."""
    sync = commands.add_parser("sync", help="run one sync now: pull, score, plan, write")
    common.add_config(sync)
    sync.add_argument(
        "--dry-run", action="store_true", help="plan and print changes; write nothing"
    )
    sync.add_argument(
        "--full", action="store_true", help="re-read everything and rescore every account"
    )
    sync.add_argument(
        "--json", action="store_true", help="print the run report as one JSON document"
    )
    sync.add_argument(
        "--as-of", type=date.fromisoformat, help="score as of this date (default: today)"
    )
    sync.add_argument(
        "--detail",
        action="store_true",
        help="with --dry-run: every planned change of every account (default: a summary)",
    )
    sync.add_argument(
        "--account",
        metavar="ID|NAME",
        help="with --dry-run: only this account's plan (its CRM id, its name or part of it)",
    )
    sync.set_defaults(handler=cmd_sync)


def add_run(commands: Commands) -> None:
    """`run`: the scheduler service."""
    run = commands.add_parser(
        "run", help="run the scheduler service: every connection on its schedule"
    )
    common.add_config(run, connection=False)
    run.add_argument("--interval-seconds", type=int, help="override every connection's schedule")
    run.add_argument(
        "--max-runs", type=int, help="stop after this many completed runs (for trials)"
    )
    run.set_defaults(handler=cmd_run)


def cmd_sync(args: argparse.Namespace, console: Console) -> int:
    """Run one sync for a connection."""
    from connector.engine.sync import SyncOptions, classify_exit

    if (args.detail or args.account) and not args.dry_run:
        # A real sync writes every changed account; these only choose what a dry run prints.
        option = "--detail" if args.detail else "--account"
        raise UsageError(f"{option} chooses what `sync --dry-run` prints; add --dry-run")
    config = common.load(args)
    connection = common.pick_connection(config, args.connection)
    options = SyncOptions(dry_run=args.dry_run, full=args.full, trigger="cli", as_of=args.as_of)
    # From here on SIGTERM/SIGINT stop the run within seconds, even inside a slow CRM call.
    signals = _install_signal_handlers(options.cancel)
    try:
        report = _sync_once(args, config, connection, options)
    except RunCancelled:
        # Stopped before the run began (the mapping check, the login): nothing was written.
        if signal.SIGINT not in signals:
            raise
        return _interrupted()
    shown = report.to_dict()
    if args.account:
        shown["planned"] = _account_plan(shown["planned"], args.account, connection)
    if args.json:
        common.print_json(console, shown)
    else:
        from connector.cli.plan_view import detail, digests, gather, summary
        from connector.cli.render import render_report

        console.print(render_report(shown))
        if args.dry_run:
            accounts = gather(shown["planned"])
            if args.account and not accounts:
                console.print(
                    f"nothing planned for {args.account!r}: no account of that id or name has "
                    "a change (its values in the CRM are current, or it is not in the CRM)"
                )
            elif args.detail or args.account:
                console.print(detail(accounts, console.width))
                if args.detail:
                    for entry in digests(shown["planned"]):
                        console.print(
                            f"digest task {entry.get('rule')} for {entry.get('owner_id') or 'the CRM default owner'}: {entry.get('subject')}",
                            soft_wrap=False,
                        )
            else:
                console.print(summary(shown, accounts, console.width))
    if report.status == "cancelled" and signal.SIGINT in signals:
        return _interrupted()
    return classify_exit(report)


def _account_plan(planned: list[Any], wanted: str, connection: Any) -> list[Any]:
    """The planned entries of the account `wanted` names (id in any form, name or part of it)."""
    from connector.cli.plan_view import gather, select

    chosen = select(gather(planned), wanted, common.normaliser(connection))
    if not chosen:
        return []
    ids = {plan.account_id for plan in chosen}
    return [entry for entry in planned if entry.get("account_id") in ids]


def _interrupted() -> int:
    sys.stderr.write(
        "interrupted: stopped after the current batch; what the CRM confirmed is kept, "
        "the rest waits for the next run\n"
    )
    return EXIT_INTERRUPTED


def _sync_once(
    args: argparse.Namespace,
    config: AppConfig,
    connection: ConnectionConfig,
    options: SyncOptions,
) -> RunReport:
    """Open the connection, check the mapping, run the sync; close what was opened."""
    from connector.engine.session import open_session
    from connector.service.metrics import export_one_shot

    with ExitStack() as stack:
        session = stack.enter_context(open_session(config, connection, cancel=options.cancel))
        session.check_mapping(force=args.full)
        if not args.json and sys.stderr.isatty():
            options.progress = _progress_bar(stack)
        report = session.run(options)
        export_one_shot(config, report.to_dict(), len(session.store.failed_writes(connection.name)))
    return report


def _progress_bar(stack: ExitStack) -> Callable[[str, int, int | None], None]:
    """A rich progress bar on the terminal for the long steps (reading, scoring and writing)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = stack.enter_context(
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=plain_console(stderr=True),
            transient=True,
        )
    )
    tasks: dict[str, Any] = {}

    def update(step: str, done: int, total: int | None) -> None:
        if step not in tasks:
            tasks[step] = progress.add_task(step, total=total)
        progress.update(tasks[step], completed=done, total=total)

    return update


def _install_signal_handlers(cancel: Any) -> list[int]:
    """SIGTERM and the first Ctrl-C stop the run after its current batch; a second Ctrl-C at once.

    Returns the list the handler appends each signal number to, so the command can tell a
    user's interrupt (exit 130) from a service manager's stop (exit 75).
    """
    import threading

    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return received

    def stop(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and signal.SIGINT in received:
            raise KeyboardInterrupt
        received.append(signum)
        if signum == signal.SIGINT:
            log.warning(
                "interrupted (Ctrl-C): finishing the current batch, then stopping; "
                "press Ctrl-C again to stop at once"
            )
        else:
            log.warning("asked to stop (SIGTERM): finishing the current batch, then stopping")
        cancel.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return received


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    """Run the scheduler service."""
    from connector.service.scheduler import serve

    config = common.load(args)
    return int(serve(config, interval_seconds=args.interval_seconds, max_runs=args.max_runs))
