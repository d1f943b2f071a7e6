"""The Zoho sandbox's reads: records by page and page token, one record, deletions, fields, users, currencies, org."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from sandboxes.server import Request, Response
from sandboxes.zoho_common import (
    DISCRETE_LIMIT,
    MAX_FIELDS,
    MAX_PER_PAGE,
    MAX_WRITE,
    _element,
    _error,
    _instant,
    _missing_param,
    _PageToken,
)
from sandboxes.zoho_schema import (
    HOME_CURRENCY,
    ORG_ID,
    ZModule,
    field_metadata,
    find_module,
)

if TYPE_CHECKING:
    from sandboxes.zoho import ZohoEmulator


@dataclass(frozen=True)
class _ListQuery:
    """What one list call reads: its order, filters and, when it came with one, its page token."""

    module: str
    sort_by: str
    descending: bool
    since: float | None
    ids: tuple[str, ...]
    cursor: _PageToken | None


class RecordReads:
    """Part of ZohoEmulator (sandboxes/zoho.py), holding no state of its own."""

    def __init__(self, emulator: ZohoEmulator) -> None:
        self.emulator = emulator

    def _fields(self, request: Request) -> Response:
        name = request.param("module")
        if not name:
            return _missing_param("module")
        module = self.emulator.module_view(find_module(name))
        if module is None:
            return _error(400, "INVALID_MODULE", "the module name given seems to be invalid")
        return Response.json(200, {"fields": field_metadata(module)})

    def _render_user(self, user: dict[str, Any]) -> dict[str, Any]:
        return {
            **user,
            "time_zone": "Etc/UTC",
            "confirm": True,
            "locale": "en_US",
            "country": "DE",
            "created_time": self.emulator.fmt(datetime(2024, 1, 1, tzinfo=UTC)),
            "Modified_Time": self.emulator.fmt(datetime(2024, 1, 1, tzinfo=UTC)),
        }

    def _users(self, request: Request, user_id: str | None) -> Response:
        if request.method != "GET":
            return self.emulator._bad_method()
        kind = request.param("type") or "AllUsers"
        users = list(self.emulator.users)
        if user_id is not None:
            users = [u for u in users if u["id"] == user_id]
            if not users:
                return _error(400, "INVALID_DATA", "the id given seems to be invalid", {})
        elif kind == "CurrentUser":
            users = [self.emulator.api_user]
        elif kind in ("ActiveUsers", "ActiveConfirmedUsers"):
            users = [u for u in users if u["status"] == "active"]
        elif kind == "DeactiveUsers":
            users = [u for u in users if u["status"] != "active"]
        elif kind in ("AdminUsers", "ActiveConfirmedAdmins"):
            users = [u for u in users if u["profile"]["name"] == "Administrator"]
        elif kind != "AllUsers":
            return _error(400, "INVALID_DATA", "invalid data", {"param": "type"})
        if not users:
            return Response(204)
        info = {"per_page": 200, "count": len(users), "page": 1, "more_records": False}
        return Response.json(200, {"users": [self._render_user(u) for u in users], "info": info})

    def _currencies(self, currency_id: str | None) -> Response:
        """GET /org/currencies: the org's currencies, rates per one unit of the home currency."""
        with self.emulator._lock:
            rows = [dict(row) for row in self.emulator.currencies]
        if currency_id is not None:
            rows = [row for row in rows if row["id"] == currency_id]
            if not rows:
                return _error(400, "INVALID_DATA", "the id given seems to be invalid")
        return Response.json(200, {"currencies": rows})

    def _org(self) -> Response:
        org = {
            "id": ORG_ID,
            "company_name": "Sandbox Trading GmbH",
            "primary_email": self.emulator.api_user["email"],
            "currency": "Euro - EUR",
            "currency_symbol": "€",
            "iso_code": HOME_CURRENCY,
            "time_zone": "Etc/UTC",
            "country_code": "DE",
            "domain_name": "org" + ORG_ID,
            "zgid": ORG_ID,
            "type": "production",
            "mc_status": False,
            "gapps_enabled": False,
            "privacy_settings": False,
            "license_details": {
                "paid": True,
                "paid_type": "standard",
                "users_license_purchased": 10,
            },
        }
        return Response.json(200, {"org": [org]})

    @staticmethod
    def _sort_key(row: dict[str, Any], sort_by: str) -> tuple[float, int]:
        if sort_by == "id":
            return (0.0, int(row["id"]))
        value = row.get(sort_by)
        return (_instant(value) if value else 0.0, int(row["id"]))

    def _parse_since(self, request: Request) -> float | Response | None:
        raw = request.headers.get("if-modified-since")
        if raw is None or not raw.strip():
            return None
        try:
            moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            try:
                moment = parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                return _error(
                    400, "INVALID_DATA", "invalid data", {"header_name": "If-Modified-Since"}
                )
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.emulator.tz)
        return moment.timestamp()

    def _bad_param(self, name: str, message: str = "invalid data") -> Response:
        return _error(400, "INVALID_DATA", message, {"param_name": name})

    def _field_list(self, module: ZModule, raw: str) -> list[str] | Response:
        names = [name.strip() for name in raw.split(",") if name.strip()]
        if len(names) > MAX_FIELDS:
            return _error(
                400, "LIMIT_EXCEEDED", "fields limit exceeded", {"limit": MAX_FIELDS}
            )  # [A] code
        for name in names:
            if name != "id" and module.field(name) is None:
                return _error(400, "INVALID_DATA", "invalid data", {"api_name": name})  # [A]
        return names

    def _render(self, row: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            value = row.get(name)
            out[name] = dict(value) if isinstance(value, dict) else value
            if name == "What_Id":
                out["$se_module"] = row.get("$se_module")
        out["id"] = row["id"]
        return out

    def _list(self, request: Request, module: ZModule) -> Response:
        raw_fields = request.param("fields")
        if not raw_fields:
            # `fields` is mandatory since API v3 (reference §3.1).
            return _missing_param("fields")
        names = self._field_list(module, raw_fields)
        if isinstance(names, Response):
            return names
        try:
            per_page = int(request.param("per_page") or MAX_PER_PAGE)
            page = int(request.param("page") or 1)
        except ValueError:
            return self._bad_param("per_page" if request.param("per_page") else "page")
        if not 1 <= per_page <= MAX_PER_PAGE:
            return self._bad_param("per_page")  # [A] Zoho's answer past 200 is not documented
        if page < 1:
            return self._bad_param("page")
        with self.emulator._lock:
            rows = list(self.emulator.rows[module.api_name].values())
            query = self._list_query(request, module, page, per_page)
            if isinstance(query, Response):
                return query
            if not rows:
                return Response(204)  # an empty module: 204, no body, no Content-Type
            if query.ids:
                rows = [row for row in rows if row["id"] in query.ids]
            if query.since is not None:
                # "Only records modified after that instant" (reference §3.1): strictly after.
                rows = [
                    row
                    for row in rows
                    if row.get("Modified_Time") and _instant(row["Modified_Time"]) > query.since
                ]
                if not rows:
                    return Response(304)
            rows.sort(key=lambda row: self._sort_key(row, query.sort_by), reverse=query.descending)
            start, page = self._page_start(rows, query, page, per_page)
            chunk = rows[start : start + per_page]
            if not chunk:
                return Response(204)
            more = len(rows) > start + per_page
            expires = self.emulator.clock() + timedelta(seconds=self.emulator.page_token_ttl_s)

            def token_after(index: int, served_page: int) -> str:
                return self._page_token(query, rows, index, served_page, expires)

            next_token = token_after(start + len(chunk) - 1, page) if more else None
            previous_token = None
            if start > 0:
                begin = max(0, start - per_page)
                previous_token = token_after(begin - 1, page - 2)
            data = [self._render(row, names) for row in chunk]
        info = {
            "per_page": per_page,
            "count": len(data),
            "page": page,
            "sort_by": query.sort_by,
            "sort_order": "desc" if query.descending else "asc",
            "more_records": more,
            "next_page_token": next_token,
            "previous_page_token": previous_token,
            "page_token_expiry": self.emulator.fmt(expires)
            if next_token or previous_token
            else None,
        }
        return Response.json(200, {"data": data, "info": info})

    def _list_query(
        self, request: Request, module: ZModule, page: int, per_page: int
    ) -> _ListQuery | Response:
        """What a list call asks for: from its page token, or from its parameters and
        If-Modified-Since; or the error that refuses them."""
        token_text = request.param("page_token")
        if token_text:
            cursor = self.emulator._page_tokens.get(token_text)
            if (
                cursor is None
                or cursor.module != module.api_name
                or cursor.expires < self.emulator.clock()
            ):
                # [A] code and message for a bad or expired page token.
                return _error(
                    400, "INVALID_DATA", "invalid page token", {"param_name": "page_token"}
                )
            return _ListQuery(
                module.api_name,
                cursor.sort_by,
                cursor.descending,
                cursor.since,
                cursor.ids,
                cursor,
            )
        sort_by = request.param("sort_by") or "id"
        order = (request.param("sort_order") or "desc").lower()
        if sort_by not in ("id", "Created_Time", "Modified_Time"):
            return self._bad_param("sort_by")
        if order not in ("asc", "desc"):
            return self._bad_param("sort_order")
        since = self._parse_since(request)
        if isinstance(since, Response):
            return since
        ids = tuple(i for i in (request.param("ids") or "").split(",") if i)
        if page * per_page > DISCRETE_LIMIT:
            return _error(
                400,
                "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                "You can only get the first 2000 records without using page_token param",
                {"limit": DISCRETE_LIMIT},
            )
        return _ListQuery(module.api_name, sort_by, order == "desc", since, ids, None)

    def _page_start(
        self, rows: list[dict[str, Any]], query: _ListQuery, page: int, per_page: int
    ) -> tuple[int, int]:
        """Where the page starts in the sorted rows, and its number."""
        cursor = query.cursor
        if cursor is None:
            return (page - 1) * per_page, page
        # A page token is a cursor: the page starts after the last record it served,
        # so a record edited mid-read moves to the end instead of shifting the pages.
        after = cursor.after
        start = 0
        if after is not None:
            keys = [self._sort_key(row, query.sort_by) for row in rows]
            if query.descending:
                start = sum(1 for key in keys if key >= after)
            else:
                start = sum(1 for key in keys if key <= after)
        return start, cursor.page + 1

    def _page_token(
        self,
        query: _ListQuery,
        rows: list[dict[str, Any]],
        index: int,
        served_page: int,
        expires: datetime,
    ) -> str:
        """A new page token that resumes after rows[index] (before the first row: -1)."""
        text = secrets.token_hex(24)
        self.emulator._page_tokens[text] = _PageToken(
            query.module,
            query.sort_by,
            query.descending,
            query.since,
            query.ids,
            self._sort_key(rows[index], query.sort_by) if index >= 0 else None,
            served_page,
            expires,
        )
        return text

    def _get_one(self, request: Request, module: ZModule, record_id: str) -> Response:
        with self.emulator._lock:
            row = self.emulator.rows[module.api_name].get(record_id)
            if row is None:
                # [A] Zoho's answer for an unknown id on GET is not pinned down.
                return Response(204)
            raw = request.param("fields")
            names: list[str] | Response
            names = self._field_list(module, raw) if raw else [f.api_name for f in module.fields]
            if isinstance(names, Response):
                return names
            rendered = self._render(row, names)
            if module.api_name == "Tasks":
                rendered["$se_module"] = row.get("$se_module")
        return Response.json(200, {"data": [rendered]})

    def _deleted(self, request: Request, module: ZModule) -> Response:
        kind = request.param("type") or "all"
        if kind not in ("all", "recycle", "permanent"):
            return self._bad_param("type")
        try:
            per_page = min(int(request.param("per_page") or MAX_PER_PAGE), MAX_PER_PAGE)
            page = max(int(request.param("page") or 1), 1)
        except ValueError:
            return self._bad_param("page")
        since = self._parse_since(request)
        if isinstance(since, Response):
            return since
        with self.emulator._lock:
            entries = [
                e for e in self.emulator.deleted[module.api_name] if kind in ("all", e["type"])
            ]
        if since is not None:
            entries = [e for e in entries if _instant(e["deleted_time"]) > since]
        entries.sort(key=lambda e: (_instant(e["deleted_time"]), int(e["id"])), reverse=True)
        chunk = entries[(page - 1) * per_page : page * per_page]
        if not chunk:
            return Response(204)
        info = {
            "per_page": per_page,
            "count": len(chunk),
            "page": page,
            "more_records": len(entries) > page * per_page,
        }
        return Response.json(200, {"data": [dict(e) for e in chunk], "info": info})

    def _delete_many(self, module: ZModule, ids: list[str]) -> Response:
        if not ids:
            return _missing_param("ids")
        if len(ids) > MAX_WRITE:
            return _error(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_WRITE})
        data = []
        with self.emulator._lock:
            for record_id in ids:
                if self.emulator._delete(module, record_id, "recycle"):
                    data.append(
                        {
                            "code": "SUCCESS",
                            "details": {"id": record_id},
                            "message": "record deleted",
                            "status": "success",
                        }
                    )
                else:
                    data.append(
                        _element(
                            "INVALID_DATA",
                            "the related id given seems to be invalid",
                            {"id": record_id},
                        )
                    )
        return Response.json(self.emulator.writer._batch_status(data, 200), {"data": data})
