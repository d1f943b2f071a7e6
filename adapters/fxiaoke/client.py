"""Thin Fxiaoke Open API client: auth in headers or body, a fresh thirdTraceId per call, one re-auth, keyset query pages.

Every call is `POST` + JSON; the answer is HTTP 200 with an `errorCode` (errors.py). Each call
carries a new UUIDv4 `thirdTraceId` in the query string, as the manual asks
(developer.fxiaoke.com .../start/auth/public.html), and the log line pairs it with the server's
`traceId`, which is what Fxiaoke support asks for.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import requests

from adapters._http import ApiClient, RetryingClient, RetryPolicy, make_session
from connector.errors import AuthError, CrmError
from connector.protocol import KeyValueStore

from .auth import Token, TokenProvider
from .errors import TOKEN_CODES, body_of, classify
from .settings import FxiaokeConnection

log = logging.getLogger("crm_risk.fxiaoke")

PRESET_PREFIX = "/cgi/crm/v2"
MAX_LIMIT = 100


class FxiaokeClient:
    """One connection to one Fxiaoke tenant."""

    def __init__(
        self,
        settings: FxiaokeConnection,
        *,
        verify_tls: bool = True,
        ca_bundle: str | None = None,
        timeout: float = 30.0,
        deadline: float = 120.0,
        max_retries: int = 4,
        state: KeyValueStore | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        cancel: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self._own_session = session is None
        self.session = session or make_session(ca_bundle=ca_bundle, verify_tls=verify_tls)
        self.http = RetryingClient(
            self.session,
            classify,
            timeout=timeout,
            policy=RetryPolicy(
                max_retries=max_retries, base_delay=1.0, max_delay=30.0, sleep=sleep
            ),
            endpoint_name=lambda method, url: (
                f"{method} {url.split('?')[0].split('//', 1)[-1].partition('/')[2]}"
            ),
            deadline=deadline,
            cancel=cancel,
            url_setting="base_url",
        )
        token_http = RetryingClient(
            self.session,
            classify,
            timeout=timeout,
            # The token endpoint takes 10 calls a minute: TokenProvider paces its own retries.
            policy=RetryPolicy(max_retries=0, sleep=sleep),
            endpoint_name=lambda method, url: f"{method} token",
            deadline=deadline,
            cancel=cancel,
            url_setting="token_url",
        )
        self.auth = TokenProvider(
            settings, token_http, state=state, clock=clock, sleep=sleep, max_retries=max_retries
        )
        self._token_http = token_http
        self._hook = _TokenHook(self.auth, settings)
        self.api = ApiClient(self.http, self._hook)
        self.trace_log: list[tuple[str, str]] = []  # (thirdTraceId, traceId) of recent calls

    # -- plumbing ---------------------------------------------------------------------------

    def path_for(self, crm_object: str, action: str) -> str:
        """`/cgi/crm/v2/data/<action>`, or the custom-object family for `..__c` objects."""
        prefix = (
            self.settings.options.custom_prefix if crm_object.endswith("__c") else PRESET_PREFIX
        )
        return f"{prefix.rstrip('/')}/data/{action}"

    def call(self, path: str, body: dict[str, Any], *, retry: bool = True) -> dict[str, Any]:
        """POST one call and return its envelope; renew the token once on 20005/20016.

        Args:
            path: the API path, e.g. `/cgi/crm/v2/data/query`.
            body: the request body without credentials.
            retry: False for creates: transient failures are raised, never resent blindly.

        Returns:
            The answer's JSON object (errorCode 0).

        Raises:
            CrmError: the classified error (errors.py).
        """
        thirds: list[str] = []

        def fresh(token: object) -> dict[str, Any]:
            # A new thirdTraceId for each send, the resend after a renewal included.
            thirds.append(str(uuid.uuid4()))
            return {
                "params": {"thirdTraceId": thirds[-1]},
                "json": self._hook.body(cast(Token, token), body),
            }

        response = self.api.send("POST", self.settings.base_url + path, fresh=fresh, retry=retry)
        third = thirds[-1]
        answer = body_of(response) or {}
        trace = str(answer.get("traceId") or "")
        self.trace_log = [*self.trace_log[-99:], (third, trace)]
        log.debug("Fxiaoke %s thirdTraceId=%s traceId=%s", path, third, trace)
        return answer

    # -- queries ----------------------------------------------------------------------------

    def query(
        self,
        crm_object: str,
        *,
        filters: list[dict[str, Any]],
        orders: list[dict[str, Any]],
        projection: list[str],
        limit: int = MAX_LIMIT,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """One page of `/data/query` (data.dataList; one user saw dataList at the top level [X])."""
        info: dict[str, Any] = {
            "limit": min(limit, MAX_LIMIT),
            "offset": offset,
            "filters": filters,
            "orders": orders,
        }
        if projection:
            info["fieldProjection"] = projection
        answer = self.call(
            self.path_for(crm_object, "query"),
            {
                "data": {
                    "dataObjectApiName": crm_object,
                    # No count: faster, and the count is not needed to page by key.
                    "find_explicit_total_num": False,
                    "search_query_info": info,
                }
            },
        )
        data = answer.get("data")
        rows = data.get("dataList") if isinstance(data, dict) else answer.get("dataList")
        return [row for row in rows or [] if isinstance(row, dict)]

    def pages_by_id(
        self,
        crm_object: str,
        filters: list[dict[str, Any]],
        projection: list[str],
        page_size: int = MAX_LIMIT,
    ) -> Iterator[list[dict[str, Any]]]:
        """Every matching row, by `_id` keyset: offset stays 0, `_id GT last` (deep-paging.html)."""
        last: str | None = None
        while True:
            keyset = (
                []
                if last is None
                else [{"field_name": "_id", "operator": "GT", "field_values": [last]}]
            )
            rows = self.query(
                crm_object,
                filters=[*filters, *keyset],
                orders=[{"fieldName": "_id", "isAsc": True}],
                projection=projection,
                limit=page_size,
            )
            if rows:
                yield rows
            if len(rows) < page_size:
                return
            last = str(rows[-1]["_id"])

    def calls(self) -> dict[str, int]:
        """Calls made, by endpoint, token calls included."""
        counted = dict(self.http.calls)
        for name, count in self._token_http.calls.items():
            counted[name] = counted.get(name, 0) + count
        return counted

    def close(self) -> None:
        """Close the session when this client opened it."""
        if self._own_session:
            self.session.close()


class _TokenHook:
    """Fxiaoke's side of ApiClient: the token in headers (current style) or in the body (legacy),
    errorCode 20005/20016 for a token the server no longer takes, and a renewal."""

    def __init__(self, auth: TokenProvider, settings: FxiaokeConnection) -> None:
        self.auth = auth
        self.settings = settings

    def credentials(self) -> tuple[object, dict[str, str]]:
        token = self.auth.token()
        if self.settings.auth != "app_secret":
            return token, {}  # legacy: the credentials travel in the body (body() below)
        return token, {
            "authorization": f"Bearer {token.value}",
            "x-fs-ea": token.ea,
            "x-fs-userid": self.settings.user_id,
        }

    def body(self, token: Token, body: dict[str, Any]) -> dict[str, Any]:
        """The request body, with corpAccessToken, corpId and currentOpenUserId in legacy style."""
        if self.settings.auth == "app_secret":
            return body
        identity = {
            "corpAccessToken": token.value,
            "corpId": token.corp_id,
            "currentOpenUserId": self.settings.user_id,
        }
        return {**identity, **body}

    def expired(self, error: CrmError) -> bool:
        return (
            isinstance(error, AuthError) and error.code.isdigit() and int(error.code) in TOKEN_CODES
        )

    def renew(self, stale: object) -> None:
        log.info("Fxiaoke refused the token; renewing it once")
        self.auth.refused(cast(Token, stale))

    def refused_again(self, error: CrmError) -> CrmError:
        return error
