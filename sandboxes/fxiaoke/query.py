"""Fxiaoke sandbox query engine: `search_query_info` filters, orders, projection and the paging rules.

Rules from the vendor's pages (shared/reference/fxiaoke.md §6, developer.fxiaoke.com FAQ
deep-paging.html): `limit` at most 100; `offset` from 0, a multiple of `limit`, and never above
10,000 (errorCode 10013, "offset out of range 10000"); the documented way past it is `_id`
ordering with `offset` 0 and a `GT <last _id>` filter. Filters are snake_case
(`field_name`/`field_values`/`operator`), orders camelCase (`fieldName`/`isAsc`, which community
code sends as a string).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sandboxes.fxiaoke.schema import NUMBER_TYPES, TIME_TYPES, FxObject

MAX_LIMIT = 100
MAX_OFFSET = 10_000
OPERATORS = frozenset(
    [
        "EQ",
        "N",
        "GT",
        "GTE",
        "LT",
        "LTE",
        "LIKE",
        "NLIKE",
        "IS",
        "ISN",
        "IN",
        "NIN",
        "BETWEEN",
        "NBETWEEN",
        "STARTWITH",
        "ENDWITH",
        "CONTAINS",
    ]
)


class QueryError(Exception):
    """A request the API refuses: carries the errorCode and message it would answer."""

    def __init__(self, code: int, message: str, description: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.description = description or message


@dataclass(frozen=True)
class Query:
    """A parsed `search_query_info`."""

    limit: int
    offset: int
    matches: Callable[[dict[str, Any]], bool]
    sort_key: Callable[[dict[str, Any]], tuple[Any, ...]] | None
    descending: tuple[bool, ...]
    projection: tuple[str, ...]
    names_lifecycle: bool


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise QueryError(15002, f"参数{name}不合法", f"{name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the apifox examples send 0.0 and 2.0
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise QueryError(15002, f"参数{name}不合法", f"{name} must be an integer")


def _number(value: Any) -> Decimal | int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value  # epoch ms: compared as is (ints and Decimals compare exactly)
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "")
    return bool(value)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _comparable(kind: str, value: Any) -> Any:
    """A value in the order the API compares values of this field type."""
    if kind in NUMBER_TYPES or kind in TIME_TYPES:
        return _number(value)
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, bool):
        return value
    return None if value is None else str(value)


def _predicate(obj: FxObject, raw: Any) -> Callable[[dict[str, Any]], bool]:
    if not isinstance(raw, dict):
        raise QueryError(15002, "filters参数不合法", "each filter must be an object")
    name = raw.get("field_name")
    operator = str(raw.get("operator", "")).upper()
    values = raw.get("field_values", [])
    if not isinstance(name, str) or not name:
        raise QueryError(10006, "参数field_name缺失", "the filter's field_name is missing")
    if operator not in OPERATORS:
        raise QueryError(15002, f"不支持的操作符{operator}", f"unknown operator {operator!r}")
    if not isinstance(values, list):
        values = [values]
    definition = obj.fields.get(name)
    if definition is None:
        raise QueryError(
            15002, f"字段{name}不存在", f"field {name} does not exist on {obj.api_name}"
        )
    kind = definition.type
    wanted = [_comparable(kind, v) for v in values]

    def cell(row: dict[str, Any]) -> Any:
        return _comparable(kind, row.get(name))

    def text(row: dict[str, Any]) -> str:
        value = row.get(name)
        return "" if value is None else str(value)

    def in_list(row: dict[str, Any]) -> bool:
        value = cell(row)
        if isinstance(value, list):  # employee and multi-select fields hold lists
            return any(str(v) in {str(w) for w in wanted} for v in value)
        return value in wanted

    def compare(op: Callable[[Any, Any], bool]) -> Callable[[dict[str, Any]], bool]:
        def check(row: dict[str, Any]) -> bool:
            value = cell(row)
            if value is None or not wanted or wanted[0] is None:
                return False
            return bool(op(value, wanted[0]))

        return check

    def between(row: dict[str, Any]) -> bool:
        value = cell(row)
        if value is None or len(wanted) < 2 or None in wanted[:2]:
            return False
        return bool(wanted[0] <= value <= wanted[1])

    table: dict[str, Callable[[dict[str, Any]], bool]] = {
        "EQ": in_list,
        "IN": in_list,
        "N": lambda row: not in_list(row),
        "NIN": lambda row: not in_list(row),
        "GT": compare(lambda a, b: a > b),
        "GTE": compare(lambda a, b: a >= b),
        "LT": compare(lambda a, b: a < b),
        "LTE": compare(lambda a, b: a <= b),
        "IS": lambda row: _empty(row.get(name)),
        "ISN": lambda row: not _empty(row.get(name)),
        "BETWEEN": between,
        "NBETWEEN": lambda row: not between(row),
        "LIKE": lambda row: bool(values) and str(values[0]) in text(row),
        "NLIKE": lambda row: not (bool(values) and str(values[0]) in text(row)),
        "STARTWITH": lambda row: bool(values) and text(row).startswith(str(values[0])),
        "ENDWITH": lambda row: bool(values) and text(row).endswith(str(values[0])),
        "CONTAINS": in_list,
    }
    return table[operator]


def parse_query(obj: FxObject, data: dict[str, Any]) -> Query:
    """Parse `data.search_query_info` of a query call against `obj`.

    Raises:
        QueryError: for a request the API refuses.
    """
    info = data.get("search_query_info")
    if not isinstance(info, dict):
        raise QueryError(10006, "参数search_query_info缺失", "search_query_info is missing")
    if "limit" not in info:
        raise QueryError(10006, "参数limit缺失", "search_query_info.limit is missing")
    limit = _as_int(info.get("limit"), "limit")
    offset = _as_int(info.get("offset", 0), "offset")
    if limit < 1 or limit > MAX_LIMIT:
        # [A] the real code for limit > 100 is not published; 15002 is "invalid parameter".
        raise QueryError(15002, "limit最大为100", "limit must be between 1 and 100")
    if offset > MAX_OFFSET:
        # Exact body of developer.fxiaoke.com/openapi_v2/en/FAQ/deep-paging.html.
        raise QueryError(10013, "offset out of range 10000", "offset cannot exceed 10000")
    if offset < 0 or offset % limit:
        raise QueryError(15002, "offset必须是limit的整数倍", "offset must be a multiple of limit")
    filters = info.get("filters") or []
    if not isinstance(filters, list):
        raise QueryError(15002, "filters参数不合法", "filters must be a list")
    predicates = [_predicate(obj, f) for f in filters]
    names_lifecycle = any(
        isinstance(f, dict) and f.get("field_name") in ("life_status", "is_deleted")
        for f in filters
    )

    def matches(row: dict[str, Any]) -> bool:
        return all(p(row) for p in predicates)

    orders = info.get("orders") or []
    if not isinstance(orders, list):
        raise QueryError(15002, "orders参数不合法", "orders must be a list")
    keys: list[tuple[str, str]] = []
    descending: list[bool] = []
    for order in orders:
        if not isinstance(order, dict) or not order.get("fieldName"):
            raise QueryError(15002, "orders参数不合法", "each order needs fieldName")
        name = str(order["fieldName"])
        definition = obj.fields.get(name)
        if definition is None:
            raise QueryError(
                15002, f"字段{name}不存在", f"field {name} does not exist on {obj.api_name}"
            )
        keys.append((name, definition.type))
        descending.append(not _truthy(order.get("isAsc", True)))
    sort_key = None
    if keys:

        def sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
            out: list[Any] = []
            for name, kind in keys:
                value = _comparable(kind, row.get(name))
                # Empty values sort after everything else, ascending.
                out.append((value is None, value if value is not None else 0))
            return tuple(out)

    projection = info.get("fieldProjection") or []
    if not isinstance(projection, list):
        raise QueryError(15002, "fieldProjection参数不合法", "fieldProjection must be a list")
    return Query(
        limit=limit,
        offset=offset,
        matches=matches,
        sort_key=sort_key,
        descending=tuple(descending),
        projection=tuple(str(p) for p in projection),
        names_lifecycle=names_lifecycle,
    )


def ordered(
    rows: Sequence[dict[str, Any]], query: Query, upto: int | None = None
) -> list[dict[str, Any]]:
    """Rows in the query's order (stable; mixed directions sort key by key, last key first).

    With `upto`, only that many first rows are needed: ascending orders take them from a heap
    instead of sorting a 10,000-row tenant on every page.
    """
    if upto is not None and query.sort_key is not None and not any(query.descending):
        return heapq.nsmallest(upto, rows, key=query.sort_key)
    out = list(rows)
    if query.sort_key is None:
        # [A] With no orders the API's order is unspecified; newest change first, as the list page.
        out.sort(
            key=lambda row: (int(row.get("last_modified_time") or 0), row["_id"]), reverse=True
        )
        return out
    key = query.sort_key
    if all(not d for d in query.descending):
        out.sort(key=key)
        return out
    for position in reversed(range(len(query.descending))):

        def part(row: dict[str, Any], p: int = position) -> Any:
            return key(row)[p]

        out.sort(key=part, reverse=query.descending[position])
    return out
