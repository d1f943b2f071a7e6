"""Loopback HTTP(S) plumbing shared by the sandbox CRMs: requests, responses, fault injection, call counts.

An emulator only turns a `Request` into a `Response`. `SandboxServer` owns the socket, TLS
(a throw-away CA from `trustme`), the fault plan and the call counter, so both CRMs misbehave
in the same, reproducible way.

Emulators read per-record faults (`record_error_rate`, `lock_error_rate`) and token lifetime
(`expire_tokens_after_s`) from `request.faults`, the live `Faults` of the server, and their own
public address from `request.base_url`.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import ssl
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import parse_qs, urlsplit

FAULT_KINDS = ("429", "503", "500")


@dataclass
class Faults:
    """Fault plan of one server; mutate it at run time and the next request sees the change.

    Rates are probabilities per request (or per record for the record-level ones), drawn from
    one RNG seeded with `seed`, so a run with the same calls fails the same way.
    """

    latency_ms: float = 0
    rate_429: float = 0
    burst_429: int = 0
    rate_503: float = 0
    burst_503: int = 0
    rate_500: float = 0
    rate_drop: float = 0
    # Apply the next N writes (POST/PATCH/PUT/DELETE), then close the connection unanswered:
    # the client cannot know the write happened (a lost response).
    drop_after_commit: int = 0
    record_error_rate: float = 0
    lock_error_rate: float = 0
    expire_tokens_after_s: float | None = None
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """Parse `"latency_ms=50,rate_429=0.1,burst_429=3"` (the CLI's --faults value).

        Raises:
            ValueError: on an unknown key or a value of the wrong type.
        """
        known = {f.name: f for f in fields(cls) if f.init}
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(sorted(known))}")
            raw = raw.strip()
            if key == "expire_tokens_after_s":
                values[key] = None if raw.lower() in ("", "none") else float(raw)
            elif key in ("burst_429", "burst_503", "drop_after_commit", "seed"):
                values[key] = int(raw)
            else:
                values[key] = float(raw)
        return cls(**values)

    def roll(self, rate: float) -> bool:
        """True with probability `rate` (thread-safe, reproducible)."""
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        with self._lock:
            return self._rng.random() < rate

    def take(self, counter: str) -> bool:
        """Consume one unit of a countdown fault (`burst_429`, `drop_after_commit`, ...)."""
        with self._lock:
            left = int(getattr(self, counter))
            if left <= 0:
                return False
            setattr(self, counter, left - 1)
            return True


@dataclass
class Request:
    """One HTTP request as an emulator sees it; header names are lower case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    base_url: str = ""
    faults: Faults = field(default_factory=Faults)

    def json(self) -> Any:
        """The body parsed as JSON (None when empty); raises ValueError when malformed."""
        if not self.body.strip():
            return None
        return json.loads(self.body)

    def param(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    """What an emulator answers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        """A JSON response with the right content type."""
        merged = {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode(), merged)


class Emulator(Protocol):
    """A CRM stand-in: turns requests into responses in the CRM's own shapes."""

    name: str

    def handle(self, request: Request) -> Response:
        """Answer one request."""
        ...

    def fault_response(self, kind: str) -> Response:
        """The CRM's own answer for an injected fault: kind is "429", "503" or "500"."""
        ...


_ID_SEGMENT = re.compile(
    r"^(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$"  # Salesforce 15/18-char ids
    r"|^\d{5,}$"  # Zoho numeric ids
    r"|^[A-Za-z0-9]+-\d+$"  # query locators like 01gXXXX-2000
)


def normalise_endpoint(path: str) -> str:
    """The path with record ids and locators replaced by `{id}`, for counting calls by endpoint."""
    parts = path.split("/")
    out = ["{id}" if _ID_SEGMENT.match(part) else part for part in parts]
    normalised = "/".join(out)
    return normalised[:-1] if len(normalised) > 1 and normalised.endswith("/") else normalised


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' pooled sessions expect

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: tests run with warnings as errors and logs would leak tokens in URLs.
        return

    def _serve(self) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            base_url=owner.base_url,
            faults=owner.faults,
        )
        response, drop = owner.dispatch(request)
        if drop:
            self.close_connection = True
            return
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: SandboxServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Small answers go out at once: Nagle plus delayed ACK otherwise add ~40 ms to some calls.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # TLS handshake in the per-connection thread, so one slow client cannot stall accept().
        context = self.owner.ssl_context
        if context is None:
            super().finish_request(request, client_address)
            return
        try:
            wrapped = context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (dropped-connection faults, timeouts) are normal here.
        return


class SandboxServer:
    """A loopback HTTP(S) server in a background thread that hosts one emulator."""

    def __init__(
        self,
        emulator: Emulator,
        *,
        port: int = 0,
        tls: bool = True,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.emulator = emulator
        self.faults = faults or Faults()
        self.calls: Counter[tuple[str, str]] = Counter()
        self.tls = tls
        self.host = host
        self.port = port
        self.ca_bundle: str | None = None
        self.ssl_context: ssl.SSLContext | None = None
        # Tracebacks of emulator bugs (answered as 500); tests assert this stays empty.
        self.errors: list[str] = []
        self._calls_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def base_url(self) -> str:
        """`https://127.0.0.1:<port>` (or http when tls=False)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        """Bind, make the TLS material if needed, and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        if self.tls:
            self._make_tls()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self.emulator.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def _make_tls(self) -> None:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._tmp = tempfile.TemporaryDirectory(prefix="crm-sandbox-")
        bundle = Path(self._tmp.name) / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        self.ca_bundle = str(bundle)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.ssl_context = context

    def stop(self) -> None:
        """Stop serving and remove the CA files."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset_calls(self) -> None:
        """Forget the call counts (tests measure one phase at a time)."""
        with self._calls_lock:
            self.calls.clear()

    def dispatch(self, request: Request) -> tuple[Response, bool]:
        """Apply the fault plan, then the emulator. Returns (response, drop the connection)."""
        with self._calls_lock:
            self.calls[(request.method, normalise_endpoint(request.path))] += 1
        faults = self.faults
        request.faults = faults
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        if faults.roll(faults.rate_drop):
            return Response(0), True
        if faults.take("burst_429") or faults.roll(faults.rate_429):
            return self.emulator.fault_response("429"), False
        if faults.take("burst_503") or faults.roll(faults.rate_503):
            return self.emulator.fault_response("503"), False
        if faults.roll(faults.rate_500):
            return self.emulator.fault_response("500"), False
        try:
            response = self.emulator.handle(request)
        except Exception:  # an emulator bug must look like a server error, not a hung socket
            self.errors.append(traceback.format_exc())
            return self.emulator.fault_response("500"), False
        if (
            request.method in ("POST", "PATCH", "PUT", "DELETE")
            and response.status < 400
            and faults.take("drop_after_commit")
        ):
            return response, True
        return response, False


def free_port() -> int:
    """A port that was free a moment ago (for CLIs that must print the URL before binding)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
