"""A loopback HTTP server that answers badly on purpose, one scripted behaviour per connection.

Behaviours: `ok` (a whole JSON answer), `truncated` (Content-Length promises more than is sent),
`reset` (half the body, then a TCP reset), `bad_chunked` (a broken chunked encoding), `bad_gzip`
(gzip announced, garbage sent), `cut_headers` (the connection closes inside the headers), `drip` (the whole answer one byte at a time), `status:503`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Self

BODY = json.dumps({"ok": True, "padding": "x" * 2000}).encode()


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


class HostileServer:
    """Serves `script` in order (the last entry repeats); records how many connections it saw."""

    def __init__(self, script: list[str], *, drip_seconds: float = 0.2) -> None:
        self.script = list(script)
        self.drip_seconds = drip_seconds
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}/thing"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _next(self) -> str:
        index = min(self.connections, len(self.script) - 1)
        self.connections += 1
        return self.script[index]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            behaviour = self._next()
            threading.Thread(target=self._answer, args=(conn, behaviour), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk

    def _answer(self, conn: socket.socket, behaviour: str) -> None:
        with contextlib.closing(conn):
            self._read_request(conn)
            with contextlib.suppress(OSError):
                self._send(conn, behaviour)

    def _send(self, conn: socket.socket, behaviour: str) -> None:
        json_headers = {"Content-Type": "application/json", "Connection": "close"}
        if behaviour == "ok":
            conn.sendall(_head("200 OK", {**json_headers, "Content-Length": str(len(BODY))}) + BODY)
        elif behaviour.startswith("status:"):
            code = behaviour.split(":", 1)[1]
            body = b'{"error": "busy"}'
            headers = {**json_headers, "Content-Length": str(len(body)), "Retry-After": "30"}
            conn.sendall(_head(f"{code} Unavailable", headers) + body)
        elif behaviour == "truncated":
            conn.sendall(_head("200 OK", {**json_headers, "Content-Length": str(len(BODY))}))
            conn.sendall(BODY[: len(BODY) // 3])
        elif behaviour == "cut_headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: applica")
        elif behaviour == "reset":
            conn.sendall(_head("200 OK", {**json_headers, "Content-Length": str(len(BODY))}))
            conn.sendall(BODY[: len(BODY) // 2])
            time.sleep(0.05)
            # SO_LINGER 0: close() sends a RST instead of a FIN (a connection reset mid-body).
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif behaviour == "bad_chunked":
            conn.sendall(_head("200 OK", {**json_headers, "Transfer-Encoding": "chunked"}))
            conn.sendall(b"10\r\n" + BODY[:16] + b"\r\nZZZ\r\nnot a chunk\r\n")
        elif behaviour == "bad_gzip":
            garbage = b"\x1f\x8b\x08\x00" + b"this is not deflate data" * 10
            headers = {
                **json_headers,
                "Content-Encoding": "gzip",
                "Content-Length": str(len(garbage)),
            }
            conn.sendall(_head("200 OK", headers) + garbage)
        elif behaviour == "drip":
            answer = _head("200 OK", {**json_headers, "Content-Length": str(len(BODY))}) + BODY
            for byte in _bytes(answer):
                if self._stop.is_set():
                    return
                conn.sendall(byte)
                time.sleep(self.drip_seconds)
        else:  # pragma: no cover - a typo in a test
            raise ValueError(behaviour)


def _bytes(data: bytes) -> Iterator[bytes]:
    for index in range(len(data)):
        yield data[index : index + 1]
