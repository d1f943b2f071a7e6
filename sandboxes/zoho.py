"""Zoho CRM sandbox: OAuth accounts server and REST API v8 (records, COQL, metadata, users) over seeded data.

Faithful to the wire shapes in shared/reference/zoho.md (§2 OAuth, §3 reads, §5 writes, §6
limits, §7 metadata, §10 emulator checklist) so that unmodified clients, Zoho's own
`zohocrmsdk8-0` among them, work against it. The accounts server and the API domain share one
port and are told apart by path (`/oauth/v2/...` versus `/crm/v8/...`).

Records are stored as Zoho renders them: ids are 19-digit strings, lookups `{id, name}`,
owners `{id, name, email}`, dates `YYYY-MM-DD`, datetimes ISO-8601 at second precision in the
org's offset (default `+00:00`). Choices the reference marks as assumptions [A] are noted where
they are made.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandboxes.seed import RATES_PER_EUR, Portfolio
from sandboxes.server import Faults, Request, Response
from sandboxes.zoho_bulk import BULK_PREFIX, BulkReads, record_count
from sandboxes.zoho_common import (
    _NAME_FIELD,
    API_PREFIX,
    TOO_MANY,
    _error,
    _instant,
    _PageToken,
    _parse_offset,
    _Token,
)
from sandboxes.zoho_fields import CustomFields
from sandboxes.zoho_oauth import AccountsServer
from sandboxes.zoho_query import CoqlQueries
from sandboxes.zoho_reads import RecordReads
from sandboxes.zoho_schema import (
    HOME_CURRENCY,
    MODULES,
    ORG_PREFIX,
    ZModule,
    find_module,
    module_metadata,
)
from sandboxes.zoho_seed import OrgSeed
from sandboxes.zoho_writes import RecordWrites


class ZohoEmulator:
    """A Zoho CRM org on loopback: OAuth, records, COQL, metadata, credits and concurrency.

    Args:
        portfolio: the seed data.
        faults: ignored at run time (the live plan arrives with each request); kept so callers
            may pass the server's plan.
        token_ttl_s: access-token lifetime; `Faults.expire_tokens_after_s` overrides it.
        api_credits_per_day: the org's credit budget (Standard edition base: 50,000, §6).
        max_concurrency: calls in flight per org and app (Standard edition: 10, §6).
        token_mints_per_window: access tokens one refresh token may mint per window (10, §2).
        token_window_s: that window (10 minutes).
        max_live_tokens: live access tokens per refresh token; the oldest is evicted (10, §2).
        org_offset: the API user's time-zone offset datetimes are written in.
        processing_delay_s: time each API call spends in flight (lets tests reach the cap).
        clock: the wall clock for stamps (aware datetimes); defaults to now in UTC.
    """

    name = "zoho"
    # [A] Zoho documents no request compression; gzip bodies are inflated as common HTTP front
    # ends do, so a client that compresses is not refused here (Salesforce documents it).
    request_encodings = ("gzip",)

    def __init__(
        self,
        portfolio: Portfolio,
        faults: Faults | None = None,
        *,
        token_ttl_s: float = 3600.0,
        api_credits_per_day: int = 50_000,
        max_concurrency: int = 10,
        token_mints_per_window: int = 10,
        token_window_s: float = 600.0,
        max_live_tokens: int = 10,
        org_offset: str = "+00:00",
        processing_delay_s: float = 0.0,
        page_token_ttl_s: float = 86_400.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.faults = faults
        self.token_ttl_s = token_ttl_s
        self.api_credits_per_day = api_credits_per_day
        self.max_concurrency = max_concurrency
        self.token_mints_per_window = token_mints_per_window
        self.token_window_s = token_window_s
        self.max_live_tokens = max_live_tokens
        self.tz = _parse_offset(org_offset)
        self.processing_delay_s = processing_delay_s
        self.page_token_ttl_s = page_token_ttl_s
        self.clock = clock or (lambda: datetime.now(UTC))
        self.client_id = "1000." + secrets.token_hex(15).upper()
        self.client_secret = secrets.token_hex(21)
        self.refresh_token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self.credits_used = 0
        self.call_counts: Counter[tuple[str, str]] = Counter()
        self.writes_log: list[dict[str, Any]] = []
        self.workflow_runs: Counter[str] = Counter()
        self.token_requests = 0
        self._lock = threading.RLock()
        self._in_flight = 0
        self._refresh_tokens: set[str] = {self.refresh_token}
        self._tokens: dict[str, _Token] = {}
        self._mints: dict[str, deque[float]] = {}
        self._codes: dict[str, float] = {}
        self._page_tokens: dict[str, _PageToken] = {}
        self._locks: dict[str, int] = {}
        self._seq = 1_000_000
        self._last_stamp = ""
        self.users: list[dict[str, Any]] = []
        self.rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in MODULES}
        self.deleted: dict[str, list[dict[str, Any]]] = {name: [] for name in MODULES}
        # Multi-currency (Enterprise): the org's currencies as GET /org/currencies lists them.
        self.currencies: list[dict[str, Any]] = [
            {
                "id": f"{ORG_PREFIX}{900 + index:012d}",
                "iso_code": code,
                "name": code,
                "symbol": code,
                "exchange_rate": f"{rate:.9f}",
                "is_active": True,
                "is_base": code == HOME_CURRENCY,
                "prefix_symbol": True,
                "format": {
                    "decimal_separator": "Period",
                    "thousand_separator": "Comma",
                    "decimal_places": "0" if code == "JPY" else "2",
                },
            }
            for index, (code, rate) in enumerate(RATES_PER_EUR.items())
        ]
        self.custom_fields = CustomFields(self)  # settings/fields POST (zoho_fields.py)
        self.bulk = BulkReads(self)  # /crm/bulk/v8/read (zoho_bulk.py)
        self.seeder = OrgSeed(self)  # zoho_seed.py
        self.oauth = AccountsServer(self)  # zoho_oauth.py
        self.reads = RecordReads(self)  # zoho_reads.py
        self.coql = CoqlQueries(self)  # zoho_query.py
        self.writer = RecordWrites(self)  # zoho_writes.py
        self.seeder._seed(portfolio)

    # ---------------------------------------------------------------- seed

    def _new_id(self) -> str:
        self._seq += 1
        return f"{ORG_PREFIX}{self._seq:012d}"

    def fmt(self, moment: datetime) -> str:
        """A datetime as Zoho writes it: seconds, in the org's offset (`2026-11-01T10:00:00+00:00`)."""
        return moment.astimezone(self.tz).replace(microsecond=0).isoformat()

    def _user(self, user_id: str) -> dict[str, Any] | None:
        return next((u for u in self.users if u["id"] == user_id), None)

    def _user_ref(self, user_id: str, *, with_email: bool = True) -> dict[str, Any]:
        user = self._user(user_id)
        if user is None:
            raise KeyError(user_id)
        ref = {"name": user["full_name"], "id": user["id"]}
        if with_email:
            ref["email"] = user["email"]
        return ref

    @property
    def api_user(self) -> dict[str, Any]:
        """The user the demo credentials act as (the CurrentUser)."""
        return self.users[0]

    # ---------------------------------------------------------------- inspection API

    def records(self, module: str) -> list[dict[str, Any]]:
        """Copies of the live records of a module, as the API renders them."""
        found = self._module(module)
        with self._lock:
            return [json.loads(json.dumps(row)) for row in self.rows[found.api_name].values()]

    def tasks(self) -> list[dict[str, Any]]:
        """Copies of all Task records."""
        return self.records("Tasks")

    def set_field(self, module: str, record_id: str, field: str, value: Any) -> None:
        """Simulate a person editing a record in the CRM (bumps Modified_Time), without validation."""
        found = self._module(module)
        if found.field(field) is None and field != "$se_module":
            raise KeyError(field)
        with self._lock:
            row = self.rows[found.api_name][str(record_id)]
            row[field] = value
            stamp = self._stamp()
            row["Modified_Time"] = stamp
            row["Modified_By"] = self._user_ref(self.api_user["id"], with_email=False)

    def edit_field(
        self,
        module: str,
        field: str,
        *,
        picklist: tuple[str, ...] | None = None,
        read_only: bool | None = None,
        delete: bool = False,
    ) -> None:
        """Change a field as an admin would in Setup: its picklist values, read-only, or delete it."""
        base = find_module(module)
        if base is None:
            raise KeyError(module)
        self.custom_fields.edit(base, field, picklist=picklist, read_only=read_only, delete=delete)

    def delete_record(self, module: str, record_id: str, *, permanent: bool = False) -> None:
        """Delete a record as a person would (to the recycle bin, or permanently)."""
        found = self._module(module)
        with self._lock:
            self._delete(found, str(record_id), "permanent" if permanent else "recycle")

    def expire_tokens(self) -> None:
        """Invalidate every access token (the next API call answers 401 INVALID_TOKEN)."""
        with self._lock:
            self._tokens.clear()

    def pass_token_window(self) -> None:
        """As if Zoho's 10-minute minting window had passed: the token endpoint mints again."""
        with self._lock:
            self._mints.clear()

    def issue_token(self) -> str:
        """A valid access token without going through /oauth/v2/token (tests)."""
        with self._lock:
            return self.oauth._mint(self.refresh_token)

    def issue_grant_code(self) -> str:
        """A one-time grant code, as the API console's Self Client screen makes (valid 3 minutes)."""
        code = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        with self._lock:
            self._codes[code] = time.monotonic() + 180
        return code

    def lock_record(self, record_id: str, times: int = 1) -> None:
        """Answer RECORD_LOCKED for the next `times` writes to this record (as an approval does)."""
        with self._lock:
            self._locks[str(record_id)] = times

    def set_credits_used(self, used: int) -> None:
        """Pretend `used` credits of today's budget are spent."""
        with self._lock:
            self.credits_used = used

    def to_state(self) -> dict[str, Any]:
        """Everything that changes, as JSON-native data."""
        with self._lock:
            state: dict[str, Any] = json.loads(
                json.dumps(
                    {
                        "rows": self.rows,
                        "deleted": self.deleted,
                        "users": self.users,
                        "seq": self._seq,
                        "credits_used": self.credits_used,
                        "client_id": self.client_id,
                        "client_secret": self.client_secret,
                        "refresh_tokens": sorted(self._refresh_tokens),
                        "refresh_token": self.refresh_token,
                        "last_stamp": self._last_stamp,
                    }
                )
            )
        return state

    def from_state(self, state: dict[str, Any]) -> None:
        """Replace the org's data with a `to_state()` snapshot."""
        with self._lock:
            self.rows = {name: dict(state["rows"].get(name, {})) for name in MODULES}
            self.deleted = {name: list(state["deleted"].get(name, [])) for name in MODULES}
            self.users = list(state["users"])
            self._seq = int(state["seq"])
            self.credits_used = int(state["credits_used"])
            self.client_id = str(state["client_id"])
            self.client_secret = str(state["client_secret"])
            self.refresh_token = str(state["refresh_token"])
            self._refresh_tokens = set(state["refresh_tokens"])
            self._last_stamp = str(state["last_stamp"])
            self._tokens.clear()
            self._page_tokens.clear()

    def save_state(self, path: str) -> None:
        """Write `to_state()` to a JSON file."""
        text = json.dumps(self.to_state())
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)

    def load_state(self, path: str) -> None:
        """Load a file written by save_state()."""
        with open(path, encoding="utf-8") as handle:
            self.from_state(json.load(handle))

    # ---------------------------------------------------------------- helpers

    def module_view(self, module: ZModule | None) -> ZModule | None:
        """The module with the custom fields created through the API."""
        return self.custom_fields.view(module)

    def _module(self, name: str) -> ZModule:
        found = self.module_view(find_module(name))
        if found is None:
            raise KeyError(name)
        return found

    def _stamp(self) -> str:
        # Second precision; never behind the newest stamp (seeded stamps may lie ahead).
        now = self.fmt(self.clock())
        if self._last_stamp and _instant(self._last_stamp) > _instant(now):
            now = self._last_stamp
        self._last_stamp = now
        return now

    def _delete(self, module: ZModule, record_id: str, kind: str) -> bool:
        row = self.rows[module.api_name].pop(record_id, None)
        if row is None:
            return False
        name_field = _NAME_FIELD.get(module.api_name, "id")
        self.deleted[module.api_name].append(
            {
                "id": record_id,
                "display_name": row.get(name_field),
                "type": kind,
                "deleted_by": self._user_ref(self.api_user["id"], with_email=False),
                "created_by": row.get("Created_By"),
                "deleted_time": self._stamp(),
            }
        )
        return True

    # ---------------------------------------------------------------- HTTP entry

    def fault_response(self, kind: str) -> Response:
        """Injected faults in Zoho's error envelope (no Retry-After: Zoho sends none, §6)."""
        if kind == "429":
            return _error(429, "TOO_MANY_REQUESTS", TOO_MANY)
        if kind == "503":
            # [A] Zoho's 503 body is not documented; the standard envelope is used.
            return _error(503, "INTERNAL_ERROR", "Service temporarily unavailable")
        return _error(500, "INTERNAL_ERROR", "Internal Server Error")

    def handle(self, request: Request) -> Response:
        """Route one request to the accounts server or the API."""
        path = request.path.rstrip("/") or "/"
        if path == "/oauth/v2/token":
            return self.oauth._token(request)
        if path == "/oauth/v2/token/revoke":
            return self.oauth._revoke(request)
        if path.startswith(BULK_PREFIX + "/"):
            denied = self.oauth._authenticate(request)
            if denied is not None:
                return denied
            parts = path[len(BULK_PREFIX) + 1 :].split("/")
            return self._credit_headers(self.bulk.handle(request, parts))
        if path.startswith(API_PREFIX + "/"):
            denied = self.oauth._authenticate(request)
            if denied is not None:
                return denied
            with self._lock:
                if self._in_flight >= self.max_concurrency:
                    return _error(429, "TOO_MANY_REQUESTS", TOO_MANY)
                self._in_flight += 1
            try:
                if self.processing_delay_s > 0:
                    time.sleep(self.processing_delay_s)
                return self._api(request, path[len(API_PREFIX) + 1 :].split("/"))
            finally:
                with self._lock:
                    self._in_flight -= 1
        return _error(
            404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"
        )

    # ---------------------------------------------------------------- credits

    def _charge(self, cost: int) -> Response | None:
        with self._lock:
            if self.credits_used + cost > self.api_credits_per_day:
                return _error(429, "TOO_MANY_REQUESTS", TOO_MANY)
            self.credits_used += cost
        return None

    def _credit_headers(self, response: Response) -> Response:
        # Sent only once half of the day's credits are used (reference §6).
        with self._lock:
            used, budget = self.credits_used, self.api_credits_per_day
        if used * 2 >= budget:
            response.headers["X-API-CREDITS-REMAINING"] = str(max(0, budget - used))
        return response

    # ---------------------------------------------------------------- API routing

    def _api(self, request: Request, parts: list[str]) -> Response:
        if parts == ["coql"]:
            if request.method != "POST":
                return self._bad_method()
            return self._credit_headers(self.coql._coql(request))
        refused = self._charge(1)
        if refused is not None:
            return refused
        return self._credit_headers(self._route(request, parts))

    @staticmethod
    def _bad_method() -> Response:
        return _error(
            405, "INVALID_REQUEST_METHOD", "The http request method type is not a valid one"
        )

    def _route(self, request: Request, parts: list[str]) -> Response:
        method = request.method
        if parts[0] == "settings" and len(parts) == 2:
            if parts[1] == "fields" and method == "POST":
                return self.custom_fields.create(request)
            if method != "GET":
                return self._bad_method()
            if parts[1] == "fields":
                return self.reads._fields(request)
            if parts[1] == "modules":
                return Response.json(200, {"modules": module_metadata()})
        if parts[0] == "users" and len(parts) <= 2:
            return self.reads._users(request, parts[1] if len(parts) == 2 else None)
        if parts == ["org"]:
            return self.reads._org()
        if parts[:2] == ["org", "currencies"] and len(parts) <= 3:
            if method != "GET":
                return self._bad_method()
            return self.reads._currencies(parts[2] if len(parts) == 3 else None)
        module = self.module_view(find_module(parts[0]))
        if module is None:
            return _error(400, "INVALID_MODULE", "the module name given seems to be invalid")
        if parts[1:] == ["actions", "count"] and method == "GET":
            return record_count(self, module)
        if len(parts) == 1:
            if method == "GET":
                return self.reads._list(request, module)
            if method == "PUT":
                return self.writer._write(request, module, "update")
            if method == "POST":
                return self.writer._write(request, module, "insert")
            if method == "DELETE":
                ids = [i for i in (request.param("ids") or "").split(",") if i]
                return self.reads._delete_many(module, ids)
            return self._bad_method()
        if len(parts) == 2 and parts[1] == "upsert":
            if method != "POST":
                return self._bad_method()
            return self.writer._write(request, module, "upsert")
        if len(parts) == 2 and parts[1] == "deleted":
            if method != "GET":
                return self._bad_method()
            return self.reads._deleted(request, module)
        if len(parts) == 2 and parts[1].isdigit():
            if method == "GET":
                return self.reads._get_one(request, module, parts[1])
            if method == "PUT":
                return self.writer._write(request, module, "update", record_id=parts[1])
            if method == "DELETE":
                return self.reads._delete_many(module, [parts[1]])
            return self._bad_method()
        return _error(
            404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"
        )
