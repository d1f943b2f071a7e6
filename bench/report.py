"""Benchmark: `crm-risk report` on a large synthetic book: file size, generation time, offline rendering.

Run: .venv/bin/python bench/report.py [--accounts 10000] [--crm salesforce] [--json FILE]

The book is built the way a user's is: the sandbox CRM seeds N accounts with 10 invoices each
(in its own process), and real syncs (`run_sync`, a fresh SQLite file) score it at three dates a
month apart, so the store holds three snapshots, band movement, follow-up tasks, held approvals
and a year of payment history. The config has the issue's two kinds of scenario: a sector moves
down one band (Electronics) and a country defaults at 40 % (DE). Then, in this process:

- **lower bound**: one pass reading what every report must read, each scored account with its
  assessment (`iter_scored`) and every stored invoice (`iter_invoices`), decoded and dropped;
- **build**: `build_figures` (the book, movement, concentration, owners, limits, the scenarios
  re-scoring their accounts, model health replaying a fixed sample of 1,000 accounts' history);
- **render**: `render_html` and the atomic write;
- **cli**: `crm-risk report --html` end to end in a child process (imports included), what a
  user waits for. Goal (issue 20): under 10 s at 10,000 accounts;
- **whole-book scenario**: `build_figures` again with a third scenario selecting every account
  (all open items 60 days later): the worst case, every account scored twice more.

Every timing is printed as wall time and CPU time with its ratio to the lower bound measured in
the same run. The machine is shared (2 cores, often a load of 8 or more): wall time there is up
to three times the CPU time, which is what the same work takes on an idle core, so the goal is
judged on the CLI's CPU time (user + system of the child process) and both are printed.

Size goal: under 2 MB at 10,000 accounts; the figures as compact JSON (`report --json`) are
printed beside it as the reference for the text the page must carry.

When Chromium and Playwright are installed, the 10,000-account file is also opened in headless
Chromium with every request other than the file itself refused and counted (must be 0): the
time to load, the number of charts drawn with a non-zero size, and console errors (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import EngineRunner, Sandbox, peak_rss_mb
from connector.report import build_figures, render_html
from connector.report.output import write_atomically
from connector.scoring.stress import Scenario
from tests.report_scenarios import SECTOR_AND_COUNTRY as SCENARIOS

T = TypeVar("T")

SIZE_GOAL_BYTES = 2 * 1024 * 1024
TIME_GOAL_SECONDS = 10.0
RUN_DATES = (date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 4))
WHOLE_BOOK = Scenario(label="every open item 60 days later", days_late=60)


def timed(work: Callable[[], T]) -> tuple[T, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def read_everything(runner: EngineRunner) -> None:
    """The lower bound: one pass over what every report must read, the book and its invoices."""
    store = runner.store
    name = runner.connection.name
    ids = [account.crm_id for account, _ in store.iter_scored(name)]
    for _ in store.iter_invoices(name, ids):
        pass


def cli_run(config: Path, html: Path) -> tuple[float, float]:
    """`crm-risk report --html` in a child process, as a user runs it: (wall, CPU) seconds."""
    command = str(Path(sys.executable).with_name("crm-risk"))
    as_of = RUN_DATES[-1].isoformat()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [command, "report", "-c", str(config), "--html", str(html), "--as-of", as_of],
        check=True,
        cwd=config.parent,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def open_offline(html: Path) -> dict[str, Any] | None:
    """Load the file in headless Chromium, every other request refused; None without a browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    browser_path = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p is not None), None
    )
    if browser_path is None:
        return None
    url = html.resolve().as_uri()
    refused: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def only_the_file(route: Any) -> None:
                if route.request.url == url:
                    route.continue_()
                else:
                    refused.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_file)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            started = time.perf_counter()
            page.goto(url, wait_until="load")
            seconds = time.perf_counter() - started
            charts = page.evaluate(
                "() => [...document.querySelectorAll('svg.chart')].map(s => {"
                "const r = s.getBoundingClientRect(); return r.width > 0 && r.height > 0})"
            )
        finally:
            browser.close()
    return {
        "load_seconds": round(seconds, 2),
        "charts": len(charts),
        "charts_drawn": sum(1 for drawn in charts if drawn),
        "requests_refused": len(refused),
        "console_errors": len(errors),
    }


def run(kind: str, accounts: int) -> dict[str, Any]:
    sandbox = Sandbox(kind, accounts)
    try:
        runner = EngineRunner(sandbox, extra=SCENARIOS)
        sync_seconds = []
        for as_of in RUN_DATES:
            figures_of_run = runner.run(f"sync {as_of}", as_of=as_of)
            sync_seconds.append(round(figures_of_run.seconds, 1))
    finally:
        sandbox.stop()
    config_path = runner.folder / "crm-risk.toml"
    html_path = runner.folder / "report.html"
    _, bound_wall, bound_cpu = timed(lambda: read_everything(runner))

    def build(config: Any) -> dict[str, Any]:
        # The report's date is the last run's: the runs score days ahead of today's clock.
        figures: dict[str, Any] = build_figures(
            runner.store, config, runner.connection, as_of=RUN_DATES[-1]
        ).to_dict()
        return figures

    figures, built_wall, built_cpu = timed(lambda: build(runner.config))
    size, render_wall, render_cpu = timed(lambda: write_atomically(html_path, render_html(figures)))
    report = runner.config.report
    whole_book = runner.config.model_copy(
        update={
            "report": report.model_copy(
                update={"scenarios": {**report.scenarios, "everyone_60_days_late": WHOLE_BOOK}}
            )
        }
    )
    worst, worst_wall, worst_cpu = timed(lambda: build(whole_book))
    json_size = len(json.dumps(figures, separators=(",", ":"), default=str).encode())
    runner.close()
    with mock.patch.dict(os.environ, sandbox.info["env"]):
        cli_wall, cli_cpu = cli_run(config_path, runner.folder / "report-cli.html")
    browser = open_offline(html_path)
    movers = figures["movement"]["since_previous"]
    backtest = figures["model_health"]["backtest"] or {}

    def pair(wall: float, cpu: float) -> dict[str, float]:
        return {
            "wall": round(wall, 2),
            "cpu": round(cpu, 2),
            "wall_ratio": round(wall / bound_wall, 1) if bound_wall else float("nan"),
            "cpu_ratio": round(cpu / bound_cpu, 1) if bound_cpu else float("nan"),
        }

    return {
        "crm": kind,
        "accounts": figures["accounts"],
        "syncs_seconds": sync_seconds,
        "load_average": os.getloadavg()[0],
        "lower_bound": pair(bound_wall, bound_cpu),
        "build": pair(built_wall, built_cpu),
        "render": pair(render_wall, render_cpu),
        "cli": pair(cli_wall, cli_cpu),
        "whole_book_scenario_build": pair(worst_wall, worst_cpu),
        "whole_book_scenario_accounts": worst["stress"]["scenarios"][-1]["accounts"],
        "time_goal_seconds": TIME_GOAL_SECONDS,
        "html_bytes": size,
        "json_bytes": json_size,
        "html_to_json": round(size / json_size, 2),
        "size_goal_bytes": SIZE_GOAL_BYTES,
        "snapshots": len(figures["movement"]["trend"]),
        "downgrades_since_previous": movers["downgrades"],
        "scenarios": [(s["label"], s["accounts"]) for s in figures["stress"]["scenarios"]],
        "backtest_invoices": backtest.get("invoices"),
        "backtest_accounts": backtest.get("accounts_sampled"),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "browser": browser,
        "folder": str(runner.folder),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--crm", default="salesforce", help="salesforce,zoho")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the state and the report files")
    args = parser.parse_args()
    results = []
    for kind in args.crm.split(","):
        result = run(kind, args.accounts)
        results.append(result)
        if not args.keep:
            shutil.rmtree(result["folder"], ignore_errors=True)
        print(
            f"\n{kind}: {result['accounts']:,} accounts, syncs at {len(RUN_DATES)} dates "
            f"({', '.join(f'{s} s' for s in result['syncs_seconds'])}), "
            f"{result['snapshots']} snapshots, {result['downgrades_since_previous']:,} downgrades "
            f"since the previous run; scenarios "
            + ", ".join(f"{name} ({n:,} accounts)" for name, n in result["scenarios"])
            + f"; model health on {result['backtest_invoices']:,} invoices of "
            f"{result['backtest_accounts']:,} accounts; load average {result['load_average']:.1f}"
        )
        print(f"  {'seconds':<44}{'wall':>8}{'cpu':>8}  {'x bound (wall, cpu)':<22}goal")
        for key, name, goal in (
            ("lower_bound", "read book + invoices (lower bound)", ""),
            ("build", "build_figures", ""),
            ("render", "render_html + write", ""),
            ("cli", "crm-risk report --html (child process)", f"< {TIME_GOAL_SECONDS:.0f} s CPU"),
            (
                "whole_book_scenario_build",
                f"build_figures + whole-book scenario ({result['whole_book_scenario_accounts']:,})",
                "worst case",
            ),
        ):
            t = result[key]
            print(
                f"  {name:<44}{t['wall']:>8.2f}{t['cpu']:>8.2f}  "
                f"{t['wall_ratio']:>6} {t['cpu_ratio']:>6}         {goal}"
            )
        mb = result["html_bytes"] / 1024 / 1024
        print(
            f"  HTML file {mb:.2f} MB (goal < 2 MB), x{result['html_to_json']} of the JSON figures "
            f"({result['json_bytes'] / 1024:,.0f} KB); peak RSS {result['peak_rss_mb']} MB "
            "(this process, syncs included)"
        )
        browser = result["browser"]
        if browser is None:
            print("  offline open in Chromium: not run (no playwright or no chromium)")
        else:
            print(
                f"  Chromium, network refused: loaded in {browser['load_seconds']} s, "
                f"{browser['charts_drawn']}/{browser['charts']} charts drawn, "
                f"{browser['requests_refused']} requests other than the file (goal 0), "
                f"{browser['console_errors']} console errors (goal 0)"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    failed = [
        r
        for r in results
        if r["html_bytes"] >= SIZE_GOAL_BYTES
        or r["cli"]["cpu"] >= TIME_GOAL_SECONDS
        or (
            r["browser"] is not None
            and (
                r["browser"]["requests_refused"]
                or r["browser"]["console_errors"]
                or r["browser"]["charts_drawn"] != r["browser"]["charts"]
            )
        )
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
