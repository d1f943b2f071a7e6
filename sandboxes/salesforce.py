"""Salesforce sandbox: OAuth, REST query/sObject/collections, limits and Bulk API 2.0 over seeded data.

Faithful to the wire shapes in shared/reference/salesforce.md §2 and §8 so that unmodified
simple-salesforce works against it. Records are dicts keyed by canonical field names with
JSON-native values (dates `YYYY-MM-DD`, datetimes `YYYY-MM-DDTHH:MM:SS.mmm+0000`), so
string order is time order and state saves as plain JSON.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sandboxes.seed import (
    Portfolio,
    PortfolioStream,
)
from sandboxes.server import Request, Response
from sandboxes.sf_bulk import BulkJobs
from sandboxes.sf_catalog import build_schema
from sandboxes.sf_common import (
    INTEGRATION_USER,
    LATEST_VERSION,
    MIN_VERSION,
    ORG_ID,
    _Cursor,
    _error,
    _not_found,
    sf_datetime,
)
from sandboxes.sf_oauth import OAuthServer
from sandboxes.sf_query import SoqlQueries
from sandboxes.sf_schema import (
    SObject,
    to_id18,
)
from sandboxes.sf_seed import OrgSeed
from sandboxes.sf_sobjects import SObjects
from sandboxes.sf_soql import (
    SoqlError,
)
from sandboxes.sf_writes import CollectionWrites


class SalesforceEmulator:
    """A Salesforce org in memory: seeded Accounts, invoices (Billing and custom), Tasks, Users."""

    name = "salesforce"
    # start() may hand over a PortfolioStream instead of a Portfolio for very large seeds.
    accepts_stream = True
    # REST API "Compression Headers": requests may be gzip- or deflate-encoded, and answers are
    # compressed when the client accepts it (Bulk API: "Use Compression for Responses").
    request_encodings = ("gzip", "deflate")
    response_encodings = ("gzip",)

    def __init__(
        self,
        portfolio: Portfolio | PortfolioStream,
        *,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",  # noqa: S107 - published demo credentials
        username: str = INTEGRATION_USER,
        password: str = "sandbox-password",  # noqa: S107
        security_token: str = "sandbox-token",  # noqa: S107
        daily_api_limit: int = 100_000,
        session_seconds: float | None = None,
        jwt_public_key: str | None = None,
        bulk_polls_before_complete: int = 0,
        bulk_results_page: int = 50_000,
        invoice_objects: Iterable[str] = ("blng__Invoice__c", "Invoice__c"),
        long_running_limit: int | None = None,
        processing_delay_s: float = 0.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password = password
        self.security_token = security_token
        self.demo_refresh_token = "5Aep861sandboxRefreshToken"  # noqa: S105 - demo value
        self.daily_api_limit = daily_api_limit
        self.api_used = 0
        # Salesforce refuses a request while 25 of the org's requests have run over 20 s
        # (REQUEST_LIMIT_EXCEEDED "ConcurrentPerOrgLongTxn Limit exceeded."). Here, with a limit
        # set, every call counts as long-running and takes `processing_delay_s`, so a test meets
        # the refusal without 20-second calls.
        self.long_running_limit = long_running_limit
        self.processing_delay_s = processing_delay_s
        self._in_flight = 0
        self.session_seconds = session_seconds
        self.bulk_polls_before_complete = bulk_polls_before_complete
        # Rows per Bulk 2.0 results page when the client sends no maxRecords: Salesforce cuts
        # pages by size, so tests shrink this to make clients follow Sforce-Locator.
        self.bulk_results_page = bulk_results_page
        self.call_counts: Counter[tuple[str, str]] = Counter()
        self.writes_log: list[dict[str, Any]] = []
        self.schema = build_schema()
        self.rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schema}
        self.as_of = portfolio.as_of
        # Clock control: tests may replace this to stage SystemModstamp ties and late commits.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._last_stamp = ""
        self._seq = 0
        self._lock = threading.RLock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._cursors: dict[str, _Cursor] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, int] = {}
        self._validation_rules: list[Callable[[str, dict[str, Any]], str | None]] = []
        self._jwt_public_key = jwt_public_key
        self._jwt_private_key: str | None = None
        self.integration_user_id = ""  # the integration user's Id, set by the seed
        self.seeder = OrgSeed(self)  # sf_seed.py
        self.oauth = OAuthServer(self)  # sf_oauth.py
        self.soql = SoqlQueries(self)  # sf_query.py
        self.sobjects = SObjects(self)  # sf_sobjects.py
        self.writer = CollectionWrites(self)  # sf_writes.py
        self.bulk = BulkJobs(self)  # sf_bulk.py
        self.seeder._seed(portfolio, set(invoice_objects))

    # ---------------------------------------------------------------- inspection API

    def records(self, object_name: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Copies of the records of one object (soft-deleted ones only when asked)."""
        obj = self._object(object_name)
        with self._lock:
            return [
                dict(row)
                for row in self.rows[obj.name].values()
                if include_deleted or not row["IsDeleted"]
            ]

    def tasks(self) -> list[dict[str, Any]]:
        """Copies of all Task records."""
        return self.records("Task")

    def set_field(self, object_name: str, record_id: str, field: str, value: Any) -> None:
        """Simulate a person editing a record in the CRM (bumps LastModifiedDate/SystemModstamp)."""
        obj = self._object(object_name)
        fdef = obj.field(field)
        if fdef is None:
            raise KeyError(field)
        with self._lock:
            row = self.rows[obj.name][to_id18(record_id) or record_id]
            row[fdef.name] = value
            self._touch(row, self._stamp())

    def edit_field(
        self,
        object_name: str,
        field: str,
        *,
        picklist: tuple[str, ...] | None = None,
        updateable: bool | None = None,
        delete: bool = False,
    ) -> None:
        """Change a field as an admin would in Setup: its picklist values, edit access, or delete it."""
        obj = self._object(object_name)
        with self._lock:
            fdef = obj.field(field)
            if fdef is None:
                raise KeyError(field)
            index = obj.fields.index(fdef)
            if delete:
                del obj.fields[index]
            else:
                changes: dict[str, Any] = {}
                if picklist is not None:
                    changes["picklist"] = tuple(picklist)
                if updateable is not None:
                    changes["updateable"] = changes["createable"] = updateable
                obj.fields[index] = dataclasses.replace(fdef, **changes)
            obj.__post_init__()

    def delete_record(self, object_name: str, record_id: str) -> None:
        """Soft-delete a record (it moves to the recycle bin: only queryAll sees it)."""
        obj = self._object(object_name)
        with self._lock:
            row = self.rows[obj.name][to_id18(record_id) or record_id]
            row["IsDeleted"] = True
            self._touch(row, self._stamp())

    def expire_tokens(self) -> None:
        """Invalidate every access token (the next API call answers 401 INVALID_SESSION_ID)."""
        with self._lock:
            self._tokens.clear()

    def issue_token(self, user_id: str | None = None) -> str:
        """A valid access token, for tests that use `Salesforce(session_id=...)` directly."""
        token = f"{ORG_ID[:15]}!AQ{secrets.token_urlsafe(40)}"
        with self._lock:
            self._tokens[token] = (user_id or self.integration_user_id, time.monotonic())
        return token

    def lock_record(self, record_id: str, times: int = 1) -> None:
        """Answer UNABLE_TO_LOCK_ROW for the next `times` writes to this record."""
        with self._lock:
            self._locks[to_id18(record_id) or record_id] = times

    def add_validation_rule(self, rule: Callable[[str, dict[str, Any]], str | None]) -> None:
        """A rule (object name, merged record) -> error text or None, like a validation rule."""
        self._validation_rules.append(rule)

    def set_api_usage(self, used: int) -> None:
        """Pretend `used` API calls were already spent today."""
        self.api_used = used

    @property
    def jwt_private_key(self) -> str:
        """PEM of the private key whose public half verifies JWT bearer assertions (made on demand)."""
        if self._jwt_private_key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa

            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self._jwt_private_key = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            self._jwt_public_key = (
                key.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
        return self._jwt_private_key

    def save_state(self, path: str) -> None:
        """Write all records and counters to a JSON file."""
        with self._lock:
            state = {"rows": self.rows, "seq": self._seq, "api_used": self.api_used}
            text = json.dumps(state)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)

    def load_state(self, path: str) -> None:
        """Replace all records with those of a file written by save_state()."""
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        with self._lock:
            self.rows = {name: state["rows"].get(name, {}) for name in self.schema}
            self._seq = int(state["seq"])
            self.api_used = int(state["api_used"])
            stamps = [row["SystemModstamp"] for rows in self.rows.values() for row in rows.values()]
            self._last_stamp = max(stamps, default="")

    # ---------------------------------------------------------------- clock and writes

    def _stamp(self) -> str:
        # Never go backwards: seeded stamps may lie ahead of the real clock.
        stamp = max(sf_datetime(self.clock()), self._last_stamp)
        self._last_stamp = stamp
        return stamp

    @staticmethod
    def _touch(row: dict[str, Any], stamp: str) -> None:
        row["LastModifiedDate"] = stamp
        row["SystemModstamp"] = stamp

    def _object(self, name: str) -> SObject:
        for obj in self.schema.values():
            if obj.name.lower() == name.lower():
                return obj
        raise KeyError(name)

    def _find_object(self, name: str) -> SObject | None:
        try:
            return self._object(name)
        except KeyError:
            return None

    # ---------------------------------------------------------------- HTTP entry

    def fault_response(self, kind: str) -> Response:
        """Injected faults in Salesforce's JSON-array error shape (no Retry-After: SF sends none)."""
        if kind == "429":
            return _error(429, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
        if kind == "503":
            return _error(503, "SERVER_UNAVAILABLE", "Service temporarily unavailable.")
        return _error(
            500,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: "
            "1234567890-12345 (-1)",
        )

    def handle(self, request: Request) -> Response:
        """Route one request."""
        path = request.path
        if path.rstrip("/") == "/services/oauth2/token":
            return self.oauth._token(request)
        if path.rstrip("/") == "/services/oauth2/userinfo":
            return self.oauth._userinfo(request)
        if path.startswith("/id/"):
            return self.oauth._identity(request)
        if path.startswith("/services/Soap/u/"):
            return self.oauth._soap_login(request)
        if path.rstrip("/") == "/services/data":
            return Response.json(
                200,
                [
                    {
                        "label": f"Sandbox {v:.1f}",
                        "url": f"/services/data/v{v:.1f}",
                        "version": f"{v:.1f}",
                    }
                    for v in (58.0, 59.0, 60.0, 61.0, 62.0)
                ],
            )
        match = re.match(r"^/services/data/v(\d+\.\d)(/.*)?$", path)
        if not match:
            return _not_found()
        version = float(match.group(1))
        if not MIN_VERSION <= version <= LATEST_VERSION:
            return _not_found()
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        with self._lock:
            if self.api_used >= self.daily_api_limit:
                response = _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                response.headers["Sforce-Limit-Info"] = self._usage_header()
                return response
            if self.long_running_limit is not None and self._in_flight >= self.long_running_limit:
                response = _error(
                    403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
                )
                response.headers["Sforce-Limit-Info"] = self._usage_header()
                return response
            self.api_used += 1
            self._in_flight += 1
        rest = (match.group(2) or "/").rstrip("/") or "/"
        try:
            if self.processing_delay_s > 0:
                time.sleep(self.processing_delay_s)
            response = self._route(request, match.group(1), rest)
        except SoqlError as exc:
            response = _error(400, exc.code, exc.message)
        finally:
            with self._lock:
                self._in_flight -= 1
        response.headers["Sforce-Limit-Info"] = self._usage_header()
        return response

    def _usage_header(self) -> str:
        return f"api-usage={self.api_used}/{self.daily_api_limit}"

    def _authenticate(self, request: Request) -> Response | None:
        if self._session_user(request) is None:
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return None

    def _session_user(self, request: Request, *, query_token: bool = False) -> str | None:
        """The user id of the request's live access token (None when missing or expired)."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value.strip() if scheme.lower() in ("bearer", "oauth") else ""
        token = token or request.headers.get("x-sfdc-session", "")
        if query_token:  # identity URLs also take the token as ?oauth_token= (Identity URLs page)
            token = token or request.param("oauth_token") or request.param("access_token") or ""
        lifetime = request.faults.expire_tokens_after_s
        if lifetime is None:
            lifetime = self.session_seconds
        with self._lock:
            entry = self._tokens.get(token)
            if entry is not None and lifetime is not None:
                if time.monotonic() - entry[1] > lifetime:
                    del self._tokens[token]
                    entry = None
        return None if entry is None else entry[0]

    def _route(self, request: Request, version: str, rest: str) -> Response:
        method = request.method
        parts = rest.strip("/").split("/") if rest != "/" else []
        head = parts[0].lower() if parts else ""
        if not parts:
            return Response.json(200, self._resources(request, version))
        if head in ("query", "queryall"):
            if len(parts) == 2:
                return self.soql._query_more(request, version, parts[1])
            q = request.param("q")
            if q is None:
                return _error(400, "MALFORMED_QUERY", "A query string has to be specified")
            return self.soql._query(request, version, q, include_deleted=head == "queryall")
        if head == "limits" and method == "GET":
            return Response.json(200, self._limits())
        if head == "sobjects":
            return self.sobjects._sobjects(request, version, parts[1:])
        if head == "composite" and len(parts) >= 2 and parts[1].lower() == "sobjects":
            return self.writer._collections(request, version, parts[2:])
        if head == "jobs" and len(parts) >= 2:
            return self.bulk._jobs_route(request, version, parts[1].lower(), parts[2:])
        return _not_found()

    def _resources(self, request: Request, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}"
        resources = {
            name: f"{base}/{name}"
            for name in ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
        }
        # The versions resource names the caller's identity URL (REST API "Resources by Version").
        user_id = self._session_user(request) or self.integration_user_id
        resources["identity"] = f"{request.base_url}/id/{ORG_ID}/{user_id}"
        return resources

    def _limits(self) -> dict[str, Any]:
        # GET /limits (REST API guide, resources_limits): every allocation as {"Max", "Remaining"}.
        # The API, bulk query and ingest counters move with this org's traffic; the others are
        # the defaults of an Enterprise org and never move here.
        with self._lock:
            remaining = max(self.daily_api_limit - self.api_used, 0)
            query_jobs = sum(1 for j in self._jobs.values() if j.get("_kind") == "query")
            ingest_jobs = len(self._jobs) - query_jobs
        moving = {
            "DailyApiRequests": (self.daily_api_limit, remaining),
            "DailyBulkApiBatches": (15000, 15000 - ingest_jobs),
            "DailyBulkV2QueryJobs": (10000, 10000 - query_jobs),
        }
        fixed = {
            "ActiveScratchOrgs": 3,
            "AnalyticsExternalDataSizeMB": 40960,
            "ConcurrentAsyncGetReportInstances": 200,
            "ConcurrentSyncReportRuns": 20,
            "DailyAnalyticsDataflowJobExecutions": 60,
            "DailyAnalyticsUploadedFilesSizeMB": 51200,
            "DailyAsyncApexExecutions": 250000,
            "DailyAsyncApexTests": 500,
            "DailyBulkV2QueryFileStorageMB": 976562,
            "DailyDeliveredPlatformEvents": 50000,
            "DailyDurableGenericStreamingApiEvents": 10000,
            "DailyDurableStreamingApiEvents": 10000,
            "DailyGenericStreamingApiEvents": 10000,
            "DailyScratchOrgs": 6,
            "DailyStandardVolumePlatformEvents": 10000,
            "DailyStreamingApiEvents": 10000,
            "DailyWorkflowEmails": 1000,
            "DataStorageMB": 1024,
            "DurableStreamingApiConcurrentClients": 20,
            "FileStorageMB": 20480,
            "HourlyAsyncReportRuns": 1200,
            "HourlyDashboardRefreshes": 200,
            "HourlyDashboardResults": 5000,
            "HourlyDashboardStatuses": 999999999,
            "HourlyLongTermIdMapping": 100000,
            "HourlyODataCallout": 10000,
            "HourlyPublishedPlatformEvents": 50000,
            "HourlyPublishedStandardVolumePlatformEvents": 1000,
            "HourlyShortTermIdMapping": 100000,
            "HourlySyncReportRuns": 500,
            "HourlyTimeBasedWorkflow": 50,
            "MassEmail": 10,
            "Package2VersionCreates": 6,
            "Package2VersionCreatesWithoutValidation": 500,
            "PermissionTypes": {"Max": 30000, "Remaining": 30000},
            "SingleEmail": 15,
            "StreamingApiConcurrentClients": 20,
        }
        limits: dict[str, Any] = {
            name: {"Max": top, "Remaining": left} for name, (top, left) in moving.items()
        }
        for name, value in fixed.items():
            limits[name] = value if isinstance(value, dict) else {"Max": value, "Remaining": value}
        limits["DataStorageMB"]["Remaining"] = 1000
        return dict(sorted(limits.items()))
