"""Who holds a run lease, and whether that holder is a process on this host that no longer exists.

A holder id reads `host:pid:start:token`, where `start` is the process's start time as the
kernel counts it (Linux /proc/<pid>/stat, field 22) or "-" elsewhere. A lease left by a process
that was SIGKILLed or crashed would block the connection until it expires; when its holder is on
this host and that pid is gone (or now belongs to a process started at another time, a reused
pid, this process's own included: a container's entrypoint is pid 1 again after a restart) the
lease is stale and the next run takes it over at once.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Holder:
    """A parsed holder id."""

    host: str
    pid: int | None
    start: str | None
    token: str


def process_start(pid: int) -> str | None:
    """The start time of a process as the kernel reports it, or None (no /proc, no such pid)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def holder_id() -> str:
    """This process as a lease holder: host, pid, process start time and a random token."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start(pid) or '-'}:{uuid.uuid4().hex[:8]}"


def parse(holder: str) -> Holder:
    """Read a holder id, old form (`host:pid:token`, no start time) included."""
    parts = holder.split(":")
    pid = int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None
    if len(parts) >= 4:
        start = None if parts[2] == "-" else parts[2]
        return Holder(parts[0], pid, start, parts[-1])
    return Holder(parts[0], pid, None, parts[-1] if len(parts) >= 3 else "")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def stale_reason(holder: str) -> str | None:
    """Why a holder can no longer be running, or None when it may be (or is not on this host).

    Only holders on this host are judged: another host's process cannot be seen from here.
    """
    parsed = parse(holder)
    if parsed.host != socket.gethostname() or parsed.pid is None:
        return None
    if parsed.pid != os.getpid() and not _alive(parsed.pid):
        return f"process {parsed.pid} on this host is gone"
    # Our own pid is judged by its start time too: a container's entrypoint is pid 1 on a
    # persistent hostname, so the process a restart left the lease behind had our pid.
    if parsed.start is not None:
        now = process_start(parsed.pid)
        if now is not None and now != parsed.start:
            if parsed.pid == os.getpid():
                return f"process id {parsed.pid} belonged to an earlier process (this one started later)"
            return f"process id {parsed.pid} now belongs to another process"
    return None
