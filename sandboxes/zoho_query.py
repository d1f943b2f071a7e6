"""The Zoho sandbox's COQL endpoint: a parsed query resolved against the module's fields and run over its rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sandboxes.server import Request, Response
from sandboxes.zoho_common import (
    _DATE,
    _error,
    _instant,
    _json_object,
)
from sandboxes.zoho_coql import (
    BoolOp,
    Condition,
    CoqlError,
    Criteria,
    Query,
    credit_cost,
    criteria_columns,
    like_regex,
    parse,
)
from sandboxes.zoho_schema import (
    LOOKUP_TYPES,
    MODULES,
    MULTILINE_TYPES,
    NUMBER_TYPES,
    ZModule,
    find_module,
)

if TYPE_CHECKING:
    from sandboxes.zoho import ZohoEmulator


class CoqlQueries:
    """Part of ZohoEmulator (sandboxes/zoho.py), holding no state of its own."""

    def __init__(self, emulator: ZohoEmulator) -> None:
        self.emulator = emulator

    def _coql(self, request: Request) -> Response:
        body = _json_object(request)
        text = body.get("select_query") if isinstance(body, dict) else None
        try:
            if not isinstance(text, str):
                raise CoqlError(
                    "REQUIRED_PARAM_MISSING",
                    "One of the expected parameter is missing",
                    {"param": "select_query"},
                )
            query = parse(text)
        except CoqlError as exc:
            refused = self.emulator._charge(1)
            return refused or _error(400, exc.code, exc.message, exc.details)
        refused = self.emulator._charge(credit_cost(query.limit))
        if refused is not None:
            return refused
        try:
            return self._run_coql(query)
        except CoqlError as exc:
            return _error(400, exc.code, exc.message, exc.details)

    def _resolve(self, module: ZModule, column: str) -> tuple[Callable[[dict[str, Any]], Any], str]:
        """A getter for a COQL column (plain or one dot join) and the type its values have."""
        if column == "id":
            return (lambda row: row["id"]), "bigint"
        head, _, tail = column.partition(".")
        fdef = module.field(head)
        if fdef is None:
            raise CoqlError(
                "INVALID_QUERY", "column given seems to be invalid", {"column_name": column}
            )
        if not tail:

            def plain(row: dict[str, Any]) -> Any:
                return row.get(head)

            return plain, fdef.value_type
        if fdef.value_type not in LOOKUP_TYPES or "." in tail:
            raise CoqlError(
                "INVALID_QUERY", "column given seems to be invalid", {"column_name": column}
            )
        if fdef.lookup == "users":
            key = {"name": "full_name"}.get(tail, tail)
            if tail not in ("id", "name", "full_name", "email", "first_name", "last_name"):
                raise CoqlError(
                    "INVALID_QUERY", "column given seems to be invalid", {"column_name": column}
                )

            def user_value(row: dict[str, Any]) -> Any:
                ref = row.get(head)
                user = self.emulator._user(ref["id"]) if isinstance(ref, dict) else None
                return None if user is None else user.get(key)

            return user_value, "text"
        target_name = fdef.lookup or "Accounts"
        target = MODULES[target_name]
        if tail == "id":
            return (lambda row: (row.get(head) or {}).get("id")), "bigint"
        target_field = target.field(tail)
        if target_field is None:
            raise CoqlError(
                "INVALID_QUERY", "column given seems to be invalid", {"column_name": column}
            )

        def joined(row: dict[str, Any]) -> Any:
            ref = row.get(head)
            if not isinstance(ref, dict):
                return None
            module_name = row.get("$se_module") or target_name if head == "What_Id" else target_name
            linked = self.emulator.rows.get(module_name, {}).get(str(ref.get("id")))
            return None if linked is None else linked.get(tail)

        return joined, target_field.value_type

    @staticmethod
    def _comparable(kind: str, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, dict):
            value = value.get("id")
        if kind in LOOKUP_TYPES or kind == "bigint":
            return str(value)
        if kind == "datetime":
            return _instant(str(value)) if isinstance(value, str) else None
        if kind in NUMBER_TYPES:
            if isinstance(value, bool):
                return None
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
        if kind == "boolean":
            return value if isinstance(value, bool) else str(value).lower() == "true"
        return str(value).lower()

    def _literal(self, kind: str, value: Any, column: str) -> Any:
        if value is None:
            return None
        if kind == "datetime":
            try:
                moment = datetime.fromisoformat(str(value))
            except ValueError:
                raise CoqlError(
                    "INVALID_QUERY", "invalid value given in criteria", {"column_name": column}
                ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.emulator.tz)
            return moment.timestamp()
        if kind == "date" and not (isinstance(value, str) and _DATE.match(value)):
            raise CoqlError(
                "INVALID_QUERY", "invalid value given in criteria", {"column_name": column}
            )
        return self._comparable(kind, value)

    def _compile(self, module: ZModule, criteria: Criteria) -> Callable[[dict[str, Any]], bool]:
        if isinstance(criteria, BoolOp):
            left = self._compile(module, criteria.left)
            right = self._compile(module, criteria.right)
            if criteria.op == "and":
                return lambda row: left(row) and right(row)
            return lambda row: left(row) or right(row)
        cond: Condition = criteria
        getter, kind = self._resolve(module, cond.column)
        fdef = module.field(cond.column)
        if fdef is not None and fdef.data_type in MULTILINE_TYPES:
            # "You cannot use multi-line fields ... in criteria" (COQL limitations page).
            raise CoqlError(
                "INVALID_QUERY",
                "multi-line fields are not supported in criteria",
                {"column_name": cond.column},
            )
        op = cond.op
        if op == "is_null":
            return lambda row: getter(row) in (None, "", [])
        if op == "is_not_null":
            return lambda row: getter(row) not in (None, "", [])
        if op in ("like", "not_like"):
            pattern = like_regex(str(cond.values[0]))
            negate = op == "not_like"

            def like(row: dict[str, Any]) -> bool:
                value = getter(row)
                return value is not None and bool(pattern.match(str(value))) != negate

            return like
        literals = [self._literal(kind, value, cond.column) for value in cond.values]

        def test(row: dict[str, Any]) -> bool:
            value = self._comparable(kind, getter(row))
            if value is None:
                return False
            try:
                if op == "=":
                    return bool(value == literals[0])
                if op == "!=":
                    return bool(value != literals[0])
                if op == "<":
                    return bool(value < literals[0])
                if op == ">":
                    return bool(value > literals[0])
                if op == "<=":
                    return bool(value <= literals[0])
                if op == ">=":
                    return bool(value >= literals[0])
                if op == "in":
                    return value in literals
                if op == "not_in":
                    return value not in literals
                if op == "between":
                    return bool(literals[0] <= value <= literals[1])
                if op == "not_between":
                    return not literals[0] <= value <= literals[1]
            except TypeError:
                return False
            return False

        return test

    def _run_coql(self, query: Query) -> Response:
        module = self.emulator.module_view(find_module(query.module))
        if module is None:
            raise CoqlError("INVALID_QUERY", "invalid module", {"module": query.module})
        getters = [(column, *self._resolve(module, column)) for column in query.columns]
        for column in criteria_columns(query.where):
            self._resolve(module, column)
        match = self._compile(module, query.where) if query.where is not None else None
        orders = [(self._resolve(module, column), desc) for column, desc in query.order_by]
        with self.emulator._lock:
            rows = [
                r for r in self.emulator.rows[module.api_name].values() if match is None or match(r)
            ]
            rows.sort(key=lambda row: int(row["id"]))
            for (getter, kind), descending in reversed(orders):
                present = [r for r in rows if self._comparable(kind, getter(r)) is not None]
                absent = [r for r in rows if self._comparable(kind, getter(r)) is None]
                present.sort(key=self._order_key(getter, kind), reverse=descending)
                # Empty values sort first ascending, last descending (as SQL engines do).
                rows = present + absent if descending else absent + present
            chunk = rows[query.offset : query.offset + query.limit]
            data = []
            for row in chunk:
                out: dict[str, Any] = {}
                for column, getter, _kind in getters:
                    value = getter(row)
                    if isinstance(value, dict):
                        # A plain lookup column comes back as its id only [A, reference §3.2].
                        value = {"id": value.get("id")}
                    out[column] = value
                out.setdefault("id", row["id"])
                data.append(out)
        if not data:
            return Response(204)
        more = len(rows) > query.offset + query.limit
        return Response.json(
            200, {"data": data, "info": {"count": len(data), "more_records": more}}
        )

    def _order_key(
        self, getter: Callable[[dict[str, Any]], Any], kind: str
    ) -> Callable[[dict[str, Any]], Any]:
        def key(row: dict[str, Any]) -> Any:
            return self._sort_value(kind, getter(row))

        return key

    def _sort_value(self, kind: str, value: Any) -> Any:
        comparable = self._comparable(kind, value)
        if kind == "bigint" or kind in LOOKUP_TYPES:
            return int(comparable) if str(comparable).isdigit() else 0
        return comparable
