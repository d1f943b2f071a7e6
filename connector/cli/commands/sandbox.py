"""`demo` and `sandbox serve`: the local sandbox CRMs."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from connector.cli.args import HelpFormatter
from connector.cli.common import Commands
from connector.registry import available_sandboxes


def add_demo(commands: Commands) -> None:
    """`demo`: a sandbox CRM and two syncs against it."""
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


def add_sandbox(commands: Commands) -> None:
    """`sandbox serve`: serve a sandbox CRM until stopped."""
    sandbox_kinds = available_sandboxes()
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
