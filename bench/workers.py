"""Benchmark: `crm-risk run` workers on one PostgreSQL store, flat out: runs per worker per minute, CPU per run, database sessions.

Run: .venv/bin/python bench/workers.py [--workers 1,2,3] [--orgs 20] [--accounts 50]
     [--capacity 4] [--seconds 30] [--latency-ms 0]

A throw-away PostgreSQL cluster (initdb/pg_ctl) holds the store; half the orgs are Zoho and half
Salesforce sandboxes, served from this process. Every connection is scheduled every second, more
than the workers can do, so they run flat out and the figures are their capacity. The first run
of each connection (which writes every account and opens tasks) is warm-up; the window after it
measures steady, scheduled runs (read the changes, score, write nothing). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector.registry import sandbox_starter  # noqa: E402
from connector.store import open_store  # noqa: E402
from tests.pg_cluster import PgCluster, bin_dir  # noqa: E402

SUCCESS = {"succeeded", "succeeded_with_rejections"}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_orgs(count: int, accounts: int, latency_ms: float) -> list[tuple[str, Any]]:
    orgs = []
    for number in range(count):
        kind = ("zoho", "salesforce")[number % 2]
        sandbox = sandbox_starter(kind)(accounts=accounts, seed=5, latency_ms=latency_ms)
        orgs.append((f"{kind}_{number:02d}", sandbox))
    return orgs


def config_text(url: str, orgs: list[tuple[str, Any]], capacity: int) -> tuple[str, dict[str, str]]:
    sections, env = [], {}
    for name, sandbox in orgs:
        sections.append(
            sandbox.config_snippet().replace(
                f"[connections.{sandbox.connection_name}]", f"[connections.{name}]"
            )
        )
        for key, value in sandbox.env_vars().items():
            env[key.replace(sandbox.connection_name.upper(), name.upper())] = value
    text = (
        f'[store]\nurl = "{url}"\nlease_seconds = 30\n\n'
        f"[service]\nmax_concurrent_runs = {capacity}\nclaim_interval_seconds = 0.5\n\n"
        + "\n".join(sections)
    )
    return text, env


class SessionSampler(threading.Thread):
    """Peak number of sessions on the store's database (the sampler's own excluded)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.peak = 0
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            while not self.stop.wait(0.25):
                row = db.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                ).fetchone()
                count = int(row[0]) if row else 0
                self.samples.append(count)
                self.peak = max(self.peak, count)


def measure(
    cluster: PgCluster,
    orgs: list[tuple[str, Any]],
    workers: int,
    capacity: int,
    seconds: float,
    tmp: Path,
) -> dict[str, Any]:
    database = f"bench_w{workers}_{int(time.time())}"
    url = cluster.create_database(database)
    open_store(url).close()
    text, secrets = config_text(url, orgs, capacity)
    config = tmp / f"{database}.toml"
    config.write_text(text)
    env = {**os.environ, **secrets, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "connector",
                "--log-format",
                "json",
                "--log-level",
                "WARNING",
                "run",
                "--config",
                str(config),
                "--interval-seconds",
                "1",
            ],
            env=env,
            stdout=(tmp / f"{database}-{index}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for index in range(workers)
    ]
    names = [name for name, _ in orgs]
    store = open_store(url)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = {
                run["connection"]
                for run in store.recent_runs(limit=10_000)
                if run["status"] in SUCCESS
            }
            if set(names) <= done:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("the workers did not run every connection within 300 s")
        sampler = SessionSampler(url)
        sampler.start()
        start = datetime.now(UTC)
        cpu_before = [cpu_seconds(process.pid) for process in processes]
        own_before = own_cpu_seconds()
        time.sleep(seconds)
        cpu_after = [cpu_seconds(process.pid) for process in processes]
        own_after = own_cpu_seconds()
        end = datetime.now(UTC)
        sampler.stop.set()
        sampler.join(5)
        runs = [
            run
            for run in store.recent_runs(limit=100_000)
            if run["status"] in SUCCESS
            and start <= datetime.fromisoformat(run["started_at"])
            and run["ended_at"]
            and datetime.fromisoformat(run["ended_at"]) <= end
        ]
    finally:
        store.close()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(60)
        cluster.drop_database(database)
    window = (end - start).total_seconds()
    durations = [
        (
            datetime.fromisoformat(run["ended_at"]) - datetime.fromisoformat(run["started_at"])
        ).total_seconds()
        for run in runs
    ]
    per_worker: dict[str, int] = {}
    for run in runs:
        per_worker[run["worker"].split(":")[1]] = per_worker.get(run["worker"].split(":")[1], 0) + 1
    worker_cpu = sum(after - before for before, after in zip(cpu_before, cpu_after, strict=True))
    return {
        "workers": workers,
        "capacity": capacity,
        "connections": len(orgs),
        "window_s": round(window, 1),
        "runs": len(runs),
        "runs_per_min": round(len(runs) * 60 / window, 1),
        "runs_per_worker_per_min": round(len(runs) * 60 / window / workers, 1),
        "per_worker": sorted(per_worker.values()),
        "run_s_mean": round(statistics.fmean(durations), 3) if durations else None,
        "run_s_p95": round(sorted(durations)[int(0.95 * (len(durations) - 1))], 3)
        if durations
        else None,
        "worker_cpu_s_per_run": round(worker_cpu / max(1, len(runs)), 3),
        "worker_cpu_pct": round(100 * worker_cpu / window / workers, 1),
        "sandbox_cpu_pct": round(100 * (own_after - own_before) / window, 1),
        "db_sessions_peak": sampler.peak,
        "db_sessions_mean": round(statistics.fmean(sampler.samples), 1) if sampler.samples else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    binaries = bin_dir()
    if binaries is None:
        print("PostgreSQL server binaries (initdb, pg_ctl) not found", file=sys.stderr)
        return 2
    cluster = PgCluster(binaries, max_connections=200)
    cluster.start()
    orgs = start_orgs(args.orgs, args.accounts, args.latency_ms)
    results = []
    print(
        f"nproc {os.cpu_count()}; {args.orgs} connections x {args.accounts} accounts; "
        f"sandbox latency {args.latency_ms:g} ms; up to {args.capacity} runs per worker"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
            for workers in (int(value) for value in args.workers.split(",")):
                result = measure(cluster, orgs, workers, args.capacity, args.seconds, Path(tmp))
                results.append(result)
                print(
                    f"workers {workers}: {result['runs_per_min']:>7.1f} runs/min "
                    f"({result['runs_per_worker_per_min']:.1f} per worker, split {result['per_worker']}); "
                    f"run {result['run_s_mean']} s mean, {result['run_s_p95']} s p95; "
                    f"worker CPU {result['worker_cpu_s_per_run']} s/run, {result['worker_cpu_pct']}% per worker; "
                    f"sandboxes {result['sandbox_cpu_pct']}% CPU; "
                    f"DB sessions peak {result['db_sessions_peak']} (mean {result['db_sessions_mean']})",
                    flush=True,
                )
    finally:
        for _, sandbox in orgs:
            sandbox.stop()
        cluster.destroy()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
