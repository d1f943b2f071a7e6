"""One authenticated Salesforce connection: login, one re-auth on 401, API budget, query paging."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from simple_salesforce.api import Salesforce

from adapters._http import ApiClient, RetryingClient, RetryPolicy, Wiring
from adapters.salesforce.auth import Authenticator, Token
from adapters.salesforce.errors import (
    SessionExpiredError,
    classify,
    classify_token,
    unexpected_answer,
    unreadable_answer,
)
from adapters.salesforce.settings import SalesforceSettings
from connector.errors import AuthError, CrmError, QuotaExhaustedError
from connector.protocol import ApiUsage

DEFAULT_API_VERSION = "62.0"

_VERSION_PREFIX = re.compile(r"^/services/data/v\d+\.\d+/")
_ID_LIKE = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


def endpoint_name(method: str, url: str) -> str:
    """A stable name for counting calls: "GET query", "PATCH composite/sobjects", "GET sobjects/Account/describe".

    Record ids, query locators and external-id values are replaced by placeholders, so the
    counter has one entry per kind of call, not per record.
    """
    path = urlsplit(url).path
    if path.endswith("/services/oauth2/token"):
        return f"{method} oauth2/token"
    path = _VERSION_PREFIX.sub("", path).strip("/")
    parts = path.split("/")
    named: list[str] = []
    for index, part in enumerate(parts):
        if index >= 1 and parts[0] in ("query", "queryAll"):
            named.append("{locator}")
            break
        if index == 3 and parts[0] == "sobjects":
            named.append("{key}")  # upsert by external id: sobjects/Task/Field__c/<key>
            break
        is_id = bool(_ID_LIKE.match(part)) and any(ch.isdigit() for ch in part)
        named.append("{id}" if index >= 1 and is_id else part)
    return f"{method} {'/'.join(named)}"


def _stop_on_daily_limit(response: requests.Response) -> None:
    """Raise QuotaExhaustedError straight from the response hook on the org's daily limit.

    The error is a RetriableCrmError (the run resumes next time), but retrying it within this
    run only burns time: raising from the hook skips RetryingClient's back-off loop.
    """
    if response.status_code == 403:
        error = classify(response)
        if isinstance(error, QuotaExhaustedError):
            raise error


def _query_page(body: Any) -> dict[str, Any]:
    """Check a query page's shape: a page without records and done would end a read silently."""
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("records"), list)
        or not isinstance(body.get("done"), bool)
    ):
        raise unexpected_answer("a query page without 'records' and 'done'")
    return body


class SalesforceClient:
    """Sends every call through RetryingClient (timeouts, retries, the error table, call counts).

    simple-salesforce holds the session, instance URL, API version and auth headers; we send
    the requests ourselves because its methods do not all accept timeouts, hide Retry-After,
    and its own refresh loops without bound on a permanent 401 (reference §1.3, #804).
    """

    def __init__(self, settings: SalesforceSettings, wiring: Wiring) -> None:
        self.settings = settings
        self.sleep = wiring.sleep
        self.version = str(settings.api_version or DEFAULT_API_VERSION).lstrip("v")
        self._own_session = wiring.session is None
        self.session = wiring.open_session(settings)
        if settings.ca_bundle or not settings.verify_tls:
            # REQUESTS_CA_BUNDLE in the environment would override session.verify (reference §1.11).
            self.session.trust_env = False
        policy = RetryPolicy(max_retries=settings.max_retries, sleep=wiring.sleep)
        # The instance URL comes from the token answer, so from the login (or token) URL.
        login_setting = "token_url" if settings.token_url else "login_url"
        self.http = RetryingClient(
            self.session,
            classify,
            timeout=settings.timeout_seconds,
            policy=policy,
            endpoint_name=endpoint_name,
            deadline=settings.deadline_seconds,
            cancel=wiring.cancel,
            url_setting=login_setting,
        )
        self.http.on_response.append(self._track_usage)
        self.http.on_response.append(_stop_on_daily_limit)
        self.token_http = self.http.derive(classify_token)
        self.auth = Authenticator(settings, self.token_http, state=wiring.state)
        self.sf: Salesforce | None = None
        self.token: Token | None = None
        self._login_lock = threading.Lock()
        # Guards the budget check together with the count of calls in flight.
        self._budget_lock = threading.Lock()
        self._in_flight = 0
        self.limit: int | None = None
        self.remaining: int | None = None
        self.start_remaining: int | None = None
        self.api = ApiClient(self.http, _SessionHook(self))

    # -- session ------------------------------------------------------------------------------

    def login(self) -> Salesforce:
        """Authenticate (once) and build the simple-salesforce handle around our session."""
        with self._login_lock:
            if self.sf is None:
                self.token = self.auth.authenticate()
                self.sf = Salesforce(
                    instance_url=self.token.instance_url,
                    session_id=self.token.access_token,
                    session=self.session,
                    version=self.version,
                )
            return self.sf

    def _relogin(self, stale: object) -> None:
        with self._login_lock:
            if self.sf is stale:  # another caller may have re-authenticated already
                self.sf = None
        self.login()

    @property
    def user_id(self) -> str | None:
        """The integration user's id, from the token's identity URL."""
        self.login()
        return self.token.user_id if self.token else None

    # -- quota --------------------------------------------------------------------------------

    def _track_usage(self, response: requests.Response) -> None:
        header = response.headers.get("Sforce-Limit-Info")
        if not header:
            return
        usage = Salesforce.parse_api_usage(header).get("api-usage")
        if usage is None:
            return
        self.limit = int(usage.total)
        remaining = int(usage.total) - int(usage.used)
        # Answers to concurrent calls arrive in any order: the lowest count is the latest.
        self.remaining = remaining if self.remaining is None else min(self.remaining, remaining)
        if self.start_remaining is None:
            self.start_remaining = self.remaining

    def check_budget(self, *, in_flight: int = 0) -> None:
        """Stop before the next call once this run spent its share of the quota left at start.

        Raises:
            QuotaExhaustedError: remaining < (1 - api_budget_share) x remaining at the first call,
                or the org used options["org_usage_stop_share"] of its daily allocation.
        """
        if self.start_remaining is None or self.remaining is None:
            return
        org_share = self.settings.options.org_usage_stop_share
        if org_share is not None and self.limit:
            used_today = self.limit - self.remaining
            if used_today >= float(org_share) * self.limit:
                # Leave the rest of the org's daily allocation to its other integrations.
                raise QuotaExhaustedError(
                    f"Salesforce org used {used_today} of {self.limit} daily API requests "
                    f"(stop share {org_share})",
                    code="ORG_API_SHARE",
                )
        floor = (1.0 - self.settings.api_budget_share) * self.start_remaining
        if self.remaining - in_flight < floor:
            used = self.start_remaining - self.remaining
            raise QuotaExhaustedError(
                f"Salesforce API budget for this run spent: {used} calls of "
                f"{self.start_remaining} remaining at start (share {self.settings.api_budget_share})",
                code="API_BUDGET",
            )

    def usage(self) -> ApiUsage:
        """Calls by endpoint (token calls included) and the quota Salesforce last reported."""
        calls: Counter[str] = Counter(self.http.calls)
        calls.update(self.token_http.calls)
        return ApiUsage(calls=dict(calls), remaining=self.remaining, limit=self.limit)

    # -- requests -----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """Absolute URL: "/services/..." paths go to the instance, others under the versioned base."""
        sf = self.login()
        if path.startswith(("https://", "http://")):
            return path
        if path.startswith("/"):
            return f"https://{sf.sf_instance}{path}"
        return f"{sf.base_url}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        retry: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one API call; on 401 INVALID_SESSION_ID log in again once and resend.

        Args:
            method: HTTP method.
            path: relative to /services/data/vXX.X/ (e.g. "query/"), or an instance path.
            retry: False for creates whose retry could duplicate work.
            headers: extra headers (Accept, Content-Type for CSV).
            **kwargs: passed to requests (params, json, data).

        Returns:
            The successful response.

        Raises:
            AuthError: the session was refused again right after re-authenticating.
            QuotaExhaustedError: the run's API budget is spent (checked before sending).
            CrmError: any other classified error.
        """
        with self._budget_lock:
            # Calls in flight count as spent: with several threads, all would otherwise pass
            # the check on the same stale `remaining` and overshoot the budget together.
            self.check_budget(in_flight=self._in_flight)
            self._in_flight += 1
        try:
            # The URL follows the session: a new login may name another instance.
            return self.api.send(
                method, lambda: self.url(path), retry=retry, headers=headers, **kwargs
            )
        finally:
            with self._budget_lock:
                self._in_flight -= 1

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a call and return its parsed JSON body (None for 204 / empty)."""
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            # A proxy's login page, a truncated body: never read as an answer (or as "done").
            raise unreadable_answer(method, self.url(path), response) from None

    def query_pages(
        self, soql: str, *, include_deleted: bool = False
    ) -> Generator[dict[str, Any], None, None]:
        """Yield raw query pages, following nextRecordsUrl until done."""
        endpoint = "queryAll/" if include_deleted else "query/"
        headers: dict[str, str] = {}
        batch = self.settings.options.query_batch_size
        if batch:
            # A hint of 200-2,000 records per page; Salesforce may send fewer (reference §2.1).
            headers["Sforce-Query-Options"] = f"batchSize={int(batch)}"
        page = _query_page(self.json("GET", endpoint, params={"q": soql}, headers=headers))
        while True:
            yield page
            next_url = page.get("nextRecordsUrl")
            if page["done"] or not next_url:
                return
            page = _query_page(self.json("GET", str(next_url), headers=headers))

    def close(self) -> None:
        """Close the session if this client created it."""
        if self._own_session:
            self.session.close()


class _SessionHook:
    """Salesforce's side of ApiClient: the session header, 401 INVALID_SESSION_ID, a new login."""

    def __init__(self, client: SalesforceClient) -> None:
        self.client = client

    def credentials(self) -> tuple[object, dict[str, str]]:
        sf = self.client.login()
        return sf, dict(sf.headers)

    def expired(self, error: CrmError) -> bool:
        return isinstance(error, SessionExpiredError)

    def renew(self, stale: object) -> None:
        self.client._relogin(stale)

    def refused_again(self, error: CrmError) -> CrmError:
        return AuthError(
            "Salesforce refused the session again right after re-authenticating",
            code=error.code or "INVALID_SESSION_ID",
            status=error.status,
        )
