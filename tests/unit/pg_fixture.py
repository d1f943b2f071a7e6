"""A throw-away PostgreSQL cluster for the store tests (skipped when the binaries or psycopg are missing)."""

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


def _bin_dir() -> Path | None:
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


def _run_as() -> list[str]:
    # initdb and postgres refuse to run as root: drop to an unprivileged account.
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and neither a postgres nor a nobody account exists")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Start a cluster on a unix socket in a temp dir; yields the socket dir."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'crm-risk-connector[postgres]')")
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    prefix = _run_as()
    # Not under pytest's tmp dir: that is 0700 and the unprivileged server could not enter it.
    root = Path(tempfile.mkdtemp(prefix="crmrisk-pg-"))
    data = root / "data"
    started = False
    try:
        if prefix:
            user = prefix[2]
            os.chown(root, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        options = f"-k {root} -c listen_addresses='' -F -c max_connections=50"
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-t",
                "30",
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        started = True
        with psycopg.connect(host=str(root), user="postgres", dbname="postgres") as probe:
            probe.execute("SELECT 1")
        yield str(root)
    except (OSError, subprocess.SubprocessError, psycopg.Error, RuntimeError) as exc:
        pytest.skip(f"could not start a throw-away PostgreSQL cluster: {exc}")
    finally:
        if started:
            subprocess.run(
                [
                    *prefix,
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                check=False,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, as a postgresql:// URL."""
    import psycopg

    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(
        host=pg_server, user="postgres", dbname="postgres", autocommit=True
    ) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@/{name}?host={pg_server}"
    with psycopg.connect(
        host=pg_server, user="postgres", dbname="postgres", autocommit=True
    ) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
