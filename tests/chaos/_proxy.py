"""A TLS proxy in front of a sandbox CRM that spoils answers at the byte level: truncated, reset
mid-body, or drip-fed one byte at a time.

The CRM applies every request in full (a write lands); only the answer is spoiled, as a broken
network or a failing load balancer would. The proxy has its own test CA, rewrites the sandbox's
own address in answers (token answers name the instance) and knows nothing of either CRM.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.loopback import LoopbackServer, drip, send_then_reset


@dataclass
class NetFaults:
    """Per answer probabilities; `drip_seconds` is the pause between two bytes of a drip."""

    rate_truncate: float = 0
    rate_reset: float = 0
    rate_drip: float = 0
    drip_seconds: float = 0.05
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def pick(self) -> str:
        """Which fault this answer gets ("none" for a clean answer)."""
        with self._lock:
            roll = self._rng.random()
            edge = 0.0
            for name, rate in (
                ("truncate", self.rate_truncate),
                ("reset", self.rate_reset),
                ("drip", self.rate_drip),
            ):
                edge += rate
                if roll < edge:
                    self.counts[name] = self.counts.get(name, 0) + 1
                    return name
            return "none"


def _read_request(stream: Any) -> tuple[bytes, dict[str, str], bytes] | None:
    line = stream.readline(65537)
    if not line:
        return None
    headers: dict[str, str] = {}
    raw_lines = [line]
    while True:
        header = stream.readline(65537)
        if not header:
            return None
        raw_lines.append(header)
        if header in (b"\r\n", b"\n"):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = stream.read(length) if length else b""
    return line, headers, body


class FaultProxy(LoopbackServer):
    """Listens on 127.0.0.1 with its own CA and forwards to one upstream HTTPS base URL."""

    def __init__(self, upstream: str, upstream_ca: str | None, faults: NetFaults) -> None:
        self.upstream = upstream.rstrip("/")
        parts = urlsplit(self.upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 443
        self.faults = faults
        self._upstream_tls = ssl.create_default_context(cafile=upstream_ca)
        super().__init__("fault-proxy")
        self._tmp = tempfile.TemporaryDirectory(prefix="crm-proxy-")
        self.ca_bundle, self._tls = self._make_tls()

    @property
    def base_url(self) -> str:
        """The proxy's address, used wherever the sandbox's would be."""
        return f"https://127.0.0.1:{self.port}"

    def _make_tls(self) -> tuple[str, ssl.SSLContext]:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        bundle = Path(self._tmp.name) / "proxy-ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return str(bundle), context

    def _closed(self) -> None:
        self._tmp.cleanup()

    def _accepted(self, conn: socket.socket) -> Callable[[], None]:
        return lambda: self._connection(conn)

    def _connection(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, http.client.HTTPException):
            raw.settimeout(30)
            client = self._tls.wrap_socket(raw, server_side=True)
            upstream = http.client.HTTPSConnection(
                self._host, self._port, context=self._upstream_tls, timeout=30
            )
            try:
                stream = client.makefile("rb")
                while not self._stop.is_set():
                    request = _read_request(stream)
                    if request is None:
                        return
                    answer = self._forward(upstream, *request)
                    if not self._send(client, answer):
                        return
            finally:
                upstream.close()
                with contextlib.suppress(OSError):
                    client.close()

    def _forward(
        self,
        upstream: http.client.HTTPSConnection,
        line: bytes,
        headers: dict[str, str],
        body: bytes,
    ) -> bytes:
        method, target, _version = line.decode("latin-1").split(" ", 2)
        sent = {k: v for k, v in headers.items() if k not in ("host", "connection")}
        sent["host"] = f"{self._host}:{self._port}"
        upstream.request(method, target, body=body or None, headers=sent)
        response = upstream.getresponse()
        content = response.read().replace(self.upstream.encode(), self.base_url.encode())
        out = [f"HTTP/1.1 {response.status} {response.reason}"]
        for name, value in response.getheaders():
            if name.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            out.append(f"{name}: {value.replace(self.upstream, self.base_url)}")
        out.append(f"Content-Length: {len(content)}")
        return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + content

    def _send(self, client: ssl.SSLSocket, answer: bytes) -> bool:
        """Send one answer as the fault plan says; False when the connection is done."""
        fault = self.faults.pick()
        if fault == "none":
            client.sendall(answer)
            return True
        head_end = answer.index(b"\r\n\r\n") + 4
        if fault == "truncate":
            client.sendall(answer[: head_end + (len(answer) - head_end) // 2])
        elif fault == "reset":
            send_then_reset(client, answer[: head_end + (len(answer) - head_end) // 2], 0.01)
        else:  # drip: one byte at a time until the client gives up (or the answer ends)
            drip(client, answer, self.faults.drip_seconds, self._stop)
        return False


class ProxiedSandbox:
    """A running sandbox as the connector sees it through the proxy (URLs and CA swapped)."""

    def __init__(self, sandbox: Any, proxy: FaultProxy) -> None:
        self._sandbox = sandbox
        self.proxy = proxy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sandbox, name)

    def config_snippet(self) -> str:
        """The sandbox's connection section, pointing at the proxy and trusting its CA."""
        text = str(self._sandbox.config_snippet()).replace(
            self._sandbox.base_url, self.proxy.base_url
        )
        return text.replace(str(self._sandbox.ca_bundle), self.proxy.ca_bundle)
