"""Commands that read the scored book from the state store: report, explain, portfolio, audit."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console

from connector.cli import common
from connector.cli.audit_view import SINCE_HELP
from connector.cli.common import Commands
from connector.errors import EXIT_OK, ConfigError, ConfigProblem, UsageError


def add_report(commands: Commands) -> None:
    """`report`: the portfolio report as HTML or JSON."""
    report = commands.add_parser(
        "report",
        help="the portfolio report for credit managers: one HTML file with charts, or JSON",
    )
    common.add_config(report)
    report.add_argument("--html", metavar="FILE", help="write the report to this HTML file")
    report.add_argument("--json", action="store_true", help="print the report's figures as JSON")
    report.add_argument(
        "--as-of",
        type=date.fromisoformat,
        help="report date: windows end and later runs are ignored (default: today)",
    )
    report.set_defaults(handler=cmd_report)


def add_explain(commands: Commands) -> None:
    """`explain`: one account's score, band, limit and reasons."""
    explain = commands.add_parser(
        "explain", help="explain one account's score, band, limit and reasons"
    )
    common.add_config(explain)
    explain.add_argument(
        "account",
        metavar="ACCOUNT",
        help="the account's CRM id (in any form the CRM's own screens show it), its name or a "
        "unique part of it",
    )
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.set_defaults(handler=cmd_explain)


def add_portfolio(commands: Commands) -> None:
    """`portfolio`: every scored account and the book's totals."""
    portfolio = commands.add_parser(
        "portfolio",
        help="every scored account and the book's totals, in the home currency",
    )
    common.add_config(portfolio)
    portfolio.add_argument(
        "--band", action="append", choices=list("ABCDE"), help="only this band (repeatable)"
    )
    portfolio.add_argument("--owner", help="only accounts of this owner (CRM user id)")
    output = portfolio.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--csv", action="store_true", help="print the accounts as CSV")
    portfolio.set_defaults(handler=cmd_portfolio)


def add_audit(commands: Commands) -> None:
    """`audit`: the log of CRM writes and task actions."""
    audit = commands.add_parser("audit", help="print the audit log of CRM writes and task actions")
    common.add_config(audit)
    audit.add_argument("--account", help="only this account: its CRM id or its name")
    audit.add_argument("--since", metavar="WHEN", help=SINCE_HELP)
    audit.add_argument("--json", action="store_true", help="print JSON (newest first)")
    audit.add_argument("--limit", type=int, default=50, help="show the newest this many entries")
    audit.set_defaults(handler=cmd_audit)


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    """Build the portfolio report from the state store (no CRM call)."""
    from connector.report import build_figures, render_html
    from connector.report.output import write_atomically

    if not args.html and not args.json:
        raise ConfigError(
            [ConfigProblem("report", "nothing to do", "give --html FILE, --json, or both")]
        )
    config = common.load(args, offline=True)
    connection = config.connection(args.connection)
    store = common.state_store(config, create=False)
    try:
        figures = build_figures(store, config, connection, as_of=args.as_of).to_dict()
    finally:
        store.close()
    if args.html:
        size = write_atomically(Path(args.html), render_html(figures))
        sys.stderr.write(f"report written to {args.html} ({size / 1024:,.0f} KB)\n")
    if args.json:
        common.print_json(console, figures)
    return EXIT_OK


def cmd_explain(args: argparse.Namespace, console: Console) -> int:
    """Explain one account from the state store: by id or name, with what a next run would keep."""
    from connector.cli.accounts import resolve_account
    from connector.cli.explain import explanation_dict, kept_in_crm, render_explanation

    config = common.load(args, offline=True)
    connection = common.pick_connection(config, args.connection)
    store = common.state_store(config, create=False)
    try:
        stored = resolve_account(
            store, connection.name, args.account, normalise=common.normaliser(connection)
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
        mapping=common.mapping_for(connection, config),
        governance=config.governance_for(connection),
        now=now,
    )
    if args.json:
        common.print_json(console, explanation_dict(stored.account, assessment, kept=kept))
    else:
        console.print(render_explanation(stored.account, assessment, kept=kept))
    return EXIT_OK


def cmd_portfolio(args: argparse.Namespace, console: Console) -> int:
    """Show the scored book in the home currency."""
    from connector.cli.portfolio import portfolio_csv, portfolio_document, render_portfolio

    config = common.load(args, offline=True)
    connection = common.pick_connection(config, args.connection)
    store = common.state_store(config, create=False)
    try:
        document = portfolio_document(
            store, connection.name, bands=set(args.band or ()), owner=args.owner
        )
    finally:
        store.close()
    if args.json:
        common.print_json(console, document)
    elif args.csv:
        sys.stdout.write(portfolio_csv(document))
    else:
        for table in render_portfolio(document):
            console.print(table)
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, console: Console) -> int:
    """Print the audit log, newest first."""
    from connector.cli.accounts import resolve_account
    from connector.cli.audit_view import parse_since, render_audit

    config = common.load(args, offline=True)
    connection = common.pick_connection(config, args.connection) if args.connection else None
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: give a number of entries, 1 or more")
    store = common.state_store(config, create=False)
    try:
        since = parse_since(args.since, store.now()) if args.since else None
        record_id = None
        scope = f" of {connection.name}" if connection else ""
        if args.account:
            target = connection or common.pick_connection(config, None)
            account = resolve_account(
                store, target.name, args.account, normalise=common.normaliser(target)
            ).account
            record_id = account.crm_id
            scope = f" of {account.name} ({account.crm_id})"
        name = connection.name if connection else None
        rows = store.audit(
            name, record_id=record_id, since=since, limit=args.limit, newest_first=True
        )
        total = (
            store.count_audit(name, record_id=record_id, since=since)
            if len(rows) == args.limit
            else len(rows)
        )
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
        common.print_json(console, rows)
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


def _account_names(store: Any, connection: str, ids: list[str]) -> dict[str, str]:
    from connector.cli.accounts import account_names

    return account_names(store, connection, ids)
