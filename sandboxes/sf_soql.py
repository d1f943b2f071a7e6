"""A SOQL subset for the Salesforce sandbox: tokenizer, parser and an AST that the emulator evaluates.

Covers what integrations send: field lists with parent paths (`Owner.IsActive`), `COUNT()`,
aggregate functions (`COUNT(Id)`, `COUNT_DISTINCT`, `SUM`, `AVG`, `MIN`, `MAX`, with aliases) and
`GROUP BY`, parent-to-child subqueries (`(SELECT Id FROM Tasks)`), one `FROM`, `WHERE` with AND/OR/NOT and parentheses, `= != <> < <= > >= IN NOT IN LIKE`,
null/true/false, quoted strings with backslash escapes, unquoted date and datetime literals,
a few date keywords (TODAY, YESTERDAY, LAST_N_DAYS:n), `ORDER BY` several fields with ASC/DESC
and NULLS FIRST/LAST, `LIMIT` and `OFFSET`. Names are case-insensitive, as in Salesforce.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

_Item = TypeVar("_Item")


class SoqlError(Exception):
    """A query Salesforce would reject; `code` is MALFORMED_QUERY, INVALID_FIELD or INVALID_TYPE."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DateLiteral:
    """An unquoted date literal: `2026-11-01`."""

    value: date


@dataclass(frozen=True)
class DateTimeLiteral:
    """An unquoted datetime literal, normalised to UTC."""

    value: datetime


@dataclass(frozen=True)
class DateKeyword:
    """TODAY, YESTERDAY, LAST_N_DAYS:n and friends, resolved at evaluation time."""

    name: str
    n: int = 0


@dataclass(frozen=True)
class FieldRef:
    """A field path as written (`Owner.IsActive`) and the column where it starts (1-based)."""

    path: tuple[str, ...]
    column: int

    @property
    def text(self) -> str:
        """The path joined with dots, as written."""
        return ".".join(self.path)


@dataclass(frozen=True)
class Comparison:
    """`field op value`, where op is one of = != < <= > >= LIKE IN NOTIN."""

    field: FieldRef
    op: str
    value: Any


@dataclass(frozen=True)
class BoolOp:
    """AND / OR over several conditions."""

    op: str
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """NOT (condition)."""

    part: Condition


Condition = Comparison | BoolOp | Not


@dataclass(frozen=True)
class Aggregate:
    """`COUNT(Id)`, `SUM(Amount__c) total`: the function, its field (None for COUNT()), the alias."""

    func: str
    field: FieldRef | None
    alias: str | None
    column: int

    @property
    def text(self) -> str:
        """The expression as Salesforce echoes it, e.g. `COUNT(Id)`."""
        return f"{self.func}({self.field.text if self.field else ''})"


@dataclass(frozen=True)
class OrderItem:
    """One ORDER BY key: a field, or an aggregate expression in a grouped query."""

    field: FieldRef
    descending: bool = False
    nulls_last: bool | None = None
    aggregate: Aggregate | None = None


@dataclass
class Query:
    """A parsed SELECT; a subquery's `object_name` is the child relationship it walks."""

    fields: list[FieldRef]
    object_name: str
    object_column: int
    count_only: bool = False
    where: Condition | None = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    text: str = ""
    aggregates: list[Aggregate] = field(default_factory=list)
    group_by: list[FieldRef] = field(default_factory=list)
    subqueries: list[Query] = field(default_factory=list)

    @property
    def is_aggregate(self) -> bool:
        """Whether rows are groups (AggregateResult) rather than records."""
        return bool(self.aggregates or self.group_by)


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),:])
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_KEYWORDS = {
    "select",
    "from",
    "where",
    "and",
    "or",
    "not",
    "in",
    "like",
    "order",
    "by",
    "asc",
    "desc",
    "nulls",
    "first",
    "last",
    "limit",
    "offset",
    "group",
    "having",
    "null",
    "true",
    "false",
}
AGGREGATE_FUNCTIONS = frozenset({"COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX"})
_DATE_KEYWORDS = {"TODAY", "YESTERDAY", "TOMORROW", "LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _unescape(raw: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt not in _ESCAPES and nxt not in "%_":
                raise SoqlError("MALFORMED_QUERY", f"Invalid string literal: bad escape \\{nxt}")
            # \% and \_ stay escaped for LIKE; elsewhere they mean the plain character.
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SoqlError(
                "MALFORMED_QUERY",
                f"line 1:{pos} no viable alternative at character '{text[pos]}'",
            )
        kind = match.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, match.group(), pos))
        pos = match.end()
    return out


def parse_datetime_literal(text: str) -> datetime:
    """`2026-11-01T12:00:00Z` / `...+01:00` / `...+0100` to an aware UTC datetime."""
    cleaned = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", cleaned):
        cleaned = cleaned[:-2] + ":" + cleaned[-2:]
    return datetime.fromisoformat(cleaned).astimezone(UTC)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def comma_list(self, item: Callable[[], _Item]) -> list[_Item]:
        """One or more items separated by commas."""
        items = [item()]
        while (tok := self.peek()) is not None and tok.text == ",":
            self.i += 1
            items.append(item())
        return items

    def is_kw(self, word: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind == "ident" and tok.text.lower() == word

    def fail(self, expected: str) -> SoqlError:
        tok = self.peek()
        found = tok.text if tok else "<EOF>"
        return SoqlError("MALFORMED_QUERY", f"unexpected token: '{found}' (expected {expected})")

    def expect_kw(self, word: str) -> None:
        if not self.is_kw(word):
            raise self.fail(word.upper())
        self.i += 1

    def expect(self, text: str) -> None:
        tok = self.peek()
        if tok is None or tok.text != text:
            raise self.fail(f"'{text}'")
        self.i += 1

    def field_ref(self) -> FieldRef:
        tok = self.peek()
        if tok is None or tok.kind != "ident" or tok.text.lower() in _KEYWORDS:
            raise self.fail("a field name")
        self.i += 1
        return FieldRef(tuple(tok.text.split(".")), tok.pos + 1)

    def int_value(self) -> int:
        tok = self.peek()
        if tok is None or tok.kind != "number" or "." in tok.text or tok.text.startswith("-"):
            raise self.fail("a non-negative integer")
        self.i += 1
        return int(tok.text)

    def parse(self) -> Query:
        query = self.select(nested=False)
        if self.peek() is not None:
            raise self.fail("end of query")
        return query

    def _at_function(self) -> bool:
        tok, nxt = self.peek(), self.peek(1)
        return (
            tok is not None
            and tok.kind == "ident"
            and tok.text.upper() in AGGREGATE_FUNCTIONS
            and nxt is not None
            and nxt.text == "("
        )

    def aggregate(self, *, allow_alias: bool) -> Aggregate:
        tok = self.peek()
        assert tok is not None
        func = tok.text.upper()
        self.i += 2  # name and "("
        ref: FieldRef | None = None
        if (nxt := self.peek()) is not None and nxt.text != ")":
            ref = self.field_ref()
        elif func != "COUNT":
            raise self.fail("a field name")
        self.expect(")")
        alias = None
        nxt = self.peek()
        if allow_alias and nxt is not None and nxt.kind == "ident" and "." not in nxt.text:
            if nxt.text.lower() not in _KEYWORDS:
                alias = nxt.text
                self.i += 1
        return Aggregate(func, ref, alias, tok.pos + 1)

    def select(self, *, nested: bool) -> Query:
        self.expect_kw("select")
        fields: list[FieldRef] = []
        aggregates: list[Aggregate] = []
        subqueries: list[Query] = []
        count_only = False
        while True:
            tok = self.peek()
            if tok is not None and tok.text == "(" and not nested:
                self.i += 1
                subqueries.append(self.select(nested=True))
                self.expect(")")
            elif self._at_function():
                item = self.aggregate(allow_alias=True)
                if item.func == "COUNT" and item.field is None:
                    count_only = True
                else:
                    aggregates.append(item)
            else:
                fields.append(self.field_ref())
            if (tok := self.peek()) is not None and tok.text == ",":
                self.i += 1
                continue
            break
        if count_only and (fields or aggregates or subqueries):
            raise SoqlError(
                "MALFORMED_QUERY", "COUNT() must be the only element in the SELECT list"
            )
        self.expect_kw("from")
        obj = self.peek()
        if obj is None or obj.kind != "ident" or "." in obj.text:
            raise self.fail("an object name")
        self.i += 1
        query = Query(fields, obj.text, obj.pos + 1, count_only, text=self.text)
        query.aggregates = aggregates
        query.subqueries = subqueries
        if self.is_kw("where"):
            self.i += 1
            query.where = self.or_expr()
        if self.is_kw("group"):
            self.i += 1
            self.expect_kw("by")
            query.group_by.extend(self.comma_list(self.field_ref))
        if self.is_kw("having"):
            raise SoqlError("MALFORMED_QUERY", "HAVING is not supported by the sandbox")
        if self.is_kw("order"):
            self.i += 1
            self.expect_kw("by")
            query.order_by.extend(self.comma_list(self.order_item))
        if self.is_kw("limit"):
            self.i += 1
            query.limit = self.int_value()
        if self.is_kw("offset"):
            self.i += 1
            query.offset = self.int_value()
            if query.offset > 2000:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
        return query

    def order_item(self) -> OrderItem:
        aggregate = None
        if self._at_function():
            aggregate = self.aggregate(allow_alias=False)
            ref = aggregate.field or FieldRef(("Id",), aggregate.column)
        else:
            ref = self.field_ref()
        descending = False
        nulls_last: bool | None = None
        if self.is_kw("asc"):
            self.i += 1
        elif self.is_kw("desc"):
            self.i += 1
            descending = True
        if self.is_kw("nulls"):
            self.i += 1
            if self.is_kw("first"):
                nulls_last = False
            elif self.is_kw("last"):
                nulls_last = True
            else:
                raise self.fail("FIRST or LAST")
            self.i += 1
        return OrderItem(ref, descending, nulls_last, aggregate)

    def or_expr(self) -> Condition:
        parts = [self.and_expr()]
        while self.is_kw("or"):
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def and_expr(self) -> Condition:
        parts = [self.not_expr()]
        while self.is_kw("and"):
            self.i += 1
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def not_expr(self) -> Condition:
        if self.is_kw("not"):
            self.i += 1
            return Not(self.not_expr())
        tok = self.peek()
        if tok is not None and tok.text == "(":
            self.i += 1
            inner = self.or_expr()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        ref = self.field_ref()
        tok = self.peek()
        if tok is None:
            raise self.fail("an operator")
        if tok.kind == "op":
            self.i += 1
            op = "!=" if tok.text == "<>" else tok.text
            return Comparison(ref, op, self.value())
        if self.is_kw("like"):
            self.i += 1
            value = self.value()
            if not isinstance(value, str):
                raise SoqlError("MALFORMED_QUERY", "LIKE needs a quoted string")
            return Comparison(ref, "LIKE", value)
        negate = False
        if self.is_kw("not") and self.is_kw("in", 1):
            self.i += 1
            negate = True
        if self.is_kw("in"):
            self.i += 1
            self.expect("(")
            values = self.comma_list(self.value)
            self.expect(")")
            return Comparison(ref, "NOTIN" if negate else "IN", tuple(values))
        raise self.fail("an operator")

    def value(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise self.fail("a value")
        self.i += 1
        if tok.kind == "string":
            return _unescape(tok.text[1:-1])
        if tok.kind == "number":
            return float(tok.text) if "." in tok.text else int(tok.text)
        if tok.kind == "date":
            return DateLiteral(date.fromisoformat(tok.text))
        if tok.kind == "datetime":
            return DateTimeLiteral(parse_datetime_literal(tok.text))
        if tok.kind == "ident":
            word = tok.text.lower()
            if word == "null":
                return None
            if word in ("true", "false"):
                return word == "true"
            upper = tok.text.upper()
            if upper in _DATE_KEYWORDS:
                if upper in ("TODAY", "YESTERDAY", "TOMORROW"):
                    return DateKeyword(upper)
                self.expect(":")
                return DateKeyword(upper, self.int_value())
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}'")


def parse(text: str) -> Query:
    """Parse one SOQL statement; raises SoqlError for what Salesforce would call malformed."""
    if not text.strip():
        raise SoqlError("MALFORMED_QUERY", "empty query")
    return _Parser(text).parse()


def resolve_date_keyword(keyword: DateKeyword, today: date) -> tuple[date, date]:
    """The [start, end] day range (inclusive) a date keyword stands for."""
    if keyword.name == "TODAY":
        return today, today
    if keyword.name == "YESTERDAY":
        day = today - timedelta(days=1)
        return day, day
    if keyword.name == "TOMORROW":
        day = today + timedelta(days=1)
        return day, day
    if keyword.name == "LAST_N_DAYS":
        return today - timedelta(days=keyword.n), today
    if keyword.name == "NEXT_N_DAYS":
        return today, today + timedelta(days=keyword.n)
    day = today - timedelta(days=keyword.n)  # N_DAYS_AGO
    return day, day


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """SOQL LIKE (`%`, `_`, backslash escapes) to a case-insensitive regex."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE | re.DOTALL)


def now_utc() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
