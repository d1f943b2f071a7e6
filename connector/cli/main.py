"""The `crm-risk` command line: the only place that turns exceptions into messages and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from connector import __version__
from connector.cli.args import CommandLineError, HelpFormatter, Parser, finish_parser
from connector.cli.audit_view import SINCE_HELP
from connector.cli.failure import CONTEXT, describe, report, reset_context
from connector.cli.plain import PlainTable, plain_console
from connector.errors import (
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTIONS,
    EXIT_USAGE,
    ConfigError,
    ConfigProblem,
    RunCancelled,
    UsageError,
)
from connector.redaction import json_text, redact
from connector.registry import available_sandboxes

if TYPE_CHECKING:
    from connector.scoring.policy import ScoringPolicy

log = logging.getLogger("crm_risk.cli")

EXIT_CODES_HELP = "exit codes:\n" + "\n".join(
    textwrap.fill(meaning, 96, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7)
    for code, meaning in EXIT_CODES.items()
)

Handler = Callable[[argparse.Namespace, Console], int]


def _add_config(parser: argparse.ArgumentParser, *, connection: bool = True) -> None:
    parser.add_argument(
        "--config", "-c", default="crm-risk.toml", help="TOML config file (default: crm-risk.toml)"
    )
    parser.add_argument(
        "--secrets",
        help="TOML secrets file (default: $CRMRISK_SECRETS_FILE or crm-risk.secrets.toml)",
    )
    if connection:
        parser.add_argument("--connection", help="connection name (default: the only enabled one)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = Parser(
        prog="crm-risk",
        description="Explainable customer credit risk, synced into your CRM.",
        epilog=EXIT_CODES_HELP,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"crm-risk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    sync = commands.add_parser("sync", help="run one sync now: pull, score, plan, write")
    _add_config(sync)
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

    run = commands.add_parser(
        "run", help="run the scheduler service: every connection on its schedule"
    )
    _add_config(run, connection=False)
    run.add_argument("--interval-seconds", type=int, help="override every connection's schedule")
    run.add_argument(
        "--max-runs", type=int, help="stop after this many completed runs (for trials)"
    )
    run.set_defaults(handler=cmd_run)

    status = commands.add_parser("status", help="show recent runs and the next scheduled time")
    _add_config(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--limit", type=int, default=10, help="how many runs to show")
    status.set_defaults(handler=cmd_status)

    report = commands.add_parser(
        "report",
        help="the portfolio report for credit managers: one HTML file with charts, or JSON",
    )
    _add_config(report)
    report.add_argument("--html", metavar="FILE", help="write the report to this HTML file")
    report.add_argument("--json", action="store_true", help="print the report's figures as JSON")
    report.add_argument(
        "--as-of",
        type=date.fromisoformat,
        help="report date: windows end and later runs are ignored (default: today)",
    )
    report.set_defaults(handler=cmd_report)

    quarantine = commands.add_parser(
        "quarantine", help="list quarantined records, the rule they break and the accounts held"
    )
    _add_config(quarantine)
    quarantine.add_argument("--json", action="store_true", help="print JSON")
    quarantine.set_defaults(handler=cmd_quarantine)

    check = commands.add_parser("check", help="validate config and mapping against the live CRM")
    _add_config(check)
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument(
        "--offline", action="store_true", help="validate config and mapping files only"
    )
    check.set_defaults(handler=cmd_check)

    explain = commands.add_parser(
        "explain", help="explain one account's score, band, limit and reasons"
    )
    _add_config(explain)
    explain.add_argument(
        "account",
        metavar="ACCOUNT",
        help="the account's CRM id (in any form the CRM's own screens show it), its name or a "
        "unique part of it",
    )
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.set_defaults(handler=cmd_explain)

    portfolio = commands.add_parser(
        "portfolio",
        help="every scored account and the book's totals, in the home currency",
    )
    _add_config(portfolio)
    portfolio.add_argument(
        "--band", action="append", choices=list("ABCDE"), help="only this band (repeatable)"
    )
    portfolio.add_argument("--owner", help="only accounts of this owner (CRM user id)")
    output = portfolio.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--csv", action="store_true", help="print the accounts as CSV")
    portfolio.set_defaults(handler=cmd_portfolio)

    revert = commands.add_parser(
        "revert",
        help="undo one run: restore the field values it replaced, close or delete its tasks",
    )
    _add_config(revert, connection=False)
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

    backtest = commands.add_parser(
        "backtest",
        help="replay payment history through the model: ranking, bands, probability calibration",
    )
    backtest.add_argument("--invoices", required=True, help="CSV file of invoices")
    backtest.add_argument(
        "--format", choices=["ibm-ar", "canonical"], default="ibm-ar", help="CSV layout"
    )
    backtest.add_argument(
        "--split-date", type=date.fromisoformat, help="fit before, report after (out of time)"
    )
    backtest.add_argument(
        "--fit",
        action="store_true",
        help="refit probability_late on invoices known before the split date",
    )
    backtest.add_argument(
        "--fit-curves",
        action="store_true",
        help="propose points curves from invoices known before the split (each factor's late "
        "rate by value, monotone, 0-100), refit probability_late for them, report with both",
    )
    backtest.add_argument(
        "--write-policy",
        metavar="FILE",
        help="with --fit or --fit-curves: write the policy with what was fitted to FILE (TOML)",
    )
    backtest.add_argument(
        "--compare",
        metavar="POLICY_FILE",
        help="reference policy (TOML): its AUC and the gain with a customer-clustered interval",
    )
    backtest.add_argument(
        "--policy", metavar="POLICY_FILE", help="policy to test (TOML; default: built-in)"
    )
    backtest.add_argument(
        "--errors-file", metavar="FILE", help="write every data problem of the file to FILE (CSV)"
    )
    backtest.add_argument(
        "--bootstrap",
        type=int,
        metavar="N",
        help="bootstrap replicates for intervals (default 1000, fewer for very large files; 0 = none)",
    )
    backtest.add_argument("--json", action="store_true", help="print JSON")
    backtest.add_argument(
        "--config", "-c", help="config file whose [policy] to use (default: built-in policy)"
    )
    backtest.set_defaults(handler=cmd_backtest)

    audit = commands.add_parser("audit", help="print the audit log of CRM writes and task actions")
    _add_config(audit)
    audit.add_argument("--account", help="only this account: its CRM id or its name")
    audit.add_argument("--since", metavar="WHEN", help=SINCE_HELP)
    audit.add_argument("--json", action="store_true", help="print JSON (newest first)")
    audit.add_argument("--limit", type=int, default=50, help="show the newest this many entries")
    audit.set_defaults(handler=cmd_audit)

    demo = commands.add_parser(
        "demo", help="start a local sandbox CRM and show two syncs against it"
    )
    # The sandbox CRMs this installation has (entry points), not a list written here.
    sandbox_kinds = available_sandboxes()
    demo.add_argument(
        "--crm",
        choices=[*sandbox_kinds, "all", "both"],
        default="all",
        help="which sandbox CRM ('all': every installed one; 'both' is its old name)",
    )
    demo.add_argument("--accounts", type=int, default=60, help="accounts in the sandbox")
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated portfolio")
    demo.add_argument("--keep", help="keep the demo state and config in this folder")
    demo.set_defaults(handler=cmd_demo)

    sandbox = commands.add_parser("sandbox", help="local sandbox CRMs")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    sandbox_commands.required = True
    serve = sandbox_commands.add_parser(
        "serve",
        help="serve a sandbox CRM until SIGTERM or SIGINT",
        description="Serve a local sandbox CRM (HTTPS with its own test CA, seeded accounts\n"
        "and invoices) until SIGTERM or SIGINT. It prints its URLs, its CA bundle, a config\n"
        "section and the throw-away credentials to put in the environment.",
        formatter_class=HelpFormatter,
    )
    # The kinds come from the registry's entry points, so a new sandbox needs no edit here.
    serve.add_argument(
        "--crm", choices=sandbox_kinds, required=True, help="which CRM's API to serve"
    )
    serve.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    serve.add_argument("--accounts", type=int, default=60, help="accounts to seed")
    serve.add_argument(
        "--seed", type=int, default=7, help="seed of the generated accounts and invoices"
    )
    serve.add_argument(
        "--latency-ms", type=float, default=0, help="delay added to every answer, in ms"
    )
    serve.add_argument(
        "--faults",
        default="",
        help="faults to inject, e.g. rate_429=0.1,burst_429=3 (default: none)",
    )
    serve.add_argument(
        "--state-file", help="persist the sandbox's data in this JSON file (default: in memory)"
    )
    serve.add_argument(
        "--json", action="store_true", help="print one JSON line with URLs and credentials"
    )
    serve.set_defaults(handler=cmd_sandbox_serve)

    fields = commands.add_parser("fields", help="custom fields the mapping needs")
    fields_commands = fields.add_subparsers(dest="fields_command", metavar="SUBCOMMAND")
    fields_commands.required = True
    plan = fields_commands.add_parser("plan", help="list the custom fields the CRM lacks")
    _add_config(plan)
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

    store_parser = commands.add_parser(
        "store", help="the state store: integrity check, backup, migrate"
    )
    store_commands = store_parser.add_subparsers(dest="store_command", metavar="SUBCOMMAND")
    store_commands.required = True
    store_check = store_commands.add_parser(
        "check", help="run SQLite's integrity check on the state file (or on a backup of it)"
    )
    _add_config(store_check, connection=False)
    store_check.add_argument(
        "file", nargs="?", help="a state file or backup (default: [store] url)"
    )
    store_check.add_argument("--json", action="store_true", help="print JSON")
    store_check.set_defaults(handler=cmd_store_check)
    store_backup = store_commands.add_parser(
        "backup", help="copy the state file into FILE while runs may go on (online backup)"
    )
    _add_config(store_backup, connection=False)
    store_backup.add_argument("target", metavar="FILE", help="where to write the backup")
    store_backup.add_argument("--force", action="store_true", help="replace an existing FILE")
    store_backup.set_defaults(handler=cmd_store_backup)
    migrate = store_commands.add_parser(
        "migrate",
        help="copy a whole state store to another one (e.g. SQLite to PostgreSQL), verified",
        description="Copy records, watermarks, assessments, the task ledger, the audit log, write "
        "intents and the run history, then verify row counts and checksums of every table before "
        "committing. Stop `crm-risk run` first. The source is upgraded to this version's schema.",
    )
    migrate.add_argument(
        "--from",
        dest="source",
        required=True,
        help="source store: sqlite:///relative.db, sqlite:////absolute.db, a path, or postgresql://...",
    )
    migrate.add_argument(
        "--to", dest="target", required=True, help="target store URL (created if a new SQLite file)"
    )
    migrate.add_argument(
        "--force", action="store_true", help="replace what a non-empty target holds"
    )
    migrate.add_argument("--json", action="store_true", help="print the report as JSON")
    migrate.set_defaults(handler=cmd_store_migrate)

    mappings = commands.add_parser("mappings", help="field mappings")
    mappings_commands = mappings.add_subparsers(dest="mappings_command", metavar="SUBCOMMAND")
    mappings_commands.required = True
    show = mappings_commands.add_parser(
        "show", help="print the effective mapping after extends and overrides"
    )
    _add_config(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(handler=cmd_mappings_show)
    # Descriptions and defaults in every --help; --log-format/--log-level after the subcommand.
    finish_parser(parser)
    return parser


# -- helpers -----------------------------------------------------------------------------------


def _load(args: argparse.Namespace, *, offline: bool = False) -> Any:
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


def _connection(config: Any, name: str | None) -> Any:
    """The connection a command works on; errors from here on name it."""
    connection = config.connection(name)
    CONTEXT.connection = connection.name
    return connection


def _open_store(config: Any, *, create: bool = True) -> Any:
    """The state store; commands that only read pass create=False and never leave a file behind."""
    from connector.errors import StoreMissingError
    from connector.store import open_store

    try:
        return open_store(config.store.url, create=create)
    except StoreMissingError as exc:
        raise StoreMissingError(exc.path, config.source) from None


def _existing_store(config: Any) -> Any:
    """The state store if it exists (for cached tokens), else None: `check` creates no state."""
    from connector.errors import StoreMissingError

    try:
        return _open_store(config, create=False)
    except StoreMissingError:
        return None


def _mapping_for(connection: Any, config: Any) -> Any:
    from connector.mapping import load_mapping

    return load_mapping(connection.mapping, base_dir=Path(config.base_dir or Path.cwd()))


def _print_json(console: Console, payload: Any) -> None:
    sys.stdout.write(json_text(payload, default=str, indent=2) + "\n")


# -- commands --------------------------------------------------------------------------------------


def cmd_sync(args: argparse.Namespace, console: Console) -> int:
    """Run one sync for a connection."""
    from connector.engine.sync import SyncOptions, classify_exit

    if (args.detail or args.account) and not args.dry_run:
        # A real sync writes every changed account; these only choose what a dry run prints.
        option = "--detail" if args.detail else "--account"
        raise UsageError(f"{option} chooses what `sync --dry-run` prints; add --dry-run")
    config = _load(args)
    connection = _connection(config, args.connection)
    mapping = _mapping_for(connection, config)
    options = SyncOptions(dry_run=args.dry_run, full=args.full, trigger="cli", as_of=args.as_of)
    # From here on SIGTERM/SIGINT stop the run within seconds, even inside a slow CRM call.
    signals = _install_signal_handlers(options.cancel)
    try:
        report = _sync_once(args, config, connection, mapping, options)
    except RunCancelled:
        # Stopped before the run began (the mapping check, the login): nothing was written.
        if signal.SIGINT not in signals:
            raise
        return _interrupted()
    shown = report.to_dict()
    if args.account:
        shown["planned"] = _account_plan(shown["planned"], args.account, connection)
    if args.json:
        _print_json(console, shown)
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

    chosen = select(gather(planned), wanted, _normaliser(connection))
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
    args: argparse.Namespace, config: Any, connection: Any, mapping: Any, options: Any
) -> Any:
    """Open the store and the adapter, check the mapping, run the sync; close both."""
    from connector.engine.sync import run_sync
    from connector.registry import create_adapter

    with ExitStack() as stack:
        store = _open_store(config)
        stack.callback(store.close)
        adapter = create_adapter(connection.crm_settings(), state=store, cancel=options.cancel)
        stack.callback(adapter.close)
        _refuse_on_mapping_errors(
            adapter, mapping, store=store, connection=connection.name, force=args.full
        )
        if not args.json and sys.stderr.isatty():
            options.progress = _progress_bar(stack)
        report = run_sync(
            config=config,
            connection=connection,
            adapter=adapter,
            store=store,
            mapping=mapping,
            options=options,
        )
        from connector.service.metrics import export_one_shot

        export_one_shot(config, report.to_dict(), len(store.failed_writes(connection.name)))
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


def _refuse_on_mapping_errors(
    adapter: Any, mapping: Any, *, store: Any = None, connection: str = "", force: bool = False
) -> None:
    """`sync` refuses to start on a mapping error rather than skipping the field (cached a day)."""
    from connector.engine.drift import refuse_on_mapping_errors

    refuse_on_mapping_errors(adapter, mapping, store=store, connection=connection, force=force)


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

    config = _load(args)
    return int(serve(config, interval_seconds=args.interval_seconds, max_runs=args.max_runs))


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    """Show recent runs, leases and (on a shared store) the workers and what each holds."""
    from connector.cli.status_view import connection_line, runs_table
    from connector.store.coordination import WorkQueue

    config = _load(args, offline=True)
    if args.connection:
        _connection(config, args.connection)
    store = _existing_store(config)
    if store is None:
        # No store yet means no run yet: say where we looked, and leave nothing behind.
        if args.json:
            _print_json(console, {"runs": [], "store_missing": config.store.url})
        else:
            console.print(
                f"no state store at {config.store.url} yet: no run has happened "
                f"({config.describe_setting('store.url')}; relative paths follow the config "
                "file's folder)",
                soft_wrap=True,
            )
        return EXIT_OK
    try:
        name = args.connection
        runs = store.recent_runs(name, limit=args.limit)
        connections = [name] if name else sorted(config.connections)
        now = store.now()
        leases = {conn: _lease_view(store.lease(conn), now) for conn in connections}
        pending = {conn: len(store.failed_writes(conn)) for conn in connections}
        quarantined = {conn: store.count_quarantined(conn) for conn in connections}
        held = {conn: len(store.held_accounts(conn)) for conn in connections}
        held_back = {conn: len(store.field_blocks(conn)) for conn in connections}
        workers = [worker.to_dict() for worker in WorkQueue(store).workers()]
    finally:
        store.close()
    from connector.service.scheduler import next_run_times

    due = next_run_times(config, connections)
    # Runs are scheduled only while a `crm-risk run` service (or a worker) is alive.
    service_running = any(worker["alive"] for worker in workers)
    for run in runs:
        run["dry_run"] = bool(run.get("dry_run"))  # 0/1 in the table, a boolean in the report
    if args.json:
        _print_json(
            console,
            {
                "runs": runs,
                "service_running": service_running,
                "connections": {
                    conn: {
                        "lease": leases[conn],
                        "pending_retries": pending[conn],
                        "quarantined": quarantined[conn],
                        "held_accounts": held[conn],
                        "fields_held_back": held_back[conn],
                        "next_run": due.get(conn) if service_running else None,
                        "due_at": due.get(conn),
                    }
                    for conn in connections
                },
                "workers": workers,
            },
        )
        return EXIT_OK
    if runs:
        console.print(runs_table(runs, now, console.width))
    else:
        console.print("no runs yet" + (f" of {name}" if name else ""))
    for conn in connections:
        connection = config.connections.get(conn)
        console.print(
            connection_line(
                conn,
                lease=leases[conn],
                pending=pending[conn],
                quarantined=quarantined[conn],
                held=held[conn],
                held_back=held_back[conn],
                due_at=due.get(conn),
                enabled=connection is None or connection.enabled,
                service_running=service_running,
                now=now,
            )
        )
    if workers:
        console.print(_workers_table(workers))
    return EXIT_OK


def _lease_view(lease: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    """A lease row with its state: running, expired, or stale (its process on this host is gone)."""
    from connector.store.holders import stale_reason

    if lease is None:
        return None
    reason = stale_reason(str(lease["holder"]))
    if reason is not None:
        return {**lease, "state": "stale", "stale_reason": reason}
    if datetime.fromisoformat(str(lease["expires_at"])) <= now:
        return {**lease, "state": "expired"}
    return {**lease, "state": "running"}


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    """Build the portfolio report from the state store (no CRM call)."""
    from connector.report import build_figures, render_html
    from connector.report.output import write_atomically

    if not args.html and not args.json:
        raise ConfigError(
            [ConfigProblem("report", "nothing to do", "give --html FILE, --json, or both")]
        )
    config = _load(args, offline=True)
    connection = config.connection(args.connection)
    store = _open_store(config, create=False)
    try:
        figures = build_figures(store, config, connection, as_of=args.as_of).to_dict()
    finally:
        store.close()
    if args.html:
        size = write_atomically(Path(args.html), render_html(figures))
        sys.stderr.write(f"report written to {args.html} ({size / 1024:,.0f} KB)\n")
    if args.json:
        _print_json(console, figures)
    return EXIT_OK


def cmd_quarantine(args: argparse.Namespace, console: Console) -> int:
    """List every quarantined record: what, why, which account it holds, since when."""
    config = _load(args, offline=True)
    names = [_connection(config, args.connection).name] if args.connection else None
    store = _existing_store(config)
    rows: list[dict[str, Any]] = []
    if store is not None:
        try:
            if names is None:
                rows = store.quarantined()
            else:
                rows = [row for name in names for row in store.quarantined(name)]
        finally:
            store.close()
    listed = [
        {
            "connection": row["connection"],
            "object": row["object"],
            "record_id": row["record_id"],
            "name": row.get("name") or "",
            "holds_account": row.get("account_id") or "",
            "rule": row.get("rule") or "",
            "field": row.get("field") or "",
            "value": row.get("value") or "",
            "reason": row["reason"],
            "first_seen": row.get("first_seen") or row["at"],
            "last_seen": row["last_seen"],
            "run_id": row["run_id"],
        }
        for row in rows
    ]
    if args.json:
        _print_json(console, {"count": len(listed), "quarantined": listed})
        return EXIT_OK
    if not listed:
        console.print("no quarantined records")
        return EXIT_OK
    table = PlainTable(title=f"Quarantined records ({len(listed)})")
    for column in (
        "connection",
        "object",
        "id",
        "name",
        "holds account",
        "rule",
        "field",
        "value",
        "first seen",
        "last seen",
    ):
        table.add_column(column, overflow="fold")
    for item in listed:
        table.add_row(
            item["connection"],
            item["object"],
            item["record_id"],
            _short(item["name"]),
            item["holds_account"],
            item["rule"],
            item["field"],
            _short(item["value"]),
            item["first_seen"][:19].replace("T", " "),
            item["last_seen"][:19].replace("T", " "),
        )
    console.print(table)
    for item in listed:
        console.print(f"{item['object']} {item['record_id']}: {item['reason']}", soft_wrap=True)
    console.print(
        "A held account is not scored or written until its records are valid again: fix them "
        "in the CRM (or the mapping's [validation] rules); the next sync releases them."
    )
    return EXIT_OK


def _workers_table(workers: list[dict[str, Any]]) -> PlainTable:
    """`crm-risk run` workers sharing the store (PostgreSQL), and the connections each holds."""
    table = PlainTable(title="Workers")
    for column in ("worker", "state", "last heartbeat (UTC)", "runs", "holds"):
        table.add_column(column, overflow="fold")
    for worker in workers:
        table.add_row(
            worker["worker_id"],
            "alive" if worker["alive"] else "gone (heartbeat expired)",
            worker["heartbeat_at"][:19].replace("T", " "),
            f"{worker['running']}/{worker['capacity']}",
            ", ".join(worker["holds"]) or "-",
        )
    return table


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    """Validate config and mapping, then the mapping against the live CRM."""
    from connector.mapping.check import check_mapping
    from connector.protocol import CredentialVerifier
    from connector.registry import create_adapter

    config = _load(args)
    names = [args.connection] if args.connection else sorted(config.connections)
    results: dict[str, Any] = {}
    exit_code = EXIT_OK
    for name in names:
        connection = _connection(config, name)
        mapping = _mapping_for(connection, config)
        entry: dict[str, Any] = {
            "mapping": str(mapping.source),
            "problems": [],
            "quota_remaining": None,
            "enabled": connection.enabled,
        }
        # A disabled connection is checked offline unless named: its secrets may be absent.
        entry["checked_online"] = not args.offline and (connection.enabled or bool(args.connection))
        if entry["checked_online"]:
            store = _existing_store(config)
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
        _print_json(console, {"ok": exit_code == EXIT_OK, "connections": results})
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


def cmd_explain(args: argparse.Namespace, console: Console) -> int:
    """Explain one account from the state store: by id or name, with what a next run would keep."""
    from connector.cli.accounts import resolve_account
    from connector.cli.explain import explanation_dict, kept_in_crm, render_explanation

    config = _load(args, offline=True)
    connection = _connection(config, args.connection)
    store = _open_store(config, create=False)
    try:
        stored = resolve_account(
            store, connection.name, args.account, normalise=_normaliser(connection)
        )
        account_id = stored.account.crm_id
        assessment = store.get_assessment(connection.name, account_id)
        last_written = store.last_written(connection.name, account_id)
        held = store.held_accounts(connection.name).get(account_id)
        now = store.now()
    finally:
        store.close()
    label = f"{stored.account.name} ({account_id})" if stored.account.name else account_id
    if assessment is None:
        why = (
            "its records are held until they are valid (crm-risk quarantine lists why)"
            if held
            else "it was read but not scored yet (run `crm-risk sync`)"
        )
        raise UsageError(f"account {label} has no assessment to explain: {why}")
    kept = kept_in_crm(
        stored,
        assessment,
        last_written=last_written,
        mapping=_mapping_for(connection, config),
        governance=config.governance_for(connection),
        now=now,
    )
    if args.json:
        _print_json(console, explanation_dict(stored.account, assessment, kept=kept))
    else:
        console.print(render_explanation(stored.account, assessment, kept=kept))
    return EXIT_OK


def cmd_portfolio(args: argparse.Namespace, console: Console) -> int:
    """Show the scored book in the home currency."""
    from connector.cli.portfolio import portfolio_csv, portfolio_document, render_portfolio

    config = _load(args, offline=True)
    connection = _connection(config, args.connection)
    store = _open_store(config, create=False)
    try:
        document = portfolio_document(
            store, connection.name, bands=set(args.band or ()), owner=args.owner
        )
    finally:
        store.close()
    if args.json:
        _print_json(console, document)
    elif args.csv:
        sys.stdout.write(portfolio_csv(document))
    else:
        for table in render_portfolio(document):
            console.print(table)
    return EXIT_OK


def cmd_revert(args: argparse.Namespace, console: Console) -> int:
    """Undo one run where the CRM still holds what it wrote."""
    from connector.engine.revert import plan_revert, revert_run
    from connector.engine.sync import holder_id
    from connector.registry import create_adapter

    config = _load(args)
    store = _open_store(config, create=False)
    try:
        connection = _connection(config, plan_revert(store, args.run_id)[0])
        mapping = _mapping_for(connection, config)
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
        _print_json(console, report.to_dict())
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
            _short(item.written),
            _short(item.replaced),
            _short(item.current),
            verb,
        )
    for item in report.kept:
        table.add_row(
            item.account_id,
            item.field,
            _short(item.written),
            _short(item.replaced),
            _short(item.current),
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


def _policy_file(path: str) -> ScoringPolicy:
    """A policy from a TOML file: its [policy] table, or the whole file when it has none."""
    import tomllib

    from pydantic import ValidationError

    from connector.errors import unreadable
    from connector.scoring.policy import ScoringPolicy

    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError([ConfigProblem(path, f"policy file {unreadable(path, exc)}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem(path, f"not valid TOML: {exc}")]) from None
    section = data.get("policy", data) if isinstance(data.get("policy"), dict) else data
    try:
        return ScoringPolicy.model_validate(section)
    except ValidationError as exc:
        problems = [
            ConfigProblem(".".join(str(part) for part in error["loc"]) or "policy", error["msg"])
            for error in exc.errors()
        ]
        raise ConfigError(problems, path) from None


def cmd_backtest(args: argparse.Namespace, console: Console) -> int:
    """Backtest the model on an invoice history file."""
    from connector.cli.backtest_view import render_backtest
    from connector.scoring.backtest import run_backtest
    from connector.scoring.policy import ScoringPolicy, policy_to_toml

    if args.write_policy and not (args.fit or args.fit_curves):
        raise ConfigError([ConfigProblem("--write-policy", "needs --fit or --fit-curves")])
    if args.policy:
        policy = _policy_file(args.policy)
    else:
        policy = _load(args).policy if args.config else ScoringPolicy()
    reference = _policy_file(args.compare) if args.compare else None
    try:
        report = run_backtest(
            Path(args.invoices),
            args.format,
            args.split_date,
            policy,
            fit=args.fit,
            compare=reference,
            compare_name=Path(args.compare).name if args.compare else "",
            errors_file=args.errors_file,
            bootstrap=None if args.bootstrap is None else max(0, args.bootstrap),
            curves=args.fit_curves,
        )
    except ValueError as exc:
        raise ConfigError([ConfigProblem("--split-date", str(exc))]) from None
    if args.write_policy and report.fitted_policy is not None:
        command = "--fit-curves" if args.fit_curves else "--fit"
        header = (
            f"Written by crm-risk backtest {command} on {date.today().isoformat()}.\n"
            + (
                f"curves: fitted on {report.curves['invoices']} invoices known before "
                f"{report.split_date} ({report.curves['positives']} late)\n"
                if report.curves
                else ""
            )
            + f"probability_late: {report.fitted_policy.probability.fitted_on}"
        )
        Path(args.write_policy).write_text(
            policy_to_toml(report.fitted_policy, header), encoding="utf-8"
        )
    if args.json:
        _print_json(console, report.to_dict())
    else:
        console.print(render_backtest(report))
        if args.write_policy:
            what = "proposed curves and " if args.fit_curves else ""
            console.print(
                f"policy with the {what}refitted probability table written to {args.write_policy}"
            )
    # Rows left out for data problems: the figures stand, but the file needs attention.
    return EXIT_REJECTIONS if report.input["rows_rejected"] else EXIT_OK


def cmd_audit(args: argparse.Namespace, console: Console) -> int:
    """Print the audit log, newest first."""
    from connector.cli.accounts import resolve_account
    from connector.cli.audit_view import parse_since, render_audit

    config = _load(args, offline=True)
    connection = _connection(config, args.connection) if args.connection else None
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: give a number of entries, 1 or more")
    store = _open_store(config, create=False)
    try:
        since = parse_since(args.since, store.now()) if args.since else None
        record_id = None
        scope = f" of {connection.name}" if connection else ""
        if args.account:
            target = connection or _connection(config, None)
            account = resolve_account(
                store, target.name, args.account, normalise=_normaliser(target)
            ).account
            record_id = account.crm_id
            scope = f" of {account.name} ({account.crm_id})"
        name = connection.name if connection else None
        filters = {"record_id": record_id, "since": since}
        rows = store.audit(name, limit=args.limit, newest_first=True, **filters)
        total = store.count_audit(name, **filters) if len(rows) == args.limit else len(rows)
        names = {
            (conn, record): account_name
            for conn in {str(row["connection"]) for row in rows}
            for record, account_name in _account_names(
                store, conn, [str(row["record_id"]) for row in rows if row["connection"] == conn]
            ).items()
        }
    finally:
        store.close()
    if args.json:
        _print_json(console, rows)
        return EXIT_OK
    several = len({row["connection"] for row in rows}) > 1
    shown = f"newest {len(rows)} of {total}" if total > len(rows) else f"{total} entries"
    if not rows:
        console.print(f"no audit entries{scope}" + (f" since {args.since}" if args.since else ""))
        return EXIT_OK
    console.print(
        render_audit(
            rows,
            names,
            total=total,
            several_connections=several,
            title=f"Audit log{scope}: {shown}, newest first",
            width=console.width,
            show_accounts=record_id is None,
        )
    )
    return EXIT_OK


def _normaliser(connection: Any) -> Callable[[str], str]:
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


def _account_names(store: Any, connection: str, ids: list[str]) -> dict[str, str]:
    from connector.cli.accounts import account_names

    return account_names(store, connection, ids)


def _short(value: Any) -> str:
    text = (
        ""
        if value is None
        else (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        )
    )
    return text if len(text) <= 60 else text[:57] + "..."


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    """Start sandbox CRMs in-process and show two syncs."""
    from connector.cli.demo import run_demo

    return run_demo(console, crm=args.crm, accounts=args.accounts, seed=args.seed, keep=args.keep)


def cmd_sandbox_serve(args: argparse.Namespace, console: Console) -> int:
    """Serve a sandbox CRM until SIGTERM or SIGINT."""
    from connector.registry import sandbox_starter

    starter = sandbox_starter(args.crm)
    module = sys.modules[starter.__module__]
    serve_main = module.main
    argv = ["serve", "--crm", args.crm, "--port", str(args.port), "--accounts", str(args.accounts)]
    argv += ["--seed", str(args.seed), "--latency-ms", str(args.latency_ms)]
    if args.faults:
        argv += ["--faults", args.faults]
    if args.state_file:
        argv += ["--state-file", args.state_file]
    if args.json:
        argv.append("--json")
    return int(serve_main(argv) or 0)


def cmd_fields_plan(args: argparse.Namespace, console: Console) -> int:
    """List the custom fields the CRM lacks: as setup steps, JSON, or the CRM's deployable files."""
    from connector.mapping.check import plan_fields
    from connector.protocol import FieldPlanFiles, FieldPlanText
    from connector.registry import create_adapter

    config = _load(args)
    connection = _connection(config, args.connection)
    mapping = _mapping_for(connection, config)
    store = _existing_store(config)
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
        _print_json(console, [getattr(item, "__dict__", item) for item in missing])
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
    store = _existing_store(config)
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


def _sqlite_path(config: Any, command: str) -> str:
    url = str(config.store.url)
    if url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            [
                ConfigProblem(
                    "[store] url",
                    f"`crm-risk store {command}` works on SQLite state files",
                    "for PostgreSQL use pg_dump / pg_restore and the amcheck extension",
                )
            ],
            config.source,
        )
    return url.removeprefix("sqlite:///").removeprefix("sqlite://")


def cmd_store_check(args: argparse.Namespace, console: Console) -> int:
    """SQLite's integrity check on the state file or a backup; exit 78 when it is damaged."""
    from connector.store.sqlite import integrity_problems

    path = args.file or _sqlite_path(_load(args, offline=True), "check")
    problems = integrity_problems(path)
    if args.json:
        _print_json(console, {"file": path, "ok": not problems, "problems": problems})
    elif problems:
        sys.stderr.write(f"error: state file {path} is damaged:\n")
        for problem in problems:
            sys.stderr.write(f"  {problem}\n")
        sys.stderr.write(
            "  restore your latest backup, or move the file aside: the next sync rebuilds its "
            "ledger from the CRM\n"
        )
    else:
        console.print(f"ok: {path} passed SQLite's integrity check", soft_wrap=True)
    return EXIT_CONFIG if problems else EXIT_OK


def cmd_store_backup(args: argparse.Namespace, console: Console) -> int:
    """Online backup of the SQLite state file (consistent while runs write)."""
    config = _load(args, offline=True)
    _sqlite_path(config, "backup")
    target = Path(args.target)
    if target.exists() and not args.force:
        raise ConfigError(
            [ConfigProblem(str(target), "already exists", "choose another name or add --force")]
        )
    store = _open_store(config, create=False)
    try:
        size = store.backup(str(target))
    finally:
        store.close()
    console.print(
        f"backup of {store.path} written to {target} ({size:,} bytes, integrity check ok)",
        soft_wrap=True,
    )
    return EXIT_OK


def _same_sqlite_file(source: str, target: str) -> bool:
    """Whether two store URLs name one SQLite file: relative or absolute, through a symlink, with
    or without `sqlite:///` (checked before anything is opened; a database reached by two
    different URLs is caught by content in copy_store)."""
    if source == target:
        return True
    paths = []
    for url in (source, target):
        if url.startswith(("postgresql://", "postgres://")) or url == ":memory:":
            return False
        paths.append(Path(url.removeprefix("sqlite:///").removeprefix("sqlite://")))
    first, second = paths
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return os.path.realpath(first) == os.path.realpath(second)


def cmd_store_migrate(args: argparse.Namespace, console: Console) -> int:
    """Copy a whole state store to another, verified by row counts and checksums."""
    from connector.redaction import redact_url
    from connector.store import open_store
    from connector.store.transfer import LEFT_BEHIND, copy_store

    if _same_sqlite_file(args.source, args.target):
        raise ConfigError(
            [ConfigProblem("--to", "is the same store as --from (one file, two spellings)")]
        )
    source = open_store(args.source, create=False)
    try:
        target = open_store(args.target)
        try:
            report = copy_store(source, target, force=args.force)
        finally:
            target.close()
    finally:
        source.close()
    if args.json:
        _print_json(
            console,
            {"from": redact_url(args.source), "to": redact_url(args.target), **report.to_dict()},
        )
        return EXIT_OK
    table = PlainTable(title=f"Copied {redact_url(args.source)} to {redact_url(args.target)}")
    for column in ("table", "rows", "checksum", "verified"):
        table.add_column(column, no_wrap=True)
    for digest in report.source:
        table.add_row(digest.table, str(digest.rows), digest.checksum, "ok")
    console.print(table)
    console.print(
        f"{sum(digest.rows for digest in report.source)} rows in {len(report.source)} tables "
        "copied; counts and checksums match."
        + (" The target's previous contents were replaced." if report.replaced else ""),
        soft_wrap=True,
    )
    for name, why in LEFT_BEHIND.items():
        console.print(f"not copied: {name} ({why})", soft_wrap=True)
    return EXIT_OK


def cmd_mappings_show(args: argparse.Namespace, console: Console) -> int:
    """Print the effective mapping."""
    config = _load(args, offline=True)
    connection = _connection(config, args.connection)
    mapping = _mapping_for(connection, config)
    if args.json:
        _print_json(console, mapping.effective_dict())
    else:
        sys.stdout.write(mapping.to_toml())
    return EXIT_OK


# -- entry point -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    context = reset_context(arguments)
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except CommandLineError as error:
        sys.stderr.write(error.usage)
        report(describe(error, context), json_output="--json" in arguments)
        return EXIT_USAGE
    from connector.logs import setup_logging

    setup_logging(args.log_format or "auto", args.log_level or "INFO")
    context.json_output = bool(getattr(args, "json", False)) or (
        getattr(args, "format", None) == "json"
    )
    console = plain_console()
    handler: Handler = args.handler
    try:
        return handler(args, console)
    except (Exception, KeyboardInterrupt) as error:  # the one place errors become exit codes
        failure = describe(error, context)
        report(failure, json_output=context.json_output)
        return failure.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
