"""HTTP plumbing shared by the adapters: one session per connection, retries with backoff, redaction."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from connector import __version__
from connector.errors import CrmError, RetriableCrmError
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
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    if not verify_tls:
        log.warning(
            "TLS certificate verification is DISABLED for this connection (verify_tls = false)"
        )
        session.verify = False
    elif ca_bundle:
        session.verify = ca_bundle
    return session


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
    ) -> None:
        self.session = session
        self.classify = classify
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.calls: Counter[str] = Counter()
        self._endpoint_name = endpoint_name or (lambda method, url: f"{method} {url.split('?')[0]}")
        self.on_response: list[Callable[[requests.Response], None]] = []

    def request(
        self,
        method: str,
        url: str,
        *,
        retry: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request, retrying transient failures; raise the classified error otherwise.

        Args:
            method: HTTP method.
            url: absolute URL.
            retry: False for non-idempotent calls whose retry could duplicate work (the caller
                then reconciles, e.g. by looking a task up by its dedupe key).
            headers: extra headers for this call.
            **kwargs: passed to requests (params, json, data).

        Returns:
            The successful response.

        Raises:
            CrmError: the classified error (RetriableCrmError after the last attempt).
        """
        attempt = 0
        while True:
            attempt += 1
            self.calls[self._endpoint_name(method, url)] += 1
            try:
                # verify per request: REQUESTS_CA_BUNDLE in the environment would otherwise
                # override the session's CA bundle (the sandbox's test CA).
                kwargs.setdefault("verify", self.session.verify)
                response = self.session.request(
                    method, url, headers=headers, timeout=self.timeout, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                error: CrmError = RetriableCrmError(
                    f"{method} {redact_url(url)} failed: {type(exc).__name__}", code="CONNECTION"
                )
            else:
                for hook in self.on_response:
                    hook(response)
                classified = self.classify(response)
                if classified is None:
                    return response
                error = classified
            if (
                not (retry and isinstance(error, RetriableCrmError))
                or attempt > self.policy.max_retries
            ):
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
            self.policy.sleep(wait)
