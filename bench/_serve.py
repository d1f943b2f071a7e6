"""Starts a sandbox CRM for the benches in its own process; `--keep-nagle` turns TCP_NODELAY off (see README)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cheroot.server

from sandboxes import main


def keep_nagle() -> None:
    """Leave Nagle on: small answers then wait for delayed ACKs (~40 ms on some calls).

    The sandboxes run on cheroot, which sets TCP_NODELAY on its listening socket by default
    (`HTTPServer.nodelay`), so the benches get prompt answers without a patch of their own.
    """
    cheroot.server.HTTPServer.nodelay = False


if __name__ == "__main__":
    if "--keep-nagle" in sys.argv:
        sys.argv.remove("--keep-nagle")
        keep_nagle()
    raise SystemExit(main(sys.argv[1:]))
