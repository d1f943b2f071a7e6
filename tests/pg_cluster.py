"""Throw-away PostgreSQL clusters for tests: initdb into a temp dir, serve on a unix socket, stop, restart.

Tests skip only when the server binaries (initdb, pg_ctl) are truly missing, and the skip says
where they were looked for. A missing psycopg driver or a cluster that does not start is a
failure: `make test` installs the `postgres` extra, so either would hide broken tests.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_counter = itertools.count()
_WHERE = "$CRMRISK_TEST_PG_BIN, /usr/lib/postgresql/*/bin and PATH"


def bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when this machine has no PostgreSQL server."""
    override = os.environ.get("CRMRISK_TEST_PG_BIN")
    candidates = [override] if override else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).parent))
    for candidate in candidates:
        if (
            candidate
            and (Path(candidate) / "initdb").exists()
            and (Path(candidate) / "pg_ctl").exists()
        ):
            return Path(candidate)
    return None


def require_postgres() -> Path:
    """The server binaries' folder; skips (saying why) only when they are missing."""
    found = bin_dir()
    if found is None:
        pytest.skip(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found in {_WHERE}: "
            "PostgreSQL tests skipped; install PostgreSQL 15 server to run them"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail(
            "initdb is here but the psycopg driver is not installed: "
            "pip install -e '.[postgres]' (make test does)"
        )
    return found


def _run_as() -> list[str]:
    # initdb and postgres refuse to run as root: drop to an unprivileged account.
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and neither a postgres nor a nobody account exists")


class PgCluster:
    """One throw-away cluster listening only on a unix socket in its own temp dir."""

    def __init__(self, binaries: Path, *, max_connections: int = 50) -> None:
        self.bin = binaries
        self.prefix = _run_as()
        # Not under pytest's tmp dir: that is 0700 and the unprivileged server could not enter it.
        self.root = Path(tempfile.mkdtemp(prefix="crmrisk-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.max_connections = max_connections
        self.running = False
        if self.prefix:
            account = pwd.getpwnam(self.prefix[2])
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        )

    @property
    def socket_dir(self) -> str:
        """The host part of a libpq URL (a socket directory)."""
        return str(self.root)

    def url(self, dbname: str = "postgres") -> str:
        """A postgresql:// URL for one database of this cluster."""
        return f"postgresql://postgres@/{dbname}?host={self.root}"

    def _pg(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [*self.prefix, str(self.bin / program), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=90,
        )
        if result.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip()}\n{tail}"
            )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-k {self.root} -c listen_addresses='' -F -c max_connections={self.max_connections}"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-o", options, "-l", str(self.log), "start")  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` ends sessions as a restart by an operator does)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending its sessions."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def destroy(self) -> None:
        """Stop the server (immediately) and remove its files."""
        if self.running:
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_cluster(*, max_connections: int = 50) -> Iterator[PgCluster]:
    """A started cluster, destroyed afterwards; skips only when PostgreSQL is not installed."""
    binaries = require_postgres()
    cluster = PgCluster(binaries, max_connections=max_connections)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def unique_name() -> str:
    """A database name no other test of this run uses."""
    return f"t{os.getpid()}_{next(_counter)}"
