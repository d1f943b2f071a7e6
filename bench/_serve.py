"""Starts a sandbox CRM for the benches, with TCP_NODELAY on its sockets (see README: 40 ms stalls otherwise)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sandboxes.server as server
from sandboxes import main


def nodelay() -> None:
    """Send small responses at once: without it, Nagle plus delayed ACK add ~40 ms to some calls."""
    original = server._HTTPServer.finish_request

    def finish_request(self: Any, request: Any, client_address: Any) -> None:
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        original(self, request, client_address)

    server._HTTPServer.finish_request = finish_request  # type: ignore[method-assign]


if __name__ == "__main__":
    if "--keep-nagle" in sys.argv:
        sys.argv.remove("--keep-nagle")
    else:
        nodelay()
    raise SystemExit(main(sys.argv[1:]))
