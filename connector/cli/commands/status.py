"""`status` and `quarantine`: what ran, what is due, who holds what, which records are held."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console

from connector.cli import common
from connector.cli.common import Commands
from connector.cli.plain import PlainTable
from connector.errors import EXIT_OK

if TYPE_CHECKING:
    from connector.config import AppConfig
    from connector.store import SqlStore


def add_status(commands: Commands) -> None:
    """`status`: recent runs, leases, workers, next runs."""
    status = commands.add_parser("status", help="show recent runs and the next scheduled time")
    common.add_config(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--limit", type=int, default=10, help="how many runs to show")
    status.set_defaults(handler=cmd_status)


def add_quarantine(commands: Commands) -> None:
    """`quarantine`: held records and the rule they break."""
    quarantine = commands.add_parser(
        "quarantine", help="list quarantined records, the rule they break and the accounts held"
    )
    common.add_config(quarantine)
    quarantine.add_argument("--json", action="store_true", help="print JSON")
    quarantine.set_defaults(handler=cmd_quarantine)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    """Show recent runs, leases and (on a shared store) the workers and what each holds."""
    config = common.load(args, offline=True)
    if args.connection:
        common.pick_connection(config, args.connection)
    store = common.existing_store(config)
    if store is None:
        # No store yet means no run yet: say where we looked, and leave nothing behind.
        if args.json:
            common.print_json(console, {"runs": [], "store_missing": config.store.url})
        else:
            console.print(
                f"no state store at {config.store.url} yet: no run has happened "
                f"({config.describe_setting('store.url')}; relative paths follow the config "
                "file's folder)",
                soft_wrap=True,
            )
        return EXIT_OK
    name = args.connection
    connections = [name] if name else sorted(config.connections)
    try:
        seen = _read_status(store, name, connections, limit=args.limit)
    finally:
        store.close()
    from connector.service.schedules import next_run_times

    due = next_run_times(config, connections)
    if args.json:
        common.print_json(console, seen.document(due))
    else:
        _print_status(console, config, seen, due, name)
    return EXIT_OK


@dataclass(frozen=True)
class _Status:
    """What `status` read from the store, per connection where it is per connection."""

    runs: list[dict[str, Any]]
    connections: list[str]
    now: datetime
    leases: dict[str, dict[str, Any] | None]
    pending: dict[str, int]
    quarantined: dict[str, int]
    held: dict[str, int]
    held_back: dict[str, int]
    workers: list[dict[str, Any]]

    @property
    def service_running(self) -> bool:
        """Runs are scheduled only while a `crm-risk run` service (or a worker) is alive."""
        return any(worker["alive"] for worker in self.workers)

    def document(self, due: dict[str, str | None]) -> dict[str, Any]:
        """The `status --json` document."""
        return {
            "runs": self.runs,
            "service_running": self.service_running,
            "connections": {
                conn: {
                    "lease": self.leases[conn],
                    "pending_retries": self.pending[conn],
                    "quarantined": self.quarantined[conn],
                    "held_accounts": self.held[conn],
                    "fields_held_back": self.held_back[conn],
                    "next_run": due.get(conn) if self.service_running else None,
                    "due_at": due.get(conn),
                }
                for conn in self.connections
            },
            "workers": self.workers,
        }


def _read_status(
    store: SqlStore, name: str | None, connections: list[str], *, limit: int
) -> _Status:
    from connector.store.coordination import WorkQueue

    runs = store.recent_runs(name, limit=limit)
    now = store.now()
    for run in runs:
        run["dry_run"] = bool(run.get("dry_run"))  # 0/1 in the table, a boolean in the report
    return _Status(
        runs=runs,
        connections=connections,
        now=now,
        leases={conn: _lease_view(store.lease(conn), now) for conn in connections},
        pending={conn: len(store.failed_writes(conn)) for conn in connections},
        quarantined={conn: store.count_quarantined(conn) for conn in connections},
        held={conn: len(store.held_accounts(conn)) for conn in connections},
        held_back={conn: len(store.field_blocks(conn)) for conn in connections},
        workers=[worker.to_dict() for worker in WorkQueue(store).workers()],
    )


def _print_status(
    console: Console,
    config: AppConfig,
    seen: _Status,
    due: dict[str, str | None],
    name: str | None,
) -> None:
    from connector.cli.status_view import connection_line, runs_table

    if seen.runs:
        console.print(runs_table(seen.runs, seen.now, console.width))
    else:
        console.print("no runs yet" + (f" of {name}" if name else ""))
    for conn in seen.connections:
        connection = config.connections.get(conn)
        console.print(
            connection_line(
                conn,
                lease=seen.leases[conn],
                pending=seen.pending[conn],
                quarantined=seen.quarantined[conn],
                held=seen.held[conn],
                held_back=seen.held_back[conn],
                due_at=due.get(conn),
                enabled=connection is None or connection.enabled,
                service_running=seen.service_running,
                now=seen.now,
            )
        )
    if seen.workers:
        console.print(_workers_table(seen.workers))


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


def cmd_quarantine(args: argparse.Namespace, console: Console) -> int:
    """List every quarantined record: what, why, which account it holds, since when."""
    config = common.load(args, offline=True)
    names = [common.pick_connection(config, args.connection).name] if args.connection else None
    store = common.existing_store(config)
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
        common.print_json(console, {"count": len(listed), "quarantined": listed})
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
            common.short(item["name"]),
            item["holds_account"],
            item["rule"],
            item["field"],
            common.short(item["value"]),
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
