"""Pure COQL builders within Zoho's documented limits (reference §3.2), plus COQL's credit cost."""

from __future__ import annotations

import re
from collections.abc import Sequence

# https://www.zoho.com/crm/developer/docs/api/v8/COQL-Limitations.html
MAX_COLUMNS = 50
MAX_IN_VALUES = 50
MAX_CRITERIA = 25
MAX_LIMIT = 2000
MAX_OFFSET_REACH = 100_000
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$.]*$")


def quote(value: str) -> str:
    """A COQL string literal: single quotes, with quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def in_list(column: str, values: Sequence[str]) -> str:
    """`column in ('a','b')`; at most 50 values per COQL's limit."""
    if not values:
        raise ValueError("an in (...) criterion needs at least one value")
    if len(values) > MAX_IN_VALUES:
        raise ValueError(f"COQL allows at most {MAX_IN_VALUES} values in in (...)")
    return f"{column} in ({','.join(quote(value) for value in values)})"


def all_of(criteria: Sequence[str]) -> str:
    """Join criteria with `and`, bracketed in pairs as COQL demands: (A and (B and C))."""
    if not criteria:
        raise ValueError("no criteria")
    if len(criteria) > MAX_CRITERIA:
        raise ValueError(f"COQL allows at most {MAX_CRITERIA} criteria")
    text = criteria[-1]
    for criterion in reversed(criteria[:-1]):
        text = f"({criterion} and {text})"
    return text


def select(
    module: str,
    columns: Sequence[str],
    where: str,
    *,
    order_by: str = "id",
    limit: int = 200,
    offset: int = 0,
) -> str:
    """Build one select query; raises ValueError when it would break a documented limit.

    Args:
        module: module API name.
        columns: field API names (at most 50).
        where: the criteria; always given, since older versions required a WHERE clause.
        order_by: `column [asc|desc]`.
        limit: rows per call (1..2000).
        offset: rows to skip; offset + limit may not pass 100,000.

    Returns:
        The COQL text for `{"select_query": ...}`.
    """
    if not columns or len(columns) > MAX_COLUMNS:
        raise ValueError(f"COQL selects 1..{MAX_COLUMNS} columns, got {len(columns)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"COQL limit must be 1..{MAX_LIMIT}")
    if offset < 0 or offset + limit > MAX_OFFSET_REACH:
        raise ValueError(f"COQL reaches at most {MAX_OFFSET_REACH} rows by offset")
    for name in (module, *columns, order_by.split()[0]):
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not a Zoho API name: {name!r}")
    # Values reach COQL only through quote(); names are checked against _IDENTIFIER above.
    query = f"select {', '.join(columns)} from {module} where {where} order by {order_by}"  # noqa: S608
    return f"{query} limit {limit}" + (f" offset {offset}" if offset else "")


def credit_cost(limit: int) -> int:
    """Credits one COQL call costs by its LIMIT: 1-200 -> 1, 201-1000 -> 2, 1001-2000 -> 3."""
    if limit <= 200:
        return 1
    if limit <= 1000:
        return 2
    return 3
