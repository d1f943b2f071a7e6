"""Issue 22, point 9: a lease whose holder is a process on this host that is gone is stale."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.errors import LockHeldError
from connector.store import open_store
from connector.store.holders import holder_id, parse, process_start, stale_reason

HOST = socket.gethostname()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_holder_id_names_host_pid_and_process_start() -> None:
    holder = parse(holder_id())
    assert (holder.host, holder.pid) == (HOST, os.getpid())
    assert holder.start == process_start(os.getpid())


def test_a_gone_process_on_this_host_is_stale() -> None:
    pid = _dead_pid()
    assert stale_reason(f"{HOST}:{pid}:12345:abcd") == f"process {pid} on this host is gone"
    assert stale_reason(f"{HOST}:{pid}:abcd") is not None, "v1 holder ids too"


def test_a_reused_pid_with_another_start_time_is_stale() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            start = process_start(child.pid)
            if start is None:
                pytest.skip("no /proc: the start time cannot be read on this system")
            assert stale_reason(f"{HOST}:{child.pid}:{start}:abcd") is None
            reason = stale_reason(f"{HOST}:{child.pid}:{int(start) + 1}:abcd")
            assert reason == f"process id {child.pid} now belongs to another process"
        finally:
            child.kill()


def test_a_live_process_or_another_host_is_never_judged_stale() -> None:
    assert stale_reason(holder_id()) is None
    assert stale_reason(f"{HOST}:1:-:abcd") is None  # pid 1 is alive
    assert stale_reason(f"elsewhere:{_dead_pid()}:1:abcd") is None


def test_acquire_takes_over_a_dead_holders_lease_and_says_whose(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "state.db"))
    try:
        live = f"{HOST}:1:-:live"  # pid 1 is alive: its fresh lease stays
        assert store.acquire_lease("c", live, 300) is None
        with pytest.raises(LockHeldError):
            store.acquire_lease("c", holder_id(), 300)

        store.release_lease("c", live)
        dead = f"{HOST}:{_dead_pid()}:1:dead"
        assert store.acquire_lease("c", dead, 300) is None
        mine = holder_id()
        takeover = store.acquire_lease("c", mine, 300)

        assert takeover is not None and takeover["holder"] == dead
        lease = store.lease("c")
        assert lease is not None and lease["holder"] == mine
        assert datetime.fromisoformat(lease["expires_at"]) > datetime.now(UTC)
    finally:
        store.close()


def test_a_lease_left_by_an_earlier_process_with_our_pid_is_stale() -> None:
    # The shipped image runs crm-risk as pid 1 on a persistent hostname: after a restart the
    # lease the killed container left names this very pid, with another start time.
    start = process_start(os.getpid())
    if start is None:
        pytest.skip("no /proc: the start time cannot be read on this system")
    earlier = f"{HOST}:{os.getpid()}:{int(start) - 1}:gone"
    reason = stale_reason(earlier)
    assert reason is not None and f"process id {os.getpid()}" in reason
    assert stale_reason(f"{HOST}:{os.getpid()}:{start}:mine") is None, "our own lease is live"


def test_acquire_takes_over_at_once_the_lease_an_earlier_pid_1_left(tmp_path: Path) -> None:
    start = process_start(os.getpid())
    if start is None:
        pytest.skip("no /proc: the start time cannot be read on this system")
    store = open_store(str(tmp_path / "state.db"))
    try:
        earlier = f"{HOST}:{os.getpid()}:{int(start) - 1}:killed"
        assert store.acquire_lease("c", earlier, 300) is None
        takeover = store.acquire_lease("c", holder_id(), 300)
        assert takeover is not None and takeover["holder"] == earlier
    finally:
        store.close()
