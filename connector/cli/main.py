"""The `crm-risk` command line: the only place that turns exceptions into messages and exit codes."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence

from rich.console import Console

from connector import __version__
from connector.cli.args import CommandLineError, HelpFormatter, Parser, finish_parser
from connector.cli.commands import (
    backtest,
    book,
    fields,
    revert,
    sandbox,
    setup,
    status,
    store,
    sync,
)
from connector.cli.common import Commands
from connector.cli.failure import describe, report, reset_context
from connector.cli.plain import plain_console
from connector.errors import EXIT_CODES, EXIT_USAGE

EXIT_CODES_HELP = "exit codes:\n" + "\n".join(
    textwrap.fill(meaning, 96, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7)
    for code, meaning in EXIT_CODES.items()
)

Handler = Callable[[argparse.Namespace, Console], int]


# The subcommands in the order `--help` lists them.
ADD_COMMANDS: tuple[Callable[[Commands], None], ...] = (
    sync.add_sync,
    sync.add_run,
    status.add_status,
    book.add_report,
    status.add_quarantine,
    setup.add_check,
    book.add_explain,
    book.add_portfolio,
    revert.add_revert,
    backtest.add_backtest,
    book.add_audit,
    sandbox.add_demo,
    sandbox.add_sandbox,
    fields.add_fields,
    store.add_store,
    setup.add_mappings,
)


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
    for add in ADD_COMMANDS:
        add(commands)
    # Descriptions and defaults in every --help; --log-format/--log-level after the subcommand.
    finish_parser(parser)
    return parser


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
