"""`crm-risk demo`: start a sandbox CRM in-process, run two syncs, and show what was written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from connector.cli.plain import PlainTable
from connector.config import load_config
from connector.engine.session import open_session
from connector.engine.sync import SyncOptions
from connector.errors import EXIT_OK, ConnectorError
from connector.registry import (
    available_adapters,
    available_sandboxes,
    sandbox_starter,
)
from connector.report import build_figures, render_html
from connector.report.output import write_atomically

# The sandboxes seed their portfolio relative to this date, so the demo is the same on every run.
DEMO_AS_OF = date(2026, 11, 1)
# Task caps the demo cannot reach (ten rules an account at 100,000 accounts).
UNCAPPED = 1_000_000


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def demo_config(snippet: str, state_path: Path) -> str:
    """A config for the demo: the example's policies, the sandbox connection and a state file.

    The state file is named relative to the config (its folder), so the kept folder can be
    moved and every command finds the same store from any working directory.
    """
    return "\n".join(
        [
            "# Written by `crm-risk demo`.",
            "[store]",
            f'url = "{state_path.name}"',
            "",
            "[tasks]",
            'credit_manager_id = ""',
            "# The demo opens every follow-up in its first sync, so its second sync shows that a",
            "# sync with nothing new writes nothing. A first rollout on a real CRM keeps the caps",
            '# (100 new tasks a run, 10 an owner: config.example.toml, README "Task caps").',
            f"max_new_per_run = {UNCAPPED}",
            f"max_new_per_owner = {UNCAPPED}",
            "",
            "# Stress scenarios of the portfolio report (`crm-risk report --html report.html`).",
            "[report.scenarios.electronics_down]",
            'industry = "Electronics"',
            "bands_down = 1",
            "",
            "[report.scenarios.germany_defaults]",
            'label = "Germany: 40 % of the exposure defaults"',
            'country = "DE"',
            "default_rate = 0.4",
            "",
            snippet,
            "",
        ]
    )


def run_demo(
    console: Console,
    *,
    crm: str = "all",
    accounts: int = 60,
    seed: int = 7,
    keep: str | None = None,
) -> int:
    """Run the demo for one or both sandbox CRMs; returns an exit code."""
    # Every sandbox the registry knows, so a new CRM's demo needs no edit here ('both' is the
    # old name of 'all').
    kinds = sorted(available_sandboxes()) if crm in ("all", "both") else [crm]
    ready = [
        kind for kind in kinds if kind in available_sandboxes() and kind in available_adapters()
    ]
    if not ready:
        raise ConnectorError(f"no sandbox CRM available for {crm}; reinstall crm-risk-connector")
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="crm-risk-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    console.print(
        f"Every account is scored as of {DEMO_AS_OF.isoformat()}, the date the sandbox data is "
        "seeded for, so the demo shows the same results every time; `crm-risk sync` scores as "
        "of today (give --as-of to compare).",
        soft_wrap=False,
    )
    try:
        for kind in ready:
            _demo_one(console, kind, accounts, seed, folder, keep=bool(keep))
    finally:
        if not keep:
            _remove_all_but_reports(folder)
    if not keep and folder.exists():
        console.print(
            f"\nThe portfolio reports stay in {folder}; the demo's state databases and sandbox "
            "secrets were removed (--keep FOLDER keeps everything)."
        )
    if keep:
        console.print(
            f"\nDemo state and config kept in {folder}. The sandbox CRMs stopped with the demo: "
            "status, audit, explain and portfolio read the kept state (--config "
            f"{folder}/<crm>/crm-risk.toml); check and sync need a sandbox again "
            "(crm-risk sandbox serve)."
        )
    return EXIT_OK


def _remove_all_but_reports(folder: Path) -> None:
    """Leave nothing of a demo run behind but its HTML reports: no state, no secrets."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        elif path.name != "report.html":
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _demo_one(
    console: Console, kind: str, accounts: int, seed: int, folder: Path, *, keep: bool = False
) -> None:
    console.rule(Text(f"{kind} sandbox CRM", style="bold"))
    started = time.monotonic()
    with sandbox_starter(kind)(accounts=accounts, seed=seed) as sandbox:
        # One folder per CRM: its config, state file and (throw-away) sandbox secrets side by side.
        home = folder / kind
        home.mkdir(parents=True, exist_ok=True)
        state_path = home / "crm-risk-state.db"
        for stale in home.glob("crm-risk-state.db*"):
            stale.unlink()
        config_path = home / "crm-risk.toml"
        snippet = sandbox.config_snippet()
        if keep and sandbox.ca_bundle:
            # The sandbox's CA goes with it: a kept folder keeps its own copy, so `check` on it
            # says the CRM is unreachable (75) instead of naming a CA file that vanished.
            kept_ca = home / "sandbox-ca.pem"
            shutil.copyfile(sandbox.ca_bundle, kept_ca)
            snippet = snippet.replace(_toml_path(sandbox.ca_bundle), _toml_path(str(kept_ca)))
        config_path.write_text(demo_config(snippet, state_path))
        _write_demo_secrets(home / "crm-risk.secrets.toml", sandbox)
        console.print(
            f"Sandbox at {sandbox.base_url} with {accounts} accounts (seed {seed}); config {config_path}"
        )
        with _environ(dict(sandbox.env_vars())):
            config = load_config(config_path)
            connection = next(iter(config.connections.values()))
            with open_session(config, connection) as session:
                store = session.store
                first = session.run(SyncOptions(trigger="demo", as_of=DEMO_AS_OF))
                calls_after_first = sum(first.api_calls.values())
                _show_first(console, store, connection.name, first.to_dict())
                second = session.run(SyncOptions(trigger="demo", as_of=DEMO_AS_OF, portfolio=False))
                _show_second(console, second.to_dict(), calls_after_first)
                _show_report(console, store, config, connection, home / "report.html")
    console.print(f"{kind} demo took {time.monotonic() - started:.1f} s", style="dim")


def _toml_path(path: str) -> str:
    return json.dumps(path)


def _write_demo_secrets(path: Path, sandbox: Any) -> None:
    """Keep the sandbox's demo credentials beside the config, so later commands work.

    They are throw-away credentials of a local sandbox, never a real CRM's.
    """
    prefix = f"CRMRISK_CONNECTIONS__{sandbox.connection_name.upper()}__"
    lines = [
        "# Demo sandbox credentials (local, throw-away).",
        f"[connections.{sandbox.connection_name}]",
    ]
    for key, value in sandbox.env_vars().items():
        lines.append(f'{key.removeprefix(prefix).lower()} = "{value}"')
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def _show_first(console: Console, store: Any, connection: str, report: dict[str, Any]) -> None:
    writes = report["writes"].get("account", {})
    # Counted as the table below counts them: an owner's digest task is a task created too.
    created_tasks = report["tasks"].get("create", 0) + report["tasks"].get("digest", 0)
    console.print(
        f"First sync: read {report['objects'].get('account', {}).get('read', 0)} accounts and "
        f"{report['objects'].get('invoice', {}).get('read', 0)} invoices, scored {report['scored']}, "
        f"wrote {writes.get('written', 0)} accounts, created {created_tasks} tasks, "
        f"held {writes.get('held_for_approval', 0)} limit changes for approval, "
        f"{report['api']['calls']} API calls."
    )
    home = report.get("home_currency") or report.get("portfolio", {}).get("home_currency")
    bands = PlainTable(
        title=f"Rating distribution (exposure in {home})" if home else "Rating distribution",
        header_style="bold",
    )
    bands.add_column("band")
    bands.add_column("accounts", justify="right")
    bands.add_column("share of exposure", justify="right")
    exposure_by_band = report.get("portfolio", {}).get("exposure_by_band", {})
    total = sum(float(v) for v in exposure_by_band.values()) or 1.0
    for band, count in sorted(report["bands"].items()):
        share = float(exposure_by_band.get(band, 0)) / total
        bands.add_row(band, str(count), f"{share:.0%}")
    console.print(bands)
    riskiest = PlainTable(title="Riskiest accounts", header_style="bold")
    riskiest.add_column("account", no_wrap=True, max_width=26)
    riskiest.add_column("band")
    riskiest.add_column("score", justify="right")
    riskiest.add_column("limit", justify="right")
    riskiest.add_column("main reason")
    for account, assessment in store.top_assessments(connection, 10):
        limit = assessment.recommended_credit_limit
        currency = assessment.features.get("limit_currency") or account.currency or ""
        reason = assessment.reasons[0] if assessment.reasons else None
        riskiest.add_row(
            account.name,
            assessment.band,
            f"{assessment.score:.0f}",
            f"{limit:,.0f} {currency}".rstrip() if limit is not None else "-",
            f"{reason.code}: {reason.text}" if reason else "-",
        )
    console.print(riskiest)
    created = [
        row for row in store.audit(connection, limit=100000) if row["action"] == "task_create"
    ]
    by_rule = Counter(row["field"] for row in created)
    tasks = PlainTable(title=f"Follow-up tasks created ({len(created)})", header_style="bold")
    tasks.add_column("rule")
    tasks.add_column("count", justify="right")
    tasks.add_column("example")
    for rule, count in by_rule.most_common():
        example = next(row for row in created if row["field"] == rule)
        tasks.add_row(rule, str(count), (example["new_value"] or {}).get("subject", ""))
    console.print(tasks)


def _show_second(console: Console, report: dict[str, Any], calls_before: int) -> None:
    writes = report["writes"].get("account", {})
    tasks = report["tasks"]
    written = writes.get("written", 0)
    # Every task action carried out (created, completed, updated, digests), not the plans.
    task_writes = sum(count for action, count in tasks.items() if f"planned_{action}" in tasks)
    verdict = (
        ("nothing to write: the CRM already holds every value", "green")
        if written == 0 and task_writes == 0
        else ("it still wrote something", "yellow")
    )
    console.print(
        Text.assemble(
            f"Second sync: wrote {written} accounts and {task_writes} tasks "
            f"(created {tasks.get('create', 0)}), "
            f"{report['api']['calls'] - calls_before} API calls -> ",
            verdict,
        )
    )


def _show_report(console: Console, store: Any, config: Any, connection: Any, path: Path) -> None:
    """Write the portfolio report from the demo's store, as `crm-risk report --html` does."""
    figures = build_figures(store, config, connection).to_dict()
    size = write_atomically(path, render_html(figures))
    currency = figures["home_currency"] or ""
    concentration = figures["concentration"]
    console.print(
        f"Portfolio report: {path} ({size / 1024:,.0f} KB, opens offline in any browser; "
        f"`crm-risk report -c {path.parent / 'crm-risk.toml'} --html FILE` writes it again)"
    )
    console.print(
        "  concentration (HHI): "
        + ", ".join(
            f"{dimension} {concentration[dimension]['hhi']:,.0f} ({concentration[dimension]['level']})"
            for dimension in ("customer", "industry", "country")
        )
    )
    for scenario in figures["stress"]["scenarios"]:
        console.print(
            f"  stress '{scenario['label']}': {scenario['accounts']} accounts, "
            f"{float(scenario['exposure']):,.0f} {currency} exposed, "
            f"{float(scenario['exposure_at_risk']):,.0f} {currency} at risk, "
            f"{scenario['limit_cuts']} limit cuts"
        )
    backtest = figures["model_health"]["backtest"] or {}
    auc = (backtest.get("auc") or {}).get("0") if backtest.get("enough") else None
    console.print(
        f"  model health: AUC {auc:.2f} on {backtest['invoices']:,} invoices"
        if isinstance(auc, (int, float))
        else f"  model health: {backtest.get('invoices', 0):,} invoices, too few to judge"
    )
