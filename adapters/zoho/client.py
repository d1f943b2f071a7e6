"""Thin Zoho CRM REST v8 client: auth header and one re-auth, paging, COQL, batches, credit meter."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import requests

from adapters._http import ApiClient, RetryingClient, RetryPolicy, Wiring
from adapters._tasks import chunks
from adapters.zoho.settings import ZohoSettings
from connector.errors import (
    AuthError,
    CrmError,
    FatalCrmError,
    QuotaExhaustedError,
    RetriableCrmError,
)

from . import coql
from .auth import TokenProvider, resolve_endpoints
from .errors import classify, classify_token
from .values import MODIFIED

log = logging.getLogger("crm_risk.zoho")

API_VERSION = "v8"
PER_PAGE = 200
MAX_WRITE_BATCH = 100  # PUT/POST /crm/v8/{module}: at most 100 records per call (reference §5.1)
# `page` reaches only the first 2,000 records; past that Zoho wants `page_token` (reference §3.1).
DISCRETE_PAGING_LIMIT = 2000
# Concurrency per org and app: Standard edition allows 10, heavy APIs have a sub-limit of about
# 10, and the reference advises 2-3 workers; the default stays below every edition's cap.
CREDITS_HEADER = "X-API-CREDITS-REMAINING"
_ID_SEGMENT = re.compile(r"/\d{6,}(?=/|$)")


class PageCursor:
    """Zoho's list paging: `page` for the first 2,000 records, then `info.next_page_token`."""

    def __init__(self, per_page: int = PER_PAGE) -> None:
        self.per_page = per_page
        self.page = 1
        self.token: str | None = None

    def params(self) -> dict[str, Any]:
        """Query parameters that select the next page."""
        if self.token:
            return {"page_token": self.token, "per_page": self.per_page}
        return {"page": self.page, "per_page": self.per_page}

    def advance(self, info: Mapping[str, Any]) -> bool:
        """Move past a page from its `info`; False when it was the last one."""
        if not info.get("more_records"):
            return False
        next_token = info.get("next_page_token")
        if self.token is not None or self.page * self.per_page >= DISCRETE_PAGING_LIMIT:
            if not next_token:
                raise FatalCrmError(
                    "Zoho reported more records past 2,000 but gave no next_page_token",
                    code="DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                )
            self.token = str(next_token)
        else:
            self.page += 1
        return True


class ZohoClient:
    """One connection to one Zoho org: every call goes through `request`, which meters credits."""

    def __init__(self, settings: ZohoSettings, wiring: Wiring) -> None:
        self.settings = settings
        options = settings.options
        endpoints = resolve_endpoints(settings)
        self.api_base = endpoints.api_base
        self.version = settings.api_version or API_VERSION
        self._own_session = wiring.session is None
        self.session = wiring.open_session(settings)
        # Zoho sends no Retry-After: exponential backoff with full jitter (2, 4, 8 ... 60 s).
        policy = RetryPolicy(
            max_retries=settings.max_retries,
            base_delay=options.backoff_base_seconds,
            max_delay=options.backoff_max_seconds,
            sleep=wiring.sleep,
        )
        self.http = RetryingClient(
            self.session,
            classify,
            timeout=settings.timeout_seconds,
            policy=policy,
            endpoint_name=self._endpoint_name,
            deadline=settings.deadline_seconds,
            cancel=wiring.cancel,
            url_setting=endpoints.api_setting,
        )
        self.http.on_response.append(self._read_credits_header)
        # Token calls: no automatic retry; TokenProvider waits on the throttle itself.
        self._token_http = self.http.derive(
            classify_token,
            policy=RetryPolicy(max_retries=0, sleep=wiring.sleep),
            endpoint_name=lambda method, url: "POST oauth/v2/token",
            url_setting=endpoints.token_setting,
        )
        self.auth = TokenProvider(
            settings,
            endpoints,
            self._post_token,
            state=wiring.state,
            sleep=wiring.sleep,
            clock=wiring.clock,
            backoff=lambda attempt: policy.delay(attempt, None),
        )
        self.max_concurrency = options.max_concurrency
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        # Re-entrant: the budget check runs under it together with the reservation below.
        self._meter = threading.RLock()
        # Credits of calls in flight: checked with the spent ones, so concurrent callers cannot
        # all pass the budget check and overshoot it together.
        self._reserved = 0
        self.credits: Counter[str] = Counter()
        self.remaining: int | None = None
        self.first_remaining: int | None = None
        self._spent_since_header = 0
        self.credit_budget: int | None = options.credit_budget
        self.api = ApiClient(self.http, _TokenHook(self.auth))

    # -- plumbing ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """Absolute URL for a path under /crm/<version>/."""
        return f"{self.api_base}/crm/{self.version}/{path.lstrip('/')}"

    def _endpoint_name(self, method: str, url: str) -> str:
        path = url.split("?", 1)[0]
        if path.startswith(self.api_base):
            path = path[len(self.api_base) :]
        return f"{method} {_ID_SEGMENT.sub('/{id}', path)}"

    def _post_token(self, url: str, form: dict[str, str]) -> requests.Response:
        # Form body, never query string: secrets must not land in access logs.
        return self._token_http.request("POST", url, retry=False, data=form)

    def _read_credits_header(self, response: requests.Response) -> None:
        value = response.headers.get(CREDITS_HEADER)
        if value is None or not value.strip().lstrip("-").isdigit():
            return
        with self._meter:
            self.remaining = int(value)
            self._spent_since_header = -1  # this response's own cost is already in the figure
            if self.first_remaining is None:
                self.first_remaining = self.remaining

    def _spend(self, endpoint: str, cost: int) -> None:
        with self._meter:
            self.credits[endpoint] += cost
            if self._spent_since_header == -1:
                self._spent_since_header = 0
            else:
                self._spent_since_header += cost

    def remaining_estimate(self) -> int | None:
        """Credits left as Zoho last reported, minus what we spent since (Zoho sends the header
        only once half the daily allowance is used)."""
        with self._meter:
            if self.remaining is None:
                return None
            return self.remaining - max(0, self._spent_since_header) - self._reserved

    def check_budget(self) -> None:
        """Raise QuotaExhaustedError once this run used its share of the credits left at start."""
        share = self.settings.api_budget_share
        with self._meter:
            spent = sum(self.credits.values()) + self._reserved
        if self.credit_budget is not None and spent >= self.credit_budget:
            raise QuotaExhaustedError(
                f"Zoho credit budget of {self.credit_budget} for this run is spent",
                code="CREDIT_BUDGET",
            )
        remaining = self.remaining_estimate()
        if remaining is None or self.first_remaining is None:
            return
        if remaining < (1.0 - share) * self.first_remaining or remaining <= 0:
            raise QuotaExhaustedError(
                f"Zoho API credits: {remaining} left of {self.first_remaining} at the first call; "
                f"the run's share ({share:.0%}) is used",
                code="CREDITS_EXHAUSTED",
            )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        credits: int = 1,
    ) -> requests.Response:
        """One authenticated call; refreshes the token once on 401 INVALID_TOKEN.

        Args:
            method: HTTP method.
            path: path under /crm/<version>/.
            params: query parameters.
            json_body: JSON body (already JSON-safe).
            headers: extra headers (If-Modified-Since).
            retry: False for creates, whose blind retry could duplicate a record.
            credits: what Zoho charges for this call (COQL by its LIMIT).

        Returns:
            The response (2xx, 304, or a batch answer with per-record `data[]`).

        Raises:
            QuotaExhaustedError: the run's share of the credits is used (checked before the call).
            AuthError: credentials refused, or the token refused again after one refresh.
            RetriableCrmError: still failing after the retry policy's attempts.
            FatalCrmError: any other error.
        """
        sent = dict(headers or {})
        if json_body is not None:
            sent["Content-Type"] = "application/json"
        return self.send(
            method,
            self.url(path),
            headers=sent,
            params=params,
            data=None if json_body is None else json.dumps(json_body),
            retry=retry,
            credits=credits,
        )

    def send(self, method: str, url: str, *, credits: int = 1, **kwargs: Any) -> requests.Response:
        """Send one call to any Zoho URL within the run's budget, the concurrency slots and meter.

        Args:
            method: HTTP method.
            url: absolute URL (the bulk API lives outside /crm/<version>/).
            credits: what Zoho charges for this call.
            **kwargs: passed to ApiClient.send (headers, params, data, retry, sink, deadline).

        Returns:
            The response.

        Raises:
            QuotaExhaustedError: the run's share of the credits is used (checked before the call).
            CrmError: as ApiClient.send raises it.
        """
        with self._meter:
            self.check_budget()
            self._reserved += credits
        try:
            with self._slots:
                response = self.api.send(method, url, **kwargs)
        except BaseException:
            with self._meter:
                self._reserved -= credits
            raise
        with self._meter:
            # From reserved to spent in one step: a concurrent check never counts it twice.
            self._reserved -= credits
            self._spend(self._endpoint_name(method, url), credits)
        return response

    @staticmethod
    def body(response: requests.Response) -> Any:
        """The JSON body, or None for 204/304 and empty answers."""
        if response.status_code in (204, 304) or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise FatalCrmError(
                "Zoho answered with a body that is not JSON",
                code="BAD_BODY",
                status=response.status_code,
            ) from None

    # -- reads ------------------------------------------------------------------------------

    def pages(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        per_page: int = PER_PAGE,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the `data` of each page of a list endpoint; 204 and 304 yield nothing."""
        cursor = PageCursor(per_page)
        while True:
            response = self.request(
                "GET", path, params={**params, **cursor.params()}, headers=headers
            )
            if response.status_code in (204, 304):
                return  # nothing (more) to read, as the API documents
            body = self.body(response)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                # A 200 without a record list is never "no records": ending here would be a
                # silent partial read. Treat it as a transient fault and let the run retry.
                code = body.get("code") if isinstance(body, dict) else None
                raise RetriableCrmError(
                    f"Zoho answered GET {path} with HTTP {response.status_code} but no record list",
                    code=str(code or "BAD_BODY"),
                    status=response.status_code,
                )
            if data:
                yield [row for row in data if isinstance(row, dict)]
            info = body.get("info") or {}
            if not data or not cursor.advance(info):
                return

    def coql(self, query: str, *, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Run one COQL query; returns (rows, more_records). Charged by its LIMIT."""
        response = self.request(
            "POST", "coql", json_body={"select_query": query}, credits=coql.credit_cost(limit)
        )
        body = self.body(response)
        if not isinstance(body, dict):
            return [], False
        rows = [row for row in body.get("data") or [] if isinstance(row, dict)]
        return rows, bool((body.get("info") or {}).get("more_records"))

    def coql_rows(
        self, module: str, columns: Sequence[str], ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Rows by id for up to any number of ids and columns: 50 ids and 49 columns + id a call."""
        joined: dict[str, dict[str, Any]] = {}
        wanted = [column for column in columns if column != "id"]
        for id_chunk in chunks(list(dict.fromkeys(ids)), coql.MAX_IN_VALUES):
            for column_chunk in chunks(wanted or [MODIFIED], coql.MAX_COLUMNS - 1):
                query = coql.select(
                    module,
                    ["id", *column_chunk],
                    coql.in_list("id", id_chunk),
                    limit=len(id_chunk),
                )
                rows, _more = self.coql(query, limit=len(id_chunk))
                for row in rows:
                    if row.get("id") is not None:
                        joined.setdefault(str(row["id"]), {}).update(row)
        return joined

    # -- writes -----------------------------------------------------------------------------

    def send_batch(
        self,
        method: str,
        module: str,
        data: list[dict[str, Any]],
        trigger: list[str],
        *,
        retry: bool = True,
    ) -> list[Any] | None:
        """PUT (update) or POST (insert) up to 100 records; returns `data[]` or None if unreadable."""
        response = self.request(
            method, module, json_body={"data": data, "trigger": trigger}, retry=retry
        )
        body = self.body(response)
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            return list(body["data"])
        return None

    def calls(self) -> dict[str, int]:
        """Calls made, by endpoint, including token refreshes."""
        merged = Counter(self.http.calls)
        merged.update(self._token_http.calls)
        return dict(merged)

    def close(self) -> None:
        """Close the session if this client opened it."""
        if self._own_session:
            self.session.close()


class _TokenHook:
    """Zoho's side of ApiClient: the Zoho-oauthtoken header, 401 INVALID_TOKEN, a token refresh."""

    def __init__(self, auth: TokenProvider) -> None:
        self.auth = auth

    def credentials(self) -> tuple[object, dict[str, str]]:
        token = self.auth.token()
        return token, {"Authorization": f"Zoho-oauthtoken {token}"}

    def expired(self, error: CrmError) -> bool:
        return isinstance(error, AuthError) and error.code == "INVALID_TOKEN"

    def renew(self, stale: object) -> None:
        self.auth.refresh(stale=str(stale))

    def refused_again(self, error: CrmError) -> CrmError:
        return error
