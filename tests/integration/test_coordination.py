"""The shared schedule on both backends: claims oldest-first, never twice, not while leased; worker heartbeats."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.store import open_store
from connector.store.coordination import WorkQueue

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(url: str, clock: Clock):
    store = open_store(url, clock=clock)
    yield WorkQueue(store)
    store.close()


def every_minute(name: str, due: datetime, now: datetime) -> datetime:
    return due + MINUTE


def test_claims_go_oldest_due_first_and_move_the_due_time_on(queue: WorkQueue) -> None:
    queue.due_no_later_than({"a": T0, "b": T0 - MINUTE, "c": T0 + MINUTE})
    claims = queue.claim("w1", ["a", "b", "c"], 5, every_minute)
    assert [claim.connection for claim in claims] == ["b", "a"]
    assert [claim.next_due_at for claim in claims] == [T0, T0 + MINUTE]
    rows = queue.schedule()
    assert rows["a"].next_due_at == T0 + MINUTE
    assert rows["a"].last_claimed_by == "w1"
    assert rows["c"].last_claimed_by is None


def test_a_claimed_run_is_not_claimed_again_before_its_next_due_time(
    queue: WorkQueue, clock: Clock
) -> None:
    queue.due_no_later_than({"a": T0})
    assert [c.connection for c in queue.claim("w1", ["a"], 5, every_minute)] == ["a"]
    assert queue.claim("w2", ["a"], 5, every_minute) == []
    clock.now = T0 + MINUTE
    assert [c.connection for c in queue.claim("w2", ["a"], 5, every_minute)] == ["a"]


def test_the_claim_limit_and_the_workers_connections_are_respected(queue: WorkQueue) -> None:
    queue.due_no_later_than({name: T0 for name in "abcd"})
    assert [c.connection for c in queue.claim("w1", ["a", "b", "c"], 2, every_minute)] == [
        "a",
        "b",
    ]
    # "d" is not in this worker's configuration: it is never claimed by it.
    assert [c.connection for c in queue.claim("w1", ["a", "b", "c"], 5, every_minute)] == ["c"]


def test_a_connection_with_a_live_lease_is_not_due_until_the_lease_ends(
    queue: WorkQueue, clock: Clock
) -> None:
    queue.due_no_later_than({"a": T0})
    queue.store.acquire_lease("a", "w1", ttl_seconds=300)
    assert queue.claim("w2", ["a"], 5, every_minute) == []
    assert queue.load(["a"]).due == 0
    assert queue.load(["a"]).running == 1
    # The holder died: once its lease expires, the connection is due again.
    clock.now = T0 + timedelta(seconds=301)
    assert [c.connection for c in queue.claim("w2", ["a"], 5, every_minute)] == ["a"]


def test_due_times_only_ever_move_earlier_when_workers_start(queue: WorkQueue) -> None:
    queue.due_no_later_than({"a": T0})
    queue.due_no_later_than({"a": T0 + MINUTE, "b": T0 + MINUTE})
    queue.due_no_later_than({"b": T0})
    rows = queue.schedule()
    assert rows["a"].next_due_at == T0
    assert rows["b"].next_due_at == T0


def test_load_counts_due_running_and_live_workers(queue: WorkQueue, clock: Clock) -> None:
    queue.due_no_later_than({"a": T0 - MINUTE, "b": T0, "c": T0 + MINUTE})
    queue.store.acquire_lease("b", "w1", ttl_seconds=60)
    for worker in ("w1", "w2"):
        queue.beat(
            worker_id=worker,
            host="h",
            pid=1,
            started_at=T0,
            capacity=4,
            running=0,
            ttl_seconds=30,
        )
    load = queue.load(["a", "b", "c"])
    assert (load.due, load.running, load.live_workers) == (1, 1, 2)
    assert load.oldest_due_at == T0 - MINUTE
    clock.now = T0 + timedelta(seconds=31)
    assert queue.load(["a", "b", "c"]).live_workers == 0


def test_workers_show_what_they_hold_and_dead_ones_are_marked(
    queue: WorkQueue, clock: Clock
) -> None:
    for worker, ttl in (("w1", 30), ("w2", 5)):
        queue.beat(
            worker_id=worker,
            host="host-" + worker,
            pid=7,
            started_at=T0,
            capacity=4,
            running=1,
            ttl_seconds=ttl,
        )
    queue.store.acquire_lease("acme", "w1", ttl_seconds=60)
    clock.now = T0 + timedelta(seconds=10)
    workers = {worker.worker_id: worker for worker in queue.workers()}
    assert workers["w1"].alive and workers["w1"].holds == ("acme",)
    assert not workers["w2"].alive and workers["w2"].holds == ()
    queue.leave("w1")
    assert [worker.worker_id for worker in queue.workers()] == ["w2"]
    # A worker dead for a day is forgotten at the next heartbeat of any worker.
    clock.now = T0 + timedelta(days=1, seconds=10)
    queue.beat(
        worker_id="w3", host="h", pid=1, started_at=T0, capacity=1, running=0, ttl_seconds=30
    )
    assert [worker.worker_id for worker in queue.workers()] == ["w3"]


def test_extending_leases_reports_the_ones_another_worker_took(
    queue: WorkQueue, clock: Clock
) -> None:
    queue.store.acquire_lease("a", "w1", ttl_seconds=10)
    queue.store.acquire_lease("b", "w1", ttl_seconds=10)
    clock.now = T0 + timedelta(seconds=11)
    queue.store.acquire_lease("b", "w2", ttl_seconds=10)  # w1 missed its heartbeats
    # "c" has no lease row yet (its run is starting): not reported as lost.
    assert queue.extend_leases("w1", ["a", "b", "c"], 10) == {"b"}
    assert queue.store.lease("a")["expires_at"] > (T0 + timedelta(seconds=20)).isoformat()


def test_settling_a_run_that_lost_the_store_closes_only_that_workers_running_row(
    queue: WorkQueue,
) -> None:
    store = queue.store
    store.acquire_lease("a", "w1", ttl_seconds=60)
    store.start_run("r1", "a", "schedule", worker="w1")
    store.start_run("r2", "b", "schedule", worker="w1")
    assert queue.settle_lost_run("w1", "a", "lost the store") == 1
    runs = {run["run_id"]: run for run in store.recent_runs(limit=10)}
    assert runs["r1"]["status"] == "failed"
    assert runs["r1"]["report"]["message"] == "lost the store"
    assert runs["r2"]["status"] == "running"
    assert store.lease("a") is None
    # Settling again (or after another worker marked it abandoned) changes nothing.
    assert queue.settle_lost_run("w1", "a", "lost the store") == 0


def test_concurrent_claimers_on_postgres_never_claim_one_due_run_twice(pg_url: str) -> None:
    names = [f"c{number:02d}" for number in range(40)]
    setup = open_store(pg_url)
    WorkQueue(setup).due_no_later_than({name: T0 for name in names})
    setup.close()
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def claimer(worker: str) -> None:
        store = open_store(pg_url, clock=lambda: T0 + timedelta(seconds=1))
        try:
            queue = WorkQueue(store)
            start.wait()
            while True:
                claims = queue.claim(worker, names, 3, lambda n, due, now: due + timedelta(days=1))
                if not claims:
                    return
                with lock:
                    claimed.extend(claim.connection for claim in claims)
        finally:
            store.close()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(claimed) == names


def test_a_claim_skips_rows_another_claim_holds_instead_of_waiting(pg_url: str) -> None:
    store = open_store(pg_url, clock=lambda: T0)
    other = open_store(pg_url, clock=lambda: T0)
    try:
        WorkQueue(store).due_no_later_than({"a": T0, "b": T0})
        with other.transaction():
            # Another worker is in the middle of claiming "a" (its row lock is held).
            held = WorkQueue(other).claim("w1", ["a"], 1, every_minute)
            assert [claim.connection for claim in held] == ["a"]
            mine = WorkQueue(store).claim("w2", ["a", "b"], 5, every_minute)
            assert [claim.connection for claim in mine] == ["b"]
    finally:
        store.close()
        other.close()
