"""Loopback HTTP(S) plumbing shared by the sandbox CRMs: requests, responses, fault injection, call counts.

An emulator only turns a `Request` into a `Response`. `SandboxServer` hosts it on cheroot, a
maintained HTTP/1.1 WSGI server (see the README's dependency section for why), and owns TLS
(a throw-away CA from `trustme`), the fault plan and the call counter, so both CRMs misbehave
in the same, reproducible way.

Emulators read per-record faults (`record_error_rate`, `lock_error_rate`) and token lifetime
(`expire_tokens_after_s`) from `request.faults`, the live `Faults` of the server, and their own
public address from `request.base_url`. Two optional emulator attributes name the content
codings its API takes and gives: `request_encodings` (request bodies the server inflates
before the emulator sees them) and `response_encodings` (answers gzip-compressed when the
client accepts it).
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
import socket
import ssl
import tempfile
import threading
import time
import traceback as traceback_module
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol, Self
from urllib.parse import parse_qs, urlsplit

import cheroot.errors
import cheroot.server
import cheroot.ssl.builtin
import cheroot.wsgi

from sandboxes.lifecycle import StopsOnExit

FAULT_KINDS = ("429", "503", "500")
# Requests in progress at once; idle keep-alive connections hold no thread in cheroot.
WORKER_THREADS = 24
# Answers shorter than this go out uncompressed even when gzip is accepted and offered.
COMPRESS_ABOVE = 1024
_SLASHES = re.compile(r"/{2,}")


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

    def form(self) -> dict[str, str]:
        """The body as form fields: `application/x-www-form-urlencoded` or `multipart/form-data`.

        First value per name; file parts are read as text. A body of another type is read as
        urlencoded, which is what OAuth token endpoints effectively do.
        """
        content_type = self.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            return _multipart_fields(content_type, self.body)
        text = self.body.decode("utf-8", "replace")
        return {key: values[0] for key, values in parse_qs(text, keep_blank_values=True).items()}


def _multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    """Fields of a multipart/form-data body (RFC 7578), parsed by the standard email parser."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    out: dict[str, str] = {}
    if not message.is_multipart():
        return out
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or name in out:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        charset = part.get_content_charset() or "utf-8"
        out[name] = data.decode(charset, "replace")
    return out


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


class _DropConnection(Exception):
    """Raised by the WSGI app to close the connection without answering."""


class _Gateway(cheroot.wsgi.Gateway_10):
    """WSGI 1.0 gateway that can also hang up unanswered, which WSGI itself cannot express."""

    def respond(self) -> None:
        try:
            super().respond()
        except _DropConnection:
            # Nothing was written yet (the app raises before start_response): no status line,
            # no headers, and cheroot closes the socket because the connection may not be reused.
            self.req.close_connection = True
            self.req.ready = False


class _LenientRequest(cheroot.server.HTTPRequest):
    """cheroot's request parser, minus strict mode's reading of `//path` as an absolute URI.

    RFC 9112's origin-form lets a path start with an empty segment (`//services/data/...`): the
    Salesforce CLI sends exactly that after storing its instance URL with a trailing slash, and
    the real service answers it. Strict mode would refuse it with 400 "Absolute URI not allowed
    if server is not a proxy"; the sandbox splits the target itself instead (`_request`).
    """

    def __init__(
        self,
        server: cheroot.server.HTTPServer,
        conn: cheroot.server.HTTPConnection,
        proxy_mode: bool = False,
        strict_mode: bool = True,
    ) -> None:
        super().__init__(server, conn, proxy_mode=proxy_mode, strict_mode=False)


class _Connection(cheroot.server.HTTPConnection):
    RequestHandlerClass = _LenientRequest


class _LazyHandshakeSocket(ssl.SSLSocket):
    """A server-side TLS socket that finishes its handshake on first use.

    cheroot's builtin adapter shakes hands in its accept loop, one connection at a time, so on a
    busy machine concurrent clients arrive serialised (and a client that connects and stalls holds
    everyone up). Here the handshake runs in the worker thread that serves the connection, as the
    hand-written server did; a failed one closes the connection quietly (cheroot's FatalSSLAlert).
    """

    _handshaken = False

    def _finish_handshake(self) -> None:
        if self._handshaken:
            return
        try:
            self.do_handshake()
        except OSError as exc:  # ssl.SSLError included: plain HTTP, a bad CA, a hang-up
            raise cheroot.errors.FatalSSLAlert(*exc.args) from exc
        self._handshaken = True

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self._finish_handshake()
        return super().recv(buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self._finish_handshake()
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._finish_handshake()
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._finish_handshake()
        super().sendall(data, flags)


class _LazyTLSAdapter(cheroot.ssl.builtin.BuiltinSSLAdapter):
    """cheroot's builtin TLS adapter, with the handshake moved into the worker threads."""

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
        wrapped = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        # The cipher is unknown before the handshake; the emulators read no SSL_* variables.
        return wrapped, {"wsgi.url_scheme": "https", "HTTPS": "on"}


class _CherootServer(cheroot.wsgi.Server):
    owner: SandboxServer

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        # Hang-ups and TLS handshakes refused by clients are normal here (and logs could carry
        # tokens from URLs); a server-side failure is kept for tests to assert on.
        if level >= logging.ERROR:
            detail = traceback_module.format_exc() if traceback else ""
            self.owner.errors.append(f"{msg}\n{detail}")


class SandboxServer(StopsOnExit):
    """A loopback HTTP(S) server in background threads that hosts one emulator.

    The HTTP/1.1 work is cheroot's (CherryPy's WSGI server): persistent connections, chunked
    request bodies, `Expect: 100-continue`, TLS. This class adds what a sandbox needs on top:
    the fault plan, call counts, request-body content codings the emulator accepts
    (`request_encodings`, e.g. gzip for Salesforce REST) and compressed answers where the
    emulator offers them (`response_encodings`).
    """

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
        # Tracebacks of emulator or server bugs (emulator bugs answer 500); tests assert this stays empty.
        self.errors: list[str] = []
        self._calls_lock = threading.Lock()
        self._cheroot: _CherootServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def base_url(self) -> str:
        """`https://127.0.0.1:<port>` (or http when tls=False)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        """Bind, make the TLS material if needed, and serve in daemon threads."""
        if self._cheroot is not None:
            return self
        httpd = _CherootServer(
            (self.host, self.port),
            self._wsgi,
            numthreads=WORKER_THREADS,
            server_name=f"crm-sandbox-{self.emulator.name}",
            timeout=10,
            shutdown_timeout=2,
        )
        httpd.owner = self
        httpd.gateway = _Gateway
        httpd.ConnectionClass = _Connection
        # Clients that pool connections (jsforce, the SDKs) should keep theirs: cheroot's
        # default of 10 would answer the 11th with `Connection: close`.
        httpd.keep_alive_conn_limit = 256
        # The connection selector polls at this interval, and stop() waits up to one interval:
        # cheroot's 0.5 s default would add half a second to every test that stops a sandbox.
        httpd.expiration_interval = 0.05
        if self.tls:
            httpd.ssl_adapter = self._make_tls()
        # Threads inherit daemon-ness from the thread that starts them: binding in a daemon
        # thread makes cheroot's workers daemons, so a sandbox a test forgot to stop cannot
        # keep the interpreter alive at exit (the old http.server used daemon threads too).
        failure: list[BaseException] = []

        def prepare() -> None:
            try:
                httpd.prepare()
            except BaseException as exc:  # re-raised in the caller below
                failure.append(exc)

        binder = threading.Thread(target=prepare, name="sandbox-bind", daemon=True)
        binder.start()
        binder.join()
        if failure:
            raise failure[0]
        self.port = int(httpd.bind_addr[1])
        self._cheroot = httpd
        self._thread = threading.Thread(
            target=httpd.serve, name=f"sandbox-{self.emulator.name}", daemon=True
        )
        self._thread.start()
        return self

    def _make_tls(self) -> _LazyTLSAdapter:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._tmp = tempfile.TemporaryDirectory(prefix="crm-sandbox-")
        bundle = Path(self._tmp.name) / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        self.ca_bundle = str(bundle)
        # cheroot's adapter reads PEM files; key and chain share one file that only we can read.
        identity = Path(self._tmp.name) / "server.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(identity))
        identity.chmod(0o600)
        adapter = _LazyTLSAdapter(str(identity), None)
        adapter.context.sslsocket_class = _LazyHandshakeSocket
        return adapter

    def stop(self) -> None:
        """Stop serving and remove the CA files."""
        if self._cheroot is not None:
            self._cheroot.stop()
            self._cheroot = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def reset_calls(self) -> None:
        """Forget the call counts (tests measure one phase at a time)."""
        with self._calls_lock:
            self.calls.clear()

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        request = self._request(environ)
        response, drop = self.dispatch(request)
        if drop:
            raise _DropConnection
        body = response.body
        headers = dict(response.headers)
        coding = self._response_coding(request, response)
        if coding:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = coding
            headers["Vary"] = "Accept-Encoding"
        headers["Content-Length"] = str(len(body))
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Unknown"
        start_response(f"{response.status} {phrase}", list(headers.items()))
        return [] if request.method == "HEAD" else [body]

    def _request(self, environ: dict[str, Any]) -> Request:
        # REQUEST_URI is the target as sent: PATH_INFO would be percent-decoded, and the
        # emulators match raw paths (ids, external-id values) as the old server gave them.
        target = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        if target.startswith("/"):  # origin-form; urlsplit would read "//x/y" as host "x"
            raw_path, _, raw_query = target.partition("?")
            raw_path = raw_path.partition("#")[0]
        else:  # absolute-form (proxies), or a target without a leading slash
            split = urlsplit(target)
            raw_path, raw_query = split.path or "/", split.query
        # Front ends merge repeated slashes (`//services/data`) before the application sees them.
        path = _SLASHES.sub("/", raw_path if raw_path.startswith("/") else "/" + raw_path)
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        # cheroot hands over Content-Length and chunked bodies alike, already de-chunked.
        body = environ["wsgi.input"].read()
        accepted = getattr(self.emulator, "request_encodings", ())
        decoded = _decode_body(body, headers.get("content-encoding", ""), accepted)
        if decoded is not None:
            body = decoded
            del headers["content-encoding"]
        return Request(
            method=environ["REQUEST_METHOD"],
            path=path,
            query=parse_qs(raw_query, keep_blank_values=True),
            headers=headers,
            body=body,
            base_url=self.base_url,
            faults=self.faults,
        )

    def _response_coding(self, request: Request, response: Response) -> str | None:
        offered = getattr(self.emulator, "response_encodings", ())
        if "gzip" not in offered or len(response.body) < COMPRESS_ABOVE:
            return None
        if "content-encoding" in {k.lower() for k in response.headers}:
            return None
        accepted = request.headers.get("accept-encoding", "")
        codings = {part.split(";")[0].strip().lower() for part in accepted.split(",")}
        return "gzip" if "gzip" in codings else None

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
            self.errors.append(traceback_module.format_exc())
            return self.emulator.fault_response("500"), False
        if (
            request.method in ("POST", "PATCH", "PUT", "DELETE")
            and response.status < 400
            and faults.take("drop_after_commit")
        ):
            return response, True
        return response, False


def _decode_body(body: bytes, content_encoding: str, accepted: Iterable[str]) -> bytes | None:
    """The body with a `Content-Encoding` the emulator's API accepts undone, else None.

    Anything else is left as sent, and a corrupt body too: the emulator then fails to parse it,
    as the service would.
    """
    coding = content_encoding.strip().lower()
    if not body or not coding or coding == "identity" or coding not in set(accepted):
        return None
    try:
        if coding == "gzip":
            return gzip.decompress(body)
        if coding == "deflate":
            # RFC 9110's deflate is zlib-wrapped; some clients send raw deflate anyway.
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except (OSError, EOFError, zlib.error):
        return None
    return None


def free_port() -> int:
    """A port that was free a moment ago (for CLIs that must print the URL before binding)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
