"""Calls that can be abandoned: an overall deadline per HTTP call, and cancellation by a signal.

requests' `timeout` bounds each socket read, not the call: a server that sends one byte every
few seconds keeps a call (and the run, and its lease) alive forever, and a SIGTERM waits for it.
Here every connection a session uses is registered for the thread using it, and one watchdog
thread shuts the socket down when the call's deadline passes or its cancel event is set; the
blocked read then fails at once and the caller learns why from `Call.aborted`.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# How often the watchdog looks at the calls in flight: the worst delay of an abort.
WATCH_INTERVAL = 0.2


@dataclass
class Call:
    """One HTTP call in flight on one thread."""

    deadline: float
    cancel: threading.Event | None
    connection: Any = None
    # "deadline" or "cancelled" once the watchdog gave up on the call.
    aborted: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, connection: Any) -> None:
        """The connection now carrying this call (a call aborted before it got one stops here)."""
        with self.lock:
            self.connection = connection
            if self.aborted is not None:
                _shut(connection)

    def abort(self, reason: str) -> None:
        """Give up on the call: shut its socket so a blocked read returns at once."""
        with self.lock:
            if self.aborted is None:
                self.aborted = reason
                _shut(self.connection)


def _shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread for the process, aborting calls past their deadline or cancelled."""

    def __init__(self) -> None:
        self._calls: dict[int, Call] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def current(self) -> Call | None:
        with self._lock:
            return self._calls.get(threading.get_ident())

    @contextlib.contextmanager
    def watch(self, seconds: float, cancel: threading.Event | None) -> Iterator[Call]:
        call = Call(deadline=time.monotonic() + seconds, cancel=cancel)
        ident = threading.get_ident()
        with self._lock:
            self._calls[ident] = call
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="crm-risk-http-watchdog", daemon=True
                )
                self._thread.start()
        try:
            yield call
        finally:
            with self._lock:
                if self._calls.get(ident) is call:
                    del self._calls[ident]

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            now = time.monotonic()
            with self._lock:
                calls = list(self._calls.values())
            for call in calls:
                if call.cancel is not None and call.cancel.is_set():
                    call.abort("cancelled")
                elif now >= call.deadline:
                    call.abort("deadline")


WATCHDOG = _Watchdog()


class _HeaderReader:
    """Wraps a response's socket file while its headers are read, noting a cut-off header block."""

    def __init__(self, fp: Any) -> None:
        self.fp = fp
        self.cut = False

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self.fp.readline(limit)
        if not line.endswith(b"\n"):
            # EOF (or a shut socket) before the blank line that ends the headers.
            self.cut = True
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fp, name)


class _CheckedResponse(http.client.HTTPResponse):
    """An HTTPResponse that refuses headers cut off by a closed connection.

    http.client keeps whatever header lines arrived and urllib3 only logs a parsing problem,
    so a transfer cut inside the headers would read as an empty 200 answer.
    """

    def begin(self) -> None:
        """Read status and headers; raise when the connection ended inside them."""
        reader = _HeaderReader(self.fp)
        self.fp = reader  # type: ignore[assignment]
        try:
            super().begin()
        finally:
            if self.fp is reader:  # type: ignore[comparison-overlap]  # None after an error
                self.fp = reader.fp
        if reader.cut:
            raise http.client.IncompleteRead(b"", None)


class _Tracked:
    """Mixin for urllib3 connections: register with the current thread's call when used."""

    response_class: type[http.client.HTTPResponse] = _CheckedResponse

    def request(self, *args: Any, **kwargs: Any) -> Any:
        call = WATCHDOG.current()
        if call is not None:
            call.attach(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _TrackedHTTPConnection(_Tracked, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_Tracked, HTTPSConnection):
    pass


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


_POOLS = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


class AbortableAdapter(HTTPAdapter):
    """A requests transport whose connections the watchdog can shut (deadline, cancellation)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Build the pool manager with connection pools that register their connections."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The same for calls through an HTTP(S) proxy."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
