"""A loopback TCP server for the network-fault tests, and the ways an answer goes wrong on the wire.

The hostile HTTP server (tests/hostile_server.py) and the TLS fault proxy in front of the
sandboxes (tests/chaos/_proxy.py) share this: a listener on 127.0.0.1, one thread per
connection, a clean stop, and the byte-level faults (an answer reset mid-body, one drip-fed).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Self

from sandboxes.lifecycle import StopsOnExit


class LoopbackServer(StopsOnExit):
    """Accepts connections on 127.0.0.1 until stopped; each is served on its own thread."""

    def __init__(self, name: str) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the listener, and release what a subclass holds."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self._closed()

    def _closed(self) -> None:
        """Release what a subclass holds besides the listener (nothing by default)."""

    def _accepted(self, conn: socket.socket) -> Callable[[], None]:
        """What to do with a new connection, decided in accept order; run on its own thread."""
        raise NotImplementedError

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._accepted(conn), daemon=True).start()


def send_then_reset(conn: socket.socket, data: bytes, pause: float) -> None:
    """Send `data`, wait, and make the close a TCP reset (SO_LINGER 0), not a clean end."""
    conn.sendall(data)
    time.sleep(pause)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def drip(conn: socket.socket, data: bytes, pause: float, stop: threading.Event) -> None:
    """Send `data` one byte at a time, `pause` seconds apart, until it ends or `stop` is set."""
    for index in range(len(data)):
        if stop.is_set():
            return
        conn.sendall(data[index : index + 1])
        time.sleep(pause)


__all__ = ["LoopbackServer", "drip", "send_then_reset"]
