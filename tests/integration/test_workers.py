"""Three `crm-risk run` workers on one throw-away PostgreSQL and 20 sandbox CRM orgs: shares, a SIGKILL, a database restart.

Ten Zoho and ten Salesforce orgs are seeded alike per CRM, so every org of one kind must end in
the same CRM state as a twin synced once, fault-free, by a single process on a SQLite file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_service import require_stack
from tests.pg_cluster import PgCluster, throwaway_cluster

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("zoho", "salesforce")
ORGS_PER_KIND = 10
ACCOUNTS = 20
SEED = 5
LEASE_SECONDS = 5
INTERVAL_SECONDS = 3
WORKERS = 3
CAPACITY = 4
# Slack for process start-up, 0.5 s claim ticks and a shared, noisy 2-core machine.
SLACK_SECONDS = 3.0
SUCCESS = {"succeeded", "succeeded_with_rejections"}


@dataclass
class Org:
    name: str
    kind: str
    sandbox: Any


@dataclass
class Fleet:
    cluster: PgCluster
    url: str
    config: Path
    env: dict[str, str]
    orgs: list[Org]
    tmp: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = self.tmp / f"worker-{len(self.processes)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "connector",
                    "--log-format",
                    "json",
                    "run",
                    "--config",
                    str(self.config),
                    "--interval-seconds",
                    str(INTERVAL_SECONDS),
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        self.logs.append(log)
        return process

    def output(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-tail:]}" for log in self.logs)

    def store(self) -> Any:
        from connector.store import open_store

        return open_store(self.url)

    def runs(self) -> list[dict[str, Any]]:
        store = self.store()
        try:
            return store.recent_runs(limit=100_000)
        finally:
            store.close()

    def leases(self) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.url, row_factory=dict_row) as db:
            return list(db.execute("SELECT * FROM leases").fetchall())

    def set_latency(self, milliseconds: float) -> None:
        for org in self.orgs:
            org.sandbox.server.faults.latency_ms = milliseconds


def wait_for(predicate: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(step)
    return predicate()


def start_org(kind: str, name: str) -> Org:
    from connector.registry import sandbox_starter

    return Org(name, kind, sandbox_starter(kind)(accounts=ACCOUNTS, seed=SEED))


def connection_section(org: Org) -> tuple[str, dict[str, str]]:
    """The sandbox's config section and secrets, renamed to this org's connection name."""
    sandbox = org.sandbox
    section = sandbox.config_snippet().replace(
        f"[connections.{sandbox.connection_name}]", f"[connections.{org.name}]"
    )
    secrets = {
        key.replace(sandbox.connection_name.upper(), org.name.upper()): value
        for key, value in sandbox.env_vars().items()
    }
    return section, secrets


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    require_stack("zoho")
    require_stack("salesforce")
    with throwaway_cluster(max_connections=100) as cluster, contextlib.ExitStack() as stack:
        url = cluster.create_database("fleet")
        from connector.store import open_store

        open_store(url).close()  # the schema, before anything polls it
        orgs = []
        for kind, number in itertools.product(KINDS, range(ORGS_PER_KIND)):
            org = start_org(kind, f"{kind}_{number:02d}")
            stack.callback(org.sandbox.stop)
            orgs.append(org)
        sections, env = [], {}
        for org in orgs:
            section, secrets = connection_section(org)
            sections.append(section)
            env.update(secrets)
        config = tmp_path / "crm-risk.toml"
        config.write_text(
            f'[store]\nurl = "{url}"\nlease_seconds = {LEASE_SECONDS}\n\n'
            f"[service]\nmax_concurrent_runs = {CAPACITY}\nclaim_interval_seconds = 0.5\n\n"
            + "\n".join(sections)
        )
        running = Fleet(
            cluster=cluster,
            url=url,
            config=config,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
            orgs=orgs,
            tmp=tmp_path,
        )
        try:
            yield running
        finally:
            for process in running.processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)


class ConnectionSampler:
    """Samples how many sessions the workers hold on the database while the test runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psycopg

        while not self._stop.wait(0.2):
            with contextlib.suppress(psycopg.Error), psycopg.connect(self.url) as db:
                row = db.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                ).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def parse(moment: str | None) -> datetime | None:
    return datetime.fromisoformat(moment) if moment else None


# -- the CRM end state ----------------------------------------------------------------------------


def crm_state(org: Org) -> dict[str, Any]:
    """What the connector wrote into one org, comparable across twins (no ids of new objects, no clock)."""
    from connector.mapping import load_mapping
    from connector.protocol import find_task_marker

    sandbox = org.sandbox
    mapping = load_mapping(sandbox.mapping, base_dir=ROOT)
    written = [
        mapping.field("account", name).crm
        for name in mapping.write_fields()
        if name != "risk_reviewed_at"  # the time of the write differs between twins
    ]
    accounts = {
        str(record.get("id") or record.get("Id")): {name: record.get(name) for name in written}
        for record in sandbox.emulator.records(mapping.crm_object("account"))
    }
    markers: Counter[str] = Counter()
    open_by_marker: dict[str, bool] = {}
    for task in sandbox.emulator.tasks():
        marker = find_task_marker(str(task.get("Description") or ""))
        if marker is None:
            continue  # a task somebody created by hand
        # The marker names the connection; twins differ only in that part.
        key = marker.split(":", 1)[1]
        markers[key] += 1
        status = task.get("Status")
        open_by_marker[key] = not (task.get("IsClosed") or status in ("Completed", "Closed"))
    return {"accounts": accounts, "tasks": dict(markers), "open": open_by_marker}


def sales_team_lowers_external_scores(org: Org) -> None:
    """A change in the CRM that makes the next run rewrite every account and open tasks."""
    emulator = org.sandbox.emulator
    obj, field_name = (
        ("Accounts", "External_Score") if org.kind == "zoho" else ("Account", "External_Score__c")
    )
    for record in emulator.records(obj):
        emulator.set_field(obj, str(record.get("id") or record.get("Id")), field_name, 5)


def fault_free_state(kind: str, tmp: Path) -> dict[str, Any]:
    """A twin org taken through the same CRM change by one process on a SQLite file, without faults."""
    reference = start_org(kind, f"reference_{kind}")
    try:
        section, secrets = connection_section(reference)
        config = tmp / f"reference-{kind}.toml"
        config.write_text(f'[store]\nurl = "{tmp / f"reference-{kind}.db"}"\n\n{section}')
        env = {**os.environ, **secrets, "PYTHONPATH": str(ROOT)}

        def sync() -> None:
            result = subprocess.run(
                [sys.executable, "-m", "connector", "sync", "--config", str(config)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode in (0, 1), result.stderr

        sync()
        sales_team_lowers_external_scores(reference)
        sync()
        sync()
        return crm_state(reference)
    finally:
        reference.sandbox.stop()


# -- the test ---------------------------------------------------------------------------------------


def test_three_workers_share_twenty_connections_survive_a_sigkill_and_a_database_restart(
    fleet: Fleet,
) -> None:
    names = sorted(org.name for org in fleet.orgs)
    org_by_name = {org.name: org for org in fleet.orgs}
    with ConnectionSampler(fleet.url) as sampler:
        workers = [fleet.start_worker() for _ in range(WORKERS)]
        victim = workers[0]

        # 1. Every connection runs (the first runs write every account and open tasks), and
        # keeps running on schedule, spread over the three workers.
        def every_connection_ran_twice() -> bool:
            done = Counter(run["connection"] for run in fleet.runs() if run["status"] in SUCCESS)
            return all(done[name] >= 2 for name in names)

        assert wait_for(every_connection_ran_twice, timeout=90, step=0.5), fleet.output()
        warmed_up_at = datetime.now(UTC)
        shares = Counter(
            run["worker"].split(":")[1] for run in fleet.runs() if run["status"] in SUCCESS
        )
        pids = [str(worker.pid) for worker in workers]
        assert all(shares[pid] >= sum(shares.values()) / (2 * WORKERS) for pid in pids), shares

        # 2. The sales team changes every org; the CRMs answer slowly, so the runs that write
        # the change take a while. SIGKILL a worker while it holds connections being written.
        fleet.set_latency(120)
        for org in fleet.orgs:
            org.sandbox.server.reset_calls()
            sales_team_lowers_external_scores(org)

        def victim_mid_write() -> list[str]:
            held = [
                lease["connection"]
                for lease in fleet.leases()
                if lease["holder"].split(":")[1] == str(victim.pid)
            ]
            writing = [
                name
                for name in held
                if any(
                    method in ("POST", "PUT", "PATCH") and "oauth" not in path
                    for method, path in org_by_name[name].sandbox.server.calls
                )
            ]
            return held if writing else []

        held = wait_for(victim_mid_write, timeout=60, step=0.02)
        assert held, "the victim never held a connection mid-write\n" + fleet.output()
        victim.send_signal(signal.SIGKILL)
        killed_at = datetime.now(UTC)
        victim.wait(10)
        fleet.set_latency(0)

        # 2. Its connections run again on another worker within the lease time plus one interval.
        def taken_over() -> bool:
            runs = fleet.runs()
            return all(
                any(
                    run["connection"] == name
                    and run["worker"]
                    and run["worker"].split(":")[1] != str(victim.pid)
                    and parse(run["started_at"]) > killed_at
                    for run in runs
                )
                for name in held
            )

        assert wait_for(taken_over, timeout=LEASE_SECONDS + INTERVAL_SECONDS + 15), fleet.output()
        runs = fleet.runs()
        for name in held:
            restart = min(
                parse(run["started_at"])
                for run in runs
                if run["connection"] == name and parse(run["started_at"]) > killed_at
            )
            delay = (restart - killed_at).total_seconds()
            assert delay <= LEASE_SECONDS + INTERVAL_SECONDS + 1, (name, delay)

        # 3. Steady state, then stop PostgreSQL for a few seconds and start it again.
        time.sleep(3 * INTERVAL_SECONDS)
        # Slow CRMs again, so runs are in flight when the database stops: wait until the history
        # shows runs started since, still running (a loaded machine may leave the workers idle
        # for a moment; stopping then would test nothing).
        fleet.set_latency(300)
        slow_from = datetime.now(UTC)

        def runs_in_flight() -> list[dict[str, Any]]:
            return [
                run
                for run in fleet.runs()
                if run["status"] == "running" and parse(run["started_at"]) > slow_from
            ]

        assert wait_for(runs_in_flight, timeout=30, step=0.1), fleet.output()
        stopped_at = datetime.now(UTC)
        fleet.cluster.stop("fast")
        # From here on the server is certainly down (runs may commit while it shuts down).
        down_at = datetime.now(UTC)
        time.sleep(3)
        fleet.cluster.start()
        restarted_at = datetime.now(UTC)
        fleet.set_latency(0)

        def all_ran_after_restart() -> bool:
            done = {
                run["connection"]
                for run in fleet.runs()
                if run["status"] in SUCCESS and parse(run["started_at"]) > restarted_at
            }
            return set(names) <= done

        assert wait_for(all_ran_after_restart, timeout=30, step=0.5), fleet.output()
        time.sleep(2 * INTERVAL_SECONDS)

        # 4. The survivors stop cleanly on SIGTERM.
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
        for worker in workers[1:]:
            assert worker.wait(30) == 0, fleet.output()
        finished_at = datetime.now(UTC)
    runs = sorted(fleet.runs(), key=lambda run: run["started_at"])

    # Every connection ran on schedule: between the outages a due run may start late when the
    # shared machine is loaded (all workers busy), but never so late that a whole interval is
    # lost, and no connection falls far behind the others (a starving one would).
    quiet = [
        # Start-up: three processes import and check 20 mappings on two shared cores.
        (datetime.min.replace(tzinfo=UTC), warmed_up_at),
        (killed_at, killed_at + timedelta(seconds=LEASE_SECONDS + INTERVAL_SECONDS)),
        (stopped_at, restarted_at + timedelta(seconds=INTERVAL_SECONDS + 8)),
    ]
    for name in names:
        starts = [parse(run["started_at"]) for run in runs if run["connection"] == name]
        assert len(starts) >= 4, (name, len(starts))
        for before, after in itertools.pairwise(starts):
            if any(before < end and after > begin for begin, end in quiet):
                continue
            gap = (after - before).total_seconds()
            assert gap < 2 * INTERVAL_SECONDS + SLACK_SECONDS, (name, before, after, quiet)
    succeeded = Counter(run["connection"] for run in runs if run["status"] in SUCCESS)
    mean_runs = statistics.fmean(succeeded[name] for name in names)
    # Half the mean: the victim's connections lose up to (lease + interval) to the takeover,
    # and runs in flight at the restart fail; a starving connection would have next to none.
    assert all(succeeded[name] >= mean_runs / 2 for name in names), succeeded

    # No two runs of one connection overlap (a run killed or cut off counts until it was closed).
    for name in names:
        spans = [
            (parse(run["started_at"]), parse(run["ended_at"]) or finished_at, run["status"])
            for run in runs
            if run["connection"] == name and run["status"] != "skipped"
        ]
        for (_, first_end, first), (second_start, _, _) in itertools.pairwise(spans):
            assert second_start >= first_end, (name, first, first_end, second_start)

    # After the kill the two survivors shared the work; the killed worker's run in flight was
    # closed as abandoned by the worker that took its connection over.
    after_kill = Counter(
        run["worker"].split(":")[1]
        for run in runs
        if run["status"] in SUCCESS and parse(run["started_at"]) > killed_at
    )
    survivors = [after_kill[str(worker.pid)] for worker in workers[1:]]
    assert min(survivors) >= sum(survivors) / 4, after_kill
    assert after_kill[str(victim.pid)] == 0
    victim_runs = [run for run in runs if run["worker"] and f":{victim.pid}:" in run["worker"]]
    assert any(run["status"] == "abandoned" for run in victim_runs), victim_runs
    assert not [run for run in runs if run["status"] == "running"]

    # Nothing is recorded as succeeded that was in flight while the database was down.
    cut_off = [
        run
        for run in runs
        if run["status"] in SUCCESS and parse(run["started_at"]) < down_at < parse(run["ended_at"])
    ]
    assert not cut_off, cut_off
    assert all(run["ended_at"] for run in runs if run["status"] in SUCCESS)
    # The runs in flight when the server went down ended failed (their own worker closed them,
    # saying it lost the state store) or abandoned (another worker took the connection over
    # first); none is left running and none counts as done.
    in_flight = [
        run
        for run in runs
        if run["status"] != "skipped"
        and parse(run["started_at"]) < stopped_at
        and (run["ended_at"] is None or parse(run["ended_at"]) > down_at)
    ]
    assert in_flight, "no run was in flight when the database stopped: the check proves nothing"
    assert {run["status"] for run in in_flight} <= {"failed", "abandoned"}, in_flight
    assert all(
        "state store" in run["report"].get("message", "")
        for run in in_flight
        if run["status"] == "failed"
    ), in_flight

    # Workers reconnected (their logs say so) and held few database sessions.
    logs = fleet.output(tail=10**9)
    assert "state store unreachable; retrying with backoff" in logs
    assert "state store reachable again" in logs
    assert sampler.peak <= WORKERS * (CAPACITY + 3), sampler.peak

    # The CRM end state of every org equals a fault-free run's: no duplicate task, no lost write.
    for kind in KINDS:
        expected = fault_free_state(kind, fleet.tmp)
        assert expected["tasks"], "the reference run opened no task: the check proves nothing"
        for org in fleet.orgs:
            if org.kind != kind:
                continue
            state = crm_state(org)
            assert state["accounts"] == expected["accounts"], org.name
            assert state["tasks"] == expected["tasks"], org.name
            assert state["open"] == expected["open"], org.name
