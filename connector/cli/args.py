"""The argument parser's conventions: usage errors exit 64, help shows defaults, global options anywhere."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from connector.errors import EXIT_USAGE, UsageError


class CommandLineError(UsageError):
    """argparse found the command line wrong (unknown option, bad value): exit 64, with usage."""

    def __init__(self, message: str, usage: str) -> None:
        self.usage = usage
        super().__init__(message)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are exceptions (exit 64, EX_USAGE) instead of exit 2.

    argparse exits 2 on a usage error, which v1 documented as "unexpected crash"; raising lets
    the CLI print one line of usage and, for `--json` commands, the JSON failure document.
    """

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """Parse; unknown arguments are reported with the usage of the subcommand they follow."""
        arguments = list(sys.argv[1:] if args is None else args)
        parsed, extras = self.parse_known_args(arguments, namespace)
        if extras:
            subcommand_parser(self, arguments).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing and exiting 2."""
        raise CommandLineError(f"{self.prog}: {message}", self.format_usage())

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """`--help` and `--version` exit 0; anything else argparse exits with is a usage error."""
        if status and message:
            self.error(message.strip())
        super().exit(status if not status else EXIT_USAGE, message)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default, unless there is none or the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            # Identity, not equality: a default of 0 is worth showing (0 == False).
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == ""
            or not action.option_strings
            or isinstance(action, argparse._StoreConstAction)
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--log-format and --log-level, accepted before or after the subcommand.

    On subcommands they default to SUPPRESS, so a value given before the subcommand is kept
    unless the same option is given again after it.
    """
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        default=default,
        help="log format for this command; overrides [logging] format "
        "(auto: text on a terminal, JSON lines otherwise)",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=default,
        help="log level for this command; overrides [logging] level "
        "(DEBUG: every CRM call, config sources, timings)",
    )


def subcommand_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Parser:
    """The parser of the deepest subcommand named in argv (the top parser when none is)."""
    current = parser
    for token in argv:
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction) and token in action.choices:
                current = action.choices[token]
                break
    assert isinstance(current, Parser)
    return current


def leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand parser that runs a command (those without subcommands of their own)."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                children = leaf_parsers(sub)
                found.extend(children or [sub])
    return found


def finish_parser(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand its help line as a description, the help formatter, global options.

    Done once after all subcommands are declared, so the commands themselves stay one
    `add_parser(name, help=...)` each.
    """
    add_global_options(parser, top=True)
    _describe_subcommands(parser)
    for leaf in leaf_parsers(parser):
        add_global_options(leaf, top=False)


def _describe_subcommands(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            sub.formatter_class = HelpFormatter
            if not sub.description and helps.get(name):
                text = str(helps[name])
                sub.description = text[:1].upper() + text[1:] + "."
            _describe_subcommands(sub)
