"""A loopback HTTP server that answers badly on purpose, one scripted behaviour per connection.

Behaviours: `ok` (a whole JSON answer), `truncated` (Content-Length promises more than is sent),
`reset` (half the body, then a TCP reset), `bad_chunked` (a broken chunked encoding), `bad_gzip`
(gzip announced, garbage sent), `cut_headers` (the connection closes inside the headers), `drip` (the whole answer one byte at a time), `status:503`.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable

from tests.loopback import LoopbackServer, drip, send_then_reset

BODY = json.dumps({"ok": True, "padding": "x" * 2000}).encode()


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


class HostileServer(LoopbackServer):
    """Serves `script` in order (the last entry repeats); records how many connections it saw."""

    def __init__(self, script: list[str], *, drip_seconds: float = 0.2) -> None:
        super().__init__("hostile-server")
        self.script = list(script)
        self.drip_seconds = drip_seconds
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/thing"

    def _next(self) -> str:
        index = min(self.connections, len(self.script) - 1)
        self.connections += 1
        return self.script[index]

    def _accepted(self, conn: socket.socket) -> Callable[[], None]:
        behaviour = self._next()
        return lambda: self._answer(conn, behaviour)

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
            head = _head("200 OK", {**json_headers, "Content-Length": str(len(BODY))})
            send_then_reset(conn, head + BODY[: len(BODY) // 2], 0.05)
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
            drip(conn, answer, self.drip_seconds, self._stop)
        else:  # pragma: no cover - a typo in a test
            raise ValueError(behaviour)
