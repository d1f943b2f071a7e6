"""`store check`, `store backup` and `store migrate`: the state store's upkeep."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console

from connector.cli import common
from connector.cli.common import Commands
from connector.cli.plain import PlainTable
from connector.errors import EXIT_CONFIG, EXIT_OK, ConfigError, ConfigProblem, StoreMissingError

if TYPE_CHECKING:
    from connector.store.sqlite import SqliteStore


def add_store(commands: Commands) -> None:
    """`store`: integrity check, backup, migrate."""
    store_parser = commands.add_parser(
        "store", help="the state store: integrity check, backup, migrate"
    )
    store_commands = store_parser.add_subparsers(dest="store_command", metavar="SUBCOMMAND")
    store_commands.required = True
    store_check = store_commands.add_parser(
        "check", help="run SQLite's integrity check on the state file (or on a backup of it)"
    )
    common.add_config(store_check, connection=False)
    store_check.add_argument(
        "file", nargs="?", help="a state file or backup (default: [store] url)"
    )
    store_check.add_argument("--json", action="store_true", help="print JSON")
    store_check.set_defaults(handler=cmd_store_check)
    store_backup = store_commands.add_parser(
        "backup", help="copy the state file into FILE while runs may go on (online backup)"
    )
    common.add_config(store_backup, connection=False)
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

    if args.file:
        path = args.file
        if not os.path.exists(path):
            raise ConfigError(
                [ConfigProblem(path, "no such file", "give the path of a state file or a backup")]
            )
    else:
        config = common.load(args, offline=True)
        path = _sqlite_path(config, "check")
        if not os.path.exists(path):
            # No run yet: say so as `store backup` does, not as a file we cannot write.
            raise StoreMissingError(path, config.source)
    problems = integrity_problems(path)
    if args.json:
        common.print_json(console, {"file": path, "ok": not problems, "problems": problems})
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
    config = common.load(args, offline=True)
    _sqlite_path(config, "backup")
    target = Path(args.target)
    if target.exists() and not args.force:
        raise ConfigError(
            [ConfigProblem(str(target), "already exists", "choose another name or add --force")]
        )
    # _sqlite_path refused any other URL: the store is a SQLite file.
    store = cast("SqliteStore", common.state_store(config, create=False))
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
        common.print_json(
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
