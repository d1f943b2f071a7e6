"""`backtest`: replay an invoice history file through the scoring model."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from connector.cli import common
from connector.cli.common import Commands
from connector.errors import EXIT_OK, EXIT_REJECTIONS, ConfigError, ConfigProblem

if TYPE_CHECKING:
    from connector.scoring.policy import ScoringPolicy


def add_backtest(commands: Commands) -> None:
    """`backtest`: ranking, bands and calibration on a history file."""
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
        policy = common.load(args).policy if args.config else ScoringPolicy()
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
        common.print_json(console, report.to_dict())
    else:
        console.print(render_backtest(report))
        if args.write_policy:
            what = "proposed curves and " if args.fit_curves else ""
            console.print(
                f"policy with the {what}refitted probability table written to {args.write_policy}"
            )
    # Rows left out for data problems: the figures stand, but the file needs attention.
    return EXIT_REJECTIONS if report.input["rows_rejected"] else EXIT_OK
