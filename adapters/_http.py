"""HTTP plumbing shared by the adapters: one session per connection, retries with backoff, redaction."""

from __future__ import annotations

import copy
import email.utils
import http.client
import logging
import random
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import requests
import urllib3

from adapters._settings import HttpSettings
from adapters._transport import WATCHDOG, AbortableAdapter
from connector import __version__
from connector.errors import CrmError, CrmSetupError, RetriableCrmError, RunCancelled
from connector.protocol import KeyValueStore
from connector.redaction import redact, redact_url

log = logging.getLogger("crm_risk.http")

USER_AGENT = f"crm-risk-connector/{__version__}"


def make_session(*, ca_bundle: str | None = None, verify_tls: bool = True) -> requests.Session:
    """Build the one requests.Session a connection uses.

    Args:
        ca_bundle: path of a CA bundle to trust (the local sandbox's test CA), or None for the system store.
        verify_tls: False disables certificate checks; logged loudly because it should never be needed.

    Returns:
        A session with our user agent and TLS settings. Timeouts are passed per request by RetryingClient.
    """
    if ca_bundle and verify_tls:
        _check_ca_bundle(ca_bundle)
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    # Connections the watchdog can shut: the per-call deadline and SIGTERM reach a blocked read.
    transport = AbortableAdapter()
    session.mount("https://", transport)
    session.mount("http://", transport)
    if not verify_tls:
        log.warning(
            "TLS certificate verification is DISABLED for this connection (verify_tls = false)"
        )
        session.verify = False
    elif ca_bundle:
        session.verify = ca_bundle
    return session


@dataclass(frozen=True)
class Wiring:
    """What an adapter hands the client it builds besides the settings: the token store, a given
    session, how to wait and read the clock, and the stop event."""

    state: KeyValueStore | None = None
    session: requests.Session | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    cancel: threading.Event | None = None

    def open_session(self, settings: HttpSettings) -> requests.Session:
        """The given session, else a new one with the settings' TLS trust (the client closes it)."""
        return self.session or make_session(
            ca_bundle=settings.ca_bundle, verify_tls=settings.verify_tls
        )


def _check_ca_bundle(path: str) -> None:
    """A CA bundle that is missing or holds no certificate is a setup mistake, named as one.

    requests would only find out on the first call, as an OSError that reads like a crash.

    Raises:
        CrmSetupError: the file is missing, unreadable or not a PEM bundle (setting ca_bundle).
    """
    bundle = Path(path)
    fix = (
        "point ca_bundle at the PEM file of the CA that signs the CRM's certificate, "
        "or remove it to use the system's trusted CAs"
    )
    if bundle.is_dir():
        try:
            ssl.create_default_context(capath=str(bundle))
        except (OSError, ssl.SSLError) as exc:
            raise CrmSetupError(
                f"the CA folder {path} cannot be used ({exc}): {fix}", setting="ca_bundle"
            ) from None
        return
    if not bundle.exists():
        raise CrmSetupError(f"the CA bundle {path} does not exist: {fix}", setting="ca_bundle")
    try:
        ssl.create_default_context(cafile=str(bundle))
    except ssl.SSLError:  # before OSError, its base class
        raise CrmSetupError(
            f"the CA bundle {path} holds no PEM certificate: {fix}", setting="ca_bundle"
        ) from None
    except OSError as exc:
        raise CrmSetupError(
            f"the CA bundle {path} cannot be read ({exc.strerror or exc}): {fix}",
            setting="ca_bundle",
        ) from None


def _causes(error: BaseException) -> list[BaseException]:
    """The error and everything it wraps: requests and urllib3 nest the socket's error deeply
    (in args, `reason`, __cause__ and __context__)."""
    found: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending and len(found) < 32:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        nested = [*current.args, getattr(current, "reason", None)]
        nested += [current.__cause__, current.__context__]
        pending += [item for item in nested if isinstance(item, BaseException)]
    return found


def tls_setup_problem(error: BaseException, url: str, url_setting: str) -> CrmSetupError | None:
    """A TLS failure that retrying cannot fix, as a setup error naming the setting, else None.

    A certificate the CA bundle does not vouch for (a private CA, a TLS-inspecting proxy, the
    sandbox's test CA) fails the same way every time; so does an https URL of a server that
    speaks plain HTTP. A handshake cut short by the network is left to the retry.
    """
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or cause.reason or "verification failed"
            return CrmSetupError(
                f"the TLS certificate of {redact_url(_origin(url))} is not trusted ({reason}): "
                "set ca_bundle to the PEM file of the CA that signed it (a private CA or a "
                "TLS-inspecting proxy), or check that the URL is the CRM's",
                setting="ca_bundle",
                code="TLS_VERIFY",
            )
        if isinstance(cause, ssl.SSLError) and cause.reason == "WRONG_VERSION_NUMBER":
            return CrmSetupError(
                f"{redact_url(_origin(url))} does not speak TLS (a plain-HTTP port?): "
                f"check {url_setting or 'the URL'}",
                setting=url_setting,
                code="TLS_PROTOCOL",
            )
    return None


def transport_reason(error: BaseException) -> str:
    """What went wrong on the wire, in words: refused, host not found, timed out, reset."""
    for cause in _causes(error):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror) or "NameResolution" in type(cause).__name__:
            return "host name not found"
        if isinstance(cause, TimeoutError | requests.Timeout) or "Timeout" in type(cause).__name__:
            return "timed out"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
    return type(error).__name__


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


def parse_retry_after(
    value: str | None, *, now: Callable[[], datetime] | None = None
) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = (now or (lambda: datetime.now(UTC)))()
    return max(0.0, (when - current).total_seconds())


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter; Retry-After wins when the server sends one."""

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay * 4)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return self.rng.uniform(ceiling / 2, ceiling)


ErrorClassifier = Callable[[requests.Response], CrmError | None]

# Everything that means "the answer did not arrive whole": retried like a 503. requests wraps
# most of these (ConnectionError, ChunkedEncodingError, ContentDecodingError); the raw ones can
# leak from a body read (IncompleteRead, ProtocolError, a reset socket).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)

# A call may take this long in all (connect, headers and the whole body) unless the connection
# sets `deadline_seconds`.
DEFAULT_DEADLINE = 120.0


def cancellable_sleep(
    sleep: Callable[[float], None], cancel: threading.Event | None
) -> Callable[[float], None]:
    """A sleep that a set `cancel` event (SIGTERM) ends at once with RunCancelled.

    Back-off waits reach a minute (Zoho) and token-throttle waits longer; a stop request must not
    wait for them. A test's own sleep function is called as is, then the event is checked.
    """
    if cancel is None:
        return sleep

    def pause(seconds: float) -> None:
        if sleep is time.sleep:
            if cancel.wait(max(0.0, seconds)):
                raise RunCancelled("stopped while waiting to retry a CRM call")
            return
        sleep(seconds)
        if cancel.is_set():
            raise RunCancelled("stopped while waiting to retry a CRM call")

    return pause


class RetryingClient:
    """Sends requests on one session, retries transient failures and counts calls by endpoint.

    The adapter supplies `classify`, its one table from status and body to connector errors; a
    RetriableCrmError is retried up to the policy's limit, any other error is raised at once.
    """

    def __init__(
        self,
        session: requests.Session,
        classify: ErrorClassifier,
        *,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        endpoint_name: Callable[[str, str], str] | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        url_setting: str = "",
    ) -> None:
        self.session = session
        # The setting the URLs of this client come from (base_url, token_url): errors name it.
        self.url_setting = url_setting
        self.classify = classify
        self.timeout = timeout
        # The whole call (connect, headers, body) ends by then, however slowly the bytes come.
        self.deadline = max(deadline or DEFAULT_DEADLINE, timeout)
        self.cancel = cancel
        self.policy = policy or RetryPolicy()
        self.calls: Counter[str] = Counter()
        # Write batches may be sent from several threads: `+=` on a Counter is not atomic.
        self._calls_lock = threading.Lock()
        self._endpoint_name = endpoint_name or (lambda method, url: f"{method} {url.split('?')[0]}")
        self.on_response: list[Callable[[requests.Response], None]] = []

    def derive(
        self,
        classify: ErrorClassifier,
        *,
        policy: RetryPolicy | None = None,
        endpoint_name: Callable[[str, str], str] | None = None,
        url_setting: str | None = None,
    ) -> RetryingClient:
        """A client on the same session, timeouts and cancel event with another error table.

        For a CRM's token endpoint, whose errors read differently from its API's. The new client
        counts its own calls and has no response hooks; what is not given is kept from this one.
        """
        return RetryingClient(
            self.session,
            classify,
            timeout=self.timeout,
            policy=policy or self.policy,
            endpoint_name=endpoint_name or self._endpoint_name,
            deadline=self.deadline,
            cancel=self.cancel,
            url_setting=self.url_setting if url_setting is None else url_setting,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        retry: bool = True,
        headers: Mapping[str, str] | None = None,
        sink: IO[bytes] | None = None,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request, retrying transient failures; raise the classified error otherwise.

        Args:
            method: HTTP method.
            url: absolute URL.
            retry: False for non-idempotent calls whose retry could duplicate work (the caller
                then reconciles, e.g. by looking a task up by its dedupe key).
            headers: extra headers for this call.
            sink: a binary file the body is streamed into (large downloads), within the call's
                deadline; emptied and written again when the call is retried.
            deadline: this call's own overall limit in seconds (default: the client's).
            **kwargs: passed to requests (params, json, data).

        Returns:
            The successful response.

        Raises:
            CrmError: the classified error (RetriableCrmError after the last attempt; one with
                code DEADLINE when answers kept coming too slowly).
            RunCancelled: the cancel event was set (SIGTERM) while the call was in flight or
                waiting to be retried.
        """
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            if self.cancel is not None and self.cancel.is_set():
                raise RunCancelled(f"stopped before {method} {redact_url(url)}")
            with self._calls_lock:
                self.calls[self._endpoint_name(method, url)] += 1
            # verify per request: REQUESTS_CA_BUNDLE in the environment would otherwise
            # override the session's CA bundle (the sandbox's test CA).
            kwargs.setdefault("verify", self.session.verify)
            answer = self._send_once(method, url, headers, sink, deadline, kwargs)
            if isinstance(answer, requests.Response):
                return answer
            error = answer
            if (
                not (retry and isinstance(error, RetriableCrmError))
                or attempt > self.policy.max_retries
            ):
                if isinstance(error, RetriableCrmError) and attempt > 1:
                    raise gave_up(error, attempt, time.monotonic() - started, self.url_setting)
                raise error
            wait = self.policy.delay(attempt, error.retry_after)
            log.info(
                "retrying %s %s after %.2fs (attempt %d): %s",
                method,
                redact_url(url),
                wait,
                attempt,
                redact(str(error)),
            )
            cancellable_sleep(self.policy.sleep, self.cancel)(wait)

    def _send_once(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        sink: IO[bytes] | None,
        deadline: float | None,
        kwargs: dict[str, Any],
    ) -> requests.Response | CrmError:
        """One attempt under the watchdog: the accepted response, or the error it stands for.

        Raises:
            RunCancelled: the cancel event was set while the call was in flight.
            CrmSetupError: the TLS set-up is wrong (never retried).
        """
        limit = max(deadline or self.deadline, self.timeout)
        sent = time.monotonic()
        with WATCHDOG.watch(limit, self.cancel) as call:
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=self.timeout,
                    stream=sink is not None,
                    **kwargs,
                )
                if sink is not None:
                    _download(response, sink)
            except TRANSPORT_ERRORS as exc:
                setup = tls_setup_problem(exc, url, self.url_setting)
                if setup is not None and call.aborted is None:
                    raise setup from None
                response = None
                failure = exc
        if call.aborted is not None:
            # What arrived before the socket was shut may look whole (headers cut short
            # read as an empty 200): never use it.
            response = None
        if call.aborted == "cancelled":
            raise RunCancelled(f"stopped during {method} {redact_url(url)}")
        if response is None:
            if call.aborted == "deadline":
                return RetriableCrmError(
                    f"{method} {redact_url(url)} took longer than the {limit:g} s "
                    "deadline (deadline_seconds); abandoned",
                    code="DEADLINE",
                )
            return RetriableCrmError(
                f"{method} {redact_url(url)} failed: {transport_reason(failure)}",
                code="CONNECTION",
            )
        log.debug(
            "%s %s -> HTTP %d in %.0f ms",
            method,
            redact_url(url),
            response.status_code,
            (time.monotonic() - sent) * 1000,
        )
        for hook in self.on_response:
            hook(response)
        error = self.classify(response)
        if isinstance(error, CrmSetupError) and not error.setting:
            error.setting = self.url_setting
        return response if error is None else error


class SessionAuth(Protocol):
    """The auth hook ApiClient calls: the CRM's way of signing a call and renewing a session."""

    def credentials(self) -> tuple[object, dict[str, str]]:
        """The current session handle and the headers that sign a call with it."""
        ...

    def expired(self, error: CrmError) -> bool:
        """True when the CRM refused the call because the session (not the credentials) expired."""
        ...

    def renew(self, stale: object) -> None:
        """Replace the session `stale` (another thread may have renewed it already)."""
        ...

    def refused_again(self, error: CrmError) -> CrmError:
        """The error to raise when a freshly renewed session is refused as well."""
        ...


class ApiClient:
    """One authenticated call: send, re-authenticate once when the session expired, send again.

    Every adapter sends through this one loop; what differs by CRM (the auth header, how an
    expired session is recognised, how it is renewed) comes from its SessionAuth hook. Retries
    of transient failures happen below, in RetryingClient.
    """

    def __init__(self, http: RetryingClient, auth: SessionAuth) -> None:
        self.http = http
        self.auth = auth

    def send(
        self,
        method: str,
        url: str | Callable[[], str],
        *,
        headers: Mapping[str, str] | None = None,
        fresh: Callable[[object], Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one call signed with the current session; renew the session once on expiry.

        The refused call did not run, so sending it again is safe even for creates.

        Args:
            method: HTTP method.
            url: the absolute URL, or a function giving it (the host can change with the session).
            headers: extra headers (the auth headers are added).
            fresh: the request arguments made again for each send with its session: those
                that carry credentials in the body (Fxiaoke's legacy style) or must be new on
                every call (a trace id).
            **kwargs: passed to RetryingClient.request (retry, params, json, data, sink, deadline).

        Returns:
            The successful response.

        Raises:
            CrmError: the classified error; the hook's refused_again() error when the renewed
                session is refused too.
        """
        for attempt in (1, 2):
            session, signed = self.auth.credentials()
            target = url() if callable(url) else url
            sent = {**kwargs, **(fresh(session) if fresh is not None else {})}
            try:
                return self.http.request(
                    method, target, headers={**(headers or {}), **signed}, **sent
                )
            except CrmError as exc:
                if not self.auth.expired(exc):
                    raise
                if attempt == 2:
                    raise self.auth.refused_again(exc) from None
                self.auth.renew(session)
        raise AssertionError("unreachable")  # pragma: no cover


def gave_up(
    error: RetriableCrmError, attempts: int, seconds: float, url_setting: str
) -> RetriableCrmError:
    """The last transient error, saying what was retried, for how long, and what to check."""
    check = (
        f"; check that the CRM is up and {url_setting} is right, then try again"
        if error.code in ("CONNECTION", "DEADLINE") and url_setting
        else "; try again later"
    )
    final = copy.copy(error)
    final.message = f"{error.message} (tried {attempts} times over {seconds:.0f} s){check}"
    final.args = (str(final),)
    final.setting = error.setting or (url_setting if error.code == "CONNECTION" else "")
    return final


def _download(response: requests.Response, sink: IO[bytes]) -> None:
    """Copy a streamed body into `sink` (emptied first); errors pages are left to the classifier."""
    sink.seek(0)
    sink.truncate()
    if response.status_code >= 300:
        return
    try:
        for chunk in response.iter_content(chunk_size=1 << 16):
            sink.write(chunk)
    finally:
        response.close()
    sink.seek(0)
